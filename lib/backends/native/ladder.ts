/**
 * The lecture's speedup ladder on the CPU, as data: start from the reference backend and
 * switch on one native piece at a time (C kernels, BLAS GEMMs, fused attention, fused
 * classifier, vocab 50257 -> 50304, fused AdamW). A rung is the native backend with some
 * kernels taken from the reference; both use the same host buffers, so they mix freely
 * (`rungBackend`). `speedupLadder` in mod.ts runs them, lib/bench/ladder.ts times them.
 *
 * @module
 */

import type { Backend, LadderRung } from "../../backend.ts";
import { CpuBackend } from "../cpu/mod.ts";

/** A kernel (or any member) of the `Backend` interface. */
export type KernelName = Exclude<keyof Backend, "name">;

/** One rung: which kernels still come from the reference, BLAS on or off, the vocab. */
export interface Rung extends LadderRung {
  reference: KernelName[] | "all";
  blas: boolean;
}

const UNFUSED: KernelName[] = [
  "attentionForward",
  "attentionBackward",
  "crossEntropyForward",
  "crossEntropyBackward",
  "adamw",
];

/** The ladder, bottom to top. */
export const LADDER: Rung[] = [
  {
    name: "reference",
    change: "plain TypeScript loops (the fp32 baseline)",
    reference: "all",
    blas: false,
    vocabSize: 50257,
  },
  {
    name: "native kernels",
    change: "C kernels with OpenMP, the project's own blocked GEMM",
    reference: UNFUSED,
    blas: false,
    vocabSize: 50257,
  },
  {
    name: "BLAS GEMMs",
    change: "GEMMs in OpenBLAS",
    reference: UNFUSED,
    blas: true,
    vocabSize: 50257,
  },
  {
    name: "fused attention",
    change: "flash-style attention: no (T, T) matrix stored",
    reference: UNFUSED.slice(2),
    blas: true,
    vocabSize: 50257,
  },
  {
    name: "fused classifier",
    change: "softmax + cross-entropy in one pass, no probabilities kept",
    reference: ["adamw"],
    blas: true,
    vocabSize: 50257,
  },
  {
    name: "vocab 50304",
    change: "the nice number: 50257 padded to 128 x 393",
    reference: ["adamw"],
    blas: true,
    vocabSize: 50304,
  },
  {
    name: "fused AdamW",
    change: "AdamW in one multi-threaded C pass",
    reference: [],
    blas: true,
    vocabSize: 50304,
  },
];

/**
 * The backend of a rung: `native`'s kernels, except those the rung takes from the reference
 * backend. A proxy, so that every call still reaches the backend that owns the kernel.
 */
export function rungBackend(native: Backend, rung: Rung): Backend {
  if (rung.reference === "all") return new CpuBackend();
  const reference = new CpuBackend(), fromReference = new Set<string | symbol>(rung.reference);
  const name = `native (${rung.name})`;
  return new Proxy<Backend>(native, {
    get(target, key) {
      if (key === "name") return name;
      const owner = fromReference.has(key) ? reference : target;
      const value = Reflect.get(owner, key, owner);
      return typeof value === "function" ? value.bind(owner) : value;
    },
  });
}
