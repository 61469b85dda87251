/**
 * The WebGPU device the backend's kernels run on: opening it, its buffers, and recording
 * dispatches. The kernel modules (`matmul.ts`, `attention.ts`, `layers.ts`, `naive.ts`)
 * take a `GpuDevice` and call `dispatch` with a kernel of the table in `kernels.ts`.
 *
 * - Buffers live on the GPU; `read` copies into a mappable staging buffer, the only wait.
 * - Kernels are recorded into one command encoder (one compute pass while only dispatches
 *   come in) and submitted at `read`, `write`, `flush`, or every 256 dispatches; kernel
 *   parameters go to a uniform ring buffer bound with dynamic offsets, written once per
 *   submit.
 * - Pipelines and bind groups are cached; freed buffers (their wrapper garbage-collected)
 *   return to a pool by size and are cleared on reuse.
 * - Buffers larger than `maxStorageBufferBindingSize` are bound in row slices aligned to
 *   `minStorageBufferOffsetAlignment` (`rowChunks`), one dispatch per slice.
 *
 * @module
 */

import type { DeviceBuffer, DType } from "../../backend.ts";
import { type KernelName, KERNELS, type KernelSpec, type Prelude, preludeKey } from "./kernels.ts";
import { PipelineCache } from "./pipelines.ts";
import { BufferPool, type PooledBuffer } from "./pool.ts";

/** A buffer on the GPU. */
export class WebGpuBuffer implements DeviceBuffer {
  /** Wraps `gpu`, which holds `length` elements of `dtype`. */
  constructor(
    /** The GPU buffer (at least `length` elements; it may be larger). */
    readonly gpu: GPUBuffer,
    readonly length: number,
    readonly dtype: DType,
    /** Unique per GPU buffer, the key of cached bind groups. */
    readonly id: number,
  ) {}
}

/** A range of a buffer, in elements. */
export interface Slice {
  buf: WebGpuBuffer;
  offset: number;
  length: number;
}

/** What a storage binding binds: a whole buffer, or a range of one. */
export type Binding = WebGpuBuffer | Slice;

/** The range of `length` elements of `buf` from `offset`. */
export function slice(buf: WebGpuBuffer, offset: number, length: number): Slice {
  return { buf, offset, length };
}

/** Largest workgroup count in one grid dimension. */
const MAX_GROUPS = 65535;

/** Workgroups for n invocations of 64, on a 2-D grid when one dimension is not enough. */
export function grid(n: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / 64));
  if (groups <= MAX_GROUPS) return [groups, 1];
  const y = Math.ceil(groups / MAX_GROUPS);
  return [Math.ceil(groups / y), y];
}

/** Bytes per uniform slot: the largest `minUniformBufferOffsetAlignment` allowed. */
const SLOT = 256;
/** Uniform slots per submit. */
const RING_SLOTS = 1024;
/** Dispatches recorded before a submit is forced, so the GPU starts early. */
const DISPATCHES_PER_SUBMIT = 256;

/**
 * Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" when the
 * variable is missing (CI, containers): point it at a private folder first, if allowed.
 */
export function quietMesa(): void {
  try {
    if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
    const dir = `/tmp/deno-webgpu-runtime-${Deno.uid() ?? "user"}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // without env or write permission Mesa only prints its warning
  }
}

/**
 * Opens the best adapter's device with the adapter's maximum limits, and shader-f16 and
 * timestamp-query where it has them. Throws when there is no WebGPU or no adapter.
 */
export async function openDevice(
  powerPreference: GPUPowerPreference,
): Promise<{ device: GPUDevice; info: GPUAdapterInfo }> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new Error("WebGPU is not available in this Deno (navigator.gpu is missing)");
  }
  quietMesa();
  const adapter = await navigator.gpu.requestAdapter({ powerPreference });
  if (!adapter) {
    throw new Error(
      "No WebGPU adapter found: install a GPU driver with Vulkan, Metal or DX12 support, or " +
        "Mesa's software rasteriser (Debian: mesa-vulkan-drivers), or use --backend cpu",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const value: unknown = adapter.limits[key as keyof GPUSupportedLimits];
    if (typeof value === "number") requiredLimits[key] = value;
  }
  const wanted: GPUFeatureName[] = ["shader-f16", "timestamp-query"];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return { device, info: adapter.info };
}

/** Binding limits below the device's own (tests lower them to run the sliced paths). */
export interface BindingLimits {
  /** Bind at most this many bytes per binding (default: the device's limit). */
  maxBindingBytes?: number;
  /** Align binding offsets to this power of two, at least (default: the device's). */
  minOffsetAlignment?: number;
}

/** A GPU device with its buffers, pipelines and the commands being recorded. */
export class GpuDevice {
  /** Largest storage binding, in bytes. */
  readonly maxBinding: number;
  /** Alignment of binding offsets, in bytes. */
  readonly align: number;
  /** A 4-byte buffer, bound where a kernel's binding goes unused. */
  readonly dummy: WebGpuBuffer;

  #nextId = 1;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #dispatches = 0;
  readonly #ring: GPUBuffer;
  readonly #ringData = new ArrayBuffer(SLOT * RING_SLOTS);
  readonly #ringU32 = new Uint32Array(this.#ringData);
  readonly #ringF32 = new Float32Array(this.#ringData);
  #ringUsed = 0;
  readonly #pipelines: PipelineCache;
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  readonly #pool = new BufferPool((held) => this.#evict(held));
  #toDestroy: GPUBuffer[] = [];
  #deviceError: GPUError | null = null;

  /** `sources` holds every WGSL file's text by file name (`readWgslSources`). */
  constructor(readonly device: GPUDevice, sources: Map<string, string>, limits: BindingLimits) {
    this.#pipelines = new PipelineCache(device, sources);
    this.maxBinding = Math.min(
      device.limits.maxStorageBufferBindingSize,
      limits.maxBindingBytes ?? Infinity,
    );
    this.align = Math.max(
      device.limits.minStorageBufferOffsetAlignment,
      limits.minOffsetAlignment ?? 0,
    );
    this.#ring = device.createBuffer({
      size: SLOT * RING_SLOTS,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.dummy = this.alloc(4, "f32");
    device.addEventListener("uncapturederror", (e) => {
      this.#deviceError ??= (e as GPUUncapturedErrorEvent).error;
    });
  }

  /** Allocations served from the pool so far (buffers whose wrapper was collected). */
  get reusedBuffers(): number {
    return this.#pool.reused;
  }

  // ---- buffers ---------------------------------------------------------------------

  /** A zero-filled buffer: a pooled one cleared in order, or a new one. */
  alloc(length: number, dtype: DType): WebGpuBuffer {
    const bytes = byteSize(length);
    const pooled = this.#pool.take(bytes);
    let gpu: GPUBuffer, id: number;
    if (pooled) {
      ({ gpu, id } = pooled);
      this.commandEncoder().clearBuffer(gpu);
    } else {
      gpu = this.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      id = this.#nextId++;
    }
    return this.#wrap(gpu, length, dtype, id, bytes);
  }

  /** A zero-filled f32 buffer of n elements, for a kernel's temporaries. */
  temp(n: number): WebGpuBuffer {
    return this.alloc(n, "f32");
  }

  /** A buffer holding a copy of `data`. */
  upload(data: Float32Array | Int32Array): WebGpuBuffer {
    const bytes = byteSize(data.length);
    const gpu = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: true,
    });
    const range = gpu.getMappedRange();
    if (data instanceof Float32Array) new Float32Array(range).set(data);
    else new Int32Array(range).set(data);
    gpu.unmap();
    return this.#wrap(gpu, data.length, dtypeOf(data), this.#nextId++, bytes);
  }

  /** Overwrites a whole buffer with `data` (same length and type). */
  write(buf: DeviceBuffer, data: Float32Array | Int32Array): void {
    const b = this.buffer(buf);
    if (b.length !== data.length || b.dtype !== dtypeOf(data)) {
      throw new Error(
        `Cannot write ${data.constructor.name}(${data.length}) into a ${b.dtype} buffer of ${b.length} elements`,
      );
    }
    this.flush(); // queue writes run before commands still being recorded: submit those first
    this.device.queue.writeBuffer(b.gpu, 0, data as Float32Array<ArrayBuffer>);
  }

  /** Copies a buffer back to the host, after everything recorded before. */
  async read(buf: DeviceBuffer): Promise<Float32Array | Int32Array> {
    const b = this.buffer(buf);
    const bytes = b.length * 4;
    const staging = this.device.createBuffer({
      size: Math.max(4, bytes),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    if (bytes > 0) this.commandEncoder().copyBufferToBuffer(b.gpu, 0, staging, 0, bytes);
    this.flush();
    await staging.mapAsync(GPUMapMode.READ);
    const range = staging.getMappedRange(0, bytes);
    const out = b.dtype === "f32"
      ? new Float32Array(range.slice(0))
      : new Int32Array(range.slice(0));
    staging.unmap();
    staging.destroy();
    this.#checkError();
    return out;
  }

  /** Sets every element to 0, in order with the recorded kernels. */
  zero(buf: DeviceBuffer): void {
    const b = this.buffer(buf);
    this.commandEncoder().clearBuffer(b.gpu, 0, byteSize(b.length));
  }

  /** Records a copy of the first `bytes` bytes of `src` into `dst`. */
  copy(src: WebGpuBuffer, dst: WebGpuBuffer, bytes: number): void {
    this.commandEncoder().copyBufferToBuffer(src.gpu, 0, dst.gpu, 0, bytes);
  }

  /**
   * Returns temporaries to the pool now rather than when their wrappers are collected (the
   * garbage collector does not see GPU memory). Commands already recorded still read them
   * first: a reused buffer is cleared in order, after them.
   */
  release(...bufs: WebGpuBuffer[]): void {
    for (const b of bufs) {
      this.#pool.release(b, { gpu: b.gpu, id: b.id, bytes: byteSize(b.length) });
    }
  }

  /** `buf` as this backend's buffer; throws for another backend's. */
  buffer(buf: DeviceBuffer): WebGpuBuffer {
    if (!(buf instanceof WebGpuBuffer)) {
      throw new Error(
        `Expected a buffer of the webgpu backend, found ${buf.constructor.name} (${buf.dtype}, ${buf.length} elements)`,
      );
    }
    return buf;
  }

  /** `buf` as an f32 buffer of this backend; throws otherwise. */
  f32(buf: DeviceBuffer): WebGpuBuffer {
    const b = this.buffer(buf);
    if (b.dtype !== "f32") throw new Error(`Expected an f32 buffer, found ${b.dtype}`);
    return b;
  }

  /** `buf` as an i32 buffer of this backend; throws otherwise. */
  i32(buf: DeviceBuffer): WebGpuBuffer {
    const b = this.buffer(buf);
    if (b.dtype !== "i32") throw new Error(`Expected an i32 buffer, found ${b.dtype}`);
    return b;
  }

  #wrap(gpu: GPUBuffer, length: number, dtype: DType, id: number, bytes: number): WebGpuBuffer {
    const b = new WebGpuBuffer(gpu, length, dtype, id);
    this.#pool.track(b, { gpu, id, bytes });
    return b;
  }

  /** A buffer the pool has no room for: destroyed at the next submit, its bind groups dropped. */
  #evict(held: PooledBuffer): void {
    this.#toDestroy.push(held.gpu);
    for (const key of this.#bindGroups.keys()) {
      if (key.includes(`#${held.id}:`)) this.#bindGroups.delete(key);
    }
  }

  #checkError(): void {
    const e = this.#deviceError;
    if (e) {
      this.#deviceError = null;
      throw new Error(`WebGPU error: ${e.message}`);
    }
  }

  // ---- submitting ------------------------------------------------------------------

  /** Submits everything recorded so far (the GPU runs it while the host goes on). */
  flush(): void {
    this.#endPass();
    if (!this.#encoder) return;
    if (this.#ringUsed > 0) {
      this.device.queue.writeBuffer(this.#ring, 0, this.#ringData, 0, this.#ringUsed * SLOT);
    }
    this.device.queue.submit([this.#encoder.finish()]);
    this.#encoder = null;
    this.#ringUsed = 0;
    this.#dispatches = 0;
    for (const gpu of this.#toDestroy) gpu.destroy();
    this.#toDestroy = [];
  }

  /** Submits and waits until the GPU has finished everything submitted. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.#checkError();
  }

  /** Destroys every buffer still pooled, and the device. */
  destroy(): void {
    this.flush();
    this.#pool.destroyAll();
    this.#bindGroups.clear();
    this.device.destroy();
  }

  // ---- recording -------------------------------------------------------------------

  /** The encoder for copies and clears (ending the compute pass, if one is open). */
  commandEncoder(): GPUCommandEncoder {
    this.#endPass();
    this.#encoder ??= this.device.createCommandEncoder();
    return this.#encoder;
  }

  #computePass(): GPUComputePassEncoder {
    if (!this.#pass) {
      this.#encoder ??= this.device.createCommandEncoder();
      this.#pass = this.#encoder.beginComputePass();
    }
    return this.#pass;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  /**
   * Records one dispatch of `name` with its uniform fields and storage bindings, compiled
   * with `prelude` where its file needs one.
   */
  dispatch(
    name: KernelName,
    params: number[],
    bindings: Binding[],
    groups: [number, number?, number?],
    prelude?: Prelude,
  ): void {
    const spec: KernelSpec = KERNELS[name];
    if (params.length !== spec.params.length || bindings.length !== spec.bindings.length) {
      throw new Error(
        `Kernel ${name} takes ${spec.params.length} params and ${spec.bindings.length} bindings`,
      );
    }
    if (this.#ringUsed === RING_SLOTS) this.flush();
    const pipeline = this.#pipelines.get(name, prelude);
    const slot = this.#ringUsed++;
    const base = slot * (SLOT / 4);
    for (let i = 0; i < params.length; i++) {
      if (spec.params[i] === "f") this.#ringF32[base + i] = params[i];
      else this.#ringU32[base + i] = params[i];
    }
    const group = this.#bindGroup(pipeline, `${name}${preludeKey(prelude)}`, bindings);
    const pass = this.#computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group, [slot * SLOT]);
    pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1);
    if (++this.#dispatches >= DISPATCHES_PER_SUBMIT) this.flush();
  }

  /** The bind group of `pipeline` (cached as `pipelineKey` and the ranges) over `bindings`. */
  #bindGroup(pipeline: GPUComputePipeline, pipelineKey: string, bindings: Binding[]): GPUBindGroup {
    let key = pipelineKey;
    const ranges: { gpu: GPUBuffer; offset: number; size: number }[] = [];
    for (const b of bindings) {
      const s = b instanceof WebGpuBuffer ? { buf: b, offset: 0, length: b.length } : b;
      const offset = s.offset * 4, size = Math.max(4, s.length * 4);
      if (offset % this.align !== 0) {
        throw new Error(`Binding offset ${offset} is not a multiple of ${this.align}`);
      }
      if (size > this.maxBinding) {
        throw new Error(`Binding of ${size} bytes is over the adapter's ${this.maxBinding}`);
      }
      ranges.push({ gpu: s.buf.gpu, offset, size });
      key += `#${s.buf.id}:${offset}:${size}`;
    }
    let group = this.#bindGroups.get(key);
    if (!group) {
      if (this.#bindGroups.size > 8192) this.#bindGroups.clear();
      group = this.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.#ring, offset: 0, size: SLOT } },
          ...ranges.map((r, i) => ({
            binding: i + 1,
            resource: { buffer: r.gpu, offset: r.offset, size: r.size },
          })),
        ],
      });
      this.#bindGroups.set(key, group);
    }
    return group;
  }

  /**
   * Splits `rows` rows into chunks whose every binding fits the adapter: each row of each
   * bound buffer holds the given number of elements, and every chunk starts at an offset
   * the adapter can bind, on a multiple of `rowMultiple` rows.
   */
  rowChunks(rows: number, rowElems: number[], rowMultiple = 1): [number, number][] {
    const widest = Math.max(...rowElems, 1) * 4;
    if (rows * widest <= this.maxBinding) return [[0, rows]];
    let step = Math.floor(this.maxBinding / widest);
    let unit = rowMultiple; // rows per alignment unit: the least common multiple over the buffers
    for (const e of rowElems) {
      const u = this.align / gcd(e * 4, this.align);
      unit = unit * u / gcd(unit, u);
    }
    step -= step % unit;
    if (step < 1) {
      throw new Error(
        `Cannot bind rows of ${widest} bytes within the adapter's ${this.maxBinding}-byte bindings`,
      );
    }
    const chunks: [number, number][] = [];
    for (let r = 0; r < rows; r += step) chunks.push([r, Math.min(rows, r + step)]);
    return chunks;
  }

  /**
   * Dispatches a 1-D kernel over n elements, every buffer sliced alike in chunks that fit
   * a binding; `params` gets the chunk's length.
   */
  each(
    name: KernelName,
    n: number,
    params: (len: number) => number[],
    bufs: WebGpuBuffer[],
  ): void {
    for (const [i0, i1] of this.rowChunks(n, [1])) {
      const len = i1 - i0;
      this.dispatch(name, params(len), bufs.map((b) => slice(b, i0, len)), grid(len));
    }
  }
}

function byteSize(length: number): number {
  return Math.max(16, Math.ceil((length * 4) / 16) * 16);
}

function dtypeOf(data: Float32Array | Int32Array): DType {
  return data instanceof Float32Array ? "f32" : "i32";
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
