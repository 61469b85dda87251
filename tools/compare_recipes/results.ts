/**
 * What `deno task compare-recipes` reads from each training run and computes from them: the
 * validation curve (`{step} val {loss}` lines of log.txt), the step times (the `dt:` of the
 * step lines the train task prints), the step at which a curve first reaches a target loss, and
 * the per-row summary over seeds. Pure functions over text and numbers, so the tests can feed
 * hand-made inputs.
 *
 * Steps: the loop evaluates at the top of step `s`, before that step's update, so a validation
 * loss logged at step `s` is the model after `s` updates; a step count here is that `s`.
 *
 * @module
 */

/** A validation curve: the steps evaluated, ascending, and the loss at each. */
export interface Curve {
  steps: number[];
  values: number[];
}

const VAL_LINE = /^(\d+)\s+val\s+(\S+)$/;
const STEP_LINE = /^step\s+(\d+)\s+\|.*\|\s*dt:\s*([\d.]+)ms\b/;

/** A logged loss: a number, or NaN / inf as a diverged run logs them (JS's or Python's). */
function parseLoss(text: string): number | null {
  if (/^nan$/i.test(text)) return NaN;
  const inf = /^([+-]?)inf(inity)?$/i.exec(text);
  if (inf) return inf[1] === "-" ? -Infinity : Infinity;
  const value = Number(text);
  return text.trim() === "" || Number.isNaN(value) ? null : value;
}

/**
 * The `{step} val {loss}` lines of a build-nanogpt `log.txt`, sorted by step (a step logged
 * twice keeps its later value, as a resumed run appends); NaN and inf read as such (a diverged
 * run). Other lines are ignored.
 *
 * @throws {Error} for a val line whose loss is not a number (naming the line).
 */
export function parseValCurve(logText: string): Curve {
  const byStep = new Map<number, number>();
  logText.split("\n").forEach((raw, i) => {
    const m = VAL_LINE.exec(raw.trim());
    if (!m) return;
    const value = parseLoss(m[2]);
    if (value === null) {
      throw new Error(`Expected a number after "val" on line ${i + 1}, found "${m[2]}"`);
    }
    byStep.set(Number(m[1]), value);
  });
  const steps = [...byStep.keys()].sort((a, b) => a - b);
  return { steps, values: steps.map((s) => byStep.get(s)!) };
}

/** The step times the train task printed (`step N | ... | dt: X ms | ...`), by step. */
export function parseStepTimes(stdout: string): Map<number, number> {
  const times = new Map<number, number>();
  for (const raw of stdout.split("\n")) {
    const m = STEP_LINE.exec(raw.trim());
    if (m) times.set(Number(m[1]), Number(m[2]));
  }
  return times;
}

/** The median of `values`; NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The median time of a training step: the steps with an evaluation (their `dt` holds the
 * validation and the samples) and step 0 (the first call warms caches) left out. NaN when no
 * step is left.
 */
export function medianStepMs(
  times: ReadonlyMap<number, number>,
  evalSteps: readonly number[],
): number {
  const skip = new Set([0, ...evalSteps]);
  return median([...times].filter(([step]) => !skip.has(step)).map(([, ms]) => ms));
}

/**
 * The first step at which `curve` is at or below `target`, interpolated linearly between the
 * evaluation before and the first evaluation at or below it; the first evaluated step when that
 * is already there; null when the curve never reaches it.
 */
export function crossingStep(curve: Curve, target: number): number | null {
  for (let i = 0; i < curve.steps.length; i++) {
    if (!(curve.values[i] <= target)) continue;
    if (i === 0) return curve.steps[0];
    const [s0, s1] = [curve.steps[i - 1], curve.steps[i]];
    const [v0, v1] = [curve.values[i - 1], curve.values[i]];
    // v0 > target >= v1: the straight line between the two evaluations crosses target once
    return s0 + (s1 - s0) * (v0 - target) / (v0 - v1);
  }
  return null;
}

/** The mean and the sample standard deviation (n - 1) of `values`; sd 0 for one value. */
export function meanAndSd(values: readonly number[]): { mean: number; sd: number } {
  const n = values.length;
  if (n === 0) return { mean: NaN, sd: NaN };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, sd: 0 };
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
  return { mean, sd };
}

/** One finished run, as the comparison keeps it. */
export interface RunResult {
  seed: number;
  val: Curve;
  /** Median ms of a training step (see {@linkcode medianStepMs}). */
  stepMs: number;
  /** Seconds the subprocess took, start to exit. */
  wallS: number;
  /** The last evaluation's loss (the step-`steps-1` evaluation). */
  finalVal: number;
  /** Where the curve first reaches L*; null where it does not (or L* is not known yet). */
  crossing: number | null;
  /** True where a loss was NaN or infinite, or the run exited with an error. */
  diverged: boolean;
}

/** A row's numbers over its seeds. */
export interface RowSummary {
  id: string;
  change: string;
  seeds: number;
  finalVal: { mean: number; sd: number };
  /** Mean and spread of the crossing step over the seeds that reached L*. */
  crossing: { mean: number; sd: number; min: number; max: number } | null;
  /** How many seeds reached L*. */
  reached: number;
  /** Mean crossing over the steps of the lecture's final evaluation. */
  stepFraction: number | null;
  /**
   * The median over seeds of each run's median step time: on a shared machine one run slowed
   * by other work moves a mean, not a median.
   */
  stepMs: number;
  /** stepMs over the lecture row's. */
  stepMsRatio: number;
  diverged: number;
}

/** L*: the mean over seeds of the lecture runs' final validation loss. */
export function targetLoss(lectureRuns: readonly RunResult[]): number {
  if (lectureRuns.length === 0) {
    throw new Error("Expected at least one run of the lecture row to set L*, found none");
  }
  return meanAndSd(lectureRuns.map((r) => r.finalVal)).mean;
}

/**
 * Summarises each row's runs against the lecture row (the first): the crossing of L*, as a
 * fraction of `finalStep` (the step of the last evaluation), and the step time ratio.
 */
export function summarizeRows(
  rows: ReadonlyArray<{ id: string; change: string; runs: readonly RunResult[] }>,
  finalStep: number,
): RowSummary[] {
  const lectureMs = median(rows[0]?.runs.map((r) => r.stepMs) ?? []);
  return rows.map(({ id, change, runs }) => {
    const crossings = runs.map((r) => r.crossing).filter((c): c is number => c !== null);
    const c = meanAndSd(crossings);
    const stepMs = median(runs.map((r) => r.stepMs));
    return {
      id,
      change,
      seeds: runs.length,
      finalVal: meanAndSd(runs.map((r) => r.finalVal)),
      crossing: crossings.length === 0
        ? null
        : { mean: c.mean, sd: c.sd, min: Math.min(...crossings), max: Math.max(...crossings) },
      reached: crossings.length,
      stepFraction: crossings.length === 0 ? null : c.mean / finalStep,
      stepMs,
      stepMsRatio: stepMs / lectureMs,
      diverged: runs.filter((r) => r.diverged).length,
    };
  });
}

function fixed(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "n/a";
}

/**
 * The markdown table: one line per row with its final loss, the steps to L* (mean ± sd, min to
 * max, and how many seeds reached it where not all did), the fraction of the lecture's steps,
 * and the step time with its ratio to the lecture's.
 */
export function formatTable(summaries: readonly RowSummary[], lStar: number): string {
  const lines = [
    `| row | change | val loss at the end | steps to L* = ${lStar.toFixed(4)} | ` +
    `fraction of steps | step ms | step vs lecture |`,
    "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const s of summaries) {
    const reached = s.reached < s.seeds ? ` (${s.reached}/${s.seeds} seeds)` : "";
    const steps = s.seeds === 0
      ? "no runs yet"
      : s.crossing === null
      ? `not reached (0/${s.seeds} seeds)`
      : `${fixed(s.crossing.mean, 1)} ± ${fixed(s.crossing.sd, 1)} ` +
        `(${fixed(s.crossing.min, 1)}–${fixed(s.crossing.max, 1)})${reached}`;
    const diverged = s.diverged > 0 ? ` (${s.diverged} diverged)` : "";
    lines.push(
      `| ${s.id} | ${s.change} | ${fixed(s.finalVal.mean, 4)} ± ${
        fixed(s.finalVal.sd, 4)
      }${diverged} | ${steps} | ${s.stepFraction === null ? "n/a" : fixed(s.stepFraction, 2)} | ${
        fixed(s.stepMs, 1)
      } | ${Number.isFinite(s.stepMsRatio) ? `${fixed(s.stepMsRatio, 2)}x` : "n/a"} |`,
    );
  }
  return lines.join("\n") + "\n";
}
