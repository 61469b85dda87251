/**
 * The lecture's speedup ladder on the CPU: start from the reference backend and switch on
 * one native piece at a time (C kernels, BLAS GEMMs, fused attention, fused classifier,
 * vocab 50257 -> 50304, fused AdamW), timing training steps at each rung: the median of the
 * timed steps, with the fastest and the slowest beside it. A rung is the native backend with
 * some kernels taken from the reference; both use the same host buffers, so they mix freely.
 *
 * Timed one rung after another, a machine whose load changes (another process, a turbo
 * clock) can make a rung look slower than the one before it. `interleave` times the rungs in
 * rounds instead, one step of each per round, so a change of load reaches every rung alike.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { CpuBackend } from "../backends/cpu/mod.ts";
import type { NativeBackend } from "../backends/native/mod.ts";
import type { GPTConfig } from "../model/gpt.ts";
import { stepRunner, type StepShape, type StepTiming, stepTiming } from "./step.ts";

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
  /** The median of the timed steps, ms. */
  ms: number;
  /** The fastest timed step, ms. */
  minMs: number;
  /** The slowest timed step, ms. */
  maxMs: number;
  /** How many steps were timed (after the warm-up). */
  iters: number;
  /** Tokens per second at the median step. */
  tokensPerSec: number;
  /** Speedup over the first rung, median against median. */
  speedup: number;
}

/** Options of `runLadder` (and of the WebGPU ladder's `runWebGpuLadder`). */
export interface LadderOptions<R = Rung> {
  B: number;
  T: number;
  /** Untimed steps per rung first. */
  warmup: number;
  /** Timed steps per rung (at least 1; a median wants 5 or more). */
  iters: number;
  /**
   * Time the rungs in rounds, one step of each rung per round, instead of one rung after
   * another: fairer on a machine whose load changes, but every rung's model is alive at once.
   */
  interleave?: boolean;
  /** Called with each timed rung, in order (all at the end when interleaved). */
  onRung?: (r: RungResult<R>) => void;
}

/**
 * Times training steps at every rung, bottom to top: `prepare` sets the backend up for a rung
 * and returns it (called before the rung's model is built and, interleaved, before each of its
 * steps); the model gets the rung's vocabulary.
 *
 * @throws {Error} when `iters` is below 1
 */
export async function timeRungs<R extends { vocabSize: number }>(
  rungs: readonly R[],
  prepare: (rung: R) => Backend,
  config: GPTConfig,
  o: LadderOptions<R>,
): Promise<RungResult<R>[]> {
  if (!(o.iters >= 1)) throw new Error(`Expected at least 1 timed step per rung, found ${o.iters}`);
  const shape: StepShape = { mode: "train", B: o.B, T: o.T };
  const runner = (rung: R) =>
    stepRunner(prepare(rung), { ...config, vocab_size: rung.vocabSize }, shape);
  const out: RungResult<R>[] = [];
  const add = (rung: R, t: StepTiming): void => {
    const r = rungResult(rung, t, out[0]);
    out.push(r);
    o.onRung?.(r);
  };
  if (o.interleave) {
    const steps = rungs.map(runner);
    const times = rungs.map((): number[] => []);
    for (let i = 0; i < o.warmup + o.iters; i++) {
      for (const [k, rung] of rungs.entries()) {
        prepare(rung);
        const ms = await steps[k]();
        if (i >= o.warmup) times[k].push(ms);
      }
    }
    rungs.forEach((rung, k) => add(rung, stepTiming(shape, times[k])));
    return out;
  }
  for (const rung of rungs) {
    const step = runner(rung), times: number[] = [];
    for (let i = 0; i < o.warmup + o.iters; i++) {
      const ms = await step();
      if (i >= o.warmup) times.push(ms);
    }
    add(rung, stepTiming(shape, times));
  }
  return out;
}

/** A rung's result from its step timing; the speedup is over `first` (none: this is first). */
function rungResult<R>(rung: R, t: StepTiming, first: RungResult<R> | undefined): RungResult<R> {
  return {
    rung,
    ms: t.medianMs,
    minMs: t.minMs,
    maxMs: t.maxMs,
    iters: t.timesMs.length,
    tokensPerSec: t.tokensPerSec,
    speedup: first ? first.ms / t.medianMs : 1,
  };
}

/** Times every rung on `config` (its vocab is set per rung). */
export async function runLadder(
  native: NativeBackend,
  config: GPTConfig,
  o: LadderOptions,
): Promise<RungResult[]> {
  const before = native.usesBlas;
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
    native.useBlas(before);
  }
}

/**
 * The ladder as a Markdown table: each rung's change, the median of its timed steps with the
 * fastest and the slowest beside it (where the ranges of two rungs overlap, their order may be
 * the machine's noise), tokens per second and the speedup over the first rung.
 */
export function rungTable(
  results: readonly RungResult<{ name: string; change: string }>[],
): string {
  const lines = [
    "| rung | change | ms/step (median) | fastest–slowest ms | tok/s | speedup |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results) {
    const cells = [
      r.rung.name,
      r.rung.change,
      r.ms.toFixed(0),
      `${r.minMs.toFixed(0)}–${r.maxMs.toFixed(0)} (${r.iters} steps)`,
      r.tokensPerSec.toFixed(1),
      `${r.speedup.toFixed(1)}x`,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
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
