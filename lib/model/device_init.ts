/**
 * GPT-2's init drawn on the device: on a backend with `initNormal` (CUDA), each weight is
 * filled there from a generator keyed by (seed, the parameter's index in `namedParameters()`)
 * with `GPT.initStd`'s standard deviation, biases zeroed, LayerNorm left at 1 and 0. The same
 * law as `GPT.initWeights` (N(0, 0.02), the residual projections scaled), other values, and
 * nothing drawn or copied on the host: for benchmarks and runs that do not need the host's
 * exact numbers.
 *
 * @module
 */

import type { GPT } from "./gpt.ts";

/**
 * Initialises `model`'s parameters on its backend's device; returns false (and does nothing)
 * where the backend has no `initNormal`.
 */
export function initOnDevice(model: GPT, seed: number): boolean {
  const backend = model.backend;
  if (!backend.initNormal) return false;
  for (const [k, [name, p]] of model.namedParameters().entries()) {
    const std = model.initStd(name);
    if (std === null) continue;
    if (std === 0) backend.zero(p.buffer);
    else backend.initNormal(p.buffer, std, seed, k);
  }
  return true;
}
