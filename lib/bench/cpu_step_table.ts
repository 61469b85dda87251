/**
 * The CPU bench's step table: each size in fp32 and bf16, ours beside PyTorch in the same
 * precision (fp32 beside fp32, our bf16 matmuls beside PyTorch's bf16 autocast), the ratio of
 * each like with like, and MFU against the peak of the row's precision, both measured: the
 * fp32 FMA peak, and the bf16 dot-product (vdpbf16ps) peak where the CPU has one; where it has
 * none, bf16 matmuls run on the fp32 FMAs and the bf16 rows' MFU is against the fp32 peak,
 * labelled so.
 *
 * @module
 */

/** The precisions the CPU bench times: fp32, and bf16 matmuls (PyTorch: autocast to bf16). */
export type CpuBenchPrecision = "fp32" | "bf16";

/** The CPU bench's precisions, in table order. */
export const CPU_BENCH_PRECISIONS: readonly CpuBenchPrecision[] = ["fp32", "bf16"];

/** The measured peaks MFU is taken against, GFLOP/s. */
export interface CpuPeaks {
  /** The fp32 FMA peak. */
  fp32: number;
  /** The bf16 matmuls' peak: vdpbf16ps's, or the fp32 FMA peak where the CPU has no bf16 dot products. */
  bf16: number;
  /** True where the CPU has no bf16 dot-product instructions (bf16 runs at the fp32 rate). */
  bf16AtFp32Rate: boolean;
}

/** One size in one precision: our step's timing and PyTorch's tok/s in the same precision. */
export interface CpuStepRow {
  mode: "train" | "fwd";
  B: number;
  T: number;
  precision: CpuBenchPrecision;
  /** Model FLOPs per token of the step (trainFlopsPerToken, a third of it forward-only). */
  flopsPerToken: number;
  ours: { medianMs: number; minMs: number; maxMs: number; tokensPerSec: number; rss: number };
  /** PyTorch's tok/s at its median step, in the row's precision; null where it did not run. */
  torchTokensPerSec: number | null;
}

/** The peak a row of `precision` is measured against, GFLOP/s. */
export function peakFor(precision: CpuBenchPrecision, peaks: CpuPeaks): number {
  return precision === "bf16" ? peaks.bf16 : peaks.fp32;
}

/** Model FLOP utilisation: `tokensPerSec` x `flopsPerToken` over `peakGflops`, a fraction. */
export function mfu(tokensPerSec: number, flopsPerToken: number, peakGflops: number): number {
  return (tokensPerSec * flopsPerToken) / 1e9 / peakGflops;
}

/** Ours over PyTorch in the row's precision; null where PyTorch did not run. */
export function likeRatio(row: CpuStepRow): number | null {
  return row.torchTokensPerSec ? row.ours.tokensPerSec / row.torchTokensPerSec : null;
}

/** The step's name in the table, e.g. "train B=4 T=64". */
export function stepLabel(row: { mode: "train" | "fwd"; B: number; T: number }): string {
  return `${row.mode} B=${row.B} T=${row.T}`;
}

/** The lines that say which peak each precision's MFU is against. */
export function peakLines(peaks: CpuPeaks): string[] {
  const fp32 = `${peaks.fp32.toFixed(1)} GFLOP/s`;
  return [
    `fp32 rows: MFU against the measured fp32 FMA peak, ${fp32}`,
    peaks.bf16AtFp32Rate
      ? `bf16 rows: this CPU has no bf16 dot-product instructions (no avx512_bf16), so bf16 ` +
        `matmuls run at the fp32 rate; their MFU is against the fp32 FMA peak, ${fp32}`
      : `bf16 rows: MFU against the measured bf16 dot-product (vdpbf16ps, avx512_bf16) peak, ${
        peaks.bf16.toFixed(1)
      } GFLOP/s`,
  ];
}

const percent = (x: number) => `${(100 * x).toFixed(0)}%`;

/**
 * The table's two heading lines, in markdown, PyTorch's column headed with the allocator it
 * ran under (`allocator`, e.g. "jemalloc" or "glibc malloc").
 */
export function stepTableHeader(allocator: string): string[] {
  return [
    `| step | precision | ours ms (min-max) | slowest / median | ours tok/s | PyTorch tok/s (${allocator}) | ours / PyTorch | ours MFU | PyTorch MFU | RSS GiB |`,
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
}

/** One size in one precision as a line of the table, MFU against `peaks`' peak of its precision. */
export function stepTableRow(r: CpuStepRow, peaks: CpuPeaks): string {
  const peak = peakFor(r.precision, peaks);
  const { medianMs, minMs, maxMs, tokensPerSec, rss } = r.ours;
  const ratio = likeRatio(r);
  const torch = r.torchTokensPerSec;
  const cells = [
    stepLabel(r),
    r.precision === "bf16" ? "bf16 (PyTorch: autocast)" : "fp32",
    `${medianMs.toFixed(0)} (${minMs.toFixed(0)}-${maxMs.toFixed(0)})`,
    `${(maxMs / medianMs).toFixed(2)}x`,
    tokensPerSec.toFixed(1),
    torch ? torch.toFixed(1) : "-",
    ratio === null ? "-" : `${ratio.toFixed(2)}x`,
    percent(mfu(tokensPerSec, r.flopsPerToken, peak)),
    torch ? percent(mfu(torch, r.flopsPerToken, peak)) : "-",
    (rss / 2 ** 30).toFixed(2),
  ];
  return `| ${cells.join(" | ")} |`;
}

/**
 * The table, in markdown: the heading (`stepTableHeader`), then one line per size and
 * precision (`stepTableRow`).
 */
export function stepTable(
  rows: readonly CpuStepRow[],
  peaks: CpuPeaks,
  allocator: string,
): string[] {
  return [...stepTableHeader(allocator), ...rows.map((r) => stepTableRow(r, peaks))];
}

/**
 * The ratios like with like, one line per precision: ours fp32 over PyTorch fp32, ours bf16
 * over PyTorch's bf16 autocast, at each size PyTorch ran; none where it ran at no size.
 */
export function likeForLikeLines(rows: readonly CpuStepRow[]): string[] {
  const lines: string[] = [];
  for (const precision of CPU_BENCH_PRECISIONS) {
    const cells = rows.filter((r) => r.precision === precision).flatMap((r) => {
      const ratio = likeRatio(r);
      return ratio === null ? [] : [`${stepLabel(r)} ${ratio.toFixed(2)}x`];
    });
    if (cells.length === 0) continue;
    const name = precision === "bf16"
      ? "ours bf16 / PyTorch bf16 autocast"
      : "ours fp32 / PyTorch fp32";
    lines.push(`${name}: ${cells.join(", ")}`);
  }
  return lines;
}
