/**
 * What a finished (or stopped) training run did, in one block at its end: wall time, steps
 * and tokens, the last train and validation losses, the best HellaSwag acc_norm with its 95%
 * interval, throughput and MFU, and where the model, log, report and figure went.
 * {@linkcode summarizeRun} gathers the numbers from a {@linkcode TrainResult};
 * {@linkcode formatRunSummary} lays them out.
 *
 * @module
 */

import { formatCount, formatDuration } from "../io/progress.ts";
import type { TrainResult } from "./options.ts";
import { formatInterval } from "./wilson.ts";

/** The peak FLOP/s MFU is taken against, and where that number came from. */
export interface PeakFlops {
  /** FLOP/s of every device the run used together. */
  flops: number;
  /** Where it came from, e.g. "measured fp32 FMA peak" or "NVIDIA H100 bf16 datasheet peak". */
  source: string;
}

/** Where a run's files went; null for what was not written. */
export interface RunOutputs {
  model: string | null;
  log: string | null;
  report: string | null;
  figure: string | null;
  /** The last checkpoint, the one to `--resume` from. */
  checkpoint: string | null;
}

/** A run's summary, as {@linkcode formatRunSummary} prints it. */
export interface RunSummary {
  wallSeconds: number;
  /** Optimizer steps this process ran (a resumed run counts from where it resumed). */
  steps: number;
  /** The first and last step index run, and the run's length (`--steps`). */
  firstStep: number | null;
  lastStep: number | null;
  totalSteps: number;
  /** Tokens the steps processed, over every rank. */
  tokens: number;
  finalTrainLoss: number | null;
  /** The last evaluation's validation loss, and its step. */
  finalValLoss: { loss: number; step: number } | null;
  /** The best HellaSwag acc_norm of the run's evaluations, its step and the examples scored. */
  bestHellaswag: { accNorm: number; step: number; examples: number } | null;
  /** Tokens per second over the timed steps (see {@linkcode summarizeRun}); null if none. */
  tokensPerSec: number | null;
  /** How many steps that throughput is taken over, and which were left out. */
  timedSteps: number;
  untimed: string;
  /** Model FLOPs per token (6N plus the attention term). */
  flopsPerToken: number;
  peak: PeakFlops | null;
  /** Model FLOPs utilisation, 0-1; null where no throughput or no peak is known. */
  mfu: number | null;
  /** Why the run ended early ("SIGINT"), or null. */
  stoppedBy: string | null;
  outputs: RunOutputs;
}

/** What {@linkcode summarizeRun} needs besides the result. */
export interface RunSummaryInputs {
  wallSeconds: number;
  /** Tokens per optimizer step over every rank (`totalBatchSize`). */
  tokensPerStep: number;
  /** The run's length, `--steps`. */
  totalSteps: number;
  /** Model FLOPs per token, as lib/plot/report.ts's `flopsPerToken` counts them. */
  flopsPerToken: number;
  /** HellaSwag examples each evaluation scored (over every rank); null without HellaSwag. */
  hellaswagExamples: number | null;
  peak: PeakFlops | null;
  outputs: RunOutputs;
}

/**
 * The summary of `result`. Throughput is the tokens of the timed steps over their summed
 * time: the run's first step is left out (it pays for warm-up: kernels compiled, buffers
 * allocated, after a resume too), and so are the steps that ran an evaluation (their time
 * includes the validation loss, HellaSwag and sampling, as build-nanogpt's does), unless no
 * other step is left. MFU is that throughput times FLOPs per token over the peak.
 */
export function summarizeRun(
  result: Pick<TrainResult, "history" | "evals" | "stoppedBy">,
  inputs: RunSummaryInputs,
): RunSummary {
  const { history, evals } = result;
  const evaluated = new Set(evals.map((e) => e.step));
  const afterFirst = history.slice(1);
  const plain = afterFirst.filter((s) => !evaluated.has(s.step));
  const timed = plain.length > 0 ? plain : afterFirst;
  const untimed = plain.length > 0 && plain.length < afterFirst.length
    ? "the first and those with an evaluation left out"
    : "the first left out";
  const seconds = timed.reduce((a, s) => a + s.dtMs, 0) / 1000;
  const tokensPerSec = timed.length > 0 && seconds > 0
    ? (timed.length * inputs.tokensPerStep) / seconds
    : null;
  const mfu = tokensPerSec !== null && inputs.peak !== null && inputs.peak.flops > 0
    ? (tokensPerSec * inputs.flopsPerToken) / inputs.peak.flops
    : null;
  let best: RunSummary["bestHellaswag"] = null;
  if (inputs.hellaswagExamples !== null && inputs.hellaswagExamples > 0) {
    for (const e of evals) {
      if (e.hellaAcc !== null && (best === null || e.hellaAcc > best.accNorm)) {
        best = { accNorm: e.hellaAcc, step: e.step, examples: inputs.hellaswagExamples };
      }
    }
  }
  const lastEval = evals.at(-1);
  return {
    wallSeconds: inputs.wallSeconds,
    steps: history.length,
    firstStep: history[0]?.step ?? null,
    lastStep: history.at(-1)?.step ?? null,
    totalSteps: inputs.totalSteps,
    tokens: history.length * inputs.tokensPerStep,
    finalTrainLoss: history.at(-1)?.loss ?? null,
    finalValLoss: lastEval ? { loss: lastEval.valLoss, step: lastEval.step } : null,
    bestHellaswag: best,
    tokensPerSec,
    timedSteps: timed.length,
    untimed,
    flopsPerToken: inputs.flopsPerToken,
    peak: inputs.peak,
    mfu,
    stoppedBy: result.stoppedBy,
    outputs: inputs.outputs,
  };
}

/**
 * The summary as an aligned block of `label  value` lines under a heading, e.g.
 *
 *     run summary (finished)
 *       wall time    1:02:03
 *       steps        6 (steps 0-5 of 6)
 *       ...
 */
export function formatRunSummary(s: RunSummary): string {
  const rows: [string, string][] = [];
  rows.push(["wall time", `${formatDuration(s.wallSeconds)} (${s.wallSeconds.toFixed(1)} s)`]);
  rows.push([
    "steps",
    s.firstStep === null
      ? `0 of ${s.totalSteps}`
      : `${s.steps} (steps ${s.firstStep}-${s.lastStep} of ${s.totalSteps})`,
  ]);
  rows.push(["tokens", `${s.tokens.toLocaleString("en-US")} (${formatCount(s.tokens)})`]);
  rows.push([
    "train loss",
    s.finalTrainLoss === null ? "none" : `${s.finalTrainLoss.toFixed(6)} (last step)`,
  ]);
  rows.push([
    "val loss",
    s.finalValLoss === null
      ? "not measured (no evaluation ran)"
      : `${s.finalValLoss.loss.toFixed(4)} (last evaluation, step ${s.finalValLoss.step})`,
  ]);
  if (s.bestHellaswag !== null) {
    const h = s.bestHellaswag;
    rows.push([
      "HellaSwag",
      `acc_norm ${h.accNorm.toFixed(4)} (${formatInterval(h.accNorm * h.examples, h.examples) // acc_norm is correct / examples
      }), the best, at step ${h.step}`,
    ]);
  }
  rows.push([
    "throughput",
    s.tokensPerSec === null
      ? "not measured (fewer than 2 steps)"
      : `${formatRate(s.tokensPerSec)} tok/s, mean over ${s.timedSteps} timed step${
        s.timedSteps === 1 ? "" : "s"
      } (${s.untimed})`,
  ]);
  rows.push(["MFU", formatMfu(s)]);
  const o = s.outputs;
  if (o.model) rows.push(["model", o.model]);
  if (o.log) rows.push(["log", o.log]);
  if (o.report) rows.push(["report", o.report]);
  if (o.figure) rows.push(["figure", o.figure]);
  if (o.checkpoint) {
    rows.push([
      "checkpoint",
      s.stoppedBy ? `${o.checkpoint} (continue with --resume ${o.checkpoint})` : o.checkpoint,
    ]);
  }
  if (!o.model && !o.log) rows.push(["files", "none written (no --log-dir)"]);
  const width = Math.max(...rows.map(([label]) => label.length));
  const heading = s.stoppedBy
    ? `run summary (stopped by ${s.stoppedBy} after step ${s.lastStep ?? "none"})`
    : "run summary (finished)";
  return [heading, ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`)].join(
    "\n",
  );
}

/** MFU with what it was measured against, or why it is unknown. */
function formatMfu(s: RunSummary): string {
  const perToken = `${(s.flopsPerToken / 1e6).toFixed(1)} MFLOP per token`;
  if (s.peak === null) return `unknown: no peak FLOP/s is known for this device (${perToken})`;
  if (s.mfu === null) return "unknown: no throughput was measured";
  return `${(s.mfu * 100).toFixed(1)}% (${perToken} against ${
    formatFlops(s.peak.flops)
  }, ${s.peak.source})`;
}

/** `1,234` tok/s below 10k, `12.3k` above. */
function formatRate(tokensPerSec: number): string {
  return tokensPerSec < 10_000
    ? tokensPerSec.toLocaleString("en-US", { maximumFractionDigits: 0 })
    : formatCount(tokensPerSec);
}

/** FLOP/s in GFLOP/s or TFLOP/s. */
function formatFlops(flops: number): string {
  return flops >= 1e12
    ? `${(flops / 1e12).toFixed(1)} TFLOP/s`
    : `${(flops / 1e9).toFixed(1)} GFLOP/s`;
}
