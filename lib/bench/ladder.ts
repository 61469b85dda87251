/**
 * The lecture's speedup ladder, timed: a backend's rungs (its `speedupLadder`, data in its
 * folder: lib/backends/native/ladder.ts on the CPU, webgpu/ladder.ts, cuda/ladder.ts), bottom
 * to top, a few training steps each: the median of the timed steps, with the fastest and the
 * slowest beside it, and the speedup over the first rung.
 *
 * Timed one rung after another, a machine whose load changes (another process, a turbo
 * clock) can make a rung look slower than the one before it. `interleave` times the rungs in
 * rounds instead, one step of each per round, so a change of load reaches every rung alike.
 *
 * @module
 */

import type { Backend, LadderRung } from "../backend.ts";
import type { GPTConfig } from "../model/gpt.ts";
import { stepRunner, type StepShape, type StepTiming, stepTiming } from "./step.ts";
import { interruptedLine, loopGuard } from "../interrupt.ts";

/** A timed rung. */
export interface RungResult<R = LadderRung> {
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

/** Options of `runLadder`. */
export interface LadderOptions<R = LadderRung> {
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
  // Kernel > Interrupt in a notebook (lib/interrupt.ts): the rungs timed so far are returned
  const guard = loopGuard();
  const stopped = async (what: string): Promise<boolean> => {
    if (!(await guard.interrupted())) return false;
    console.log(interruptedLine("the ladder", out.length, rungs.length) + ` (${what})`);
    return true;
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
      if (await stopped(`round ${i + 1} of ${o.warmup + o.iters}`)) return out;
    }
    rungs.forEach((rung, k) => add(rung, stepTiming(shape, times[k])));
    return out;
  }
  for (const rung of rungs) {
    const step = runner(rung), times: number[] = [];
    for (let i = 0; i < o.warmup + o.iters; i++) {
      const ms = await step();
      if (i >= o.warmup) times.push(ms);
      if (await stopped(`in a rung, step ${i + 1}`)) return out;
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

/**
 * Times every rung of `backend`'s speedup ladder on `config` (its vocab set per rung), and
 * leaves the backend as it found it.
 *
 * @throws {Error} when the backend has no speedup ladder
 */
export async function runLadder(
  backend: Backend,
  config: GPTConfig,
  o: LadderOptions,
): Promise<RungResult[]> {
  const ladder = backend.speedupLadder?.();
  if (!ladder) {
    throw new Error(`Expected a backend with a speedup ladder, found ${backend.name} without one`);
  }
  try {
    return await timeRungs(ladder.rungs, (rung) => ladder.enter(rung), config, o);
  } finally {
    ladder.restore();
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

/**
 * The lecture's A100 ladder (B=16, T=1024), ms per step, approximate as said in the video:
 * LECTURE_A100_MS with the last rung, the fused AdamW, added.
 */
export const LECTURE_A100_LADDER_MS: Record<string, number> = {
  ...LECTURE_A100_MS,
  "fused AdamW": 90,
};

/**
 * The lecture's rungs with their A100 figures, and ours beside them where timed (null: not
 * timed here), as Markdown; `rungs` gives each rung's change (a lecture rung that is none of
 * them has no rung of its own: the backend's kernels are fused already).
 */
export function lectureLadderTable(
  results: readonly RungResult[] | null,
  rungs: readonly LadderRung[],
): string {
  const lines = [
    "| rung | change | lecture A100 ms | ours ms | ours tok/s | speedup |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  const ours = new Map((results ?? []).map((r) => [r.rung.name, r]));
  for (const [name, lectureMs] of Object.entries(LECTURE_A100_LADDER_MS)) {
    const rung = rungs.find((r) => r.name === name), r = ours.get(name);
    const change = rung?.change ?? "no rung of its own: these kernels are fused already";
    const timed = r
      ? [r.ms.toFixed(0), r.tokensPerSec.toFixed(0), `${r.speedup.toFixed(1)}x`]
      : ["-", "-", "-"];
    lines.push(`| ${name} | ${change} | ${lectureMs} | ${timed.join(" | ")} |`);
  }
  return lines.join("\n");
}
