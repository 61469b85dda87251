/**
 * The WebGPU backend: every kernel of the `Backend` interface as a WGSL compute shader
 * (`kernels/wgsl/`, one file per layer), run through Deno's `navigator.gpu`, so the same
 * code trains on NVIDIA, AMD, Intel and Apple GPUs, and on Mesa's software adapter
 * (llvmpipe) where there is no GPU.
 *
 * How it keeps the work on the device:
 * - Buffers live on the GPU; `read` copies into a mappable staging buffer, the only wait.
 * - Kernels are recorded into one command encoder (one compute pass while only dispatches
 *   come in) and submitted at `read`, `write`, `flush`, or every 256 dispatches; kernel
 *   parameters go to a uniform ring buffer bound with dynamic offsets, written once per
 *   submit.
 * - Pipelines and bind groups are cached; freed buffers (their wrapper garbage-collected)
 *   return to a pool by size and are cleared on reuse, so a training step's allocations
 *   reuse last step's buffers.
 * - Buffers larger than `maxStorageBufferBindingSize` (wte is 154.5 MB, llvmpipe binds at
 *   most 128 MiB) are bound in row slices aligned to `minStorageBufferOffsetAlignment`,
 *   one dispatch per slice.
 * - Every kernel is deterministic: reductions are loops in a fixed order, no float atomics.
 * - Kernels are chosen per adapter (`WebGpuKernels`): matmuls in workgroup-memory tiles on
 *   GPUs, register-blocked on software adapters; `GPT2_WEBGPU_MATMUL` overrides. The
 *   speedup ladder switches to the naive kernels and back; `setMatmulPrecision("f16")`
 *   rounds matmul operands to half precision where the adapter has `shader-f16`.
 * - Matmuls take vec4 loads when the feature counts are multiples of 4 (all of GPT-2's),
 *   scalar ones otherwise.
 *
 * On llvmpipe, mind two facts the kernels are shaped around: an invocation stops after
 * 65535 loop iterations in total (gallivm's loop limiter, silently), so long rows are
 * split over a workgroup (cross-entropy) or walked four channels at a time (attention);
 * and workgroup memory is slower than plain loads, so matmuls are register-blocked.
 *
 * @module
 */

import type {
  AdamWParams,
  AttentionDims,
  Backend,
  DeviceBuffer,
  DType,
  LayerNormGrads,
  LayerNormSaved,
  MatmulDims,
  MatmulGrads,
  RowDims,
} from "../../backend.ts";

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

/**
 * What attention saves for backward: lse and D (2 B NH T floats, the buffer itself) and a
 * copy of its output. It holds the wrappers it shares GPU buffers with, so that their
 * finalizers cannot return those buffers to the pool while it lives.
 */
class AttentionSaved extends WebGpuBuffer {
  constructor(readonly stats: WebGpuBuffer, readonly out: WebGpuBuffer) {
    super(stats.gpu, stats.length, stats.dtype, stats.id);
  }
}

/** What materialized attention saves for backward: the (B, NH, T, T) softmax itself. */
class AttentionMatrix extends WebGpuBuffer {
  constructor(readonly att: WebGpuBuffer) {
    super(att.gpu, att.length, att.dtype, att.id);
  }
}

/** A range of a buffer, in elements. */
interface Slice {
  buf: WebGpuBuffer;
  offset: number;
  length: number;
}

type Binding = WebGpuBuffer | Slice;

/** One compute entry point: its file, uniform layout (u32/i32/f32) and storage bindings. */
interface KernelSpec {
  file: string;
  entry: string;
  /** One letter per uniform field: "u" (u32), "f" (f32). */
  params: string;
  /** One letter per storage binding 1, 2, ...: "r" (read), "w" (read_write). */
  bindings: string;
}

const KERNELS = {
  matmulForward: { file: "matmul", entry: "matmul_forward", params: "uuuuuu", bindings: "rrrw" },
  matmulBackwardInput: {
    file: "matmul",
    entry: "matmul_backward_input",
    params: "uuuuuu",
    bindings: "rrw",
  },
  matmulBackwardWeight: {
    file: "matmul",
    entry: "matmul_backward_weight",
    params: "uuuuuu",
    bindings: "rrw",
  },
  matmulBackwardBias: {
    file: "matmul",
    entry: "matmul_backward_bias",
    params: "uuuuuu",
    bindings: "rw",
  },
  matmulForwardVec4: {
    file: "matmul",
    entry: "matmul_forward_vec4",
    params: "uuuuuu",
    bindings: "rrrw",
  },
  matmulBackwardInputVec4: {
    file: "matmul",
    entry: "matmul_backward_input_vec4",
    params: "uuuuuu",
    bindings: "rrw",
  },
  matmulBackwardWeightVec4: {
    file: "matmul",
    entry: "matmul_backward_weight_vec4",
    params: "uuuuuu",
    bindings: "rrw",
  },
  addForward: { file: "residual", entry: "add_forward", params: "uuuuf", bindings: "rrw" },
  accumulate: { file: "residual", entry: "accumulate", params: "uuuuf", bindings: "rw" },
  accumulateBroadcast: {
    file: "residual",
    entry: "accumulate_broadcast",
    params: "uuuuf",
    bindings: "rw",
  },
  scale: { file: "residual", entry: "scale", params: "uuuuf", bindings: "rw" },
  scaleInplace: { file: "residual", entry: "scale_inplace", params: "uuuuf", bindings: "w" },
  geluForward: { file: "gelu", entry: "gelu_forward", params: "u", bindings: "rw" },
  geluBackward: { file: "gelu", entry: "gelu_backward", params: "u", bindings: "rrw" },
  layernormForward: {
    file: "layernorm",
    entry: "layernorm_forward",
    params: "uu",
    bindings: "rrrwww",
  },
  layernormBackwardInput: {
    file: "layernorm",
    entry: "layernorm_backward_input",
    params: "uu",
    bindings: "rrrrrw",
  },
  layernormBackwardParams: {
    file: "layernorm",
    entry: "layernorm_backward_params",
    params: "uu",
    bindings: "rrrrww",
  },
  embeddingForward: {
    file: "embedding",
    entry: "embedding_forward",
    params: "uuuu",
    bindings: "rrw",
  },
  embeddingLinks: { file: "embedding", entry: "embedding_links", params: "uuuu", bindings: "rw" },
  embeddingBackward: {
    file: "embedding",
    entry: "embedding_backward",
    params: "uuuu",
    bindings: "rrrw",
  },
  attentionForward: {
    file: "attention",
    entry: "attention_forward",
    params: "uuuuuuf",
    bindings: "rww",
  },
  attentionBackwardQuery: {
    file: "attention",
    entry: "attention_backward_query",
    params: "uuuuuuf",
    bindings: "rrrww",
  },
  attentionBackwardKeyValue: {
    file: "attention",
    entry: "attention_backward_key_value",
    params: "uuuuuuf",
    bindings: "rrrw",
  },
  crossEntropyForwardRows: {
    file: "crossentropy",
    entry: "crossentropy_forward_rows",
    params: "uuuu",
    bindings: "rrw",
  },
  crossEntropyMean: {
    file: "crossentropy",
    entry: "crossentropy_mean",
    params: "uuuu",
    bindings: "rw",
  },
  crossEntropyBackward: {
    file: "crossentropy",
    entry: "crossentropy_backward",
    params: "uuuu",
    bindings: "rrrw",
  },
  sumSquares: { file: "norm", entry: "sum_squares", params: "uu", bindings: "rw" },
  adamw: { file: "adamw", entry: "adamw", params: "uffffff", bindings: "rwww" },
  gemmNaive: { file: "gemm", entry: "gemm_naive", params: "uuuuuuuuuuuu", bindings: "rrrw" },
  gemmTiled: { file: "gemm", entry: "gemm_tiled", params: "uuuuuuuuuuuu", bindings: "rrrw" },
  ewUnary: { file: "elementwise", entry: "ew_unary", params: "uuuff", bindings: "rw" },
  ewBinary: { file: "elementwise", entry: "ew_binary", params: "uuuff", bindings: "rrw" },
  ewAddBias: { file: "elementwise", entry: "ew_add_bias", params: "uuuff", bindings: "rw" },
  attnDots: { file: "attention_naive", entry: "attn_dots", params: "uuuufuuuu", bindings: "rrw" },
  attnSoftmax: {
    file: "attention_naive",
    entry: "attn_softmax",
    params: "uuuufuuuu",
    bindings: "w",
  },
  attnValues: {
    file: "attention_naive",
    entry: "attn_values",
    params: "uuuufuuuu",
    bindings: "rrw",
  },
  attnSoftmaxBackward: {
    file: "attention_naive",
    entry: "attn_softmax_backward",
    params: "uuuufuuuu",
    bindings: "rw",
  },
  attnDqkv: {
    file: "attention_naive",
    entry: "attn_dqkv",
    params: "uuuufuuuu",
    bindings: "rrrrw",
  },
} satisfies Record<string, KernelSpec>;

/** Names of the compute entry points. */
type KernelName = keyof typeof KERNELS;

/** The WGSL files the kernels come from. */
export const WGSL_FILES = [
  "matmul",
  "residual",
  "gelu",
  "layernorm",
  "embedding",
  "attention",
  "crossentropy",
  "norm",
  "adamw",
  "gemm",
  "elementwise",
  "attention_naive",
];

/** Elementwise ops of elementwise.wgsl (the unfused rungs' building blocks). */
const UNARY = { affine: 0, tanh: 1, cube: 2, square: 3, sqrt: 4 } as const;
const BINARY = { mul: 0, add: 1, div: 2 } as const;

/**
 * Which kernels the backend runs. The defaults are the fastest for the adapter; the
 * speedup ladder (`lib/bench/webgpu_ladder.ts`) switches them one rung at a time.
 */
export interface WebGpuKernels {
  /**
   * "naive": one output per invocation; "tiled": 64 x 64 tiles staged in workgroup memory
   * (real GPUs); "register": 32 x 32 tiles of 4 x 4 register blocks, no workgroup memory
   * (llvmpipe, where workgroup memory is slower than plain loads).
   */
  matmul: "naive" | "tiled" | "register";
  /** "materialized": the (B, NH, T, T) matrix stored; "flash": online softmax, never stored. */
  attention: "materialized" | "flash";
  /** GELU and matmul biases fused (true), or chains of elementwise kernels (eager style). */
  fusedElementwise: boolean;
  /** "fused": one kernel per parameter; "elementwise": PyTorch's for-loop AdamW, op by op. */
  adamw: "elementwise" | "fused";
}

/** The fastest kernels for an adapter: workgroup-memory tiles unless it is a software one. */
export function defaultKernels(isFallbackAdapter: boolean): WebGpuKernels {
  return {
    matmul: isFallbackAdapter ? "register" : "tiled",
    attention: "flash",
    fusedElementwise: true,
    adamw: "fused",
  };
}

/** Bytes per uniform slot: the largest `minUniformBufferOffsetAlignment` allowed. */
const SLOT = 256;
/** Uniform slots per submit. */
const RING_SLOTS = 1024;
/** Dispatches recorded before a submit is forced, so the GPU starts early. */
const DISPATCHES_PER_SUBMIT = 256;
/** Freed buffers kept for reuse, in bytes, before the rest are destroyed. */
const POOL_BYTES = 4 * 2 ** 30;
/** Workgroups of sum_squares per chunk (each of 64 invocations). */
const NORM_GROUPS = 256;
/** Rows of the weight per backward_input dispatch (a multiple of 4 and of 64). */
const K_PIECE = 4096;
/** Largest workgroup count in one grid dimension. */
const MAX_GROUPS = 65535;

/** Options of `createWebGpuBackend`. */
export interface WebGpuOptions {
  /** Print nothing about the adapter (it is still in `adapterSummary`). */
  quiet?: boolean;
  /** `navigator.gpu.requestAdapter`'s power preference; default "high-performance". */
  powerPreference?: GPUPowerPreference;
  /**
   * Bind at most this many bytes per binding (default: the adapter's limit). Tests set it
   * low to run the sliced paths that wte needs on small tensors.
   */
  maxBindingBytes?: number;
  /** Align binding offsets to this power of two, at least (default: the adapter's). */
  minOffsetAlignment?: number;
  /** Kernel choices over the adapter's defaults (`defaultKernels`). */
  kernels?: Partial<WebGpuKernels>;
}

/**
 * Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" when the
 * variable is missing (CI, containers): point it at a private folder first, if allowed.
 */
function quietMesa(): void {
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
 * Whether this Deno finds a WebGPU adapter: any (a GPU, or a software one), or with
 * `excludeFallback` a real GPU only.
 */
export async function hasWebGpuAdapter(options: { excludeFallback?: boolean } = {}): Promise<
  boolean
> {
  if (!("gpu" in navigator) || !navigator.gpu) return false;
  quietMesa();
  try {
    const adapter = await navigator.gpu.requestAdapter();
    return adapter !== null && !(options.excludeFallback && adapter.info.isFallbackAdapter);
  } catch {
    return false;
  }
}

/**
 * Opens the best adapter with its maximum limits, prints what it is (loudly when it is a
 * fallback, software adapter) and returns the backend. Throws when there is no adapter.
 */
export async function createWebGpuBackend(options: WebGpuOptions = {}): Promise<WebGpuBackend> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new Error("WebGPU is not available in this Deno (navigator.gpu is missing)");
  }
  quietMesa();
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) {
    throw new Error(
      "No WebGPU adapter found: install a GPU driver with Vulkan, Metal or DX12 support, or " +
        "Mesa's software rasteriser (Debian: mesa-vulkan-drivers), or use --backend cpu",
    );
  }
  const requiredLimits: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, number>;
  for (const key in adapter.limits) {
    const value = limits[key];
    if (typeof value === "number") requiredLimits[key] = value;
  }
  const wanted: GPUFeatureName[] = ["shader-f16", "timestamp-query"];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const sources = new Map<string, string>();
  for (const file of WGSL_FILES) {
    const url = new URL(`../../../kernels/wgsl/${file}.wgsl`, import.meta.url);
    sources.set(file, await Deno.readTextFile(url));
  }
  const backend = new WebGpuBackend(device, adapter.info, sources, {
    ...options,
    kernels: { matmul: matmulFromEnv(), ...options.kernels },
  });
  if (!options.quiet) {
    console.log(
      `webgpu: ${backend.adapterSummary}; matmul kernel: ${backend.kernels.matmul}${
        backend.hasF16 ? "; shader-f16 available (--precision f16)" : ""
      }`,
    );
    if (adapter.info.isFallbackAdapter) {
      console.log(
        "webgpu: WARNING: this is a FALLBACK adapter (software rendering on the CPU), " +
          "not a GPU: correct but slow",
      );
    }
  }
  return backend;
}

/**
 * `GPT2_WEBGPU_MATMUL=naive|tiled|register` overrides the adapter's pick of matmul kernel
 * (to compare tiles on a new GPU); unset, or without env permission, the pick stands.
 */
function matmulFromEnv(): WebGpuKernels["matmul"] | undefined {
  let value: string | undefined;
  try {
    value = Deno.env.get("GPT2_WEBGPU_MATMUL");
  } catch {
    return undefined;
  }
  if (value === undefined || value === "") return undefined;
  if (value === "naive" || value === "tiled" || value === "register") return value;
  throw new Error(`GPT2_WEBGPU_MATMUL must be naive, tiled or register, not "${value}"`);
}

/** The WebGPU backend; make it with `createWebGpuBackend`. */
export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  readonly isReference = false;
  /** The adapter in one line: description, vendor, architecture, fallback or not. */
  readonly adapterSummary: string;
  /** Whether the adapter is a fallback (software) one: llvmpipe, lavapipe, SwiftShader. */
  readonly isSoftwareAdapter: boolean;
  /** Whether the device has `shader-f16`. */
  readonly hasF16: boolean;
  /** Largest storage binding, in bytes. */
  readonly maxBinding: number;
  /** The kernels in use; change them between steps (the ladder does). */
  kernels: WebGpuKernels;
  /** Whether matmul operands are rounded to f16 (`setMatmulPrecision`). */
  get matmulPrecision(): "f32" | "f16" {
    return this.precision;
  }
  private precision: "f32" | "f16" = "f32";
  private readonly align: number;

  private nextId = 1;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private readonly ring: GPUBuffer;
  private readonly ringData = new ArrayBuffer(SLOT * RING_SLOTS);
  private readonly ringU32 = new Uint32Array(this.ringData);
  private readonly ringF32 = new Float32Array(this.ringData);
  private ringUsed = 0;
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly pool = new Map<number, { gpu: GPUBuffer; id: number }[]>();
  private poolBytes = 0;
  /** Allocations served from the pool so far (buffers whose wrapper was collected). */
  reusedBuffers = 0;
  private toDestroy: GPUBuffer[] = [];
  private deviceError: GPUError | null = null;
  private readonly dummy: WebGpuBuffer;
  private readonly registry = new FinalizationRegistry<
    { gpu: GPUBuffer; id: number; bytes: number }
  >((held) => this.recycle(held));

  /** Use `createWebGpuBackend`, which opens the adapter and reads the kernels. */
  constructor(
    readonly device: GPUDevice,
    info: GPUAdapterInfo,
    private readonly sources: Map<string, string>,
    options: WebGpuOptions = {},
  ) {
    this.isSoftwareAdapter = info.isFallbackAdapter;
    this.adapterSummary = [
      info.description || info.device || "unnamed adapter",
      `vendor ${info.vendor || "?"}`,
      info.architecture ? `architecture ${info.architecture}` : "",
      info.isFallbackAdapter ? "FALLBACK (software) adapter" : "",
    ].filter((s) => s).join(", ");
    this.hasF16 = device.features.has("shader-f16");
    const chosen = Object.entries(options.kernels ?? {}).filter(([, v]) => v !== undefined);
    this.kernels = { ...defaultKernels(info.isFallbackAdapter), ...Object.fromEntries(chosen) };
    this.maxBinding = Math.min(
      device.limits.maxStorageBufferBindingSize,
      options.maxBindingBytes ?? Infinity,
    );
    this.align = Math.max(
      device.limits.minStorageBufferOffsetAlignment,
      options.minOffsetAlignment ?? 0,
    );
    this.ring = device.createBuffer({
      size: SLOT * RING_SLOTS,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.dummy = this.alloc(4, "f32") as WebGpuBuffer;
    device.addEventListener("uncapturederror", (e) => {
      this.deviceError ??= (e as GPUUncapturedErrorEvent).error;
    });
  }

  /** The adapter and the matmul kernel, in one line. */
  describe(): string {
    return `${this.adapterSummary}; matmul kernel: ${this.kernels.matmul}${
      this.hasF16 ? "; shader-f16" : ""
    }`;
  }

  /**
   * "f16": matmuls round their operands to half precision (autocast's fp16; sums stay
   * f32) with the tiled kernel; train with loss scaling. Needs `shader-f16`.
   */
  setMatmulPrecision(precision: "f32" | "f16"): void {
    if (precision === "f16" && !this.hasF16) {
      throw new Error(
        `f16 matmuls need the shader-f16 feature, which this adapter (${this.adapterSummary}) lacks`,
      );
    }
    this.precision = precision;
  }

  // ---- buffers ---------------------------------------------------------------------

  alloc(length: number, dtype: DType): DeviceBuffer {
    const bytes = byteSize(length);
    const pooled = this.pool.get(bytes)?.pop();
    let gpu: GPUBuffer, id: number;
    if (pooled) {
      this.poolBytes -= bytes;
      this.reusedBuffers++;
      ({ gpu, id } = pooled);
      this.commandEncoder().clearBuffer(gpu);
    } else {
      gpu = this.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      id = this.nextId++;
    }
    return this.wrap(gpu, length, dtype, id, bytes);
  }

  zero(buf: DeviceBuffer): void {
    const b = this.buffer(buf);
    this.commandEncoder().clearBuffer(b.gpu, 0, byteSize(b.length));
  }

  upload(data: Float32Array | Int32Array): DeviceBuffer {
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
    return this.wrap(gpu, data.length, dtypeOf(data), this.nextId++, bytes);
  }

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
    this.checkError();
    return out;
  }

  /** Submits everything recorded so far (the GPU runs it while the host goes on). */
  flush(): void {
    this.endPass();
    if (!this.encoder) return;
    if (this.ringUsed > 0) {
      this.device.queue.writeBuffer(this.ring, 0, this.ringData, 0, this.ringUsed * SLOT);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.ringUsed = 0;
    this.dispatches = 0;
    for (const gpu of this.toDestroy) gpu.destroy();
    this.toDestroy = [];
  }

  /** Submits and waits until the GPU has finished everything submitted. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.checkError();
  }

  /** Destroys every buffer this backend still pools, and the device. */
  destroy(): void {
    this.flush();
    for (const list of this.pool.values()) for (const { gpu } of list) gpu.destroy();
    this.pool.clear();
    this.bindGroups.clear();
    this.device.destroy();
  }

  private wrap(
    gpu: GPUBuffer,
    length: number,
    dtype: DType,
    id: number,
    bytes: number,
  ): WebGpuBuffer {
    const b = new WebGpuBuffer(gpu, length, dtype, id);
    this.registry.register(b, { gpu, id, bytes }, b);
    return b;
  }

  /**
   * Returns temporaries to the pool now rather than when their wrappers are collected (the
   * garbage collector does not see GPU memory). Commands already recorded still read them
   * first: a reused buffer is cleared in order, after them.
   */
  private release(...bufs: WebGpuBuffer[]): void {
    for (const b of bufs) {
      if (this.registry.unregister(b)) {
        this.recycle({ gpu: b.gpu, id: b.id, bytes: byteSize(b.length) });
      }
    }
  }

  private recycle(held: { gpu: GPUBuffer; id: number; bytes: number }): void {
    if (this.poolBytes + held.bytes > POOL_BYTES) {
      this.toDestroy.push(held.gpu);
      for (const key of this.bindGroups.keys()) {
        if (key.includes(`#${held.id}:`)) this.bindGroups.delete(key);
      }
      return;
    }
    const list = this.pool.get(held.bytes) ?? [];
    list.push({ gpu: held.gpu, id: held.id });
    this.pool.set(held.bytes, list);
    this.poolBytes += held.bytes;
  }

  private buffer(buf: DeviceBuffer): WebGpuBuffer {
    if (!(buf instanceof WebGpuBuffer)) {
      throw new Error(
        `Expected a buffer of the webgpu backend, found ${buf.constructor.name} (${buf.dtype}, ${buf.length} elements)`,
      );
    }
    return buf;
  }

  private f32(buf: DeviceBuffer): WebGpuBuffer {
    const b = this.buffer(buf);
    if (b.dtype !== "f32") throw new Error(`Expected an f32 buffer, found ${b.dtype}`);
    return b;
  }

  private i32(buf: DeviceBuffer): WebGpuBuffer {
    const b = this.buffer(buf);
    if (b.dtype !== "i32") throw new Error(`Expected an i32 buffer, found ${b.dtype}`);
    return b;
  }

  private checkError(): void {
    const e = this.deviceError;
    if (e) {
      this.deviceError = null;
      throw new Error(`WebGPU error: ${e.message}`);
    }
  }

  // ---- recording -------------------------------------------------------------------

  private commandEncoder(): GPUCommandEncoder {
    this.endPass();
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private pipeline(name: KernelName, variant = ""): GPUComputePipeline {
    const key = `${name}${variant}`;
    let p = this.pipelines.get(key);
    if (p) return p;
    const spec: KernelSpec = KERNELS[name];
    const moduleKey = `${spec.file}${variant}`;
    let module = this.modules.get(moduleKey);
    if (!module) {
      let code = this.sources.get(spec.file)!;
      if (spec.file === "attention") {
        code = code.replace(/const HS: u32 = \d+u;/, `const HS: u32 = ${variant}u;`);
      }
      if (variant === "f16") {
        code = `enable f16;\n${code.replace("alias TileT = f32;", "alias TileT = f16;")}`;
      }
      module = this.device.createShaderModule({ label: moduleKey, code });
      this.modules.set(moduleKey, module);
    }
    const entries: GPUBindGroupLayoutEntry[] = [{
      binding: 0,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: "uniform", hasDynamicOffset: true },
    }];
    [...spec.bindings].forEach((kind, i) =>
      entries.push({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: kind === "r" ? "read-only-storage" : "storage" },
      })
    );
    const layout = this.device.createPipelineLayout({
      bindGroupLayouts: [this.device.createBindGroupLayout({ entries })],
    });
    p = this.device.createComputePipeline({
      label: key,
      layout,
      compute: { module, entryPoint: spec.entry },
    });
    this.pipelines.set(key, p);
    return p;
  }

  /** Records one dispatch of `name` with its uniform fields and storage bindings. */
  private dispatch(
    name: KernelName,
    params: number[],
    bindings: Binding[],
    groups: [number, number?, number?],
    variant = "",
  ): void {
    const spec: KernelSpec = KERNELS[name];
    if (params.length !== spec.params.length || bindings.length !== spec.bindings.length) {
      throw new Error(
        `Kernel ${name} takes ${spec.params.length} params and ${spec.bindings.length} bindings`,
      );
    }
    if (this.ringUsed === RING_SLOTS) this.flush();
    const pipeline = this.pipeline(name, variant);
    const slot = this.ringUsed++;
    const base = slot * (SLOT / 4);
    for (let i = 0; i < params.length; i++) {
      if (spec.params[i] === "f") this.ringF32[base + i] = params[i];
      else this.ringU32[base + i] = params[i];
    }
    let key = `${name}${variant}`;
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
    let group = this.bindGroups.get(key);
    if (!group) {
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      group = this.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.ring, offset: 0, size: SLOT } },
          ...ranges.map((r, i) => ({
            binding: i + 1,
            resource: { buffer: r.gpu, offset: r.offset, size: r.size },
          })),
        ],
      });
      this.bindGroups.set(key, group);
    }
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group, [slot * SLOT]);
    pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1);
    if (++this.dispatches >= DISPATCHES_PER_SUBMIT) this.flush();
  }

  /**
   * Splits `rows` rows into chunks whose every binding fits the adapter: each row of each
   * bound buffer holds the given number of elements, and every chunk starts at an offset
   * the adapter can bind, on a multiple of `rowMultiple` rows.
   */
  private rowChunks(rows: number, rowElems: number[], rowMultiple = 1): [number, number][] {
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

  // ---- kernels ---------------------------------------------------------------------

  addForward(out: DeviceBuffer, a: DeviceBuffer, b: DeviceBuffer, n: number, nb: number): void {
    const o = this.f32(out), x = this.f32(a), y = this.f32(b);
    for (const [i0, i1] of this.rowChunks(n, [1])) {
      const len = i1 - i0;
      // same shape: b is sliced like a; broadcast (wpe over the batch): b is bound whole
      const [bs, nbs, base] = nb >= n ? [slice(y, i0, len), len, 0] : [slice(y, 0, nb), nb, i0];
      this.dispatch(
        "addForward",
        [len, nbs, base, 0, 0],
        [slice(x, i0, len), bs, slice(o, i0, len)],
        grid(len),
      );
    }
  }

  accumulate(dst: DeviceBuffer, src: DeviceBuffer, n: number, nDst: number): void {
    const d = this.f32(dst), s = this.f32(src);
    if (nDst >= n) {
      this.each("accumulate", n, (len) => [len, 0, 0, 0, 0], [s, d]);
      return;
    }
    const chunks = n * 4 <= this.maxBinding ? [[0, n / nDst]] : this.rowChunks(n / nDst, [nDst]);
    if (chunks.length > 1 && n % nDst !== 0) {
      throw new Error(`Cannot sum ${n} elements into ${nDst}: ${n} is not a multiple`);
    }
    for (const [r0, r1] of chunks) {
      const len = r1 === n / nDst ? n - r0 * nDst : (r1 - r0) * nDst;
      this.dispatch(
        "accumulateBroadcast",
        [len, nDst, 0, 0, 0],
        [slice(s, r0 * nDst, len), slice(d, 0, nDst)],
        grid(nDst),
      );
    }
  }

  scale(out: DeviceBuffer, inp: DeviceBuffer, alpha: number, n: number, acc: boolean): void {
    const o = this.f32(out), x = this.f32(inp);
    const params = (len: number) => [len, 0, 0, acc ? 1 : 0, alpha];
    if (o.gpu === x.gpu) this.each("scaleInplace", n, params, [o]);
    else this.each("scale", n, params, [x, o]);
  }

  embeddingForward(
    out: DeviceBuffer,
    idx: DeviceBuffer,
    weight: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const o = this.f32(out), ix = this.i32(idx), w = this.f32(weight);
    const V = Math.floor(w.length / C);
    for (const [r0, r1] of this.rowChunks(V, [C])) {
      this.dispatch(
        "embeddingForward",
        [N, C, r0, r1 - r0],
        [slice(ix, 0, N), slice(w, r0 * C, (r1 - r0) * C), slice(o, 0, N * C)],
        grid(N * C),
      );
    }
  }

  embeddingBackward(
    dweight: DeviceBuffer,
    dout: DeviceBuffer,
    idx: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const dw = this.f32(dweight), d = this.f32(dout), ix = this.i32(idx);
    const V = Math.floor(dw.length / C);
    const links = this.alloc(2 * N, "i32") as WebGpuBuffer;
    this.dispatch("embeddingLinks", [N, C, 0, 0], [slice(ix, 0, N), links], grid(N));
    for (const [r0, r1] of this.rowChunks(V, [C])) {
      this.dispatch(
        "embeddingBackward",
        [N, C, r0, r1 - r0],
        [slice(ix, 0, N), links, slice(d, 0, N * C), slice(dw, r0 * C, (r1 - r0) * C)],
        grid(N * C),
      );
    }
  }

  matmulForward(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    { N, C, OC }: MatmulDims,
  ): void {
    const o = this.f32(out), x = this.f32(inp), w = this.f32(weight);
    const b = bias ? this.f32(bias) : this.dummy;
    const kernel = this.matmulKernel(), fuseBias = bias !== null && this.kernels.fusedElementwise;
    const v4 = C % 4 === 0; // GPT-2's shapes all are
    for (const [n0, n1] of this.rowChunks(N, [C, OC])) {
      for (const [j0, j1] of this.rowChunks(OC, [C])) {
        const bindings = [
          slice(x, n0 * C, (n1 - n0) * C),
          slice(w, j0 * C, (j1 - j0) * C),
          fuseBias ? slice(b, 0, OC) : this.dummy,
          slice(o, n0 * OC, (n1 - n0) * OC),
        ];
        if (kernel === "register") {
          this.dispatch(
            v4 ? "matmulForwardVec4" : "matmulForward",
            [n1 - n0, C, j1 - j0, OC, j0, fuseBias ? 1 : 0],
            bindings,
            [Math.ceil((j1 - j0) / 32), Math.ceil((n1 - n0) / 32)],
          );
        } else {
          // A = inp (rows n, K = C contiguous), B(k, j) = weight[j C + k]
          this.gemm(
            kernel,
            n1 - n0,
            j1 - j0,
            C,
            [0, C, 1],
            [0, 1, C],
            [j0, OC],
            fuseBias,
            bindings,
          );
        }
      }
    }
    if (bias && !fuseBias) {
      for (const [n0, n1] of this.rowChunks(N, [OC])) {
        const len = (n1 - n0) * OC;
        this.dispatch(
          "ewAddBias",
          [len, 0, OC, 0, 0],
          [slice(b, 0, OC), slice(o, n0 * OC, len)],
          grid(len),
        );
      }
    }
  }

  /** The matmul kernel to run: f16 operands are rounded where the tiled kernel stages them. */
  private matmulKernel(): WebGpuKernels["matmul"] {
    return this.precision === "f16" ? "tiled" : this.kernels.matmul;
  }

  /**
   * One dispatch of gemm.wgsl: C (M, N) (+)= A (M, K) B (K, N), A at [offset, row stride,
   * k stride], B at [offset, k stride, column stride], C at [offset, row stride].
   */
  private gemm(
    kernel: "naive" | "tiled",
    M: number,
    N: number,
    K: number,
    a: [number, number, number],
    b: [number, number, number],
    c: [number, number],
    withBias: boolean,
    bindings: Binding[],
    accumulate = false,
  ): void {
    const flags = (accumulate ? 1 : 0) | (withBias ? 2 : 0);
    const tile = kernel === "naive" ? 8 : 64;
    this.dispatch(
      kernel === "naive" ? "gemmNaive" : "gemmTiled",
      [M, N, K, ...a, ...b, ...c, flags],
      bindings,
      [Math.ceil(N / tile), Math.ceil(M / tile)],
      kernel === "tiled" && this.precision === "f16" ? "f16" : "",
    );
  }

  matmulBackward(
    { dinp, dweight, dbias }: MatmulGrads,
    dout: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    { N, C, OC }: MatmulDims,
  ): void {
    const d = this.f32(dout), x = this.f32(inp), w = this.f32(weight);
    const v4 = C % 4 === 0 && OC % 4 === 0, kernel = this.matmulKernel();
    const nChunks = this.rowChunks(N, [C, OC]), ocChunks = this.rowChunks(OC, [C], v4 ? 4 : 1);
    if (dinp) {
      const di = this.f32(dinp);
      // the reduction over OC in pieces of at most K_PIECE rows, so the weight rows that
      // all workgroups of a dispatch read stay in cache (lm_head: 2x faster on llvmpipe)
      const pieces = ocChunks.flatMap(([a, b]) => {
        const out: [number, number][] = [];
        for (let j = a; j < b; j += K_PIECE) out.push([j, Math.min(b, j + K_PIECE)]);
        return out;
      });
      for (const [n0, n1] of nChunks) {
        for (const [j0, j1] of pieces) {
          const bindings = [
            slice(d, n0 * OC, (n1 - n0) * OC),
            slice(w, j0 * C, (j1 - j0) * C),
            slice(di, n0 * C, (n1 - n0) * C),
          ];
          if (kernel === "register") {
            this.dispatch(
              v4 ? "matmulBackwardInputVec4" : "matmulBackwardInput",
              [n1 - n0, C, j1 - j0, OC, j0, 0],
              bindings,
              [Math.ceil(C / (v4 ? 64 : 32)), Math.ceil((n1 - n0) / 32)],
            );
          } else {
            // A(n, k) = dout[n OC + j0 + k], B(k, c) = weight[k C + c]
            const [dd, ww, dx] = bindings;
            this.gemm(kernel, n1 - n0, C, j1 - j0, [j0, OC, 1], [0, C, 1], [0, C], false, [
              dd,
              ww,
              this.dummy,
              dx,
            ], true);
          }
        }
      }
    }
    if (dweight) {
      const dw = this.f32(dweight);
      for (const [j0, j1] of ocChunks) {
        for (const [n0, n1] of nChunks) {
          const bindings = [
            slice(d, n0 * OC, (n1 - n0) * OC),
            slice(x, n0 * C, (n1 - n0) * C),
            slice(dw, j0 * C, (j1 - j0) * C),
          ];
          if (kernel === "register") {
            this.dispatch(
              v4 ? "matmulBackwardWeightVec4" : "matmulBackwardWeight",
              [n1 - n0, C, j1 - j0, OC, j0, 0],
              bindings,
              v4
                ? [Math.ceil(C / 64), Math.ceil((j1 - j0) / 32)]
                : [Math.ceil(C / 32), Math.ceil((j1 - j0) / 32)],
            );
          } else {
            // A(j, n) = dout[n OC + j0 + j], B(n, c) = inp[n C + c], K runs over rows n
            const [dd, xx, dwc] = bindings;
            this.gemm(kernel, j1 - j0, C, n1 - n0, [j0, 1, OC], [0, C, 1], [0, C], false, [
              dd,
              xx,
              this.dummy,
              dwc,
            ], true);
          }
        }
      }
    }
    if (dbias) {
      const db = this.f32(dbias);
      for (const [n0, n1] of nChunks) {
        this.dispatch(
          "matmulBackwardBias",
          [n1 - n0, C, OC, OC, 0, 0],
          [slice(d, n0 * OC, (n1 - n0) * OC), slice(db, 0, OC)],
          [Math.ceil(OC / 64)],
        );
      }
    }
  }

  layernormForward(
    out: DeviceBuffer,
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer,
    { N, C }: RowDims,
  ): void {
    this.dispatch(
      "layernormForward",
      [N, C],
      [
        slice(this.f32(inp), 0, N * C),
        slice(this.f32(weight), 0, C),
        slice(this.f32(bias), 0, C),
        slice(this.f32(out), 0, N * C),
        slice(this.f32(mean), 0, N),
        slice(this.f32(rstd), 0, N),
      ],
      [Math.ceil(N / 64)],
    );
  }

  layernormBackward(
    { dinp, dweight, dbias }: LayerNormGrads,
    dout: DeviceBuffer,
    { inp, weight, mean, rstd }: LayerNormSaved,
    { N, C }: RowDims,
  ): void {
    const d = slice(this.f32(dout), 0, N * C), x = slice(this.f32(inp), 0, N * C);
    const mu = slice(this.f32(mean), 0, N), rs = slice(this.f32(rstd), 0, N);
    this.dispatch(
      "layernormBackwardInput",
      [N, C],
      [d, x, slice(this.f32(weight), 0, C), mu, rs, slice(this.f32(dinp), 0, N * C)],
      [Math.ceil(N / 64)],
    );
    this.dispatch(
      "layernormBackwardParams",
      [N, C],
      [d, x, mu, rs, slice(this.f32(dweight), 0, C), slice(this.f32(dbias), 0, C)],
      [Math.ceil(C / 64)],
    );
  }

  geluForward(out: DeviceBuffer, inp: DeviceBuffer, n: number): void {
    const o = this.f32(out), x = this.f32(inp);
    if (!this.kernels.fusedElementwise) {
      // eager PyTorch's GELU(approximate="tanh"): six kernels, five temporaries
      const t = this.geluTanh(x, n), half = this.temp(n);
      this.unary("affine", half, t, n, 0.5, 0.5); // (1 + tanh) / 2
      this.binary("mul", o, x, half, n);
      this.release(t, half);
      return;
    }
    this.each("geluForward", n, (len) => [len], [x, o]);
  }

  geluBackward(dinp: DeviceBuffer, inp: DeviceBuffer, dout: DeviceBuffer, n: number): void {
    const di = this.f32(dinp), x = this.f32(inp), d = this.f32(dout);
    if (!this.kernels.fusedElementwise) {
      // autograd's chain: d/dx [x (1 + tanh u) / 2] = (1 + tanh u) / 2
      //   + x (1 - tanh^2 u) u' / 2, u' = sqrt(2/pi) (1 + 3 0.044715 x^2)
      const th = this.geluTanh(x, n), k = Math.sqrt(2 / Math.PI);
      const left = this.temp(n), sq = this.temp(n), sech2 = this.temp(n);
      this.unary("affine", left, th, n, 0.5, 0.5);
      this.unary("square", sq, th, n);
      this.unary("affine", sech2, sq, n, -1, 1);
      const x2 = this.temp(n), du = this.temp(n), r1 = this.temp(n), r2 = this.temp(n);
      this.unary("square", x2, x, n);
      this.unary("affine", du, x2, n, 3 * 0.044715 * k, k);
      this.binary("mul", r1, x, sech2, n);
      this.binary("mul", r2, r1, du, n);
      const local = this.temp(n), g = this.temp(n);
      this.binary("add", local, left, r2, n, 0.5);
      this.binary("mul", g, local, d, n);
      this.accumulate(di, g, n, n);
      this.release(th, left, sq, sech2, x2, du, r1, r2, local, g);
      return;
    }
    this.each("geluBackward", n, (len) => [len], [x, d, di]);
  }

  /** tanh(sqrt(2/pi) (x + 0.044715 x^3)) in four elementwise kernels. */
  private geluTanh(x: WebGpuBuffer, n: number): WebGpuBuffer {
    const cube = this.temp(n), inner = this.temp(n), u = this.temp(n), th = this.temp(n);
    this.unary("cube", cube, x, n);
    this.binary("add", inner, x, cube, n, 0.044715);
    this.unary("affine", u, inner, n, Math.sqrt(2 / Math.PI), 0);
    this.unary("tanh", th, u, n);
    this.release(cube, inner, u);
    return th;
  }

  private temp(n: number): WebGpuBuffer {
    return this.alloc(n, "f32") as WebGpuBuffer;
  }

  /** out = op(a), elementwise over n, with alpha and beta for "affine" (alpha a + beta). */
  private unary(
    op: keyof typeof UNARY,
    out: WebGpuBuffer,
    a: WebGpuBuffer,
    n: number,
    alpha = 1,
    beta = 0,
  ): void {
    this.each("ewUnary", n, (len) => [len, UNARY[op], 0, alpha, beta], [a, out]);
  }

  /** out = op(a, b), elementwise over n ("add" is a + alpha b). */
  private binary(
    op: keyof typeof BINARY,
    out: WebGpuBuffer,
    a: WebGpuBuffer,
    b: WebGpuBuffer,
    n: number,
    alpha = 1,
  ): void {
    this.each("ewBinary", n, (len) => [len, BINARY[op], 0, alpha, 0], [a, b, out]);
  }

  /**
   * Dispatches a 1-D kernel over n elements, every buffer sliced alike in chunks that fit
   * a binding; `params` gets the chunk's length.
   */
  private each(
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

  attentionForward(out: DeviceBuffer, qkv: DeviceBuffer, dims: AttentionDims): DeviceBuffer {
    const { B, T, C, NH } = dims;
    const hs = C / NH, o = this.f32(out), x = this.f32(qkv);
    if (this.kernels.attention === "materialized") {
      // the lecture's att = softmax(mask(q k^T / sqrt(hs))) @ v, att kept for backward
      const tt = NH * T * T, att = this.temp(B * tt);
      for (const [b0, b1] of this.rowChunks(B, [tt, T * 3 * C, T * C])) {
        const nb = b1 - b0, params = [nb, T, C, NH, 1 / Math.sqrt(hs), 0, 0, 0, 0];
        const xs = slice(x, b0 * T * 3 * C, nb * T * 3 * C), as = slice(att, b0 * tt, nb * tt);
        // scores: q (channel 0 of 3C-wide rows) against k (channel C)
        const scores = [nb, T, C, NH, 1 / Math.sqrt(hs), 3 * C, 0, 3 * C, C];
        this.dispatch("attnDots", scores, [xs, xs, as], grid(nb * tt));
        this.dispatch("attnSoftmax", params, [as], grid(nb * NH * T));
        this.dispatch(
          "attnValues",
          params,
          [as, xs, slice(o, b0 * T * C, nb * T * C)],
          grid(nb * T * C),
        );
      }
      return new AttentionMatrix(att);
    }
    const nStats = B * NH * T;
    const stats = this.alloc(2 * nStats, "f32") as WebGpuBuffer;
    const saved = new AttentionSaved(stats, this.alloc(B * T * C, "f32") as WebGpuBuffer);
    for (const [b0, b1] of this.rowChunks(B, [T * 3 * C, T * C])) {
      this.dispatch(
        "attentionForward",
        [b1 - b0, T, C, NH, b0, nStats, 1 / Math.sqrt(hs)],
        [
          slice(x, b0 * T * 3 * C, (b1 - b0) * T * 3 * C),
          slice(o, b0 * T * C, (b1 - b0) * T * C),
          stats,
        ],
        grid((b1 - b0) * NH * T),
        String(hs),
      );
    }
    this.commandEncoder().copyBufferToBuffer(o.gpu, 0, saved.out.gpu, 0, B * T * C * 4);
    return saved;
  }

  attentionBackward(
    dqkv: DeviceBuffer,
    dout: DeviceBuffer,
    qkv: DeviceBuffer,
    saved: DeviceBuffer,
    dims: AttentionDims,
  ): void {
    const { B, T, C, NH } = dims;
    if (saved instanceof AttentionMatrix) {
      const tt = NH * T * T, datt = this.temp(B * tt);
      const dx = this.f32(dqkv), d = this.f32(dout), x = this.f32(qkv);
      for (const [b0, b1] of this.rowChunks(B, [tt, T * 3 * C, T * C])) {
        const nb = b1 - b0, params = [nb, T, C, NH, 1 / Math.sqrt(C / NH), 0, 0, 0, 0];
        const xs = slice(x, b0 * T * 3 * C, nb * T * 3 * C), ds = slice(d, b0 * T * C, nb * T * C);
        const as = slice(saved.att, b0 * tt, nb * tt), das = slice(datt, b0 * tt, nb * tt);
        // datt: dout (C-wide rows) against v (channel 2C of 3C-wide rows)
        const dots = [nb, T, C, NH, 1, C, 0, 3 * C, 2 * C];
        this.dispatch("attnDots", dots, [ds, xs, das], grid(nb * tt));
        this.dispatch("attnSoftmaxBackward", params, [as, das], grid(nb * NH * T));
        this.dispatch(
          "attnDqkv",
          params,
          [as, das, xs, ds, slice(dx, b0 * T * 3 * C, nb * T * 3 * C)],
          grid(nb * T * 3 * C),
        );
      }
      this.release(datt);
      return;
    }
    if (!(saved instanceof AttentionSaved)) {
      throw new Error("Expected the buffer that attentionForward of the webgpu backend returned");
    }
    const hs = C / NH, nStats = B * NH * T;
    const dx = this.f32(dqkv), d = this.f32(dout), x = this.f32(qkv);
    const chunks = this.rowChunks(B, [T * 3 * C, T * C]);
    for (const kernel of ["attentionBackwardQuery", "attentionBackwardKeyValue"] as const) {
      for (const [b0, b1] of chunks) {
        const nb = b1 - b0;
        const xs = slice(x, b0 * T * 3 * C, nb * T * 3 * C);
        const ds = slice(d, b0 * T * C, nb * T * C);
        const dxs = slice(dx, b0 * T * 3 * C, nb * T * 3 * C);
        this.dispatch(
          kernel,
          [nb, T, C, NH, b0, nStats, 1 / Math.sqrt(hs)],
          kernel === "attentionBackwardQuery"
            ? [xs, ds, slice(saved.out, b0 * T * C, nb * T * C), saved, dxs]
            : [xs, ds, saved, dxs],
          grid(nb * NH * T),
          String(hs),
        );
      }
    }
  }

  crossEntropyForward(
    loss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const z = this.f32(logits), y = this.i32(targets);
    const losses = this.alloc(N, "f32") as WebGpuBuffer;
    for (const [n0, n1] of this.rowChunks(N, [V])) {
      this.dispatch(
        "crossEntropyForwardRows",
        [n1 - n0, V, n0, N],
        [slice(z, n0 * V, (n1 - n0) * V), slice(y, 0, N), losses],
        grid((n1 - n0) * 64), // a workgroup per row
      );
    }
    this.dispatch("crossEntropyMean", [N, V, 0, N], [losses, slice(this.f32(loss), 0, 1)], [1]);
  }

  crossEntropyBackward(
    dlogits: DeviceBuffer,
    dloss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const dz = this.f32(dlogits), z = this.f32(logits), y = this.i32(targets);
    for (const [n0, n1] of this.rowChunks(N, [V])) {
      this.dispatch(
        "crossEntropyBackward",
        [n1 - n0, V, n0, N],
        [
          slice(z, n0 * V, (n1 - n0) * V),
          slice(y, 0, N),
          slice(this.f32(dloss), 0, 1),
          slice(dz, n0 * V, (n1 - n0) * V),
        ],
        grid((n1 - n0) * 64), // a workgroup per row
      );
    }
  }

  async sumOfSquares(buf: DeviceBuffer, n: number): Promise<number> {
    return (await this.sumsOfSquares([buf], [n]))[0];
  }

  /** `sumOfSquares` of every buffer, with one read-back for all of them. */
  async sumsOfSquares(bufs: DeviceBuffer[], ns: number[]): Promise<number[]> {
    // each chunk of each buffer gets its own run of partial sums (64 per workgroup)
    const plan: {
      k: number;
      x: WebGpuBuffer;
      i0: number;
      len: number;
      at: number;
      groups: number;
    }[] = [];
    const maxGroups = Math.max(1, Math.min(NORM_GROUPS, Math.floor(this.maxBinding / 256)));
    let total = 0;
    bufs.forEach((buf, k) => {
      const x = this.f32(buf);
      for (const [i0, i1] of this.rowChunks(ns[k], [1])) {
        const groups = Math.min(maxGroups, Math.max(1, Math.ceil((i1 - i0) / 4096)));
        plan.push({ k, x, i0, len: i1 - i0, at: total, groups });
        total += groups * 64;
      }
    });
    const partial = this.alloc(Math.max(1, total), "f32") as WebGpuBuffer;
    for (const { x, i0, len, at, groups } of plan) {
      this.dispatch(
        "sumSquares",
        [len, 0],
        [slice(x, i0, len), slice(partial, at, groups * 64)],
        [groups],
      );
    }
    const parts = (await this.read(partial)) as Float32Array;
    const sums = new Array<number>(bufs.length).fill(0);
    for (const { k, at, groups } of plan) {
      for (let i = at; i < at + groups * 64; i++) sums[k] += parts[i];
    }
    return sums;
  }

  adamw(
    param: DeviceBuffer,
    grad: DeviceBuffer,
    m: DeviceBuffer,
    v: DeviceBuffer,
    n: number,
    hp: AdamWParams,
  ): void {
    const p = this.f32(param), g = this.f32(grad), mm = this.f32(m), vv = this.f32(v);
    const { lr, beta1, beta2, eps, weightDecay, step } = hp;
    const stepSize = lr / (1 - beta1 ** step), sqrtBc2 = Math.sqrt(1 - beta2 ** step);
    if (this.kernels.adamw === "elementwise") {
      // torch.optim.AdamW(foreach=False): one kernel per op per parameter
      const m1 = this.temp(n), m2 = this.temp(n), g2 = this.temp(n), v1 = this.temp(n);
      const v2 = this.temp(n), root = this.temp(n), den = this.temp(n), upd = this.temp(n);
      const p1 = this.temp(n), p2 = this.temp(n);
      this.unary("affine", m1, mm, n, beta1, 0);
      this.binary("add", m2, m1, g, n, 1 - beta1);
      this.unary("square", g2, g, n);
      this.unary("affine", v1, vv, n, beta2, 0);
      this.binary("add", v2, v1, g2, n, 1 - beta2);
      this.unary("sqrt", root, v2, n);
      this.unary("affine", den, root, n, 1 / sqrtBc2, eps);
      this.binary("div", upd, m2, den, n);
      this.unary("affine", p1, p, n, 1 - lr * weightDecay, 0);
      this.binary("add", p2, p1, upd, n, -stepSize);
      this.scale(mm, m2, 1, n, false);
      this.scale(vv, v2, 1, n, false);
      this.scale(p, p2, 1, n, false);
      this.release(m1, m2, g2, v1, v2, root, den, upd, p1, p2);
      return;
    }
    this.each(
      "adamw",
      n,
      (len) => [len, beta1, beta2, eps, stepSize, sqrtBc2, 1 - lr * weightDecay],
      [g, p, mm, vv],
    );
  }
}

function slice(buf: WebGpuBuffer, offset: number, length: number): Slice {
  return { buf, offset, length };
}

/** Workgroups for n invocations of 64, on a 2-D grid when one dimension is not enough. */
function grid(n: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / 64));
  if (groups <= MAX_GROUPS) return [groups, 1];
  const y = Math.ceil(groups / MAX_GROUPS);
  return [Math.ceil(groups / y), y];
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
