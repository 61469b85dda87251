/**
 * The CUDA backend's choices, switched between steps: the matmuls' precision and the
 * kernels (flash or materialised attention, fused or two-pass AdamW). The speedup ladder
 * (ladder.ts) is made of them.
 *
 * @module
 */

import type { AttentionKind, AttentionPrecision } from "./attention.ts";

/** The matmul precisions the cuda backend runs. */
export type CudaPrecision = "f32" | "tf32" | "bf16";

/** The kernel choices (the speedup ladder switches them between steps). */
export interface CudaKernels {
  /** Flash-style attention, or the (B, NH, T, T) matrix materialised. */
  attention: AttentionKind;
  /** AdamW in one fused pass, or in two (moments, then parameters). */
  adamw: "fused" | "elementwise";
  /**
   * Flash attention's precision (attention.ts): "auto" (absent) runs the bf16 tensor-core
   * kernels under bf16 matmuls, the TF32 ones under TF32 matmuls and the f32 ones otherwise;
   * "f32", "bf16" or "tf32" forces one (bf16 only for head sizes 64 and 128, TF32 for 64, and
   * not in a build by NVRTC, which may lack mma.h; others always run the f32 kernels).
   */
  attentionPrecision?: AttentionPrecision;
}
