/**
 * The lecture's GPU speedup ladder on the CUDA backend: GPT-2 124M at B=16, T=1024, from
 * fp32 with the attention matrix stored, through TF32 and bf16 matmuls, flash attention and
 * the vocabulary padded to 50304, to the fused AdamW, timing a few training steps at each
 * rung beside the lecture's A100 figures. A rung is a matmul precision, a choice of
 * `CudaKernels` and a vocabulary size; the backend switches them between steps.
 *
 * The lecture's torch.compile rung has no rung of its own here: this backend's layers are
 * already fused kernels (LayerNorm, GELU, the classifier), so the compiler's gain is in
 * every rung, and the table shows the lecture's figure beside no time of ours.
 *
 * @module
 */

import type { CudaBackend, CudaKernels, CudaPrecision } from "../backends/cuda/mod.ts";
import type { GPTConfig } from "../model/gpt.ts";
import { type LadderOptions, LECTURE_A100_MS, type RungResult, timeRungs } from "./ladder.ts";

/** One rung: the matmul precision, the kernels and the vocabulary size. */
export interface CudaRung {
  name: string;
  /** What changed from the rung before, in the lecture's words. */
  change: string;
  precision: CudaPrecision;
  kernels: CudaKernels;
  vocabSize: number;
}

/**
 * The lecture's A100 ladder (B=16, T=1024), ms per step, approximate as said in the video:
 * LECTURE_A100_MS with the last rung, the fused AdamW, added.
 */
export const LECTURE_A100_LADDER_MS: Record<string, number> = {
  ...LECTURE_A100_MS,
  "fused AdamW": 90,
};

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

/** A timed rung. */
export type CudaRungResult = RungResult<CudaRung>;

/**
 * Times every rung on `config` (its vocab set per rung); leaves the backend's kernels and
 * precision as found.
 */
export async function runCudaLadder(
  backend: CudaBackend,
  config: GPTConfig,
  o: LadderOptions<CudaRung>,
): Promise<CudaRungResult[]> {
  const kernels = backend.kernels, precision = backend.matmulPrecision;
  try {
    return await timeRungs(
      [...CUDA_LADDER],
      (rung) => {
        backend.kernels = rung.kernels;
        backend.setMatmulPrecision(rung.precision);
        return backend;
      },
      config,
      o,
    );
  } finally {
    backend.kernels = kernels;
    backend.setMatmulPrecision(precision);
  }
}

/**
 * The lecture's rungs with their A100 figures, and ours beside them where timed (null: not
 * timed here), as Markdown.
 */
export function cudaLadderTable(results: CudaRungResult[] | null): string {
  const lines = [
    "| rung | change | lecture A100 ms | ours ms | ours tok/s | speedup |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  const ours = new Map((results ?? []).map((r) => [r.rung.name, r]));
  for (const [name, lectureMs] of Object.entries(LECTURE_A100_LADDER_MS)) {
    const rung = CUDA_LADDER.find((r) => r.name === name), r = ours.get(name);
    const change = rung?.change ?? "no rung of its own: these kernels are fused already";
    const timed = r
      ? [r.ms.toFixed(0), r.tokensPerSec.toFixed(0), `${r.speedup.toFixed(1)}x`]
      : ["-", "-", "-"];
    lines.push(`| ${name} | ${change} | ${lectureMs} | ${timed.join(" | ")} |`);
  }
  return lines.join("\n");
}
