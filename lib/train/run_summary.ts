/**
 * What a finished (or stopped) training run did, in one block at its end: wall time, steps
 * and tokens, the last train and validation losses, the best HellaSwag acc_norm with its 95%
 * interval, throughput and MFU, and where the model, log, report and figure went.
 * {@linkcode summarizeRun} gathers the numbers from a {@linkcode TrainResult};
 * {@linkcode formatRunSummary} lays them out.
 *
 * The same numbers go into `run.json` (below: the run record), one schema for both, with what
 * the command knows of the run besides: for people, and for the figure and report (lib/plot
 * reads it). The types of what a run gives, {@linkcode TrainResult} and its step and evaluation
 * statistics, are here too.
 *
 * @module
 */

import { join } from "node:path";
import type { Backend } from "../backend.ts";
import { formatInterval } from "../eval/wilson.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { formatCount, formatDuration } from "../io/progress.ts";
import type { GPT, GPTConfig } from "../model/gpt.ts";
import type { GradScalerState, Precision } from "./precision.ts";

/** What one optimizer step did. */
export interface StepStats {
  step: number;
  loss: number;
  lr: number;
  norm: number;
  dtMs: number;
  tokensPerSec: number;
  /** With loss scaling: the scale this step's backward pass used. */
  lossScale?: number;
  /** With loss scaling: whether the gradients overflowed, so the optimizer step was skipped. */
  skipped?: boolean;
}

/** What one evaluation found. */
export interface EvalStats {
  step: number;
  valLoss: number;
  /** HellaSwag acc_norm, when the hook ran. */
  hellaAcc: number | null;
  /** This rank's samples. */
  samples: string[];
}

/** The losses of a run, its model and where it was saved. */
export interface TrainResult {
  model: GPT;
  history: StepStats[];
  evals: EvalStats[];
  modelDir: string | null;
  /** The last checkpoint written (rank 0), if any. */
  checkpoint: string | null;
  /** Why the run ended before its last step ("SIGINT"), or null. */
  stoppedBy: string | null;
  /**
   * True when the resumed checkpoint had reached `steps` already: nothing ran and nothing was
   * written (`model` is the checkpoint's).
   */
  nothingLeft: boolean;
  /** The loss scaler's state at the end, with loss scaling; else null. */
  gradScaler: GradScalerState | null;
}

/** The peak FLOP/s MFU is taken against, and where that number came from. */
export interface PeakFlops {
  /** FLOP/s of every device the run used together. */
  flops: number;
  /** Where it came from, e.g. "measured fp32 FMA peak" or "NVIDIA H100 bf16 datasheet peak". */
  source: string;
}

/**
 * The peak FLOP/s MFU is taken against, where the backend knows it (`peakFlops`: the native
 * backend measures its CPU's, a CUDA GPU has a datasheet's): the whole group's, so a GPU per
 * rank counts `world` times and a CPU the ranks share counts once. Else null: MFU is then
 * reported unknown rather than guessed.
 */
export function groupPeakFlops(
  backend: Backend,
  precision: Precision,
  world: number,
): PeakFlops | null {
  const peak = backend.peakFlops?.(precision) ?? null;
  if (peak === null || peak.sharedByRanks || world === 1) return peak;
  return { flops: peak.flops * world, source: `${peak.source} x ${world} devices` };
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

// ---- the run record, run.json ----
//
// `run.json`: what a finished (or stopped) training run records beside its `log.txt`, for
// people and for the figure and report (lib/plot/run_meta.ts reads it): the command, when and
// where it ran, the model and data, the throughput and MFU, and the final numbers.
//
// Written at the end of a run, when the log folder is known to be this run's (an earlier run's
// folder is refused or cleared before training starts), to a temporary file renamed into place.

/** What `deno task train` knows of a run besides its summary. */
export interface RunFacts {
  command: string;
  preset: string;
  model: string;
  config: GPTConfig;
  parameters: number;
  data: string;
  backend: string;
  B: number;
  T: number;
  totalBatchSize: number;
  startedAt: Date;
}

/** What {@linkcode runRecord} is made from: the facts and the summary. */
export interface RunRecordInputs extends RunFacts {
  summary: RunSummary;
}

/**
 * The summary's numbers as `run.json` keeps them: the same fields, the peak flattened into
 * `peakFlops` and `peakSource` (lib/plot's names), a throughput or MFU that is unknown left out.
 */
export type RecordedSummary =
  & Pick<
    RunSummary,
    | "steps"
    | "tokens"
    | "flopsPerToken"
    | "finalTrainLoss"
    | "finalValLoss"
    | "bestHellaswag"
    | "stoppedBy"
  >
  & { tokensPerSec?: number; peakFlops?: number; peakSource: string | null; mfu?: number };

/**
 * `run.json`: the run's facts (the start as `started`), when it finished and on what, and
 * its summary; lib/plot/run_meta.ts reads the fields it draws from.
 */
export type RunRecord =
  & Omit<RunFacts, "config" | "startedAt">
  & RecordedSummary
  & {
    config: Record<string, number>;
    commit: string | null;
    started: string;
    finished: string;
    seconds: number;
    machine: string;
  };

/** The record of a run, from what the training command knows at its end. */
export async function runRecord(inputs: RunRecordInputs, now = new Date()): Promise<RunRecord> {
  const s = inputs.summary;
  return {
    command: inputs.command,
    commit: await gitCommit(),
    started: inputs.startedAt.toISOString(),
    finished: now.toISOString(),
    seconds: Math.round((now.getTime() - inputs.startedAt.getTime()) / 1000),
    backend: inputs.backend,
    machine: describeMachine(),
    preset: inputs.preset,
    model: inputs.model,
    config: { ...inputs.config },
    parameters: inputs.parameters,
    data: inputs.data,
    B: inputs.B,
    T: inputs.T,
    totalBatchSize: inputs.totalBatchSize,
    steps: s.steps,
    tokens: s.tokens,
    ...(s.tokensPerSec === null ? {} : { tokensPerSec: s.tokensPerSec }),
    flopsPerToken: s.flopsPerToken,
    ...(s.peak === null ? {} : { peakFlops: s.peak.flops }),
    peakSource: s.peak?.source ?? null,
    ...(s.mfu === null ? {} : { mfu: s.mfu }),
    finalTrainLoss: s.finalTrainLoss,
    finalValLoss: s.finalValLoss,
    bestHellaswag: s.bestHellaswag,
    stoppedBy: s.stoppedBy,
  };
}

/** Writes `run.json` into the log folder and returns its path. */
export async function writeRunRecord(logDir: string, record: RunRecord): Promise<string> {
  const path = join(logDir, "run.json");
  await writeFileAtomic(path, `${JSON.stringify(record, null, 2)}\n`);
  return path;
}

/** "AMD EPYC, 2 cores, 23.4 GiB": the CPU's name, its logical cores and the memory. */
export function describeMachine(): string {
  let cpu = "unknown CPU";
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux: the name stays unknown
  }
  const gib = (Deno.systemMemoryInfo().total / 2 ** 30).toFixed(1);
  return `${cpu}, ${navigator.hardwareConcurrency} cores, ${gib} GiB`;
}

/** The repository's short commit hash, or null outside a git checkout (or without git). */
async function gitCommit(): Promise<string | null> {
  try {
    const out = await new Deno.Command("git", {
      args: ["rev-parse", "--short", "HEAD"],
      cwd: new URL("../../", import.meta.url),
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}
