/**
 * `run.json`: what a finished (or stopped) training run records beside its `log.txt`, for
 * people and for the figure and report (lib/plot/run_meta.ts reads it): the command, when and
 * where it ran, the model and data, the throughput and MFU, and the final numbers.
 *
 * Written at the end of a run, when the log folder is known to be this run's (an earlier run's
 * folder is refused or cleared before training starts), to a temporary file renamed into place.
 *
 * @module
 */

import { join } from "node:path";
import type { GPTConfig } from "../model/gpt.ts";
import type { RunMeta } from "../plot/run_meta.ts";
import type { RunSummary } from "../train/run_summary.ts";

/** What `deno task train` knows at the end of a run. */
export interface RunRecordInputs {
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
  summary: RunSummary;
}

/** The record: lib/plot's fields plus the rest of what a reader wants to know. */
export interface RunRecord extends RunMeta {
  command: string;
  preset: string;
  model: string;
  config: Record<string, number>;
  parameters: number;
  data: string;
  commit: string | null;
  started: string;
  finished: string;
  seconds: number;
  backend: string;
  machine: string;
  B: number;
  T: number;
  totalBatchSize: number;
  steps: number;
  tokens: number;
  peakSource: string | null;
  finalTrainLoss: number | null;
  finalValLoss: { loss: number; step: number } | null;
  bestHellaswag: { accNorm: number; step: number; examples: number } | null;
  stoppedBy: string | null;
}

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
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, `${JSON.stringify(record, null, 2)}\n`);
  await Deno.rename(tmp, path);
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
