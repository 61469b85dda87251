/**
 * The lecture's speedup ladder on WebGPU, as data: from naive kernels, one speedup at a time
 * (tiled matmuls, fused elementwise kernels, flash attention, vocab 50257 -> 50304, fused
 * AdamW). A rung is a choice of `WebGpuKernels` plus a vocabulary size; the backend switches
 * kernels between steps (`speedupLadder` in mod.ts), so one device serves every rung, and
 * lib/bench/ladder.ts times them.
 *
 * @module
 */

import type { LadderRung } from "../../backend.ts";
import { defaultKernels, type WebGpuKernels } from "./kernels.ts";

/** One rung: the kernels it runs and the vocabulary size. */
export interface WebGpuRung extends LadderRung {
  kernels: WebGpuKernels;
}

/** The ladder, bottom to top, for an adapter (tiles differ on software adapters). */
export function webGpuLadder(isFallbackAdapter: boolean): WebGpuRung[] {
  const best = defaultKernels(isFallbackAdapter);
  const naive: WebGpuKernels = {
    matmul: "naive",
    attention: "materialized",
    fusedElementwise: false,
    adamw: "elementwise",
  };
  const tiled = { ...naive, matmul: best.matmul };
  const fused = { ...tiled, fusedElementwise: true };
  const flash = { ...fused, attention: "flash" as const };
  return [
    {
      name: "naive kernels",
      change: "one output per invocation; attention matrix stored; GELU, biases and AdamW " +
        "op by op (eager PyTorch)",
      kernels: naive,
      vocabSize: 50257,
    },
    {
      name: "tiled matmul",
      change: best.matmul === "tiled"
        ? "64x64 tiles staged in workgroup memory, 4x4 outputs per invocation"
        : "32x32 tiles of 4x4 register blocks (no workgroup memory: on a software adapter " +
          "it is slower than plain loads)",
      kernels: tiled,
      vocabSize: 50257,
    },
    {
      name: "fused kernels",
      change: "GELU in one kernel, biases in the matmul's epilogue (torch.compile's fusion)",
      kernels: fused,
      vocabSize: 50257,
    },
    {
      name: "flash attention",
      change: "online softmax, no (T, T) matrix stored; recomputed in backward",
      kernels: flash,
      vocabSize: 50257,
    },
    {
      name: "vocab 50304",
      change: "the nice number: 50257 padded to 128 x 393",
      kernels: flash,
      vocabSize: 50304,
    },
    {
      name: "fused AdamW",
      change: "AdamW in one kernel per parameter instead of ten",
      kernels: best,
      vocabSize: 50304,
    },
  ];
}
