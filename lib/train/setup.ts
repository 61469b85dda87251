/**
 * Everything a training run builds before its first step, in build-nanogpt's order: the
 * gradient accumulation steps, the data loaders, the model (fresh, or a checkpoint's, which
 * also restores the optimizer, the data positions and the RNG), AdamW, the loss scaler,
 * `log.txt`, and the handlers that turn Ctrl-C into a clean stop.
 *
 * @module
 */

import { openTokenData, type TokenLoader } from "../data/shard_loader.ts";
import { type ProcessGroup, SingleProcessGroup } from "../ddp/process_group.ts";
import { GPT, type GPTConfig } from "../model/gpt.ts";
import { Generator } from "../model/random.ts";
import {
  loadCheckpoint,
  type LoadedCheckpoint,
  resolveResume,
  restoreOptimizer,
} from "./checkpoint.ts";
import { broadcastParameters, placeGradients } from "./ddp_sync.ts";
import { GradScaler } from "./grad_scaler.ts";
import type { TrainOptions } from "./options.ts";
import { type AdamW, configureOptimizers, type LrSchedule } from "./optim.ts";

/** A run ready for its first step. */
export interface RunSetup {
  group: ProcessGroup;
  rank: number;
  world: number;
  /** Rank 0: the process that logs, prints and checkpoints. */
  master: boolean;
  /** Prints on rank 0 only. */
  say: (line: string) => void;
  gradAccumSteps: number;
  trainLoader: TokenLoader;
  /** Null when the run never evaluates. */
  valLoader: TokenLoader | null;
  model: GPT;
  optimizer: AdamW;
  /** The loss scaler, with loss scaling (f16); else null. */
  scaler: GradScaler | null;
  /** The generator of the samples in evaluations (seeded 42 + rank). */
  sampleRng: Generator;
  schedule: LrSchedule;
  /** The first step to run: 0, or the resumed checkpoint's step. */
  startStep: number;
  /** The checkpoint resumed from, or null. */
  resumedFrom: string | null;
  /** Appends a line to `log.txt` (rank 0 with a log folder; else nothing). */
  log: (line: string) => Promise<void>;
  /** Ctrl-C and SIGTERM: the first one's name once received, else null. */
  stopSignal: () => string | null;
  /** Removes the signal handlers (the run's end). */
  dispose: () => void;
}

/** Builds the run `o` describes, resuming its checkpoint where `o.resume` names one. */
export async function setupRun(o: TrainOptions): Promise<RunSetup> {
  const { B, T, backend } = o;
  const group = o.group ?? new SingleProcessGroup();
  const rank = group.rank, world = group.worldSize;
  const master = rank === 0; // this process does the logging, checkpointing etc.
  const say = (line: string): void => {
    if (master) console.log(line);
  };
  const gradAccumSteps = accumulationSteps(o, world);
  say(`total desired batch size: ${o.totalBatchSize}`);
  say(`=> calculated gradient accumulation steps: ${gradAccumSteps}`);
  if (world > 1) say(`process group: ${group.describe()}`);
  const precision = o.precision ?? "f32";
  const scaler = (o.lossScaling ?? precision === "f16") ? new GradScaler(o.gradScaler) : null;
  if (precision !== "f32") say(`precision: ${precision} matmuls`);

  const trainLoader = await openTokenData(o.dataPath, "train", B, T, rank, world);
  const valLoader = (o.evalEvery ?? 0) > 0
    ? await openTokenData(o.dataPath, "val", B, T, rank, world)
    : null;

  // the model: fresh, or the checkpoint's (which also restores the optimizer and data)
  const resumedFrom = o.resume ? await resolveResume(o.resume, o.logDir) : null;
  const ckpt = resumedFrom ? await loadCheckpoint(backend, resumedFrom) : null;
  if (ckpt) {
    checkResumable(ckpt.state, o, world, resumedFrom!);
    say(`resuming from ${resumedFrom} at step ${ckpt.state.step}`);
  }
  const model = ckpt?.model ?? new GPT(backend, o.config, { seed: o.seed });
  say(`model: ${model.numParameters().toLocaleString("en-US")} parameters`);
  // as DDP does at construction: every rank starts from rank 0's weights
  if (world > 1 && !ckpt) await broadcastParameters(model, group);
  // DDP: gradients held in the shared-memory mapping where the group and backend allow it
  if (world > 1) say((await placeGradients(model, group)).note);
  const optimizer = configureOptimizers(model, {
    weightDecay: o.weightDecay,
    learningRate: o.maxLr,
    verbose: master,
  });
  const sampleRng = new Generator(42 + rank);
  if (ckpt) restoreRun(ckpt, { optimizer, model, trainLoader, sampleRng, scaler, rank });
  if (scaler) {
    say(
      `dynamic loss scaling: scale ${scaler.scale}, x${scaler.growthFactor} after ${scaler.growthInterval} clean steps, x${scaler.backoffFactor} on overflow`,
    );
  }
  const startStep = ckpt?.state.step ?? 0;
  const log = await openRunLog(master ? o.logDir : null, ckpt ? startStep : null);
  const signals = catchStopSignals(rank, o.handleSignals !== false);
  return {
    group,
    rank,
    world,
    master,
    say,
    gradAccumSteps,
    trainLoader,
    valLoader,
    model,
    optimizer,
    scaler,
    sampleRng,
    schedule: { maxLr: o.maxLr, minLr: o.minLr, warmupSteps: o.warmupSteps, maxSteps: o.steps },
    startStep,
    resumedFrom,
    log,
    ...signals,
  };
}

/** total_batch_size / (B * T * world), or an error when it does not divide. */
function accumulationSteps(o: TrainOptions, world: number): number {
  const { B, T } = o;
  if (o.totalBatchSize % (B * T * world) !== 0) {
    throw new Error(
      world === 1
        ? `--total-batch-size ${o.totalBatchSize} must be divisible by B * T = ${B * T}`
        : `--total-batch-size ${o.totalBatchSize} must be divisible by B * T * world = ${B} * ${T} * ${world}`,
    );
  }
  return o.totalBatchSize / (B * T * world);
}

/** The optimizer's state, this rank's data position and RNG, and the loss scale. */
function restoreRun(
  ckpt: LoadedCheckpoint,
  r: {
    optimizer: AdamW;
    model: GPT;
    trainLoader: TokenLoader;
    sampleRng: Generator;
    scaler: GradScaler | null;
    rank: number;
  },
): void {
  restoreOptimizer(r.optimizer, r.model, ckpt);
  const mine = ckpt.state.ranks[r.rank];
  r.trainLoader.restore(mine.loader as ReturnType<TokenLoader["state"]>);
  if (mine.rng.sample) r.sampleRng.setState(mine.rng.sample);
  // a checkpoint without a scaler's state (an f32 run, or an older one): a fresh scaler
  if (r.scaler && ckpt.state.gradScaler) {
    try {
      r.scaler.load(ckpt.state.gradScaler);
    } catch (e) {
      throw new Error(`Checkpoint ${ckpt.path}: ${(e as Error).message}`, { cause: e });
    }
  }
}

/** The settings that must match for a checkpoint to continue a run exactly. */
export function runSettings(o: TrainOptions): Record<string, unknown> {
  return {
    B: o.B,
    T: o.T,
    totalBatchSize: o.totalBatchSize,
    steps: o.steps,
    maxLr: o.maxLr,
    minLr: o.minLr,
    warmupSteps: o.warmupSteps,
    weightDecay: o.weightDecay,
    seed: o.seed,
    dataPath: o.dataPath,
    precision: o.precision ?? "f32",
    lossScaling: o.lossScaling ?? o.precision === "f16",
  };
}

function checkResumable(
  state: { worldSize: number; config: GPTConfig; run: Record<string, unknown> },
  o: TrainOptions,
  world: number,
  path: string,
): void {
  if (state.worldSize !== world) {
    throw new Error(
      `Checkpoint ${path} was written by ${state.worldSize} rank(s), this run has ${world}: resume with the same number of processes`,
    );
  }
  if (JSON.stringify(state.config) !== JSON.stringify(o.config)) {
    throw new Error(
      `Checkpoint ${path} holds a model ${JSON.stringify(state.config)}, this run asks for ${
        JSON.stringify(o.config)
      }: pass the same --model/--preset`,
    );
  }
  const settings = runSettings(o);
  for (const k of ["B", "T", "totalBatchSize"]) {
    if (state.run[k] !== settings[k]) {
      throw new Error(
        `Checkpoint ${path} was trained with ${k}=${state.run[k]}, this run has ${k}=${
          settings[k]
        }: the data positions would not match`,
      );
    }
  }
}

/**
 * `log.txt` in `logDir` (null: no log): cleared on a fresh run; on resume from step
 * `resumeStep`, the lines of the steps not yet redone are kept.
 */
async function openRunLog(
  logDir: string | null,
  resumeStep: number | null,
): Promise<(line: string) => Promise<void>> {
  if (!logDir) return () => Promise.resolve();
  await Deno.mkdir(logDir, { recursive: true });
  const logFile = `${logDir}/log.txt`;
  let keep = "";
  if (resumeStep !== null) {
    const old = await Deno.readTextFile(logFile).catch(() => "");
    keep = old.split("\n").filter((l) => l && Number(l.split(" ")[0]) < resumeStep)
      .map((l) => l + "\n").join("");
  }
  await Deno.writeTextFile(logFile, keep);
  return async (line) => await Deno.writeTextFile(logFile, line + "\n", { append: true });
}

/** Ctrl-C / SIGTERM: remembered, so the loop finishes the step, saves a checkpoint, returns. */
function catchStopSignals(
  rank: number,
  enabled: boolean,
): { stopSignal: () => string | null; dispose: () => void } {
  let signalled: string | null = null;
  const onSignal = (name: string) => () => {
    if (!signalled) console.error(`rank ${rank}: ${name}: stopping after this step`);
    signalled ??= name;
  };
  const handlers: [Deno.Signal, () => void][] = enabled
    ? [["SIGINT", onSignal("SIGINT")], ["SIGTERM", onSignal("SIGTERM")]]
    : [];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  return {
    stopSignal: () => signalled,
    dispose: () => {
      for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    },
  };
}
