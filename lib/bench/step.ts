/**
 * Times GPT-2 training steps (zero_grad, forward, backward, clip 1.0, AdamW) and forward
 * passes on a backend, the way `../shared/bench/torch_gpt2_step.py` times PyTorch's, so the
 * two can be compared as ratios in one run.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { initOnDevice } from "../model/device_init.ts";
import { GPT, type GPTConfig } from "../model/gpt.ts";
import { configureOptimizers } from "../train/optim.ts";
import { noGrad, Tensor } from "../model/tensor.ts";

/** Timings of one configuration. */
export interface StepTiming {
  mode: "train" | "fwd";
  B: number;
  T: number;
  /** Median of the timed iterations, ms. */
  medianMs: number;
  /** The fastest timed iteration, ms. */
  minMs: number;
  /** The slowest timed iteration, ms. */
  maxMs: number;
  /** Every timed iteration, in order, ms. */
  timesMs: number[];
  tokensPerSec: number;
  /** Resident memory after the last iteration, bytes. */
  rss: number;
}

/** Model FLOPs per token of a training step: 6N + 12 L C T (N without wpe, as nanoGPT counts). */
export function trainFlopsPerToken(config: GPTConfig, T: number): number {
  const { n_layer: L, n_embd: C, vocab_size: V } = config;
  const N = V * C + L * (12 * C * C + 13 * C) + 2 * C; // wte (tied) + blocks + ln_f
  return 6 * N + 12 * L * C * T;
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("Expected at least one time, found none");
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The shape of the steps a {@linkcode stepRunner} runs. */
export interface StepShape {
  mode: "train" | "fwd";
  B: number;
  T: number;
}

/** Options of `timeSteps`. */
export interface TimeStepsOptions extends StepShape {
  /** Untimed steps first (allocation, compilation, first touch of memory). */
  warmup: number;
  /** Timed steps after the warm-up. */
  iters: number;
  /** Called with each iteration's milliseconds. */
  onIter?: (i: number, ms: number, warmup: boolean) => void;
}

/**
 * Builds a GPT on `backend` (seed 0), its AdamW and one fixed batch, and returns a function
 * that runs one step of `mode` and resolves to its milliseconds: a training step is
 * zero_grad, forward (the logits' gradient written over them, as training's step does: only
 * the loss is read), backward, clip 1.0, AdamW and the loss read back; a forward step reads
 * the logits back.
 */
export function stepRunner(
  backend: Backend,
  config: GPTConfig,
  o: StepShape,
): () => Promise<number> {
  // drawn on the device where the backend can (CUDA): no 124M numbers drawn in JavaScript
  const model = new GPT(backend, config, { seed: 0, skipInit: backend.initNormal !== undefined });
  if (backend.initNormal) initOnDevice(model, 0);
  const optimizer = configureOptimizers(model, { weightDecay: 0.1, learningRate: 6e-4 });
  const ids = (k: number) => Int32Array.from({ length: o.B * o.T }, (_, i) => (i * k + 7) % 50257);
  const x = Tensor.from(backend, ids(31), [o.B, o.T]),
    y = Tensor.from(backend, ids(17), [o.B, o.T]);
  return async (): Promise<number> => {
    const t0 = performance.now();
    if (o.mode === "train") {
      optimizer.zeroGrad();
      const { loss } = model.forward(x, y, { overwriteLogits: true });
      loss!.backward();
      await optimizer.clipGradNorm(1.0);
      optimizer.step();
      await loss!.item();
    } else {
      await noGrad(async () => await model.forward(x).logits.toArray());
    }
    return performance.now() - t0;
  };
}

/** The timing of `times` (the timed iterations, ms) for steps of `o`'s shape. */
export function stepTiming(o: StepShape, times: readonly number[]): StepTiming {
  const medianMs = median(times);
  return {
    mode: o.mode,
    B: o.B,
    T: o.T,
    medianMs,
    minMs: Math.min(...times),
    maxMs: Math.max(...times),
    timesMs: [...times],
    tokensPerSec: (o.B * o.T) / (medianMs / 1000),
    rss: Deno.memoryUsage().rss,
  };
}

/**
 * Builds a GPT on `backend` and times `warmup + iters` steps of `mode` (see
 * {@linkcode stepRunner}); the timing is over the last `iters`.
 *
 * @throws {Error} when `iters` is below 1
 */
export async function timeSteps(
  backend: Backend,
  config: GPTConfig,
  o: TimeStepsOptions,
): Promise<StepTiming> {
  if (!(o.iters >= 1)) throw new Error(`Expected at least 1 timed iteration, found ${o.iters}`);
  const step = stepRunner(backend, config, o);
  const times: number[] = [];
  for (let i = 0; i < o.warmup + o.iters; i++) {
    const ms = await step();
    o.onIter?.(i, ms, i < o.warmup);
    if (i >= o.warmup) times.push(ms);
  }
  return stepTiming(o, times);
}

/** The median time of `fn` over `iters` calls after `warmup`, ms. */
export function timeMedian(fn: () => void, warmup: number, iters: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}
