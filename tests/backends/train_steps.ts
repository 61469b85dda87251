/**
 * Five steps of the lecture's loop (zero_grad, forward, backward, clip 1.0, the schedule,
 * AdamW) on a small GPT-2, to compare a backend's training with the reference backend's.
 * Shared by the WebGPU and CUDA tests.
 *
 * @module
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { Backend } from "../../lib/backend.ts";
import { GPT, type GPTConfig } from "../../lib/model/gpt.ts";
import { Generator } from "../../lib/model/random.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { clipGradNorm, configureOptimizers, getLr } from "../../lib/train/optim.ts";
import { assertClose } from "../support.ts";

/** What five training steps produced. */
export interface Run {
  losses: number[];
  norms: number[];
  params: Float32Array[];
  /** The sum of the learning rates used, which bounds how far noise can move a weight. */
  lrSum: number;
}

/** The model of `trainSteps`: 2 layers, C 32 in 2 heads of 16, vocab 101, T up to 16. */
export const TRAIN_STEPS_CONFIG: GPTConfig = {
  n_layer: 2,
  n_head: 2,
  n_embd: 32,
  block_size: 16,
  vocab_size: 101,
};

/** Five steps on a small GPT-2 (`TRAIN_STEPS_CONFIG` by default) at B=3, T=16, from seed 5. */
export async function trainSteps(
  backend: Backend,
  config: GPTConfig = TRAIN_STEPS_CONFIG,
): Promise<Run> {
  const [B, T] = [3, 16];
  const model = new GPT(backend, config, { seed: 5 });
  const optimizer = configureOptimizers(model, { weightDecay: 0.1, learningRate: 6e-4 });
  const sched = { maxLr: 6e-4, minLr: 6e-5, warmupSteps: 2, maxSteps: 5 };
  const rng = new Generator(11);
  const tokens = Int32Array.from({ length: B * T + 1 }, () => Math.floor(rng.random() * 101));
  const x = Tensor.from(backend, tokens.slice(0, B * T), [B, T]);
  const y = Tensor.from(backend, tokens.slice(1), [B, T]);
  const losses: number[] = [], norms: number[] = [];
  let lrSum = 0;
  for (let step = 0; step < 5; step++) {
    optimizer.zeroGrad();
    const { loss } = model.forward(x, y);
    loss!.backward();
    norms.push(await clipGradNorm(model.parameters(), 1.0));
    optimizer.lr = getLr(step, sched);
    lrSum += optimizer.lr;
    optimizer.step();
    losses.push(await loss!.item());
  }
  const params = [];
  for (const p of model.parameters()) params.push((await p.toArray()) as Float32Array);
  return { losses, norms, params, lrSum };
}

/** Losses, norms and parameters of two f32 runs agree to f32 rounding. */
export function assertSameRun(actual: Run, expected: Run): void {
  assertClose("losses", actual.losses, expected.losses, { rtol: 2e-5 });
  assertClose("pre-clip norms", actual.norms, expected.norms, { rtol: 2e-4 });
  assertEquals(actual.params.length, expected.params.length);
  // Adam turns a gradient at f32 rounding level into a step of about lr whatever its
  // size, so single elements may differ by up to the summed lrs; on average they agree.
  let sumDiff = 0, count = 0;
  actual.params.forEach((p, k) => {
    assertClose(`param ${k}`, p, expected.params[k], { rtol: 0, atol: 2 * expected.lrSum });
    for (let i = 0; i < p.length; i++) sumDiff += Math.abs(p[i] - expected.params[k][i]);
    count += p.length;
  });
  const meanDiff = sumDiff / count;
  if (!(meanDiff < 2e-6)) throw new Error(`Mean parameter difference ${meanDiff} over 2e-6`);
}
