// The CUDA benchmark (lib/bench/cuda.ts): the GPUs' peaks, the PyTorch GPU peer's SUMMARY
// line, a whole run on the CPU emulator's library through the real FFI (a tiny model: the
// rows, MFU, peak memory and the table), the speedup ladder's rungs on it, and, where no GPU
// is usable, `deno task bench --backend cuda` failing at once with the reason.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { openEmulatorLibraryBackend } from "../cuda_emulator/ffi.ts";
import { gpuPeakTflops } from "../../lib/backends/cuda/peaks.ts";
import { CUDA_LADDER } from "../../lib/backends/cuda/ladder.ts";
import { cudaBenchTable, runCudaBench } from "../../lib/bench/cuda.ts";
import { lectureLadderTable, runLadder } from "../../lib/bench/ladder.ts";
import { parseSummary } from "../../lib/bench/torch_gpu_peer.ts";
import type { GPTConfig } from "../../lib/model/gpt.ts";
import { hasCxx, runTask } from "../support.ts";

/** A one-layer GPT-2 with the padded vocabulary (timeSteps draws ids below 50257). */
const TINY: GPTConfig = { n_layer: 1, n_head: 2, n_embd: 32, block_size: 16, vocab_size: 50304 };

const cxx = await hasCxx();
if (!cxx) console.log("cuda bench on the emulator: skipped: no C++ compiler (c++ or $CXX)");

Deno.test("cuda bench: the dense peaks of the GPUs it knows", () => {
  assertEquals(gpuPeakTflops("NVIDIA H200", "bf16"), 989);
  assertEquals(gpuPeakTflops("NVIDIA H100 80GB HBM3", "tf32"), 494);
  assertEquals(gpuPeakTflops("NVIDIA H100 PCIe", "bf16"), 756);
  assertEquals(gpuPeakTflops("NVIDIA A100-SXM4-80GB", "fp32"), 19.5);
  assertEquals(gpuPeakTflops("Tesla T4", "bf16"), null);
});

Deno.test("cuda bench: the PyTorch GPU peer's SUMMARY line", () => {
  const out = "iter 3: 40.1 ms\nSUMMARY mode=train B=16 T=1024 precision=bf16 compile=0 " +
    "min_ms=39.80 median_ms=40.12 tok_s_at_median=408374.3 peak_mem_gib=12.34\n";
  const s = parseSummary(out)!;
  assertEquals([s.B, s.T, s.compile, s.median_ms, s.tok_s_at_median, s.peak_mem_gib], [
    16,
    1024,
    0,
    40.12,
    408374.3,
    12.34,
  ]);
  assertEquals("precision" in s, false);
  assertEquals(parseSummary("Traceback (most recent call last):"), null);
});

Deno.test({
  name: "cuda bench: a run on the emulated backend gives every row, its memory and the table",
  ignore: !cxx,
  async fn() {
    const partial: number[] = [];
    const report = await runCudaBench({
      configs: [{ B: 2, T: 16, precision: "fp32" }, { B: 2, T: 16, precision: "bf16" }],
      warmup: 0,
      iters: 1,
      peer: false,
      compile: ["bf16"],
      openBackend: () => openEmulatorLibraryBackend(), // through the real FFI
      config: TINY,
      onRow: (r) => {
        partial.push(r.rows.length);
      },
    });
    assertEquals(partial, [1, 2]);
    assertEquals(report.rows.map((r) => r.precision), ["fp32", "bf16"]);
    for (const row of report.rows) {
      ok(!("failed" in row.ours), JSON.stringify(row.ours));
      if ("failed" in row.ours) continue;
      ok(row.ours.tokensPerSec > 0 && row.ours.medianMs > 0);
      ok(row.ours.peakMemoryBytes > 0, "Expected the row's peak memory");
      assertEquals(row.ours.mfu, null); // the emulator is no GPU of the peaks' table
      assertEquals(row.eager, { skipped: "not asked (--peer torch)" });
    }
    const table = cudaBenchTable(report);
    ok(table.includes("| train B=2 T=16 | fp32 |"), table);
    ok(table.includes("| train B=2 T=16 | bf16 |"), table);
    ok(table.includes("PyTorch peer not run: not asked (--peer torch)"), table);
  },
});

Deno.test({
  name: "cuda ladder: every rung runs on the emulated backend, which is left as found",
  ignore: !cxx,
  async fn() {
    const backend = await openEmulatorLibraryBackend(); // through the real FFI
    try {
      backend.setMatmulPrecision("tf32");
      const results = await runLadder(backend, TINY, { B: 2, T: 16, warmup: 0, iters: 1 });
      assertEquals(results.map((r) => r.rung.name), CUDA_LADDER.map((r) => r.name));
      assertEquals(backend.kernels, { attention: "flash", adamw: "fused" });
      assertEquals(backend.matmulPrecision, "tf32");
      const table = lectureLadderTable(results, CUDA_LADDER);
      ok(table.includes("| torch.compile | no rung of its own"), table);
      ok(table.includes("| fused AdamW | AdamW in one pass per parameter instead of two | 90 |"));
      ok(lectureLadderTable(null, CUDA_LADDER).includes("| fp32 baseline |"));
    } finally {
      backend.destroy();
    }
  },
});

Deno.test({
  name: "cuda bench: without a usable GPU, deno task bench --backend cuda fails at once saying why",
  ignore: (await cudaUnavailable()) === null,
  async fn() {
    const t0 = performance.now();
    const r = await runTask(["lib/cli/bench.ts", "--backend", "cuda", "--peer", "torch"]);
    assertEquals(r.code, 1);
    ok(r.stderr.includes("--backend cuda needs a usable NVIDIA GPU: "), r.stderr);
    const s = (performance.now() - t0) / 1000;
    ok(s < 20, `Expected the failure within 20 s, it took ${s.toFixed(1)} s`);
  },
});
