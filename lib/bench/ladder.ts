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

/** A rung's untimed and timed steps. */
export interface RungSteps {
  /** Untimed steps first. */
  warmup: number;
  /** Timed steps (at least 1; a median wants 5 or more). */
  iters: number;
}

/** Options of `runLadder`. */
export interface LadderOptions<R = LadderRung> extends RungSteps {
  B: number;
  T: number;
  /**
   * A rung's own steps where they differ from `warmup` and `iters` (a slow first rung timed
   * fewer times); undefined: the common ones.
   */
  stepsOf?: (rung: R) => RungSteps | undefined;
  /**
   * Time the rungs in rounds, one step of each rung per round, instead of one rung after
   * another: fairer on a machine whose load changes, but every rung's model is alive at once.
   * A rung with fewer steps than the others takes part in the first rounds only.
   */
  interleave?: boolean;
  /**
   * Called with each timed rung, in order, as soon as it and the rungs before it have taken
   * all their steps.
   */
  onRung?: (r: RungResult<R>) => void;
  /** Called after each round when interleaved: the rounds done and their number. */
  onRound?: (done: number, rounds: number) => void;
}

/**
 * Times training steps at every rung, bottom to top: `prepare` sets the backend up for a rung
 * and returns it (called before the rung's model is built and, interleaved, before each of its
 * steps); the model gets the rung's vocabulary.
 *
 * @throws {Error} when a rung's `iters` is below 1
 */
export async function timeRungs<R extends { vocabSize: number }>(
  rungs: readonly R[],
  prepare: (rung: R) => Backend,
  config: GPTConfig,
  o: LadderOptions<R>,
): Promise<RungResult<R>[]> {
  const counts = rungs.map((rung) => o.stepsOf?.(rung) ?? { warmup: o.warmup, iters: o.iters });
  for (const c of counts) {
    if (!(c.iters >= 1)) {
      throw new Error(`Expected at least 1 timed step per rung, found ${c.iters}`);
    }
  }
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
    const total = counts.map((c) => c.warmup + c.iters);
    const rounds = Math.max(...total);
    for (let i = 0; i < rounds; i++) {
      for (const [k, rung] of rungs.entries()) {
        if (i >= total[k]) continue;
        prepare(rung);
        const ms = await steps[k]();
        if (i >= counts[k].warmup) times[k].push(ms);
      }
      // each rung reported once it and those before it are done
      while (out.length < rungs.length && total[out.length] <= i + 1) {
        add(rungs[out.length], stepTiming(shape, times[out.length]));
      }
      o.onRound?.(i + 1, rounds);
      if (out.length < rungs.length && await stopped(`round ${i + 1} of ${rounds}`)) return out;
    }
    return out;
  }
  for (const [k, rung] of rungs.entries()) {
    const step = runner(rung), times: number[] = [];
    for (let i = 0; i < counts[k].warmup + counts[k].iters; i++) {
      const ms = await step();
      if (i >= counts[k].warmup) times.push(ms);
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
      : ["not timed here", "-", "-"];
    lines.push(`| ${name} | ${change} | ${lectureMs} | ${timed.join(" | ")} |`);
  }
  return lines.join("\n");
}

/** A rung that names the lecture's rung it stands for (none: a rung of our own). */
export interface LectureRung {
  name: string;
  change: string;
  /** The lecture's rung, a key of LECTURE_A100_LADDER_MS. */
  lecture?: string;
}

/**
 * Our ladder beside the lecture's, as Markdown, in the lecture's order: each rung's median step
 * with the fastest and slowest, tok/s and what it bought over the rung before; the lecture's A100
 * ms/step and the same ratio for the rung it stands for. A lecture rung none of ours stands for
 * gets a row of its own, saying why from `absent` (its name to the reason).
 *
 * @throws {Error} when a rung names a rung the lecture does not have, or names one out of order
 */
export function besideLectureTable(
  results: readonly RungResult<LectureRung>[],
  absent: Record<string, string> = {},
): string {
  const lecture = Object.entries(LECTURE_A100_LADDER_MS);
  const lines = [
    "| rung | change | ms/step (median) | fastest–slowest ms | tok/s | over the rung before | " +
    "lecture A100 ms/step | lecture: over the rung before |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  let next = 0; // the lecture's rungs before `next` have their row
  let lectureBefore: number | undefined;
  const lectureCells = (i: number): string[] => {
    const ms = lecture[i][1], ratio = lectureBefore ? `${(lectureBefore / ms).toFixed(2)}x` : "-";
    lectureBefore = ms;
    return [String(ms), ratio];
  };
  const lectureRow = (i: number): void => {
    const [name] = lecture[i];
    const why = absent[name] ?? "no rung of its own here";
    lines.push(`| ${name} | ${why} | not timed here | | | | ${lectureCells(i).join(" | ")} |`);
  };
  for (const [k, r] of results.entries()) {
    let cells = ["", ""];
    if (r.rung.lecture !== undefined) {
      const i = lecture.findIndex(([name]) => name === r.rung.lecture);
      if (i < next) {
        throw new Error(
          `Expected rung ${r.rung.name} to name a later rung of the lecture's ladder, found ` +
            `"${r.rung.lecture}"`,
        );
      }
      while (next < i) lectureRow(next++);
      cells = lectureCells(next++);
    }
    const before = k > 0 ? `${(results[k - 1].ms / r.ms).toFixed(2)}x` : "-";
    const ours = [
      r.rung.name,
      r.rung.change,
      r.ms.toFixed(0),
      `${r.minMs.toFixed(0)}–${r.maxMs.toFixed(0)} (${r.iters} steps)`,
      r.tokensPerSec.toFixed(1),
      before,
    ];
    lines.push(`| ${[...ours, ...cells].join(" | ")} |`);
  }
  while (next < lecture.length) lectureRow(next++);
  return lines.join("\n");
}
