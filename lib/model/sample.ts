/**
 * Generation: the model's next-token distribution at the last position, top-k (50 by
 * default, Hugging Face's pipeline default) sampling from a seeded generator, or greedy;
 * with a KV cache (`kv_cache.ts`) by default, so each new token costs one position's forward.
 *
 * @module
 */

import type { GPT } from "./gpt.ts";
import { KVCache } from "./kv_cache.ts";
import type { Generator } from "./random.ts";
import { noGrad, Tensor } from "./tensor.ts";

/** Softmax of a row of logits, in f64 for stable sums. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** The k largest probabilities and their indices, descending (ties: lower index first). */
export function topK(probs: ArrayLike<number>, k: number): { probs: number[]; indices: number[] } {
  // one pass keeping a sorted list of the best k: most values fall below its last entry, so
  // this is about one comparison per element, not a sort of the whole 50,304-wide vocabulary
  k = Math.min(k, probs.length);
  const indices: number[] = [];
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    if (indices.length === k && !(p > probs[indices[k - 1]])) continue;
    let j = indices.length < k ? indices.length : k - 1;
    while (j > 0 && p > probs[indices[j - 1]]) {
      if (j < k) indices[j] = indices[j - 1];
      j--;
    }
    indices[j] = i;
  }
  return { probs: indices.map((i) => probs[i]), indices };
}

/** Options of `generate`. */
export interface GenerateOptions {
  /** Total length of each sequence, prompt included. */
  maxLength: number;
  /** Top-k sampling's k; default 50. */
  topK?: number;
  /** Argmax instead of sampling. */
  greedy?: boolean;
  /** The seeded generator to sample from (required unless greedy). */
  generator?: Generator;
  /**
   * Sampling's temperature: logits are divided by it before the softmax (below 1 sharper,
   * above 1 flatter); default 1, the model's own distribution. Greedy ignores it.
   */
  temperature?: number;
  /**
   * Called after each new token, e.g. for a progress line, with the rows so far (for showing
   * tokens as they come; read them, do not change them).
   */
  onToken?: (length: number, rows: readonly (readonly number[])[]) => void;
  /**
   * Keep each layer's keys and values between steps (`kv_cache.ts`), so each new token runs
   * one position (default true). False recomputes the whole context for every token, as the
   * lecture's loop does: the same tokens, slower; for comparisons and benchmarks.
   */
  kvCache?: boolean;
}

/**
 * Continues each row of `prompts` (all the same length) to `maxLength` tokens. Once the
 * context passes the block size, only its last `block_size` tokens are fed.
 *
 * @throws {Error} for empty prompts or prompts of different lengths, and for sampling
 * without a generator.
 */
export async function generate(
  model: GPT,
  prompts: number[][],
  options: GenerateOptions,
): Promise<number[][]> {
  const rows = prompts.map((p) => [...p]);
  const k = options.topK ?? 50;
  if (!options.greedy && !options.generator) {
    throw new Error("Sampling needs a seeded generator, or greedy");
  }
  const temperature = options.temperature ?? 1;
  if (!(temperature > 0 && temperature < Infinity)) {
    throw new RangeError(`Expected a temperature above 0, found ${temperature}`);
  }
  const length = rows[0]?.length ?? 0;
  if (length === 0) throw new Error("Expected prompts of at least one token, found none");
  const other = rows.find((r) => r.length !== length);
  if (other) {
    throw new Error(
      `Expected prompts of the same length, found ${length} and ${other.length} tokens`,
    );
  }
  if (length >= options.maxLength) return rows;
  const capacity = Math.min(model.config.block_size, options.maxLength);
  const cache = options.kvCache === false
    ? null
    : new KVCache(model.backend, model.config, rows.length, capacity);
  await noGrad(async () => {
    while (rows[0].length < options.maxLength) {
      const last = cache
        ? await lastLogitsCached(model, rows, cache)
        : await lastLogits(model, rows);
      for (let b = 0; b < rows.length; b++) {
        rows[b].push(
          options.greedy
            ? argmax(last[b])
            : sampleTopK(softmax(divided(last[b], temperature)), k, options.generator!),
        );
      }
      options.onToken?.(rows[0].length, rows);
    }
  });
  return rows;
}

/** Each row's logits at its last position, from a forward of its last block_size tokens. */
async function lastLogits(model: GPT, rows: number[][]): Promise<Float32Array[]> {
  const T = Math.min(rows[0].length, model.config.block_size);
  const idx = Int32Array.from(rows.flatMap((r) => r.slice(r.length - T)));
  const { logits } = model.forward(Tensor.from(model.backend, idx, [rows.length, T]));
  return lastPositions((await logits.toArray()) as Float32Array, rows.length, T);
}

/**
 * `lastLogits` through the KV cache: a forward of the tokens the cache has not seen (the
 * prompt, then the one token sampled last). Past the block size the window moves and every
 * position changes, so the cache starts over on the last block_size tokens, as the forward
 * without it does.
 */
async function lastLogitsCached(
  model: GPT,
  rows: number[][],
  cache: KVCache,
): Promise<Float32Array[]> {
  let T = rows[0].length - cache.pos;
  if (T > cache.free) {
    cache.reset();
    T = Math.min(rows[0].length, model.config.block_size);
  }
  const idx = Int32Array.from(rows.flatMap((r) => r.slice(r.length - T)));
  const logits = model.forwardDecode(Tensor.from(model.backend, idx, [rows.length, T]), cache);
  return lastPositions((await logits.toArray()) as Float32Array, rows.length, T);
}

/** `logits` divided by `temperature`; the same array at 1, so the default changes no bit. */
function divided(logits: Float32Array, temperature: number): Float32Array {
  return temperature === 1 ? logits : logits.map((x) => x / temperature);
}

/** Rows of `logits` (B, T, V) at position T - 1, one per sequence. */
function lastPositions(logits: Float32Array, B: number, T: number): Float32Array[] {
  const V = logits.length / (B * T);
  return Array.from({ length: B }, (_, b) => logits.subarray((b * T + T - 1) * V, (b * T + T) * V));
}

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Samples from the top k of `probs`, renormalised (torch.multinomial over topk). */
export function sampleTopK(probs: ArrayLike<number>, k: number, rng: Generator): number {
  const top = topK(probs, k);
  const total = top.probs.reduce((a, b) => a + b, 0);
  let u = rng.random() * total;
  for (let i = 0; i < top.probs.length; i++) {
    u -= top.probs[i];
    if (u < 0) return top.indices[i];
  }
  return top.indices[top.indices.length - 1];
}
