/**
 * The WebGPU backend's buffer pool: GPU buffers whose wrapper was garbage-collected (or
 * released early) wait here, by size, for the next allocation of that size, so a training
 * step's allocations reuse last step's buffers instead of creating new ones.
 *
 * @module
 */

/** A GPU buffer the pool can hand out again: the buffer, its id, its size in bytes. */
export interface PooledBuffer {
  gpu: GPUBuffer;
  id: number;
  bytes: number;
}

/** Freed buffers kept for reuse, in bytes, before the rest are evicted. */
const POOL_BYTES = 4 * 2 ** 30;

/** Buffers by size, filled by a `FinalizationRegistry` over their wrappers. */
export class BufferPool {
  /** Allocations served from the pool so far. */
  reused = 0;
  readonly #free = new Map<number, { gpu: GPUBuffer; id: number }[]>();
  #bytes = 0;
  readonly #registry = new FinalizationRegistry<PooledBuffer>((held) => this.#give(held));

  /**
   * `evict` takes the buffers that do not fit the pool's budget: the device destroys them
   * once the commands that may still use them are submitted.
   */
  constructor(private readonly evict: (held: PooledBuffer) => void) {}

  /** A free buffer of exactly `bytes`, or undefined (the caller creates one). */
  take(bytes: number): { gpu: GPUBuffer; id: number } | undefined {
    const pooled = this.#free.get(bytes)?.pop();
    if (pooled) {
      this.#bytes -= bytes;
      this.reused++;
    }
    return pooled;
  }

  /** Returns `held` to the pool when `wrapper` is garbage-collected. */
  track(wrapper: object, held: PooledBuffer): void {
    this.#registry.register(wrapper, held, wrapper);
  }

  /**
   * Returns `wrapper`'s buffer to the pool now rather than when the wrapper is collected
   * (the garbage collector does not see GPU memory).
   */
  release(wrapper: object, held: PooledBuffer): void {
    if (this.#registry.unregister(wrapper)) this.#give(held);
  }

  /** Destroys every pooled buffer. */
  destroyAll(): void {
    for (const list of this.#free.values()) for (const { gpu } of list) gpu.destroy();
    this.#free.clear();
  }

  #give(held: PooledBuffer): void {
    if (this.#bytes + held.bytes > POOL_BYTES) {
      this.evict(held);
      return;
    }
    const list = this.#free.get(held.bytes) ?? [];
    list.push({ gpu: held.gpu, id: held.id });
    this.#free.set(held.bytes, list);
    this.#bytes += held.bytes;
  }
}
