/**
 * The training loop of the lecture's first sections, readable top to bottom: data, model,
 * optimizer, then steps of (gradient accumulation, clipping, lr schedule, AdamW), printing
 * build-nanogpt's step line and writing its `log.txt`.
 *
 * @module
 */

import type { Backend } from "./backend.ts";
import { DataLoaderLite } from "./data_loader.ts";
import { GPT, type GPTConfig, savePretrained } from "./gpt.ts";
import * as ops from "./ops.ts";
import { clipGradNorm, configureOptimizers, getLr } from "./optim.ts";
import { Tensor } from "./tensor.ts";

/** Everything a run needs; the CLI fills it from flags. */
export interface TrainOptions {
  backend: Backend;
  config: GPTConfig;
  /** A text file (Tiny Shakespeare by default). */
  dataPath: string;
  /** micro batch size */
  B: number;
  /** sequence length */
  T: number;
  /** Tokens per optimizer step; a multiple of B * T (the rest is gradient accumulation). */
  totalBatchSize: number;
  steps: number;
  maxLr: number;
  minLr: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  /** Folder for `log.txt` and the final `model/`; null writes nothing. */
  logDir: string | null;
  /** Called after every step, e.g. to draw a live chart in a notebook. */
  onStep?: (s: StepStats) => void;
}

/** What one optimizer step did. */
export interface StepStats {
  step: number;
  loss: number;
  lr: number;
  norm: number;
  dtMs: number;
  tokensPerSec: number;
}

/** The losses of a run, its model and where it was saved. */
export interface TrainResult {
  model: GPT;
  history: StepStats[];
  modelDir: string | null;
}

/** Trains from scratch as the lecture's section 1-3 loop does. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const { B, T, backend } = o;
  if (o.totalBatchSize % (B * T) !== 0) {
    throw new Error(`--total-batch-size ${o.totalBatchSize} must be divisible by B * T = ${B * T}`);
  }
  const gradAccumSteps = o.totalBatchSize / (B * T);
  console.log(`total desired batch size: ${o.totalBatchSize}`);
  console.log(`=> calculated gradient accumulation steps: ${gradAccumSteps}`);

  const trainLoader = await DataLoaderLite.fromTextFile(o.dataPath, B, T);
  const model = new GPT(backend, o.config, { seed: o.seed });
  console.log(`model: ${model.numParameters().toLocaleString("en-US")} parameters`);
  const optimizer = configureOptimizers(model, {
    weightDecay: o.weightDecay,
    learningRate: o.maxLr,
    verbose: true,
  });
  const schedule = {
    maxLr: o.maxLr,
    minLr: o.minLr,
    warmupSteps: o.warmupSteps,
    maxSteps: o.steps,
  };

  let logFile: string | null = null;
  if (o.logDir) {
    await Deno.mkdir(o.logDir, { recursive: true });
    logFile = `${o.logDir}/log.txt`;
    await Deno.writeTextFile(logFile, ""); // open for writing to clear the file
  }

  const history: StepStats[] = [];
  for (let step = 0; step < o.steps; step++) {
    const t0 = performance.now();
    optimizer.zeroGrad();
    let lossAccum = 0;
    for (let microStep = 0; microStep < gradAccumSteps; microStep++) {
      const { x, y } = trainLoader.nextBatch();
      const { loss } = model.forward(
        Tensor.from(backend, x, [B, T]),
        Tensor.from(backend, y, [B, T]),
      );
      // the loss is a mean over B*T; across micro-steps we need the mean too, not the sum
      const scaled = ops.scale(loss!, 1 / gradAccumSteps);
      lossAccum += await scaled.item();
      scaled.backward();
    }
    if (!Number.isFinite(lossAccum)) {
      throw new Error(`Loss became ${lossAccum} at step ${step}: stopping (try a lower --max-lr)`);
    }
    const norm = await clipGradNorm(model.parameters(), 1.0);
    // determine and set the learning rate for this iteration
    const lr = getLr(step, schedule);
    optimizer.lr = lr;
    optimizer.step();
    const dtMs = performance.now() - t0;
    const tokensPerSec = (B * T * gradAccumSteps) / (dtMs / 1000);
    const stats = { step, loss: lossAccum, lr, norm, dtMs, tokensPerSec };
    history.push(stats);
    console.log(
      `step ${String(step).padStart(5)} | loss: ${lossAccum.toFixed(6)} | lr ${
        lr.toExponential(4)
      } | norm: ${norm.toFixed(4)} | dt: ${dtMs.toFixed(2)}ms | tok/sec: ${
        tokensPerSec.toFixed(2)
      }`,
    );
    if (logFile) {
      await Deno.writeTextFile(logFile, `${step} train ${lossAccum.toFixed(6)}\n`, {
        append: true,
      });
    }
    o.onStep?.(stats);
  }

  let modelDir: string | null = null;
  if (o.logDir) {
    modelDir = `${o.logDir}/model`;
    await savePretrained(model, modelDir);
    console.log(
      `saved the model to ${modelDir} (Hugging Face layout; deno task sample --weights ${modelDir})`,
    );
  }
  return { model, history, modelDir };
}
