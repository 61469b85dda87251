/**
 * The lecture's GPU speedup ladder on the CUDA backend, as data: from fp32 with the attention
 * matrix stored, through TF32 and bf16 matmuls, flash attention and the vocabulary padded to
 * 50304, to the fused AdamW. A rung is a matmul precision, a choice of `CudaKernels` and a
 * vocabulary size; the backend switches them between steps (`speedupLadder` in mod.ts), and
 * lib/bench/ladder.ts times them.
 *
 * The lecture's torch.compile rung has no rung of its own here: this backend's layers are
 * already fused kernels (LayerNorm, GELU, the classifier), so the compiler's gain is in
 * every rung.
 *
 * @module
 */

import type { LadderRung } from "../../backend.ts";
import type { CudaKernels, CudaPrecision } from "./choices.ts";

/** One rung: the matmul precision, the kernels and the vocabulary size. */
export interface CudaRung extends LadderRung {
  precision: CudaPrecision;
  kernels: CudaKernels;
}

const UNFUSED: CudaKernels = { attention: "materialized", adamw: "elementwise" };
const FLASH: CudaKernels = { attention: "flash", adamw: "elementwise" };

/** The ladder, bottom to top; each rung's name is the lecture's. */
export const CUDA_LADDER: readonly CudaRung[] = [
  {
    name: "fp32 baseline",
    change: "f32 matmuls (CUBLAS_COMPUTE_32F), attention matrix stored, AdamW in two passes",
    precision: "f32",
    kernels: UNFUSED,
    vocabSize: 50257,
  },
  {
    name: "TF32",
    change: "matmuls on tensor cores in TF32 (f32 storage)",
    precision: "tf32",
    kernels: UNFUSED,
    vocabSize: 50257,
  },
  {
    name: "bfloat16 autocast",
    change: "matmul operands in bf16, sums and master weights in f32",
    precision: "bf16",
    kernels: UNFUSED,
    vocabSize: 50257,
  },
  {
    name: "flash attention",
    change: "online softmax, no (B, NH, T, T) matrix; recomputed in backward",
    precision: "bf16",
    kernels: FLASH,
    vocabSize: 50257,
  },
  {
    name: "vocab 50304",
    change: "the nice number: 50257 padded to 128 x 393",
    precision: "bf16",
    kernels: FLASH,
    vocabSize: 50304,
  },
  {
    name: "fused AdamW",
    change: "AdamW in one pass per parameter instead of two",
    precision: "bf16",
    kernels: { attention: "flash", adamw: "fused" },
    vocabSize: 50304,
  },
];
