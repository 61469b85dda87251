/**
 * The fp32 peaks of GPUs we know, TFLOP/s, for MFU on WebGPU: without tensor cores, as WGSL
 * cannot reach them. Matched against the adapter's summary; unknown adapters have no peak.
 *
 * @module
 */

/** Dense fp32 peaks (vendor datasheets), TFLOP/s, by a pattern of the adapter's name. */
const FP32_PEAK_TFLOPS: [RegExp, number][] = [
  [/H100.*PCIe/i, 51.2],
  [/H100|H200/i, 66.9],
  [/A100/i, 19.5],
  [/RTX 4090/i, 82.6],
  [/RTX 3090/i, 35.6],
  [/A10\b/i, 31.2],
  [/L4\b/i, 30.3],
  [/T4\b/i, 8.1],
];

/** The adapter's fp32 peak in TFLOP/s, when it is one we know. */
export function knownPeakTflops(adapterSummary: string): number | null {
  return FP32_PEAK_TFLOPS.find(([re]) => re.test(adapterSummary))?.[1] ?? null;
}
