/**
 * Everything a training run builds before its first step, in build-nanogpt's order: the
 * gradient accumulation steps, the log folder claimed (`run_folder.ts`: one run per folder),
 * the data loaders, the model (fresh, loaded to fine-tune (`init_from.ts`), or a checkpoint's,
 * which also restores the optimizer, the data positions and the RNG), AdamW, the loss scaler, `log.txt`, and the handlers that
 * turn Ctrl-C into a clean stop. A checkpoint that already reached `steps` ends it there.
 *
 * @module
 */

import { openTokenData, type TokenLoader } from "../data/shard_loader.ts";
import { type ProcessGroup, SingleProcessGroup } from "../ddp/process_group.ts";
import { GPT, type GPTConfig } from "../model/gpt.ts";
import { Generator } from "../model/random.ts";
import {
  checkFiniteCheckpoint,
  checkpointsDir,
  loadCheckpoint,
  type LoadedCheckpoint,
  otherRunsCheckpoints,
  resolveResume,
  restoreOptimizer,
} from "./checkpoint.ts";
import { broadcastParameters, placeGradients } from "./ddp_sync.ts";
import { GradScaler } from "./grad_scaler.ts";
import { checkInitFromResume, loadInitialModel } from "./init_from.ts";
import { catchStopSignals } from "./stop.ts";
import type { TrainOptions } from "./options.ts";
import { type AdamW, configureOptimizers, type LrSchedule } from "./optim.ts";
import { claimLogDir, type LogDirClaim } from "./run_folder.ts";

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
  /** This run's id in its checkpoints: a resumed run keeps its checkpoint's. */
  runId: string;
  /** Appends a line to `log.txt` (rank 0 with a log folder; else nothing). */
  log: (line: string) => Promise<void>;
  /** Ctrl-C and SIGTERM: the first one's name once received, else null. */
  stopSignal: () => string | null;
  /** Removes the signal handlers (the run's end). */
  dispose: () => void;
  /** Gives up the log folder's lock (the very end, after the model is saved). */
  release: () => Promise<void>;
}

/** A resumed checkpoint that had reached `steps` already: nothing to run. */
export interface NothingLeft {
  nothingLeft: LoadedCheckpoint;
}

const NO_CLAIM: LogDirClaim = { release: () => Promise.resolve() };

/**
 * Builds the run `o` describes, resuming its checkpoint where `o.resume` names one; a
 * checkpoint already at `o.steps` says so and comes back as {@linkcode NothingLeft}, with the
 * log folder as it was.
 */
export async function setupRun(o: TrainOptions): Promise<RunSetup | NothingLeft> {
  checkSchedule(o);
  checkInitFromResume(o.initFrom?.name ?? null, o.resume ?? null);
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
  const claim = await claimFolder(o, group, say);
  try {
    const precision = o.precision ?? "f32";
    const scaler = (o.lossScaling ?? precision === "f16") ? new GradScaler(o.gradScaler) : null;
    if (precision !== "f32") say(`precision: ${precision} matmuls`);

    // every token id checked against the model's vocabulary as each shard is reached
    const vocab = { vocabSize: o.config.vocab_size };
    const trainLoader = await openTokenData(o.dataPath, "train", B, T, rank, world, vocab);
    const valLoader = (o.evalEvery ?? 0) > 0
      ? await openTokenData(o.dataPath, "val", B, T, rank, world, vocab)
      : null;

    // the model: fresh, loaded, or the checkpoint's (which also restores the optimizer and data)
    const ckpt = await resumeCheckpoint(o, world);
    if (ckpt && ckpt.state.step >= o.steps) {
      say(
        `${ckpt.path} is at step ${ckpt.state.step} and --steps is ${o.steps}: nothing left to do (pass a --steps above ${ckpt.state.step} to train further)`,
      );
      await claim.release();
      return { nothingLeft: ckpt };
    }
    if (ckpt) say(`resuming from ${ckpt.path} at step ${ckpt.state.step}`);
    const model = ckpt?.model ??
      (o.initFrom
        ? await loadInitialModel(backend, o.initFrom, o.config, say)
        : new GPT(backend, o.config, { seed: o.seed }));
    say(`model: ${model.numParameters().toLocaleString("en-US")} parameters`);
    // as DDP does at construction: every rank starts from rank 0's weights
    if (world > 1 && !ckpt) await broadcastParameters(model, group);
    // DDP: gradients held in the shared-memory mapping where the group and backend allow it
    if (world > 1) say((await placeGradients(model, group)).note);
    const optimizer = configureOptimizers(model, {
      weightDecay: o.weightDecay,
      learningRate: o.maxLr,
      verbose: master,
      optimizer: o.optimizer,
      muonLr: o.muonLr,
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
      resumedFrom: ckpt?.path ?? null,
      runId: ckpt?.state.runId ?? crypto.randomUUID(),
      log,
      ...signals,
      release: claim.release,
    };
  } catch (e) {
    await claim.release();
    throw e;
  }
}

/** min_lr above max_lr would make the "decay" a rise: refused. */
function checkSchedule(o: TrainOptions): void {
  if (o.minLr > o.maxLr) {
    throw new Error(
      `--min-lr ${o.minLr} is above --max-lr ${o.maxLr}: the learning rate decays from --max-lr to --min-lr, so pass a --min-lr at most ${o.maxLr}`,
    );
  }
}

/**
 * Rank 0 claims the log folder (lib/train/run_folder.ts); under DDP every rank then stops with
 * rank 0's reason, if it had one, rather than finding rank 0 gone at the next collective.
 */
async function claimFolder(
  o: TrainOptions,
  group: ProcessGroup,
  say: (line: string) => void,
): Promise<LogDirClaim> {
  let claim = NO_CLAIM, error: Error | null = null;
  if (group.rank === 0 && o.logDir !== null) {
    try {
      claim = await claimLogDir(
        { logDir: o.logDir, resume: o.resume ?? null, overwrite: o.overwrite ?? false },
        say,
      );
    } catch (e) {
      error = e as Error;
    }
  }
  if (group.worldSize > 1) {
    const all = await group.allGatherBytes(new TextEncoder().encode(error?.message ?? ""));
    if (!error && all[0].length) error = new Error(new TextDecoder().decode(all[0]));
  }
  if (error) throw error;
  return claim;
}

/**
 * The checkpoint `o.resume` names, verified, matching this run, and (unless it already
 * reached `o.steps`) finite; null for a fresh run.
 */
async function resumeCheckpoint(o: TrainOptions, world: number): Promise<LoadedCheckpoint | null> {
  if (!o.resume) return null;
  const path = await resolveResume(o.resume, o.logDir);
  const ckpt = await loadCheckpoint(o.backend, path);
  checkResumable(ckpt.state, o, world, path);
  if (o.logDir) {
    // one run per folder: continuing run A among run B's checkpoints would overwrite them
    const others = await otherRunsCheckpoints(checkpointsDir(o.logDir), ckpt.state.runId);
    if (others.length) {
      throw new Error(
        `--log-dir ${o.logDir} holds ${others.length} checkpoint(s) of another run than ${path} (newest ${
          others[others.length - 1]
        }): resume into a new --log-dir, or pass --overwrite to remove them first`,
      );
    }
  }
  if (ckpt.state.step < o.steps) await checkFiniteCheckpoint(ckpt);
  return ckpt;
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
