/**
 * build-nanogpt's training loop, readable top to bottom: data, model, optimizer, then for
 * each step (1) once in a while the validation loss, HellaSwag and samples, (2) gradient
 * accumulation over micro-steps, the gradients all-reduced across ranks after the last one,
 * (3) clipping, the lr schedule and AdamW, (4) the step line and `log.txt`, (5) once in a
 * while a checkpoint. Checkpoints resume exactly; a NaN loss stops the run; SIGINT/SIGTERM
 * save a checkpoint and end the run cleanly. Opt-in f16 matmuls (WebGPU) come with dynamic
 * loss scaling (lib/train/grad_scaler.ts): a step whose gradients overflow is skipped.
 *
 * @module
 */

import { type Backend, MATMUL_PRECISIONS, type MatmulPrecision } from "../backend.ts";
import {
  checkpointsDir,
  listCheckpoints,
  loadCheckpoint,
  type RankState,
  resolveResume,
  restoreOptimizer,
  saveCheckpoint,
} from "./checkpoint.ts";
import { type ProcessGroup, SingleProcessGroup } from "../ddp/process_group.ts";
import { GPT, type GPTConfig, savePretrained } from "../model/gpt.ts";
import { allReduceGradients, broadcastParameters } from "./ddp_sync.ts";
import { GradScaler, type GradScalerOptions, type GradScalerState } from "./grad_scaler.ts";
import * as ops from "../model/ops.ts";
import { clipGradNorm, configureOptimizers, getLr } from "./optim.ts";
import { Generator } from "../model/random.ts";
import { generate } from "../model/sample.ts";
import { openTokenData, type TokenLoader } from "../data/shard_loader.ts";
import { noGrad, Tensor } from "../model/tensor.ts";
import { decodePadded, getGpt2Tokenizer } from "../data/tokenizer.ts";

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

/** The precision of the matmuls: f32, or f16 (WebGPU with shader-f16). */
export type Precision = MatmulPrecision;

/** The precisions `--precision` accepts. */
export const PRECISIONS: readonly Precision[] = MATMUL_PRECISIONS;

/** Everything a run needs; the CLI fills it from a preset and flags. */
export interface TrainOptions {
  backend: Backend;
  config: GPTConfig;
  /** A text file (split 90% train / 10% val) or a folder of `.npy` token shards. */
  dataPath: string;
  /** micro batch size */
  B: number;
  /** sequence length */
  T: number;
  /** Tokens per optimizer step; a multiple of B * T * world (the rest is accumulation). */
  totalBatchSize: number;
  /** max_steps: the run's length and the end of the cosine. */
  steps: number;
  maxLr: number;
  minLr: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  /** Folder for `log.txt`, `checkpoints/` and the final `model/`; null writes nothing. */
  logDir: string | null;
  /** Validation loss, HellaSwag and samples every this many steps and at the last; 0: never. */
  evalEvery?: number;
  /** Batches of the validation loss (build-nanogpt's val_loss_steps); default 20. */
  valBatches?: number;
  /** Checkpoint every this many steps (and at the end); 0: only at the end. */
  checkpointEvery?: number;
  /** Checkpoints kept; default 3. */
  keepCheckpoints?: number;
  /** A checkpoint folder, or "latest" (the newest in `<logDir>/checkpoints`). */
  resume?: string | null;
  /** The DDP process group; a single process by default. */
  group?: ProcessGroup;
  /** HellaSwag at each evaluation, when given. */
  hellaswag?: HellaswagHook | null;
  /** Save a checkpoint and stop on SIGINT/SIGTERM; default true. */
  handleSignals?: boolean;
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
  /** The loss scaler's state at the end, with loss scaling; else null. */
  gradScaler: GradScalerState | null;
}

/** The prompt build-nanogpt samples from at each evaluation. */
export const SAMPLE_PROMPT = "Hello, I'm a language model,";

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

const NEEDS_F16 = "--precision f16 needs --backend webgpu on an adapter with shader-f16";

/** `value` as a {@linkcode Precision}, or an error naming `--precision` and the choices. */
export function parsePrecision(value: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(value)) {
    throw new Error(`--precision expects one of ${PRECISIONS.join(", ")}, found "${value}"`);
  }
  return value as Precision;
}

/**
 * Checks that `precision` is one of {@linkcode PRECISIONS} and that `backend` can run it
 * (f16: a backend with `setMatmulPrecision`); an error says what is needed. The CLI calls it
 * before reading any data; `train` again.
 */
export function checkPrecision(
  backend: Backend,
  precision: string,
): asserts precision is Precision {
  parsePrecision(precision);
  if (precision !== "f32" && !backend.setMatmulPrecision) {
    throw new Error(`${NEEDS_F16}; the ${backend.name} backend has f32 matmuls only`);
  }
}

/**
 * Sets the backend's matmul precision for a run; returns what puts the previous one back.
 * The adapter's refusal of f16 (no shader-f16) is an error saying what is needed.
 */
function setMatmulPrecision(backend: Backend, precision: Precision): () => void {
  checkPrecision(backend, precision);
  const before = backend.matmulPrecision ?? "f32";
  if (!backend.setMatmulPrecision || before === precision) return () => {};
  try {
    backend.setMatmulPrecision(precision);
  } catch (e) {
    if (precision !== "f16") throw e;
    throw new Error(`${NEEDS_F16}: ${(e as Error).message}`, { cause: e });
  }
  return () => backend.setMatmulPrecision!(before);
}

async function run(o: TrainOptions): Promise<TrainResult> {
  const { B, T, backend } = o;
  const group = o.group ?? new SingleProcessGroup();
  const rank = group.rank, world = group.worldSize;
  const master = rank === 0; // this process does the logging, checkpointing etc.
  const say = (line: string): void => {
    if (master) console.log(line);
  };
  if (o.totalBatchSize % (B * T * world) !== 0) {
    throw new Error(
      world === 1
        ? `--total-batch-size ${o.totalBatchSize} must be divisible by B * T = ${B * T}`
        : `--total-batch-size ${o.totalBatchSize} must be divisible by B * T * world = ${B} * ${T} * ${world}`,
    );
  }
  const gradAccumSteps = o.totalBatchSize / (B * T * world);
  say(`total desired batch size: ${o.totalBatchSize}`);
  say(`=> calculated gradient accumulation steps: ${gradAccumSteps}`);
  if (world > 1) say(`process group: ${group.describe()}`);
  const precision = o.precision ?? "f32";
  const scaler = (o.lossScaling ?? precision === "f16") ? new GradScaler(o.gradScaler) : null;
  if (precision !== "f32") say(`precision: ${precision} matmuls`);

  const trainLoader: TokenLoader = await openTokenData(o.dataPath, "train", B, T, rank, world);
  const evalEvery = o.evalEvery ?? 0;
  const valLoader: TokenLoader | null = evalEvery > 0
    ? await openTokenData(o.dataPath, "val", B, T, rank, world)
    : null;

  // the model: fresh, or the checkpoint's (which also restores the optimizer and data)
  const resumePath = o.resume ? await resolveResume(o.resume, o.logDir) : null;
  const ckpt = resumePath ? await loadCheckpoint(backend, resumePath) : null;
  let model: GPT;
  let startStep = 0;
  if (ckpt) {
    checkResumable(ckpt.state, o, world, resumePath!);
    model = ckpt.model;
    startStep = ckpt.state.step;
    say(`resuming from ${resumePath} at step ${startStep}`);
  } else {
    model = new GPT(backend, o.config, { seed: o.seed });
  }
  say(`model: ${model.numParameters().toLocaleString("en-US")} parameters`);
  if (world > 1 && !ckpt) {
    // as DDP does at construction: every rank starts from rank 0's weights
    await broadcastParameters(model, group);
  }
  const optimizer = configureOptimizers(model, {
    weightDecay: o.weightDecay,
    learningRate: o.maxLr,
    verbose: master,
  });
  const sampleRng = new Generator(42 + rank);
  if (ckpt) {
    restoreOptimizer(optimizer, model, ckpt);
    const mine = ckpt.state.ranks[rank];
    trainLoader.restore(mine.loader as ReturnType<TokenLoader["state"]>);
    if (mine.rng.sample) sampleRng.setState(mine.rng.sample);
    // a checkpoint without a scaler's state (an f32 run, or an older one): a fresh scaler
    if (scaler && ckpt.state.gradScaler) {
      try {
        scaler.load(ckpt.state.gradScaler);
      } catch (e) {
        throw new Error(`Checkpoint ${resumePath}: ${(e as Error).message}`, { cause: e });
      }
    }
  }
  if (scaler) {
    say(
      `dynamic loss scaling: scale ${scaler.scale}, x${scaler.growthFactor} after ${scaler.growthInterval} clean steps, x${scaler.backoffFactor} on overflow`,
    );
  }
  const schedule = {
    maxLr: o.maxLr,
    minLr: o.minLr,
    warmupSteps: o.warmupSteps,
    maxSteps: o.steps,
  };

  // log.txt: cleared on a fresh run; on resume, the lines of steps not yet redone are kept
  let logFile: string | null = null;
  if (o.logDir && master) {
    await Deno.mkdir(o.logDir, { recursive: true });
    logFile = `${o.logDir}/log.txt`;
    let keep = "";
    if (ckpt) {
      const old = await Deno.readTextFile(logFile).catch(() => "");
      keep = old.split("\n").filter((l) => l && Number(l.split(" ")[0]) < startStep)
        .map((l) => l + "\n").join("");
    }
    await Deno.writeTextFile(logFile, keep);
  }
  const log = async (line: string): Promise<void> => {
    if (logFile) await Deno.writeTextFile(logFile, line + "\n", { append: true });
  };

  // Ctrl-C / SIGTERM: finish the step, save a checkpoint, return
  let signalled: string | null = null;
  const onSignal = (name: string) => () => {
    if (!signalled) console.error(`rank ${rank}: ${name}: stopping after this step`);
    signalled ??= name;
  };
  const handlers: [Deno.Signal, () => void][] = o.handleSignals === false
    ? []
    : [["SIGINT", onSignal("SIGINT")], ["SIGTERM", onSignal("SIGTERM")]];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);

  const history: StepStats[] = [];
  const evals: EvalStats[] = [];
  let lastCheckpoint: string | null = ckpt ? resumePath : null;
  let stoppedBy: string | null = null;
  const ckptDir = o.logDir ? checkpointsDir(o.logDir) : null;
  const checkpoint = async (step: number, loss: number | null): Promise<void> => {
    if (!ckptDir) return;
    // every rank sends its data position and RNG state; rank 0 writes
    const mine: RankState = { loader: trainLoader.state(), rng: { sample: sampleRng.getState() } };
    const all = await group.allGatherBytes(new TextEncoder().encode(JSON.stringify(mine)));
    if (master) {
      const ranks = all.map((b) => JSON.parse(new TextDecoder().decode(b)) as RankState);
      lastCheckpoint = await saveCheckpoint(ckptDir, {
        model,
        optimizer,
        step,
        ranks,
        loss,
        gradScaler: scaler?.state() ?? null,
        run: { ...o.runInfo, ...runSettings(o), world },
      }, { keep: o.keepCheckpoints ?? 3 });
      console.log(`saved checkpoint ${lastCheckpoint}`);
    }
    await group.barrier();
  };

  try {
    for (let step = startStep; step < o.steps; step++) {
      const t0 = performance.now();
      const lastStep = step === o.steps - 1;

      // once in a while evaluate our validation loss, HellaSwag, and sample
      if (valLoader && (step % evalEvery === 0 || lastStep)) {
        const e = await evaluate(model, valLoader, o, group, step, sampleRng);
        evals.push(e);
        if (master) {
          console.log(`validation loss: ${e.valLoss.toFixed(4)}`);
          await log(`${step} val ${e.valLoss.toFixed(4)}`);
          if (e.hellaAcc !== null) await log(`${step} hella ${e.hellaAcc.toFixed(4)}`);
          await o.onEval?.(e);
        }
      }

      // do one step of the optimization
      optimizer.zeroGrad();
      // with loss scaling, the backward pass starts from the scale instead of 1: every
      // gradient comes out multiplied by it (clipGradNorm divides it out again)
      const lossScale = scaler?.scale;
      let lossAccum = 0;
      for (let microStep = 0; microStep < gradAccumSteps; microStep++) {
        const { x, y } = trainLoader.nextBatch();
        const { loss } = model.forward(
          Tensor.from(backend, x, [B, T]),
          Tensor.from(backend, y, [B, T]),
        );
        // we have to scale the loss to account for gradient accumulation, because the
        // gradients just add on each successive backward(): a SUM, and we want a MEAN
        const scaled = ops.scale(loss!, 1 / gradAccumSteps);
        lossAccum += await scaled.item(); // the true loss, never the loss-scaled one
        scaled.backward(
          lossScale === undefined
            ? undefined
            : Tensor.from(backend, new Float32Array([lossScale]), scaled.shape),
        );
      }
      // stop after this step? decided here, once, the same on every rank: a signal that
      // lands later in the step waits for the next one
      let stopHere = signalled !== null;
      if (world > 1) {
        // once per optimizer step, after the last micro-step: gradients averaged over ranks
        await allReduceGradients(model, group);
        // the loss averaged for printing, and whether any rank was asked to stop
        const v = new Float32Array([lossAccum, stopHere ? 1 : 0]);
        await group.allReduce([v], "sum");
        lossAccum = v[0] / world;
        stopHere = v[1] > 0;
      }
      if (!Number.isFinite(lossAccum)) {
        throw new Error(
          `Loss became ${lossAccum} at step ${step}: stopping without updating the weights; ${
            lastCheckpoint
              ? `the last good checkpoint is ${lastCheckpoint} (--resume latest, perhaps with a lower --max-lr)`
              : "no checkpoint was written yet (try a lower --max-lr)"
          }`,
        );
      }
      // the true norm; with loss scaling, the gradients unscaled in the same pass. Under DDP
      // every rank holds the same averaged gradients, so all see the same norm and an
      // overflow skips the step on every rank alike.
      const norm = await clipGradNorm(model.parameters(), 1.0, lossScale);
      // with loss scaling, an inf/NaN gradient (the loss itself was finite) is an overflow:
      // the weights and AdamW's state are left alone and the scale backs off
      const skipped = scaler !== null && !Number.isFinite(norm);
      // determine and set the learning rate for this iteration
      const lr = getLr(step, schedule);
      optimizer.lr = lr;
      if (!skipped) optimizer.step();
      scaler?.update(skipped);
      const dtMs = performance.now() - t0;
      const tokensProcessed = B * T * gradAccumSteps * world;
      const tokensPerSec = tokensProcessed / (dtMs / 1000);
      const stats: StepStats = { step, loss: lossAccum, lr, norm, dtMs, tokensPerSec };
      if (lossScale !== undefined) Object.assign(stats, { lossScale, skipped });
      history.push(stats);
      say(
        `step ${String(step).padStart(5)} | loss: ${lossAccum.toFixed(6)} | lr ${
          lr.toExponential(4)
        } | norm: ${norm.toFixed(4)} | dt: ${dtMs.toFixed(2)}ms | tok/sec: ${
          tokensPerSec.toFixed(2)
        }`,
      );
      await log(`${step} train ${lossAccum.toFixed(6)}`);
      if (skipped) {
        say(
          `step ${step} | gradient overflow at loss scale ${lossScale}: step skipped, scale -> ${
            scaler!.scale
          }`,
        );
        await log(`${step} overflow ${lossScale}`); // a stream of its own for lib/plot
      }
      o.onStep?.(stats);

      const every = o.checkpointEvery ?? 0;
      if (lastStep || stopHere || (every > 0 && (step + 1) % every === 0)) {
        await checkpoint(step + 1, lossAccum);
      }
      if (stopHere && !lastStep) {
        stoppedBy = signalled ?? "a signal on another rank";
        say(
          `stopped by ${stoppedBy} after step ${step}: continue with --resume ${
            lastCheckpoint ?? "latest"
          }`,
        );
        break;
      }
    }
  } finally {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  }

  let modelDir: string | null = null;
  if (o.logDir && master && !stoppedBy) {
    modelDir = `${o.logDir}/model`;
    await savePretrained(model, modelDir);
    console.log(
      `saved the model to ${modelDir} (Hugging Face layout; deno task sample --weights ${modelDir})`,
    );
  }
  return {
    model,
    history,
    evals,
    modelDir,
    checkpoint: lastCheckpoint,
    stoppedBy,
    gradScaler: scaler?.state() ?? null,
  };
}

/** The settings that must match for a checkpoint to continue a run exactly. */
function runSettings(o: TrainOptions): Record<string, unknown> {
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
  for (const k of ["B", "T", "totalBatchSize"]) {
    const want = (runSettings(o) as Record<string, unknown>)[k];
    if (state.run[k] !== want) {
      throw new Error(
        `Checkpoint ${path} was trained with ${k}=${
          state.run[k]
        }, this run has ${k}=${want}: the data positions would not match`,
      );
    }
  }
}

/** Validation loss over a reset loader (averaged over ranks), HellaSwag, and 4 samples. */
async function evaluate(
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
  await noGrad(async () => {
    for (let i = 0; i < valLossSteps; i++) {
      const { x, y } = valLoader.nextBatch();
      const { loss } = model.forward(
        Tensor.from(backend, x, [B, T]),
        Tensor.from(backend, y, [B, T]),
      );
      valLossAccum += (await loss!.item()) / valLossSteps;
    }
  });
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
    if (rank === 0) console.log(`HellaSwag accuracy: ${v[1]}/${v[0]}=${hellaAcc.toFixed(4)}`);
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

/** The checkpoints of a log folder, oldest first. */
export async function runCheckpoints(logDir: string): Promise<{ step: number; path: string }[]> {
  return await listCheckpoints(checkpointsDir(logDir));
}
