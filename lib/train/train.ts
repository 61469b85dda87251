/**
 * build-nanogpt's training loop, readable top to bottom (its `train_gpt2.py` main loop):
 * for each step, (1) once in a while the validation loss, HellaSwag and samples, (2) gradient
 * accumulation over micro-steps, the gradients all-reduced across ranks after the last one,
 * (3) clipping, the lr schedule and AdamW, (4) the step line and `log.txt`, (5) once in a
 * while a checkpoint. What is built before the first step is in `setup.ts`, the evaluation in
 * `evaluate.ts`. Checkpoints resume exactly; a non-finite loss or gradient norm stops the run
 * before the weights change, and a checkpoint is never written with non-finite values, so the
 * last checkpoint is always a good one; SIGINT/SIGTERM save a checkpoint and end the run
 * cleanly. Opt-in f16 matmuls (WebGPU) come with dynamic loss scaling
 * (lib/train/grad_scaler.ts): a step whose gradients overflow is skipped.
 *
 * @module
 */

import { savePretrained } from "../model/gpt.ts";
import * as ops from "../model/ops.ts";
import { Tensor } from "../model/tensor.ts";
import {
  checkpointPath,
  checkpointsDir,
  NonFiniteCheckpointError,
  pruneCheckpoints,
  type RankState,
  saveCheckpoint,
} from "./checkpoint.ts";
import { CheckpointTrail } from "./checkpoint_trail.ts";
import { allReduceGradients } from "./ddp_sync.ts";
import { evaluate } from "./evaluate.ts";
import { listNames } from "./finite.ts";
import type { EvalStats, StepStats, TrainOptions, TrainResult } from "./options.ts";
import { getLr } from "./optim.ts";
import { setMatmulPrecision } from "./precision.ts";
import { runSettings, type RunSetup, setupRun } from "./setup.ts";

export type * from "./options.ts";
export { SAMPLE_PROMPT } from "./evaluate.ts";
export { checkPrecision, parsePrecision, type Precision, PRECISIONS } from "./precision.ts";

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

/** The steps from `r.startStep` to `o.steps`, then the model saved. */
async function trainSteps(r: RunSetup, o: TrainOptions): Promise<TrainResult> {
  const { model, optimizer, scaler, say } = r;
  const history: StepStats[] = [];
  const evals: EvalStats[] = [];
  const trail = new CheckpointTrail(r.resumedFrom, (step) => pruneLater(r, o, step));
  let stoppedBy: string | null = null;
  const evalEvery = o.evalEvery ?? 0, checkpointEvery = o.checkpointEvery ?? 0;
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
      if (!skipped) optimizer.step();
      scaler?.update(skipped);
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
  return new Error(
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

/**
 * A checkpoint after `step` optimizer steps: every rank sends its data position and RNG
 * state, rank 0 writes them with the model and AdamW's moments (pruning the older ones at
 * once when `final`, else after the next step: lib/train/checkpoint_trail.ts). Returns its
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
      const path = await saveCheckpoint(checkpointsDir(o.logDir), {
        model: r.model,
        optimizer: r.optimizer,
        step,
        runId: r.runId,
        ranks,
        loss,
        gradScaler: r.scaler?.state() ?? null,
        run: { ...o.runInfo, ...runSettings(o), world: r.world },
      }, { keep: o.keepCheckpoints ?? 3, prune: final });
      console.log(`saved checkpoint ${path}`);
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
  if (outcome.error) throw new Error(outcome.error, failure ? { cause: failure } : undefined);
  return outcome.path ?? null;
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
  return `Writing the checkpoint ${checkpointPath(dir, step)} failed: ${
    (e as Error).message
  }; stopped after step ${step - 1}: ${
    trail.good
      ? `once the cause is fixed (a full disk: free some space), continue with --resume ${trail.good}`
      : "no checkpoint was written yet: once the cause is fixed (a full disk: free some space), start the run again"
  }`;
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
    await savePretrained(r.model, modelDir);
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
