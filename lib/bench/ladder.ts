/**
 * The lecture's speedup ladder on the CPU: start from the reference backend and switch on
 * one native piece at a time (C kernels, BLAS GEMMs, fused attention, fused classifier,
 * vocab 50257 -> 50304, fused AdamW), timing a few training steps at each rung. A rung is
 * the native backend with some kernels taken from the reference; both use the same host
 * buffers, so they mix freely.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { CpuBackend } from "../backends/cpu/mod.ts";
import type { NativeBackend } from "../backends/native/mod.ts";
import type { GPTConfig } from "../model/gpt.ts";
import { timeSteps } from "./step.ts";

type KernelName = Exclude<keyof Backend, "name">;

/** One rung: which kernels still come from the reference, BLAS on or off, the vocab. */
export interface Rung {
  name: string;
  /** What changed from the rung before, in the lecture's words. */
  change: string;
  reference: KernelName[] | "all";
  blas: boolean;
  vocabSize: number;
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
 * The backend of a rung: native kernels, except those the rung takes from the reference
 * backend. A proxy, so that every call still reaches the backend that owns the kernel.
 */
export function rungBackend(native: NativeBackend, rung: Rung): Backend {
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

/** A timed rung. */
export interface RungResult<R = Rung> {
  rung: R;
  ms: number;
  tokensPerSec: number;
  /** Speedup over the first rung. */
  speedup: number;
}

/** Options of `runLadder` (and of the WebGPU ladder's `runWebGpuLadder`). */
export interface LadderOptions<R = Rung> {
  B: number;
  T: number;
  warmup: number;
  iters: number;
  onRung?: (r: RungResult<R>) => void;
}

/**
 * Times training steps at every rung, bottom to top: `prepare` sets the rung up and returns
 * the backend to time; the model gets the rung's vocabulary.
 */
export async function timeRungs<R extends { vocabSize: number }>(
  rungs: R[],
  prepare: (rung: R) => Backend,
  config: GPTConfig,
  o: LadderOptions<R>,
): Promise<RungResult<R>[]> {
  const out: RungResult<R>[] = [];
  for (const rung of rungs) {
    const t = await timeSteps(prepare(rung), { ...config, vocab_size: rung.vocabSize }, {
      mode: "train",
      B: o.B,
      T: o.T,
      warmup: o.warmup,
      iters: o.iters,
    });
    const r = {
      rung,
      ms: t.medianMs,
      tokensPerSec: t.tokensPerSec,
      speedup: out.length ? out[0].ms / t.medianMs : 1,
    };
    out.push(r);
    o.onRung?.(r);
  }
  return out;
}

/** Times every rung on `config` (its vocab is set per rung). */
export async function runLadder(
  native: NativeBackend,
  config: GPTConfig,
  o: LadderOptions,
): Promise<RungResult[]> {
  try {
    return await timeRungs(
      LADDER,
      (rung) => {
        native.useBlas(rung.blas);
        return rungBackend(native, rung);
      },
      config,
      o,
    );
  } finally {
    native.useBlas(true);
  }
}

/** The lecture's A100 ladder (B=16, T=1024), ms per step, approximate as said in the video. */
export const LECTURE_A100_MS: Record<string, number> = {
  "fp32 baseline": 1000,
  "TF32": 333,
  "bfloat16 autocast": 300,
  "torch.compile": 130,
  "flash attention": 96,
  "vocab 50304": 93,
};
