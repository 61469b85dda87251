/**
 * build-nanogpt's training run, readable top to bottom in its `train_gpt2.py` order: what is
 * built before the first step (the gradient accumulation steps, the log folder claimed, the data
 * loaders, the model: fresh, loaded to fine-tune (`init_from.ts`) or a checkpoint's, which also
 * restores the optimizer, the data positions and the RNG; AdamW, the loss scaler, `log.txt`, the
 * handlers that turn Ctrl-C into a clean stop); then the loop: for each step, (1) once in a while
 * the validation loss, HellaSwag and samples, (2) gradient accumulation over micro-steps, the
 * gradients all-reduced across ranks after the last one (`ddp_sync.ts`), (3) clipping, the lr
 * schedule and AdamW, (4) the step line and `log.txt`, (5) once in a while a checkpoint; then
 * the model saved.
 *
 * Checkpoints resume exactly; a non-finite loss or gradient norm stops the run before the
 * weights change, and a checkpoint is never written with non-finite values, so the last
 * checkpoint is always a good one; SIGINT/SIGTERM/SIGHUP save a checkpoint and end the run
 * cleanly, and so does an error after a step (saving that step's weights, if finite). A
 * checkpoint that already reached `steps` ends the run before it starts. Opt-in f16 matmuls
 * (WebGPU) come with dynamic loss scaling (`precision.ts`): a step whose gradients overflow is
 * skipped.
 *
 * @module
 */

import { basename, isAbsolute, relative, resolve } from "node:path";
import { type DataIdentity, dataIdentity, describeDataChange } from "../data/identity.ts";
import { openTokenData, type TokenLoader } from "../data/shard_loader.ts";
import { decodePadded, getGpt2Tokenizer } from "../data/tokenizer.ts";
import { type ProcessGroup, SingleProcessGroup } from "../ddp/process_group.ts";
import { formatAccuracy } from "../eval/wilson.ts";
import { replaceFolderAtomic, writeFileAtomic } from "../io/atomic.ts";
import { ProgressBar } from "../io/progress.ts";
import type { Backend } from "../backend.ts";
import type { GPT, GPTConfig } from "../model/gpt.ts";
import { createGPT } from "../speedrun/model.ts";
import { saveModelFolder } from "../weights/folder.ts";
import type { WeightsSource } from "../weights/resolve.ts";
import * as ops from "../model/ops.ts";
import { Generator } from "../model/random.ts";
import { generate } from "../model/sample.ts";
import { noGrad, Tensor } from "../model/tensor.ts";
import {
  checkFiniteCheckpoint,
  checkpointPath,
  type CheckpointRef,
  checkpointRef,
  checkpointsDir,
  CheckpointTrail,
  listNames,
  loadCheckpoint,
  type LoadedCheckpoint,
  markHead,
  NonFiniteCheckpointError,
  otherRunsCheckpoints,
  pruneCheckpoints,
  type RankState,
  resolveResume,
  restoreOptimizer,
  saveCheckpoint,
  type SaveCheckpointInput,
} from "./checkpoint.ts";
import { allReduceGradients, broadcastParameters, placeGradients } from "./ddp_sync.ts";
import { loadInitialModel } from "./init_from.ts";
import {
  type AdamW,
  configureOptimizers,
  getLr,
  type LrSchedule,
  MuonAndAdamW,
  muonSchedule,
} from "./optim.ts";
import {
  GradScaler,
  type GradScalerOptions,
  type Precision,
  setMatmulPrecision,
} from "./precision.ts";
import { catchStopSignals, claimLogDir, type LogDirClaim } from "./run_folder.ts";
import type { Settings } from "./settings.ts";
import type { EvalStats, StepStats, TrainResult } from "./run_summary.ts";

export type { EvalStats, StepStats, TrainResult } from "./run_summary.ts";

/** What the HellaSwag hook returns for this rank's share of the examples. */
export interface HellaswagCounts {
  total: number;
  correctNorm: number;
}

/** Where an evaluation happens: this rank, the world, the step. */
export interface EvalContext {
  rank: number;
  world: number;
  step: number;
}

/** Scores this rank's share of HellaSwag (lib/eval/hellaswag.ts plugs in here). */
export type HellaswagHook = (model: GPT, ctx: EvalContext) => Promise<HellaswagCounts>;

/**
 * The rows of the settings (lib/train/settings.ts, which checks them) that the loop reads:
 * the batch, the schedule and the seed; the optimizer (default AdamW; a resumed run must use
 * its checkpoint's), the evaluation (default none, 20 validation batches) and the
 * checkpoints (default at the end only, 3 kept) where given.
 */
export type LoopSettings =
  & Pick<
    Settings,
    | "B"
    | "T"
    | "totalBatchSize"
    | "steps"
    | "maxLr"
    | "minLr"
    | "warmupSteps"
    | "weightDecay"
    | "seed"
  >
  & Partial<
    Pick<
      Settings,
      | "optimizer"
      | "muonLr"
      | "evalEvery"
      | "valBatches"
      | "checkpointEvery"
      | "keepCheckpoints"
      | "shuffle"
    >
  >;

/** Everything a run needs: its settings, and what it runs on, reads and writes. */
export interface TrainOptions extends LoopSettings {
  backend: Backend;
  config: GPTConfig;
  /** A text file (split 90% train / 10% val) or a folder of `.npy` token shards. */
  dataPath: string;
  /**
   * Folder for `log.txt`, `checkpoints/` and the final `model/`; null writes nothing. One run
   * at a time (the folder locked); a fresh run is refused where it holds an earlier run's
   * outputs, unless `overwrite`. An empty name is an error.
   */
  logDir: string | null;
  /**
   * A checkpoint folder, or "latest" (the one last written or resumed in `<logDir>/checkpoints`,
   * lib/train/checkpoint.ts's `resolveResume`).
   */
  resume?: string | null;
  /**
   * Fine-tuning: start from these weights (lib/weights/resolve.ts's `resolveWeights`) instead
   * of GPT-2's random init; `config` must have their shape, with at least their vocabulary
   * (`initConfig`). Weights only: AdamW and the data start fresh. Not with `resume`
   * (lib/train/settings.ts refuses both): a resumed run has its checkpoint's weights.
   */
  initFrom?: WeightsSource | null;
  /**
   * A fresh run in a log folder that holds an earlier run: remove its outputs (checkpoints,
   * `log.txt`, `model/`, `run.json`, figure, report) first (`--overwrite`); default false,
   * which refuses such a folder.
   */
  overwrite?: boolean;
  /** The DDP process group; a single process by default. */
  group?: ProcessGroup;
  /** HellaSwag at each evaluation, when given. */
  hellaswag?: HellaswagHook | null;
  /** Save a checkpoint and stop on SIGINT/SIGTERM/SIGHUP; default true. */
  handleSignals?: boolean;
  /**
   * The command a stopped run is continued with, `--resume <checkpoint>` appended in the
   * messages (default `deno task train ...`: lib/cli/train.ts passes its own flags).
   */
  resumeCommand?: string;
  /** Tokens per sample, prompt included (build-nanogpt's max_length); default 32. */
  sampleLength?: number;
  /** Settings recorded in checkpoints (the preset's name, say). */
  runInfo?: Record<string, unknown>;
  /** Called after every step, e.g. to draw a live chart in a notebook. */
  onStep?: (s: StepStats) => void;
  /** Called on rank 0 after each evaluation has been logged (e.g. to redraw a figure). */
  onEval?: (e: EvalStats) => Promise<void> | void;
  /**
   * The matmuls' precision; default f32. f16 needs a backend with f16 matmuls (WebGPU on an
   * adapter with shader-f16) and turns loss scaling on.
   */
  precision?: Precision;
  /**
   * Dynamic loss scaling (PyTorch's GradScaler): the backward pass starts from the scale, the
   * gradients are unscaled while clipping, and a step whose gradients overflow is skipped and
   * the scale halved. Default: on with f16, off with f32 (where it changes nothing but costs
   * a pass over the gradients).
   */
  lossScaling?: boolean;
  /** The loss scaler's constants (initial scale, growth...); PyTorch's defaults otherwise. */
  gradScaler?: GradScalerOptions;
}

/** Trains as build-nanogpt's `train_gpt2.py` does, on one process or as one rank of many. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  // the backend's matmul precision for this run, as it was afterwards
  const restore = setMatmulPrecision(o.backend, o.precision ?? "f32");
  try {
    return await run(o);
  } finally {
    restore();
  }
}

async function run(o: TrainOptions): Promise<TrainResult> {
  const setup = await setupRun(o);
  if ("nothingLeft" in setup) {
    const { model, path } = setup.nothingLeft;
    const none = { history: [], evals: [], modelDir: null, stoppedBy: null, gradScaler: null };
    return { model, ...none, checkpoint: path, nothingLeft: true };
  }
  try {
    return await trainSteps(setup, o);
  } finally {
    await setup.release(); // the log folder's lock, once everything is written
  }
}

// ---- before the first step ----

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
  /** The checkpoint the next one descends from: the last written, or the one resumed. */
  parent: CheckpointRef | null;
  /** The training data's identity, recorded in checkpoints (rank 0 with a log folder). */
  data: DataIdentity | null;
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
    // the train split shuffles where asked (openTokenData never shuffles val)
    const vocab = {
      vocabSize: o.config.vocab_size,
      shuffle: o.shuffle ?? false,
      shuffleSeed: o.seed,
    };
    const trainLoader = await openTokenData(o.dataPath, "train", B, T, rank, world, vocab);
    const valLoader = (o.evalEvery ?? 0) > 0
      ? await openTokenData(o.dataPath, "val", B, T, rank, world, vocab)
      : null;

    // a step that cannot fit in the device's memory fails here, saying so, not mid-step
    backend.checkTrainingMemory?.({ config: o.config, B, T, overwriteLogits: true });
    // what the data is, for the checkpoints to record and a resume to compare
    const data = (master && o.logDir) || o.resume ? await dataIdentity(o.dataPath) : null;
    // the model: fresh, loaded, or the checkpoint's (which also restores the optimizer and data)
    const ckpt = await resumeCheckpoint(o, world, data, say);
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
        : createGPT(backend, o.config, { seed: o.seed }));
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
    const parent = ckpt ? await checkpointRef(ckpt.path, ckpt.state) : null;
    if (ckpt && master && o.logDir && isInside(ckpt.path, checkpointsDir(o.logDir))) {
      // the branch resumed is the one --resume latest continues, even before its first checkpoint
      await markHead(checkpointsDir(o.logDir), ckpt.path);
    }
    const log = await openRunLog(master ? o.logDir : null, ckpt ? startStep : null, say);
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
      parent,
      data,
      log,
      ...signals,
      release: claim.release,
    };
  } catch (e) {
    await claim.release();
    throw e;
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
async function resumeCheckpoint(
  o: TrainOptions,
  world: number,
  data: DataIdentity | null,
  say: (line: string) => void,
): Promise<LoadedCheckpoint | null> {
  if (!o.resume) return null;
  const path = await resolveResume(o.resume, o.logDir, say);
  const ckpt = await loadCheckpoint(o.backend, path);
  checkResumable(ckpt.state, o, world, path, say);
  checkSameData(ckpt.state.data, data, path);
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

/** The rows of the settings a checkpoint records in its `run` (as it always has). */
const RECORDED_SETTINGS = [
  "B",
  "T",
  "totalBatchSize",
  "steps",
  "maxLr",
  "minLr",
  "warmupSteps",
  "weightDecay",
  "seed",
] as const satisfies readonly (keyof LoopSettings)[];

/**
 * The settings a checkpoint records: the recorded rows, the data, the precision; B, T and
 * the total batch size must match for a checkpoint to continue a run exactly.
 */
function runSettings(o: TrainOptions): Record<string, unknown> {
  return {
    ...Object.fromEntries(RECORDED_SETTINGS.map((key) => [key, o[key]])),
    dataPath: o.dataPath,
    precision: o.precision ?? "f32",
    lossScaling: o.lossScaling ?? o.precision === "f16",
  };
}

/**
 * Refuses a checkpoint that this run cannot continue (another world size, model, B, T or
 * total batch size, naming every change), and warns of a changed schedule (steps, rates,
 * warmup, weight decay: old -> new).
 */
function checkResumable(
  state: { worldSize: number; config: GPTConfig; run: Record<string, unknown> },
  o: TrainOptions,
  world: number,
  path: string,
  say: (line: string) => void,
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
  const changed = CHANGEABLE_SETTINGS.filter((k) => k in state.run && state.run[k] !== settings[k])
    .map((k) => `${k} ${state.run[k]} -> ${settings[k]}`);
  const positional = DATA_POSITION_SETTINGS.filter((k) => state.run[k] !== settings[k])
    .map((k) => `${k} ${state.run[k]} -> ${settings[k]}`);
  if (positional.length) {
    throw new Error(
      `Checkpoint ${path} was trained with other batch settings: ${
        [...positional, ...changed].join(", ")
      }: the data positions would not match; resume with the checkpoint's B, T and total batch size`,
    );
  }
  if (changed.length) {
    say(`warning: resuming ${path} with changed settings: ${changed.join(", ")}`);
  }
}

/** The settings a resume must keep: the data positions depend on them. */
const DATA_POSITION_SETTINGS = ["B", "T", "totalBatchSize"] as const;

/** The settings a resume may change, with a warning listing old -> new. */
const CHANGEABLE_SETTINGS = ["steps", "maxLr", "minLr", "warmupSteps", "weightDecay"] as const;

/**
 * Refuses a resume on other data than the checkpoint's (another file or another set of shards
 * under the same name): the run would not continue as it was. A checkpoint of an older version,
 * which records no data, resumes on any.
 */
function checkSameData(
  recorded: DataIdentity | undefined,
  now: DataIdentity | null,
  path: string,
): void {
  if (!recorded || !now) return;
  const change = describeDataChange(recorded, now);
  if (change === null) return;
  throw new Error(
    `Checkpoint ${path} was trained on other data than ${now.path} (it read ${recorded.path}): ${change}; resume with the checkpoint's data, or start a fresh run`,
  );
}

/** Whether `path` lies inside the folder `dir`. */
function isInside(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

/**
 * `log.txt` in `logDir` (null: no log): cleared on a fresh run; on resume from step
 * `resumeStep`, the lines of the steps not yet redone are kept and the later ones (a stopped
 * run's, or an abandoned branch's) dropped, saying so, so the log holds one history.
 */
async function openRunLog(
  logDir: string | null,
  resumeStep: number | null,
  say: (line: string) => void,
): Promise<(line: string) => Promise<void>> {
  if (!logDir) return () => Promise.resolve();
  await Deno.mkdir(logDir, { recursive: true });
  const logFile = `${logDir}/log.txt`;
  let keep = "";
  if (resumeStep !== null) {
    const old = (await Deno.readTextFile(logFile).catch(() => "")).split("\n").filter((l) => l);
    const kept = old.filter((l) => Number(l.split(" ")[0]) < resumeStep);
    keep = kept.map((l) => l + "\n").join("");
    if (kept.length < old.length) {
      say(
        `${logFile}: dropped ${
          old.length - kept.length
        } line(s) of step ${resumeStep} on, which this run redoes from its checkpoint`,
      );
    }
  }
  // replaced whole: a crash here leaves the old log, never a truncated one
  await writeFileAtomic(logFile, keep);
  return async (line) => {
    try {
      await Deno.writeTextFile(logFile, line + "\n", { append: true });
    } catch (e) {
      // the folder moved or removed under the run, a full disk: said with the file and flag
      throw new Error(`Cannot append to ${logFile} (--log-dir): ${(e as Error).message}`, {
        cause: e,
      });
    }
  };
}

// ---- the loop ----

/** The steps from `r.startStep` to `o.steps`, then the model saved. */
async function trainSteps(r: RunSetup, o: TrainOptions): Promise<TrainResult> {
  const { model, optimizer, scaler, say } = r;
  const history: StepStats[] = [];
  const evals: EvalStats[] = [];
  const trail = new CheckpointTrail(r.resumedFrom, (step) => pruneLater(r, o, step));
  let stoppedBy: string | null = null;
  const evalEvery = o.evalEvery ?? 0, checkpointEvery = o.checkpointEvery ?? 0;
  // what an error in the loop can still save: the weights after `done.steps` steps, with the
  // data position and loss that go with them (`updating`: AdamW is writing the weights)
  const done = { steps: r.startStep, loader: r.trainLoader.state(), loss: NaN, updating: false };
  try {
    for (let step = r.startStep; step < o.steps; step++) {
      const t0 = performance.now();
      const lastStep = step === o.steps - 1;

      // once in a while evaluate our validation loss, HellaSwag, and sample
      if (r.valLoader && (step % evalEvery === 0 || lastStep)) {
        const e = await evaluate(model, r.valLoader, o, r.group, step, r.sampleRng);
        evals.push(e);
        await logEval(r, o, e);
      }

      // do one step of the optimization
      optimizer.zeroGrad();
      // with loss scaling, the backward pass starts from the scale instead of 1: every
      // gradient comes out multiplied by it (the clipping divides it out again)
      const lossScale = scaler?.scale;
      const { loss, stopHere } = await accumulateGradients(r, o, lossScale);
      if (!Number.isFinite(loss)) throw nonFinite(`Loss became ${loss}`, step, trail);
      // the true norm (torch.nn.utils.clip_grad_norm_), the clipping and, with loss scaling,
      // the unscaling folded into AdamW's pass (llm.c's grad_scale). Under DDP every rank
      // holds the same averaged gradients, so all see the same norm and an overflow skips
      // the step on every rank alike.
      const norm = await optimizer.clipGradNorm(1.0, lossScale);
      // with loss scaling, an inf/NaN gradient (the loss itself was finite) is an overflow:
      // the weights and AdamW's state are left alone and the scale backs off; without, the
      // gradients are beyond repair and the step would write NaN into the weights
      const skipped = scaler !== null && !Number.isFinite(norm);
      if (scaler === null && !Number.isFinite(norm)) {
        throw nonFinite(`Gradient norm became ${norm}`, step, trail);
      }
      // determine and set the learning rate for this iteration
      const lr = getLr(step, r.schedule);
      optimizer.lr = lr;
      if (optimizer instanceof MuonAndAdamW) {
        // after the lecture: Muon's own rate, on the same warmup and cosine from its own peak
        optimizer.muonLr = getLr(step, muonSchedule(r.schedule, optimizer.muonPeakLr));
      }
      done.updating = true;
      if (!skipped) optimizer.step();
      scaler?.update(skipped);
      Object.assign(done, {
        steps: step + 1,
        loader: r.trainLoader.state(),
        loss,
        updating: false,
      });
      const dtMs = performance.now() - t0;
      const tokensProcessed = o.B * o.T * r.gradAccumSteps * r.world;
      const tokensPerSec = tokensProcessed / (dtMs / 1000);
      const stats: StepStats = { step, loss, lr, norm, dtMs, tokensPerSec };
      if (lossScale !== undefined) Object.assign(stats, { lossScale, skipped });
      history.push(stats);
      await logStep(r, stats);
      o.onStep?.(stats);

      // the weights this step started from gave a finite loss and norm: a good checkpoint
      // (the older ones pruned now, outside the step's timing)
      await trail.passed();
      if (lastStep || stopHere || (checkpointEvery > 0 && (step + 1) % checkpointEvery === 0)) {
        // the final checkpoint prunes at once: no step will follow to pass it
        trail.written(await checkpoint(r, o, step + 1, loss, trail, lastStep), step + 1, lastStep);
      }
      if (stopHere && !lastStep) {
        stoppedBy = r.stopSignal() ?? "a signal on another rank";
        say(
          `stopped by ${stoppedBy} after step ${step}: continue with --resume ${
            trail.last ?? "latest"
          }`,
        );
        break;
      }
    }
  } catch (e) {
    throw await saveAfterError(e, r, o, done, trail);
  } finally {
    r.dispose();
  }
  const modelDir = stoppedBy ? null : await saveModel(r, o, trail.last);
  const gradScaler = scaler?.state() ?? null;
  return {
    model,
    history,
    evals,
    modelDir,
    checkpoint: trail.last,
    stoppedBy,
    gradScaler,
    nothingLeft: false,
  };
}

/**
 * An error that stops the run and already says which checkpoint to go back to (a non-finite
 * loss or norm, whose weights must not be saved; a checkpoint that could not be written).
 */
class StoppedRunError extends Error {
  override name = "StoppedRunError";
}

/**
 * An error in the loop after at least one step (a bad token in a later shard, a DDP rank that
 * died or hangs, any exception): rank 0 saves the weights of the last completed step as a
 * checkpoint, if they are finite and whole and not saved already, and the returned error adds
 * how to continue. Every rank's data position follows from rank 0's: all ranks read the same
 * shard, rank r B*T*r tokens further (lib/data/shard_loader.ts), so no collective is needed.
 */
async function saveAfterError(
  e: unknown,
  r: RunSetup,
  o: TrainOptions,
  done: {
    steps: number;
    loader: ReturnType<TokenLoader["state"]>;
    loss: number;
    updating: boolean;
  },
  trail: CheckpointTrail,
): Promise<unknown> {
  if (e instanceof StoppedRunError || !r.master || !o.logDir) return e;
  const message = (e as Error)?.message ?? String(e);
  const resume = (path: string) => `${o.resumeCommand ?? "deno task train ..."} --resume ${path}`;
  const saved = trail.last ? checkpointStep(trail.last) : null;
  let note: string;
  if (done.updating) {
    note = `the weights were being updated: not saved${
      trail.last ? `; continue from the last checkpoint: ${resume(trail.last)}` : ""
    }`;
  } else if (done.steps === r.startStep || (saved !== null && saved >= done.steps)) {
    note = trail.last
      ? `nothing new since ${trail.last}: once the cause is fixed, continue with ${
        resume(trail.last)
      }`
      : "no step was completed: nothing to save";
  } else {
    const ranks: RankState[] = Array.from({ length: r.world }, (_, rank) => ({
      loader: { ...done.loader, position: done.loader.position + o.B * o.T * rank },
      rng: { sample: r.sampleRng.getState() },
    }));
    try {
      const path = await saveCheckpoint(
        checkpointsDir(o.logDir),
        checkpointInput(r, o, done.steps, done.loss, ranks),
        { prune: false },
      );
      console.log(`saved checkpoint ${path}`);
      note = `saved checkpoint ${path} after step ${
        done.steps - 1
      }: once the cause is fixed, continue with ${resume(path)}`;
    } catch (saveError) {
      note = saveError instanceof NonFiniteCheckpointError
        ? `the weights are not finite (${
          listNames(saveError.tensors)
        }): not saved; ${trail.goBackTo()}`
        : `saving a checkpoint failed too (${(saveError as Error).message})${
          trail.last ? `; continue from the last checkpoint: ${resume(trail.last)}` : ""
        }`;
    }
  }
  const when = done.steps > r.startStep ? `after step ${done.steps - 1}` : `at step ${done.steps}`;
  return new Error(`${message}\nstopped by this error ${when}: ${note}`, { cause: e });
}

/** The step of a checkpoint folder `.../step_000020`, or null. */
function checkpointStep(path: string): number | null {
  const m = /step_(\d+)$/.exec(path);
  return m ? Number(m[1]) : null;
}

/**
 * Forward and backward over the step's micro-batches, then (DDP) the gradients averaged over
 * the ranks. The loss is the true mean loss (never the loss-scaled one), averaged over the
 * ranks for printing; `stopHere` says whether any rank was asked to stop, decided once per
 * step and the same on every rank.
 */
async function accumulateGradients(
  r: RunSetup,
  o: TrainOptions,
  lossScale: number | undefined,
): Promise<{ loss: number; stopHere: boolean }> {
  const { B, T, backend } = o;
  let lossAccum = 0;
  for (let microStep = 0; microStep < r.gradAccumSteps; microStep++) {
    const { x, y } = r.trainLoader.nextBatch();
    const { loss } = r.model.forward(
      Tensor.from(backend, x, [B, T]),
      Tensor.from(backend, y, [B, T]),
      { overwriteLogits: true }, // only the loss is read: dlogits may take the logits' memory
    );
    // we have to scale the loss to account for gradient accumulation, because the
    // gradients just add on each successive backward(): a SUM, and we want a MEAN
    const scaled = ops.scale(loss!, 1 / r.gradAccumSteps);
    lossAccum += await scaled.item();
    scaled.backward(
      lossScale === undefined
        ? undefined
        : Tensor.from(backend, new Float32Array([lossScale]), scaled.shape),
    );
  }
  // a signal that lands later in the step waits for the next one
  let stopHere = r.stopSignal() !== null;
  if (r.world > 1) {
    // once per optimizer step, after the last micro-step: gradients averaged over ranks
    await allReduceGradients(r.model, r.group);
    const v = new Float32Array([lossAccum, stopHere ? 1 : 0]);
    await r.group.allReduce([v], "sum");
    lossAccum = v[0] / r.world;
    stopHere = v[1] > 0;
  }
  return { loss: lossAccum, stopHere };
}

/**
 * The error that stops a run whose loss or gradient norm is no longer finite, before the
 * weights change: `what` (`Loss became NaN`) at `step`, and the checkpoint to go back to.
 */
function nonFinite(what: string, step: number, trail: CheckpointTrail): Error {
  return new StoppedRunError(
    `${what} at step ${step}: stopping without updating the weights; ${trail.goBackTo()}`,
  );
}

/** build-nanogpt's step line, and `{step} train {loss}` in log.txt (rank 0). */
async function logStep(r: RunSetup, s: StepStats): Promise<void> {
  r.say(
    `step ${String(s.step).padStart(5)} | loss: ${s.loss.toFixed(6)} | lr ${
      s.lr.toExponential(4)
    } | norm: ${s.norm.toFixed(4)} | dt: ${s.dtMs.toFixed(2)}ms | tok/sec: ${
      s.tokensPerSec.toFixed(2)
    }`,
  );
  await r.log(`${s.step} train ${s.loss.toFixed(6)}`);
  if (s.skipped) {
    r.say(
      `step ${s.step} | gradient overflow at loss scale ${s.lossScale}: step skipped, scale -> ${
        r.scaler!.scale
      }`,
    );
    await r.log(`${s.step} overflow ${s.lossScale}`); // a stream of its own for lib/plot
  }
}

/** The validation loss (and HellaSwag) printed and in log.txt; then the `onEval` hook. */
async function logEval(r: RunSetup, o: TrainOptions, e: EvalStats): Promise<void> {
  if (!r.master) return;
  console.log(`validation loss: ${e.valLoss.toFixed(4)}`);
  await r.log(`${e.step} val ${e.valLoss.toFixed(4)}`);
  if (e.hellaAcc !== null) await r.log(`${e.step} hella ${e.hellaAcc.toFixed(4)}`);
  await o.onEval?.(e);
}

// ---- evaluation: validation loss, HellaSwag, samples ----

/** The prompt build-nanogpt samples from at each evaluation. */
export const SAMPLE_PROMPT = "Hello, I'm a language model,";

/** Validation loss over a reset loader (averaged over ranks), HellaSwag, and 4 samples. */
export async function evaluate(
  model: GPT,
  valLoader: TokenLoader,
  o: TrainOptions,
  group: ProcessGroup,
  step: number,
  sampleRng: Generator,
): Promise<EvalStats> {
  const { backend, B, T } = o;
  const rank = group.rank, world = group.worldSize;
  const valLossSteps = o.valBatches ?? 20;
  valLoader.reset();
  let valLossAccum = 0;
  // GPT-2 124M's 20 batches take minutes on a CPU: a bar with an ETA (rank 0 speaks for all)
  const bar = new ProgressBar("validation", {
    total: valLossSteps,
    unit: "batches",
    enabled: rank === 0,
  });
  try {
    await noGrad(async () => {
      for (let i = 0; i < valLossSteps; i++) {
        const { x, y } = valLoader.nextBatch();
        const { loss } = model.forward(
          Tensor.from(backend, x, [B, T]),
          Tensor.from(backend, y, [B, T]),
        );
        valLossAccum += (await loss!.item()) / valLossSteps;
        bar.tick();
      }
    });
  } finally {
    bar.done();
  }
  if (world > 1) {
    const v = new Float32Array([valLossAccum]);
    await group.allReduce([v], "avg");
    valLossAccum = v[0];
  }

  let hellaAcc: number | null = null;
  if (o.hellaswag) {
    const c = await o.hellaswag(model, { rank, world, step });
    const v = new Float32Array([c.total, c.correctNorm]);
    if (world > 1) await group.allReduce([v], "sum");
    hellaAcc = v[0] > 0 ? v[1] / v[0] : 0;
    // the interval on the terminal only: log.txt keeps build-nanogpt's `{step} hella {acc}`
    if (rank === 0) console.log(formatAccuracy("HellaSwag acc_norm", v[1], v[0]));
  }

  // once in a while generate from the model (except step 0, which is noise)
  const samples: string[] = [];
  const lastStep = step === o.steps - 1;
  if ((step > 0 && step % (o.evalEvery ?? 1) === 0) || lastStep) {
    const enc = getGpt2Tokenizer();
    const prompt = enc.encode(SAMPLE_PROMPT);
    sampleRng.manualSeed(42 + rank);
    const maxLength = Math.min(o.sampleLength ?? 32, model.config.block_size);
    const rows = await generate(model, Array.from({ length: 4 }, () => prompt), {
      maxLength,
      topK: 50,
      generator: sampleRng,
    });
    rows.forEach((tokens, i) => {
      const text = decodePadded(tokens);
      samples.push(text);
      console.log(`rank ${rank} sample ${i}: ${text}`);
    });
  }
  return { step, valLoss: valLossAccum, hellaAcc, samples };
}

/**
 * The HellaSwag hook of lib/eval/hellaswag.ts for `limit` examples, with a progress bar on rank
 * 0, and how many examples each evaluation scores over every rank; null when `limit` is 0.
 */
export async function hellaswagHook(
  limit: number | "all",
  dataPath: string | undefined,
  master: boolean,
): Promise<{ hook: HellaswagHook; examples: number } | null> {
  if (limit === 0) return null;
  const hs = await import("../eval/hellaswag.ts");
  const path = await hs.resolveHellaswag(dataPath, { quiet: !master });
  const examples = await hs.loadHellaswag(path, limit === "all" ? undefined : limit);
  const hook: HellaswagHook = async (model, ctx) => {
    // rank 0 shows its own share: every rank scores about as many
    const label = ctx.world > 1 ? "hellaswag (rank 0's share)" : "hellaswag";
    const bar = new ProgressBar(label, { unit: "examples", enabled: master });
    try {
      const { counts } = await hs.evaluateHellaswag(model, examples, {
        rank: ctx.rank,
        world: ctx.world,
        onProgress: (done, of) => {
          bar.total = of;
          bar.update(done);
        },
      });
      return { total: counts.total, correctNorm: counts.correctNorm };
    } finally {
      bar.done();
    }
  };
  return { hook, examples: examples.length };
}

// ---- saving: checkpoints and the model ----

/**
 * A checkpoint after `step` optimizer steps: every rank sends its data position and RNG
 * state, rank 0 writes them with the model and AdamW's moments (pruning the older ones at
 * once when `final`, else after the next step: lib/train/checkpoint.ts). Returns its
 * folder on every rank; no log folder: nothing is written, null. When rank 0 cannot write it
 * (non-finite values, a full disk), every rank stops with the same message, naming the
 * checkpoint to resume from.
 */
async function checkpoint(
  r: RunSetup,
  o: TrainOptions,
  step: number,
  loss: number,
  trail: CheckpointTrail,
  final: boolean,
): Promise<string | null> {
  if (!o.logDir) return null;
  const mine: RankState = {
    loader: r.trainLoader.state(),
    rng: { sample: r.sampleRng.getState() },
  };
  const all = await r.group.allGatherBytes(new TextEncoder().encode(JSON.stringify(mine)));
  let outcome: { path?: string; error?: string } = {};
  let failure: unknown = null;
  if (r.master) {
    const ranks = all.map((b) => JSON.parse(new TextDecoder().decode(b)) as RankState);
    try {
      const input = checkpointInput(r, o, step, loss, ranks);
      const path = await saveCheckpoint(
        checkpointsDir(o.logDir),
        input,
        { keep: o.keepCheckpoints ?? 3, prune: final },
      );
      console.log(`saved checkpoint ${path}`);
      descendFrom(r, path, input);
      outcome = { path };
    } catch (e) {
      failure = e;
      outcome = { error: checkpointFailure(e, checkpointsDir(o.logDir), step, trail) };
    }
  }
  // every rank learns where the checkpoint went (or why it did not), after rank 0 wrote it
  if (r.world > 1) {
    const shared = await r.group.allGatherBytes(new TextEncoder().encode(JSON.stringify(outcome)));
    outcome = JSON.parse(new TextDecoder().decode(shared[0]));
  }
  if (outcome.error) {
    throw new StoppedRunError(outcome.error, failure ? { cause: failure } : undefined);
  }
  return outcome.path ?? null;
}

/** What a checkpoint after `step` steps holds. */
function checkpointInput(
  r: RunSetup,
  o: TrainOptions,
  step: number,
  loss: number,
  ranks: RankState[],
): SaveCheckpointInput {
  return {
    model: r.model,
    optimizer: r.optimizer,
    step,
    runId: r.runId,
    ranks,
    loss,
    gradScaler: r.scaler?.state() ?? null,
    run: { ...o.runInfo, ...runSettings(o), world: r.world },
    parent: r.parent,
    id: crypto.randomUUID(),
    data: r.data,
  };
}

/** After checkpoint `path` of `input` is written: the next one descends from it. */
function descendFrom(r: RunSetup, path: string, input: SaveCheckpointInput): void {
  r.parent = { step: input.step, name: basename(path), id: input.id! };
}

/**
 * Rank 0 prunes the checkpoints older than the one of `step`, which has just passed a step; a
 * failure to remove one is a warning, not a reason to stop the run.
 */
async function pruneLater(r: RunSetup, o: TrainOptions, step: number): Promise<void> {
  if (!r.master || !o.logDir) return;
  try {
    await pruneCheckpoints(checkpointsDir(o.logDir), o.keepCheckpoints ?? 3, r.runId, step);
  } catch (e) {
    console.error(`warning: pruning old checkpoints: ${(e as Error).message}`);
  }
}

/** Why the checkpoint of `step` was not written, and what to resume from. */
function checkpointFailure(
  e: unknown,
  dir: string,
  step: number,
  trail: CheckpointTrail,
): string {
  if (e instanceof NonFiniteCheckpointError) {
    return `Weights or AdamW moments became non-finite at step ${step - 1} (${
      listNames(e.tensors)
    }): stopping without writing ${e.path}; ${trail.goBackTo()}`;
  }
  // a checkpoint removed under the run (a clean-up of checkpoints/) is no place to resume from
  const good = trail.good && isFolder(trail.good) ? trail.good : null;
  return `Writing the checkpoint ${checkpointPath(dir, step)} failed: ${
    (e as Error).message
  }; stopped after step ${step - 1}: ${
    good
      ? `once the cause is fixed (a full disk: free some space), continue with --resume ${good}`
      : trail.good
      ? `the last checkpoint written, ${trail.good}, is gone: once the cause is fixed, start the run again`
      : "no checkpoint was written yet: once the cause is fixed (a full disk: free some space), start the run again"
  }`;
}

function isFolder(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * The trained model as a Hugging Face folder, `<logDir>/model` (rank 0), else null. When it
 * cannot be written, the message points to the last checkpoint, which holds the same weights.
 */
async function saveModel(
  r: RunSetup,
  o: TrainOptions,
  lastCheckpoint: string | null,
): Promise<string | null> {
  if (!o.logDir || !r.master) return null;
  const modelDir = `${o.logDir}/model`;
  try {
    // a folder renamed into place whole: an earlier model/ is never left half replaced
    await replaceFolderAtomic(modelDir, (tmp) => saveModelFolder(r.model, tmp));
  } catch (e) {
    throw new Error(
      `Saving the model to ${modelDir} failed: ${(e as Error).message}${
        lastCheckpoint
          ? `; ${lastCheckpoint} holds the same weights (deno task sample --weights ${lastCheckpoint})`
          : ""
      }`,
      { cause: e },
    );
  }
  console.log(
    `saved the model to ${modelDir} (Hugging Face layout; deno task sample --weights ${modelDir})`,
  );
  return modelDir;
}
