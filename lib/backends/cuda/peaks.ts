/**
 * Dense peaks in TFLOP/s of the GPUs we know (vendor datasheets, no sparsity): bf16 and TF32
 * on tensor cores, plain fp32 on the CUDA cores. The H200 SXM has the H100 SXM's rates. The
 * denominator of MFU in the benchmark and in a training run's summary.
 *
 * @module
 */

/** The precisions with a datasheet peak, named as build-nanogpt names them. */
export type PeakPrecision = "fp32" | "tf32" | "bf16";

const GPU_PEAKS: { pattern: RegExp; peaks: Record<PeakPrecision, number> }[] = [
  { pattern: /H100.*PCIe/i, peaks: { bf16: 756, tf32: 378, fp32: 51 } },
  { pattern: /H100|H200|GH200/i, peaks: { bf16: 989, tf32: 494, fp32: 67 } },
  { pattern: /A100/i, peaks: { bf16: 312, tf32: 156, fp32: 19.5 } },
];

/** The GPU's dense peak for `precision` in TFLOP/s, or null for a GPU not in the table. */
export function gpuPeakTflops(deviceName: string, precision: PeakPrecision): number | null {
  return GPU_PEAKS.find((g) => g.pattern.test(deviceName))?.peaks[precision] ?? null;
}
