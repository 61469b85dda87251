/**
 * The CUDA backend's device memory: a caching allocator keyed by size, so a training step
 * takes last step's blocks instead of calling cuMemAlloc and cuMemFree for every tensor.
 *
 * A block goes back to the pool when the object that owns it (a buffer's wrapper) is
 * garbage-collected: a `FinalizationRegistry` returns it, as the WebGPU backend's pool
 * does. The garbage collector does not see device memory, though, so the pool also asks
 * for collections itself, only when the pool could not serve a size: `collectIfDue` (the
 * backend calls it at read-backs, while the GPU works) runs a full collection once enough
 * has been taken from the driver since the last (a step whose buffers all come from the pool,
 * as a training step's do once `recycle` returns them, runs none), and an
 * allocation that would grow the pool past its soft limit first collects and returns the
 * blocks of wrappers found dead (a `WeakRef` per block; those made since the last turn of
 * the event loop stay alive until it ends, a rule of WeakRef). Collections use V8's `gc`
 * (reached through node:v8 and node:vm); where it is unavailable the pool relies on the
 * finalizers alone.
 *
 * Blocks are reused on the stream they were used on, so a block freed while kernels that
 * read it are still queued is safe to hand out again: later work runs after them. Only
 * returning memory to the driver (`trim`) waits for the stream first.
 *
 * A kernel's temporary (partial sums, an uploaded table) is a `scratch` block instead: no
 * owner, no `WeakRef` and no finalizer, handed back by the caller once its last use is
 * enqueued. A block's record is never unregistered from the finalizers: one returned early
 * (`release`, `collect`) is marked dead, and its finalizer, when it runs, does nothing.
 *
 * @module
 */

import v8 from "node:v8";
import vm from "node:vm";
import type { CudaDriver } from "./driver.ts";

/** A block's record: the pool's, never reachable from its owner. */
interface Held {
  pointer: bigint;
  size: number;
  live: boolean;
  owner: WeakRef<object>;
}

/** Sizes are rounded up to 256 bytes (cuMemAlloc's alignment) below 1 MiB, else to 1/16 of their power of two. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  if (bytes < 2 ** 20) return Math.ceil(bytes / 256) * 256;
  const step = 2 ** Math.floor(Math.log2(bytes)) / 16;
  return Math.ceil(bytes / step) * step;
}

/** Options of `DevicePool`. */
export interface PoolOptions {
  /** Bytes the pool may take from the driver before it collects garbage to reuse instead. */
  softLimit: number;
  /** Bytes taken from the driver (not served by the pool) between two collections at read-backs. */
  collectEvery: number;
  /** Whether to use V8's gc (default true where it can be reached). */
  useGc?: boolean;
}

/** Device memory handed out by size, returned when its owner is collected. */
export class DevicePool {
  readonly #driver: CudaDriver;
  readonly #free = new Map<number, bigint[]>();
  readonly #live = new Set<Held>();
  readonly #byOwner = new WeakMap<object, Held>();
  readonly #registry = new FinalizationRegistry<Held>((held) => this.#reclaim(held));
  /** Scratch blocks handed out and not yet given back, by address: their size classes. */
  readonly #scratch = new Map<bigint, number>();
  readonly #gc: (() => void) | null;
  readonly #softLimit: number;
  readonly #collectEvery: number;
  #driverBytes = 0;
  #freeBytes = 0;
  #peak = 0;
  /** Bytes taken from the driver since the last collection (blocks served by the pool are not counted). */
  #driverAllocatedSinceCollect = 0;
  #driverBytesAtSweep = 0;
  /** Allocations served from the pool (not from the driver). */
  reused = 0;
  /** Collections run (at read-backs and under pressure). */
  collections = 0;

  constructor(driver: CudaDriver, options: PoolOptions) {
    this.#driver = driver;
    this.#softLimit = options.softLimit;
    this.#collectEvery = options.collectEvery;
    this.#gc = options.useGc === false ? null : v8Gc();
  }

  /** The most device memory the pool has held from the driver at once, in bytes. */
  get peakBytes(): number {
    return this.#peak;
  }

  /** Starts `peakBytes` again from the memory held now. */
  resetPeak(): void {
    this.#peak = this.#driverBytes;
  }

  /** Device memory held from the driver now (in use, or free in the pool), in bytes. */
  get heldBytes(): number {
    return this.#driverBytes;
  }

  /** Device memory free in the pool, in bytes. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /**
   * A block of at least `bytes`, owned by the object `make` builds around its address; the
   * block returns to the pool when that object is collected (or at `release(owner)`). Its
   * contents are whatever its last user left.
   *
   * @throws {Error} when the device is out of memory even after collecting and trimming.
   */
  allocate<T extends object>(bytes: number, make: (pointer: bigint) => T): T {
    const size = sizeClass(bytes);
    const pointer = this.#take(size);
    const owner = make(pointer);
    const held: Held = { pointer, size, live: true, owner: new WeakRef(owner) };
    this.#live.add(held);
    this.#byOwner.set(owner, held);
    this.#registry.register(owner, held);
    return owner;
  }

  /**
   * Returns `owner`'s block now (a temporary whose last use is enqueued); `owner` must not
   * be used afterwards.
   */
  release(owner: object): void {
    const held = this.#byOwner.get(owner);
    if (!held?.live) return;
    this.#byOwner.delete(owner);
    this.#reclaim(held); // its finalizer finds it dead
  }

  /**
   * A block of at least `bytes` with no owner, for a temporary the caller gives back with
   * `giveBack` once its last use is enqueued (cheaper than `allocate`: nothing for the
   * garbage collector to track).
   */
  scratch(bytes: number): bigint {
    const size = sizeClass(bytes);
    const pointer = this.#take(size);
    this.#scratch.set(pointer, size);
    return pointer;
  }

  /** Returns a block from `scratch` to the pool (later users of it run after its last use). */
  giveBack(pointer: bigint): void {
    const size = this.#scratch.get(pointer);
    if (size === undefined) {
      throw new Error(
        `Expected a scratch block of this pool, found address 0x${pointer.toString(16)}`,
      );
    }
    this.#scratch.delete(pointer);
    this.#push(size, pointer);
  }

  /** A full garbage collection, when enough was taken from the driver since the last one. */
  collectIfDue(): void {
    if (this.#gc && this.#driverAllocatedSinceCollect >= this.#collectEvery) this.collect();
  }

  /**
   * Collects garbage and returns the blocks of every owner found dead; returns the bytes
   * returned. Without V8's gc, returns the blocks of owners already collected.
   */
  collect(): number {
    this.#gc?.();
    this.collections++;
    this.#driverAllocatedSinceCollect = 0;
    let returned = 0;
    for (const held of this.#live) {
      if (held.owner.deref() === undefined) {
        returned += held.size;
        this.#reclaim(held);
      }
    }
    return returned;
  }

  /** Waits for the stream, then gives every free block back to the driver. */
  trim(): void {
    if (this.#freeBytes === 0) return;
    this.#driver.synchronize();
    for (const list of this.#free.values()) {
      for (const pointer of list) this.#driver.free(pointer);
    }
    this.#driverBytes -= this.#freeBytes;
    this.#freeBytes = 0;
    this.#free.clear();
  }

  /** Frees every block, free or not (the backend is being destroyed). */
  destroy(): void {
    this.#driver.synchronize();
    for (const held of this.#live) {
      held.live = false; // its finalizer finds it dead
      this.#driver.free(held.pointer);
    }
    this.#live.clear();
    for (const p of this.#scratch.keys()) this.#driver.free(p);
    this.#scratch.clear();
    for (const list of this.#free.values()) for (const p of list) this.#driver.free(p);
    this.#free.clear();
    this.#driverBytes = this.#freeBytes = 0;
  }

  #take(size: number): bigint {
    const pooled = this.#pop(size);
    if (pooled !== null) return pooled;
    // growing past the soft limit: first reuse what dead owners hold
    if (this.#driverBytes + size > this.#softLimit && this.#gc && this.#sweepWorthIt()) {
      this.#driverBytesAtSweep = this.#driverBytes;
      this.collect();
      const again = this.#pop(size);
      if (again !== null) return again;
      if (this.#driverBytes + size > this.#softLimit) this.trim(); // other sizes' blocks
    }
    let pointer = this.#driver.tryAlloc(size);
    if (pointer === null) {
      this.collect();
      const again = this.#pop(size);
      if (again !== null) return again;
      this.trim();
      pointer = this.#driver.tryAlloc(size);
    }
    if (pointer === null) {
      const { free, total } = this.#driver.memoryInfo();
      throw new Error(
        `CUDA out of memory: ${mib(size)} requested; this backend holds ${
          mib(this.#driverBytes)
        }, the device has ${mib(free)} free of ${mib(total)}`,
      );
    }
    this.#driverBytes += size;
    this.#driverAllocatedSinceCollect += size;
    this.#peak = Math.max(this.#peak, this.#driverBytes);
    return pointer;
  }

  /** Sweeps under pressure at most once per 1/32 of the soft limit grown, so misses stay cheap. */
  #sweepWorthIt(): boolean {
    return this.#driverBytes - this.#driverBytesAtSweep >= this.#softLimit / 32 ||
      this.#driverBytesAtSweep === 0;
  }

  #pop(size: number): bigint | null {
    const pointer = this.#free.get(size)?.pop();
    if (pointer === undefined) return null;
    this.#freeBytes -= size;
    this.reused++;
    return pointer;
  }

  #reclaim(held: Held): void {
    if (!held.live) return;
    held.live = false;
    this.#live.delete(held);
    this.#push(held.size, held.pointer);
  }

  #push(size: number, pointer: bigint): void {
    const list = this.#free.get(size);
    if (list) list.push(pointer);
    else this.#free.set(size, [pointer]);
    this.#freeBytes += size;
  }
}

/** V8's `gc()`, exposed at run time through node:v8's flags and a fresh node:vm context. */
function v8Gc(): (() => void) | null {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc");
    return typeof gc === "function" ? () => gc() : null;
  } catch {
    return null;
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
