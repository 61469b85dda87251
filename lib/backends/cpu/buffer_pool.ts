/**
 * Host arrays given back for reuse, by element type and length. A training step makes the
 * same tensors every time; handing a dead gradient's array to the next tensor of its size
 * keeps the resident set at one step's worth and spares the allocator (and the kernel's page
 * faults) the rest. Only arrays the pool's owner allocated come in, each at most once.
 *
 * @module
 */

import type { DType } from "../../backend.ts";

/** A host array of either element type. */
export type HostArray = Float32Array | Int32Array;

/** Free host arrays by type and length, up to a total size. */
export class BufferPool {
  readonly #free = new Map<string, HostArray[]>();
  readonly #owned = new WeakSet<HostArray>();
  readonly #pooled = new WeakSet<HostArray>();
  #bytes = 0;

  /** @param limitBytes the most the pool holds; arrays beyond it are left to the GC */
  constructor(readonly limitBytes: number) {}

  /** Bytes held free now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A zero-filled array: a pooled one of that type and length, or a new one. */
  take(length: number, dtype: DType): HostArray {
    const data = this.#free.get(key(dtype, length))?.pop();
    if (data) {
      this.#pooled.delete(data);
      this.#bytes -= data.byteLength;
      data.fill(0);
      return data;
    }
    const made = dtype === "f32" ? new Float32Array(length) : new Int32Array(length);
    this.#owned.add(made);
    return made;
  }

  /**
   * Takes `data` back for a later {@linkcode take}. Arrays the pool did not make (a shared
   * mapping's, an upload's) are ignored, and so is any past the size limit.
   *
   * @throws {Error} when `data` is in the pool already: two tensors would share it
   */
  give(data: HostArray): void {
    if (!this.#owned.has(data)) return;
    if (this.#pooled.has(data)) {
      throw new Error(`A ${data.constructor.name}(${data.length}) was given back twice`);
    }
    if (this.#bytes + data.byteLength > this.limitBytes) return;
    const k = key(data instanceof Float32Array ? "f32" : "i32", data.length);
    const stack = this.#free.get(k);
    if (stack) stack.push(data);
    else this.#free.set(k, [data]);
    this.#pooled.add(data);
    this.#bytes += data.byteLength;
  }
}

function key(dtype: DType, length: number): string {
  return `${dtype}:${length}`;
}
