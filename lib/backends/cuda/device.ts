/**
 * The CUDA backend's device: its buffers (on the GPU for their whole life, in the pool of
 * memory.ts), copies in and out, and the launcher of kernels.ts, all on one stream.
 *
 * - `alloc` fills with zeros on the stream; `upload` and `write` copy from the host (the
 *   host array may be reused at once); i32 buffers also keep the host's copy of their values
 *   (token ids and targets, small), so kernels that index with them check the range on the
 *   host, as the reference does, with no read-back.
 * - `read` is the only wait: it enqueues a copy into page-locked staging memory, lets the
 *   event loop turn (and garbage be collected, memory.ts) while the GPU works, and polls.
 * - Kernels that index with ids the host has not seen record a fault on the device instead
 *   of reading out of bounds; the next read-back reads the fault word and throws the
 *   reference's RangeError.
 * - Every kernel that writes a buffer bumps its `version`, so derived copies (matmul.ts's
 *   bf16 operands) know when they are stale.
 *
 * @module
 */

import type { AttentionDims, DeviceBuffer, DType } from "../../backend.ts";
import { type CudaDriver, nextTurn } from "./driver.ts";
import type { KernelLauncher } from "./kernels.ts";
import type { DevicePool } from "./memory.ts";

/** A buffer on the GPU. */
export class CudaBuffer implements DeviceBuffer {
  /** Bumped by every write (kernel, copy, fill); derived copies compare it. */
  version = 0;
  /**
   * The host's copy of an i32 buffer's values, as last uploaded or written, or null: a new
   * array at each write, never changed in place (layers.ts remembers each copy's range).
   */
  hostInts: Int32Array | null = null;
  /**
   * Whether the buffer stands for zeros no fill has written yet (`alloc`, `zero`): the first
   * kernel that writes it in full writes instead of adding, any other use fills it first.
   */
  zeroPending = false;

  constructor(
    /** The device address of element 0. */
    readonly pointer: bigint,
    readonly length: number,
    readonly dtype: DType,
  ) {}
}

/** What attentionForward saves: the softmax statistics (flash) or the probabilities (naive). */
export class AttentionSaved extends CudaBuffer {
  constructor(
    pointer: bigint,
    length: number,
    /** Which forward made it, so the matching backward runs whatever is chosen now. */
    readonly kind: "flash" | "materialized",
    readonly dims: AttentionDims,
    /** The forward's output (flash backward reads it) and its version then. */
    readonly out: CudaBuffer,
    readonly outVersion: number,
  ) {
    super(pointer, length, "f32");
  }
}

/** The fault codes of common.cuh. */
const FAULT_TOKEN = 1, FAULT_TARGET = 2;
/** The largest read staged through one page-locked buffer; larger reads go in chunks. */
const STAGING_MAX = 64 * 2 ** 20;

/** Buffers, copies and launches on one GPU. */
export class CudaDevice {
  readonly driver: CudaDriver;
  readonly pool: DevicePool;
  readonly kernels: KernelLauncher;
  /** Streaming multiprocessors (grid-stride kernels launch a few blocks per SM). */
  readonly multiprocessors: number;
  readonly #fault: CudaBuffer;
  #faultPossible = false;
  readonly #staging = new Map<number, bigint[]>();
  /**
   * Zero fills enqueued for buffers from `alloc` and `zero`, each at its buffer's first use
   * (buffers a kernel writes in full need none).
   */
  zeroFills = 0;

  constructor(driver: CudaDriver, pool: DevicePool, kernels: KernelLauncher) {
    this.driver = driver;
    this.pool = pool;
    this.kernels = kernels;
    this.multiprocessors = driver.multiprocessors();
    this.#fault = this.alloc(4, "i32");
  }

  // ---- buffers ---------------------------------------------------------------------

  /** A buffer of `length` elements whose contents are undefined (a kernel's output). */
  empty(length: number, dtype: DType = "f32"): CudaBuffer {
    return this.pool.allocate(length * 4, (p) => new CudaBuffer(p, length, dtype));
  }

  /**
   * A zero-filled buffer: the fill is enqueued at its first use, and none at all when that
   * use is a kernel that writes it in full (`writable`), as a gradient's first contribution.
   */
  alloc(length: number, dtype: DType): CudaBuffer {
    const buf = this.empty(length, dtype);
    buf.zeroPending = true;
    if (dtype === "i32") buf.hostInts = new Int32Array(length);
    return buf;
  }

  /** Device memory of `bytes` owned by the object `make` builds around its address. */
  allocate<T extends object>(bytes: number, make: (pointer: bigint) => T): T {
    return this.pool.allocate(bytes, make);
  }

  /** Returns temporaries to the pool now (their last uses are enqueued; later ones run after). */
  release(...bufs: (object | null)[]): void {
    for (const b of bufs) if (b) this.pool.release(b);
  }

  /**
   * Device memory of `bytes` for a kernel's temporary (partial sums, a table), with no buffer
   * around it: hand it back with `giveBack` once its last use is enqueued.
   */
  scratch(bytes: number): bigint {
    return this.pool.scratch(bytes);
  }

  /** Returns `scratch` blocks to the pool (later users run after their last uses). */
  giveBack(...pointers: bigint[]): void {
    for (const p of pointers) this.pool.giveBack(p);
  }

  /** A buffer holding a copy of `data`. */
  upload(data: Float32Array | Int32Array): CudaBuffer {
    const buf = this.empty(data.length, data instanceof Float32Array ? "f32" : "i32");
    this.driver.copyToDevice(buf.pointer, data);
    if (buf.dtype === "i32") buf.hostInts = (data as Int32Array).slice();
    return buf;
  }

  /** Overwrites a whole buffer with `data` (same length and type). */
  write(buf: DeviceBuffer, data: Float32Array | Int32Array): void {
    const b = this.own(buf);
    const dtype = data instanceof Float32Array ? "f32" : "i32";
    if (b.length !== data.length || b.dtype !== dtype) {
      throw new Error(
        `Cannot write ${data.constructor.name}(${data.length}) into a ${b.dtype} buffer of ${b.length} elements`,
      );
    }
    b.zeroPending = false; // the copy writes every element
    this.driver.copyToDevice(b.pointer, data);
    this.written(b);
    if (dtype === "i32") b.hostInts = (data as Int32Array).slice();
  }

  /** Enqueues a zero fill of `b` now (a gradient taken `writable` that a kernel will not write in full). */
  fillZeros(b: CudaBuffer): void {
    this.driver.fill32(b.pointer, 0, b.length);
    this.zeroFills++;
  }

  /** Sets every element to 0, in order with the kernels (the fill waits for the next use). */
  zero(buf: DeviceBuffer): void {
    const b = this.own(buf);
    b.zeroPending = true;
    this.written(b);
    if (b.dtype === "i32") b.hostInts = new Int32Array(b.length);
  }

  /** Marks buffers as written by a kernel (their derived copies are stale). */
  written(...bufs: (CudaBuffer | null)[]): void {
    for (const b of bufs) {
      if (!b) continue;
      b.version++;
      if (b.dtype === "i32") b.hostInts = null; // no kernel writes ids, but be safe
    }
  }

  /** Copies a buffer back to the host, as it is after everything enqueued before. */
  async read(buf: DeviceBuffer): Promise<Float32Array | Int32Array> {
    const b = this.buffer(buf);
    const bytes = await this.readBytes(b.pointer, b.length * 4);
    return b.dtype === "f32" ? new Float32Array(bytes) : new Int32Array(bytes);
  }

  /**
   * `bytes` of device memory from `pointer`, as they are after everything enqueued so far;
   * also throws a fault a kernel recorded (an id out of range).
   */
  async readBytes(pointer: bigint, bytes: number): Promise<ArrayBuffer> {
    const checkFault = this.#faultPossible;
    const out = new Uint8Array(new ArrayBuffer(bytes));
    if (bytes === 0 && !checkFault) return out.buffer;
    const d = this.driver;
    let source = pointer, snapshot: bigint | null = null;
    if (bytes > STAGING_MAX) {
      // copy it now, on the device, so kernels enqueued later cannot change what this returns
      snapshot = this.scratch(bytes);
      d.copyOnDevice(snapshot, pointer, bytes);
      source = snapshot;
    }
    const chunk = Math.min(bytes, STAGING_MAX);
    const staging = this.#takeStaging(chunk);
    const faultStaging = checkFault ? this.#takeStaging(16) : 0n;
    const event = d.createEvent();
    try {
      let offset = 0;
      do {
        const n = Math.min(chunk, bytes - offset);
        d.copyToPinned(staging, source + BigInt(offset), n);
        if (offset === 0 && checkFault) d.copyToPinned(faultStaging, this.#fault.pointer, 16);
        d.recordEvent(event);
        if (offset === 0) {
          await nextTurn(); // ends this job: what it made can now be collected
          this.pool.collectIfDue(); // while the GPU works
        }
        await d.waitFor(event);
        if (n > 0) out.set(new Uint8Array(pinned(staging, n)), offset);
        offset += n;
      } while (offset < bytes);
      if (checkFault) this.#throwFault(new Int32Array(pinned(faultStaging, 16).slice(0)));
    } finally {
      d.destroyEvent(event);
      this.#giveStaging(staging, chunk);
      if (checkFault) this.#giveStaging(faultStaging, 16);
      if (snapshot !== null) this.giveBack(snapshot);
    }
    return out.buffer;
  }

  /** Waits until every enqueued kernel has run (and throws a recorded fault). */
  async sync(): Promise<void> {
    if (this.#faultPossible) await this.readBytes(this.#fault.pointer, 0);
    else await this.driver.drain();
  }

  /** The fault word's address for kernels that index with ids the host has not checked. */
  faultPointer(): bigint {
    this.#faultPossible = true;
    return this.#fault.pointer;
  }

  // ---- checks and grids -------------------------------------------------------------

  /**
   * `buf` as this backend's buffer, its pending zero fill (`alloc`, `zero`) enqueued now, as
   * whatever uses it next reads it or adds to it; throws for another backend's.
   */
  buffer(buf: DeviceBuffer): CudaBuffer {
    const b = this.own(buf);
    if (b.zeroPending) {
      b.zeroPending = false;
      this.fillZeros(b);
    }
    return b;
  }

  /** `buf` as this backend's buffer as it is (a pending fill left pending); throws for another backend's. */
  own(buf: DeviceBuffer): CudaBuffer {
    if (!(buf instanceof CudaBuffer)) {
      throw new Error(
        `Expected a buffer of the cuda backend, found ${buf.constructor.name} (${buf.dtype}, ${buf.length} elements)`,
      );
    }
    return buf;
  }

  /** `buf` as an f32 buffer of at least `n` elements (a kernel never reads past the end). */
  f32(buf: DeviceBuffer, n: number, what: string): CudaBuffer {
    return this.#check(buf, "f32", n, what);
  }

  /** `buf` as an i32 buffer of at least `n` elements. */
  i32(buf: DeviceBuffer, n: number, what: string): CudaBuffer {
    return this.#check(buf, "i32", n, what);
  }

  /**
   * `buf` as the f32 output of a kernel that adds into it, and whether it holds zeros no fill
   * has written yet (`fresh`): then the caller must write all of its `n` elements instead of
   * adding (a gradient's first contribution), and no fill runs. Only a buffer of exactly `n`
   * elements can be fresh; any other gets its pending fill now.
   */
  writable(buf: DeviceBuffer, n: number, what: string): { buf: CudaBuffer; fresh: boolean } {
    const b = this.own(buf);
    if (!b.zeroPending || b.length !== n || b.dtype !== "f32") {
      return { buf: this.f32(buf, n, what), fresh: false };
    }
    b.zeroPending = false;
    return { buf: b, fresh: true };
  }

  /** Blocks for a grid-stride kernel over n items with `threads` per block. */
  blocks(n: number, threads = 256): number {
    return Math.max(1, Math.min(Math.ceil(n / threads), this.multiprocessors * 32));
  }

  /** Frees the staging memory (the pool and driver are destroyed by their owner). */
  destroy(): void {
    for (const list of this.#staging.values()) for (const p of list) this.driver.hostFree(p);
    this.#staging.clear();
  }

  #check(buf: DeviceBuffer, dtype: DType, n: number, what: string): CudaBuffer {
    const b = this.buffer(buf);
    if (b.dtype !== dtype) {
      throw new Error(`${what}: expected an ${dtype} buffer, found ${b.dtype}`);
    }
    if (b.length < n) {
      throw new Error(`${what}: expected at least ${n} elements, found a buffer of ${b.length}`);
    }
    return b;
  }

  #takeStaging(bytes: number): bigint {
    const size = stagingSize(bytes);
    return this.#staging.get(size)?.pop() ?? this.driver.hostAlloc(size);
  }

  #giveStaging(pointer: bigint, bytes: number): void {
    const size = stagingSize(bytes);
    const list = this.#staging.get(size) ?? [];
    list.push(pointer);
    this.#staging.set(size, list);
  }

  #throwFault(word: Int32Array): void {
    const [code, position, value, limit] = word;
    if (code === 0) return;
    this.driver.fill32(this.#fault.pointer, 0, 4);
    this.#faultPossible = false;
    if (code === FAULT_TOKEN) {
      throw new RangeError(
        `Token id ${value} at position ${position} is outside the table of ${limit} rows`,
      );
    }
    if (code === FAULT_TARGET) {
      throw new RangeError(
        `Target ${value} at position ${position} is outside the vocabulary of ${limit}`,
      );
    }
    throw new Error(`A kernel recorded fault ${code} at position ${position} (value ${value})`);
  }
}

/** Page-locked staging sizes: powers of two from 4 KiB, so reads of similar sizes share. */
function stagingSize(bytes: number): number {
  return Math.max(4096, 2 ** Math.ceil(Math.log2(bytes)));
}

/** The page-locked memory at `pointer` as an ArrayBuffer (no copy). */
function pinned(pointer: bigint, bytes: number): ArrayBuffer {
  const p = Deno.UnsafePointer.create(pointer);
  if (!p) throw new Error("Expected a page-locked staging buffer, found a null pointer");
  return Deno.UnsafePointerView.getArrayBuffer(p, bytes);
}
