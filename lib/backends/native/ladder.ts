/**
 * The lecture's speedup ladder on the CPU, as data, in the lecture's order: the plain
 * TypeScript reference, then the native backend with one more of the lecture's changes a rung
 * (bf16 matmuls, kernel fusion, flash attention, vocab 50257 -> 50304, fused AdamW). A rung is
 * the native backend with some kernels taken from the reference and attention either naive
 * (naive_attention.ts: the (B, NH, T, T) matrix stored, on the native GEMMs) or flash; both
 * backends use the same host buffers, so they mix freely (`rungBackend`). `nativeLadder` sets
 * the backend's switches per rung (GEMM, precision, fusion); lib/bench/ladder.ts times them.
 *
 * @module
 */

import type { Backend, LadderRung, MatmulPrecision, SpeedupLadder } from "../../backend.ts";
import { CpuBackend } from "../cpu/mod.ts";
import { naiveAttentionBackward, naiveAttentionForward } from "./naive_attention.ts";

/** A kernel (or any member) of the `Backend` interface. */
export type KernelName = Exclude<keyof Backend, "name">;

/** One rung: which kernels still come from the reference, and the native backend's switches. */
export interface Rung extends LadderRung {
  /** Kernels from the reference backend; "all": the reference backend itself. */
  reference: KernelName[] | "all";
  /** "naive": the (B, NH, T, T) matrix stored (naive_attention.ts); "flash": the C kernel. */
  attention: "naive" | "flash";
  /** The matmuls' operands in bf16 (fp32 sums), as `--precision bf16` runs them. */
  bf16: boolean;
  /** The native backend's fused kernels on (`useFusion`: biases and GELU in GEMM epilogues). */
  fusion: boolean;
  /** The lecture's rung this one stands for (its name in the lecture's A100 table). */
  lecture?: string;
}

/** The native rungs start here; each rung below changes one thing from the rung before. */
const NATIVE: Omit<Rung, "name" | "change" | "lecture"> = {
  reference: ["adamw"],
  attention: "naive",
  bf16: false,
  fusion: false,
  vocabSize: 50257,
};

/** The ladder, bottom to top. */
export const LADDER: Rung[] = [
  {
    name: "reference",
    change: "plain TypeScript loops, the fp32 baseline every kernel is tested against",
    reference: "all",
    attention: "naive",
    bf16: false,
    fusion: false,
    vocabSize: 50257,
  },
  {
    ...NATIVE,
    name: "native kernels",
    change: "C kernels with OpenMP, the project's blocked GEMM; attention naive on those GEMMs",
    lecture: "fp32 baseline",
  },
  {
    ...NATIVE,
    bf16: true,
    name: "bf16 matmuls",
    change: "every matmul's operands rounded to bf16, sums in fp32 (--precision bf16)",
    lecture: "bfloat16 autocast",
  },
  {
    ...NATIVE,
    bf16: true,
    fusion: true,
    name: "kernel fusion",
    change: "biases and GELU in the GEMM epilogue (useFusion), torch.compile's rung",
    lecture: "torch.compile",
  },
  {
    ...NATIVE,
    bf16: true,
    fusion: true,
    attention: "flash",
    name: "flash attention",
    change: "blocks of queries on register tiles, softmax statistics kept: no (B, NH, T, T) matrix",
    lecture: "flash attention",
  },
  {
    ...NATIVE,
    bf16: true,
    fusion: true,
    attention: "flash",
    vocabSize: 50304,
    name: "vocab 50304",
    change: "the nice number: 50257 padded to 128 x 393",
    lecture: "vocab 50304",
  },
  {
    ...NATIVE,
    bf16: true,
    fusion: true,
    attention: "flash",
    vocabSize: 50304,
    reference: [],
    name: "fused AdamW",
    change: "AdamW in one multi-threaded C pass instead of TypeScript",
    lecture: "fused AdamW",
  },
];

/**
 * The backend of a rung: `native`'s kernels, except those the rung takes from the reference
 * backend, and attention naive where the rung says so. A proxy, so that every call still
 * reaches the backend that owns the kernel.
 */
export function rungBackend(native: Backend, rung: Rung): Backend {
  if (rung.reference === "all") return new CpuBackend();
  const reference = new CpuBackend(), fromReference = new Set<string | symbol>(rung.reference);
  const name = `native (${rung.name})`;
  const naive: Partial<Backend> = rung.attention === "naive"
    ? {
      attentionForward: (out, qkv, dims) => naiveAttentionForward(native, out, qkv, dims),
      attentionBackward: (dqkv, dout, qkv, saved, dims) =>
        naiveAttentionBackward(native, dqkv, dout, qkv, saved, dims),
    }
    : {};
  return new Proxy<Backend>(native, {
    get(target, key) {
      if (key === "name") return name;
      if (typeof key === "string" && key in naive) return naive[key as keyof Backend];
      const owner = fromReference.has(key) ? reference : target;
      const value = Reflect.get(owner, key, owner);
      return typeof value === "function" ? value.bind(owner) : value;
    },
  });
}

/** What the ladder switches on the native backend between rungs. */
export interface LadderSwitches {
  useBlas(on: boolean): void;
  readonly usesBlas: boolean;
  setMatmulPrecision(precision: MatmulPrecision): void;
  readonly matmulPrecision: MatmulPrecision;
  useFusion(on: boolean): void;
  readonly usesFusion: boolean;
}

/**
 * The CPU ladder on `native`: each rung's precision and fusion set, GEMMs in the project's own
 * kernel (the one with the bf16 path), the rung's reference kernels mixed in; `restore` puts
 * back the switches found.
 */
export function nativeLadder(native: Backend & LadderSwitches): SpeedupLadder<Rung> {
  const blas = native.usesBlas, precision = native.matmulPrecision, fusion = native.usesFusion;
  return {
    rungs: LADDER,
    enter: (rung) => {
      native.useBlas(false);
      native.setMatmulPrecision(rung.bf16 ? "bf16" : "f32");
      native.useFusion(rung.fusion);
      return rungBackend(native, rung);
    },
    restore: () => {
      native.useBlas(blas);
      native.setMatmulPrecision(precision);
      native.useFusion(fusion);
    },
  };
}
