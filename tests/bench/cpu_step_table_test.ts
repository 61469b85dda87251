// lib/bench/cpu_step_table.ts: the CPU bench's rows like with like, MFU against each
// precision's peak, and the label where bf16 runs at the fp32 rate.
import { deepStrictEqual as assertEquals, equal, ok } from "node:assert/strict";
import {
  type CpuPeaks,
  type CpuStepRow,
  likeForLikeLines,
  likeRatio,
  mfu,
  peakFor,
  peakLines,
  stepTable,
  stepTableHeader,
  stepTableRow,
} from "../../lib/bench/cpu_step_table.ts";

const WITH_BF16_DOT: CpuPeaks = { fp32: 200, bf16: 400, bf16AtFp32Rate: false };
const WITHOUT_BF16_DOT: CpuPeaks = { fp32: 200, bf16: 200, bf16AtFp32Rate: true };

/** A row whose step takes `ms` for B*T tokens, 1e9 FLOPs a token, PyTorch at `torch` tok/s. */
function row(precision: "fp32" | "bf16", ms: number, torch: number | null): CpuStepRow {
  const B = 4, T = 64;
  return {
    mode: "train",
    B,
    T,
    precision,
    flopsPerToken: 1e9,
    ours: {
      medianMs: ms,
      minMs: ms - 10,
      maxMs: ms * 1.5,
      tokensPerSec: (B * T) / (ms / 1000),
      rss: 2 * 2 ** 30,
    },
    torchTokensPerSec: torch,
  };
}

Deno.test("cpu step table: MFU is tok/s x FLOPs a token over the peak of the row's precision", () => {
  equal(mfu(100, 1e9, 200), 0.5);
  equal(peakFor("fp32", WITH_BF16_DOT), 200);
  equal(peakFor("bf16", WITH_BF16_DOT), 400);
  equal(peakFor("bf16", WITHOUT_BF16_DOT), 200);
  // 256 tokens in 2.56 s: 100 tok/s of 1 GFLOP each, 50% of 200 GFLOP/s, 25% of 400
  const [fp32, bf16] = stepTable(
    [row("fp32", 2560, 50), row("bf16", 2560, 80)],
    WITH_BF16_DOT,
    "jemalloc",
  ).slice(2);
  const cells = (line: string) => line.split("|").slice(1, -1).map((c) => c.trim());
  assertEquals(cells(fp32), [
    "train B=4 T=64",
    "fp32",
    "2560 (2550-3840)",
    "1.50x",
    "100.0",
    "50.0",
    "2.00x",
    "50%",
    "25%",
    "2.00",
  ]);
  // the bf16 row against the bf16 peak, ours and PyTorch's alike
  assertEquals(cells(bf16).slice(1, 2), ["bf16 (PyTorch: autocast)"]);
  assertEquals(cells(bf16).slice(5, 9), ["80.0", "1.25x", "25%", "20%"]);
});

Deno.test("cpu step table: ratios are like with like, and a row PyTorch did not run has none", () => {
  const rows = [row("fp32", 1000, 128), row("bf16", 500, 1024), row("fp32", 1000, null)];
  equal(likeRatio(rows[0]), 2);
  equal(likeRatio(rows[1]), 0.5);
  equal(likeRatio(rows[2]), null);
  assertEquals(likeForLikeLines(rows), [
    "ours fp32 / PyTorch fp32: train B=4 T=64 2.00x",
    "ours bf16 / PyTorch bf16 autocast: train B=4 T=64 0.50x",
  ]);
  assertEquals(likeForLikeLines([row("fp32", 1000, null)]), []);
  const line = stepTable([rows[2]], WITH_BF16_DOT, "jemalloc")[2];
  ok(line.includes("| - | - |"), line);
  ok(/\| 128% \| - \| 2\.00 \|$/.test(line), line);
});

Deno.test("cpu step table: the heading names the peer's allocator; the peaks say where bf16 runs at the fp32 rate", () => {
  ok(stepTable([], WITH_BF16_DOT, "glibc malloc")[0].includes("PyTorch tok/s (glibc malloc)"));
  ok(stepTable([], WITH_BF16_DOT, "jemalloc")[0].includes("PyTorch tok/s (jemalloc)"));
  const without = peakLines(WITHOUT_BF16_DOT);
  equal(without[0], "fp32 rows: MFU against the measured fp32 FMA peak, 200.0 GFLOP/s");
  ok(/no bf16 dot-product instructions/.test(without[1]), without[1]);
  ok(/bf16 matmuls run at the fp32 rate/.test(without[1]), without[1]);
  ok(without[1].endsWith("against the fp32 FMA peak, 200.0 GFLOP/s"), without[1]);
  const withDot = peakLines(WITH_BF16_DOT);
  ok(/vdpbf16ps.*400\.0 GFLOP\/s/.test(withDot[1]), withDot[1]);
  ok(!/fp32 rate/.test(withDot[1]), withDot[1]);
});

Deno.test("cpu step table: a row printed as it finishes is the line the whole table has for it", () => {
  const rows = [row("fp32", 1000, 128), row("bf16", 500, null)];
  const table = stepTable(rows, WITH_BF16_DOT, "jemalloc");
  assertEquals(table.slice(0, 2), stepTableHeader("jemalloc"));
  assertEquals(table.slice(2), rows.map((r) => stepTableRow(r, WITH_BF16_DOT)));
  ok(stepTableRow(rows[1], WITH_BF16_DOT).startsWith("| train B=4 T=64 | bf16"));
});
