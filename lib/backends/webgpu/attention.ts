/**
 * Causal self-attention, flash style (`attention.wgsl`): an online softmax per query row,
 * the (T, T) matrix never stored; backward recomputes the scores from q, k and the saved
 * log-sum-exp. qkv is bound in batch chunks where it is over one binding.
 *
 * @module
 */

import type { AttentionDims, DeviceBuffer, DType } from "../../backend.ts";
import { type GpuDevice, grid, slice, type WebGpuBuffer } from "./device.ts";
import type { Prelude } from "./kernels.ts";

/**
 * What flash attention saves for backward: `stats` (lse then D, 2 B NH T floats) and a
 * copy of its output. Holding both wrappers keeps their finalizers from returning the GPU
 * buffers to the pool while the graph needs them.
 */
export class AttentionSaved implements DeviceBuffer {
  readonly length: number;
  readonly dtype: DType = "f32";

  constructor(readonly stats: WebGpuBuffer, readonly out: WebGpuBuffer) {
    this.length = stats.length;
  }
}

/** The module variant for a head size: HS is a compile-time constant of attention.wgsl. */
function headSize(hs: number): Prelude {
  return { kind: "headSize", hs };
}

/** out (B, T, C) = causal attention over qkv (B, T, 3C); returns what backward needs. */
export function attentionForward(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  qkv: WebGpuBuffer,
  { B, T, C, NH }: AttentionDims,
): AttentionSaved {
  const hs = C / NH, nStats = B * NH * T;
  const saved = new AttentionSaved(gpu.alloc(2 * nStats, "f32"), gpu.alloc(B * T * C, "f32"));
  for (const [b0, b1] of gpu.rowChunks(B, [T * 3 * C, T * C])) {
    gpu.dispatch(
      "attentionForward",
      [b1 - b0, T, C, NH, b0, nStats, 1 / Math.sqrt(hs)],
      [
        slice(qkv, b0 * T * 3 * C, (b1 - b0) * T * 3 * C),
        slice(out, b0 * T * C, (b1 - b0) * T * C),
        saved.stats,
      ],
      grid((b1 - b0) * NH * T),
      headSize(hs),
    );
  }
  gpu.copy(out, saved.out, B * T * C * 4);
  return saved;
}

/** dqkv += attention's backward of dout: queries first, then keys and values. */
export function attentionBackward(
  gpu: GpuDevice,
  dqkv: WebGpuBuffer,
  dout: WebGpuBuffer,
  qkv: WebGpuBuffer,
  saved: AttentionSaved,
  { B, T, C, NH }: AttentionDims,
): void {
  const hs = C / NH, nStats = B * NH * T;
  const chunks = gpu.rowChunks(B, [T * 3 * C, T * C]);
  for (const kernel of ["attentionBackwardQuery", "attentionBackwardKeyValue"] as const) {
    for (const [b0, b1] of chunks) {
      const nb = b1 - b0;
      const xs = slice(qkv, b0 * T * 3 * C, nb * T * 3 * C);
      const ds = slice(dout, b0 * T * C, nb * T * C);
      const dxs = slice(dqkv, b0 * T * 3 * C, nb * T * 3 * C);
      gpu.dispatch(
        kernel,
        [nb, T, C, NH, b0, nStats, 1 / Math.sqrt(hs)],
        kernel === "attentionBackwardQuery"
          ? [xs, ds, slice(saved.out, b0 * T * C, nb * T * C), saved.stats, dxs]
          : [xs, ds, saved.stats, dxs],
        grid(nb * NH * T),
        headSize(hs),
      );
    }
  }
}
