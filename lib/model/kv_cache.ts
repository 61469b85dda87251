/**
 * Generation's KV cache: every layer's keys and values of the positions seen so far, so that
 * `GPT.forwardDecode` runs only the new positions (the prompt in one forward, then one token
 * per step) instead of the whole prefix for every token. Attention is the only layer that
 * looks across positions, and a position's keys and values never change once computed, so
 * keeping them is all it takes: O(T) work per new token instead of O(T^2).
 *
 * The buffers are the backend's, (B, NH, capacity, hs) per layer for keys and for values; the
 * backend's `kvCacheAppend` fills them and `attentionDecode` reads them.
 *
 * @module
 */

import type { Backend, DeviceBuffer, KVCacheDims } from "../backend.ts";
import { Tensor } from "./tensor.ts";

/** The sizes of the model a cache is for (a `GPTConfig` has them). */
export interface CacheShape {
  n_layer: number;
  n_head: number;
  n_embd: number;
  block_size: number;
}

/** One layer's cache: keys and values, (B, NH, capacity, hs) each. */
export interface LayerKV {
  k: DeviceBuffer;
  v: DeviceBuffer;
}

/** The keys and values of every layer for a batch of sequences that advance together. */
export class KVCache {
  /** One entry per transformer block. */
  readonly layers: LayerKV[];
  /** Positions filled, the same in every layer and sequence. */
  #pos = 0;
  readonly #nHead: number;
  readonly #nEmbd: number;

  /**
   * Allocates the caches of `batch` sequences of up to `capacity` positions (default, and at
   * most, the model's block size: positions past it have no position embedding).
   *
   * @throws {RangeError} for a batch or capacity outside those bounds.
   */
  constructor(
    readonly backend: Backend,
    config: CacheShape,
    readonly batch: number,
    readonly capacity: number = config.block_size,
  ) {
    if (!Number.isInteger(batch) || batch < 1) {
      throw new RangeError(`KV cache: expected a batch of at least 1 sequence, found ${batch}`);
    }
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > config.block_size) {
      throw new RangeError(
        `KV cache: expected a capacity in [1, ${config.block_size}] (the block size), found ${capacity}`,
      );
    }
    this.#nHead = config.n_head;
    this.#nEmbd = config.n_embd;
    const size = batch * capacity * config.n_embd;
    this.layers = Array.from({ length: config.n_layer }, () => ({
      k: backend.alloc(size, "f32"),
      v: backend.alloc(size, "f32"),
    }));
  }

  /** Positions filled so far: where the next new position goes. */
  get pos(): number {
    return this.#pos;
  }

  /** Positions still free. */
  get free(): number {
    return this.capacity - this.#pos;
  }

  /** Forgets every position (the buffers stay; old entries are overwritten before use). */
  reset(): void {
    this.#pos = 0;
  }

  /**
   * The kernels' sizes for T new positions of each sequence.
   *
   * @throws {RangeError} when the batch differs or the T positions do not fit.
   */
  dims(B: number, T: number): KVCacheDims {
    if (B !== this.batch) {
      throw new RangeError(`KV cache: expected a batch of ${this.batch} sequences, found ${B}`);
    }
    if (!(T >= 1) || T > this.free) {
      throw new RangeError(
        `KV cache: cannot add ${T} positions: ${this.#pos} of its ${this.capacity} are filled ` +
          `(reset it, or crop the context)`,
      );
    }
    return { B, T, C: this.#nEmbd, NH: this.#nHead, pos: this.#pos, maxT: this.capacity };
  }

  /** Marks T more positions filled, once every layer has appended them. */
  advance(T: number): void {
    this.dims(this.batch, T); // the same bounds
    this.#pos += T;
  }
}

/**
 * The decode path's attention: appends the keys and values of packed qkv (B, T, 3C), the T
 * positions after the cache's `pos`, to layer `layer`'s cache, then attends each of them to
 * every cached position up to its own. Returns (B, T, C), as `ops.causalSelfAttention` does
 * for those rows of the whole sequence; records no graph (generation has no backward).
 */
export function cachedAttention(qkv: Tensor, cache: KVCache, layer: number): Tensor {
  if (qkv.shape.length !== 3) {
    throw new Error(`Expected qkv of shape [B, T, 3C], found [${qkv.shape}]`);
  }
  const [B, T] = qkv.shape;
  const dims = cache.dims(B, T);
  if (qkv.shape[2] !== 3 * dims.C) {
    throw new Error(`Expected qkv of shape [${B}, ${T}, ${3 * dims.C}], found [${qkv.shape}]`);
  }
  const kv = cache.layers[layer];
  if (!kv) {
    throw new RangeError(
      `KV cache: expected a layer in [0, ${cache.layers.length}), found ${layer}`,
    );
  }
  const be = qkv.backend;
  be.kvCacheAppend(kv.k, kv.v, qkv.buffer, dims);
  const out = Tensor.zeros(be, [B, T, dims.C]);
  be.attentionDecode(out.buffer, qkv.buffer, kv.k, kv.v, dims);
  return out;
}
