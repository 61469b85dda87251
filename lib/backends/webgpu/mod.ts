/**
 * The WebGPU backend: every kernel of the `Backend` interface as a WGSL compute shader
 * (`kernels/wgsl/`, one file per layer), run through Deno's `navigator.gpu`, so the same
 * code trains on NVIDIA, AMD, Intel and Apple GPUs, and on Mesa's software adapter
 * (llvmpipe) where there is no GPU.
 *
 * The folder, by job:
 * - `device.ts`: opening the device; buffers, the buffer pool (`pool.ts`), the uniform ring,
 *   recording and submitting dispatches, binding large buffers in row chunks; compiled
 *   pipelines in `pipelines.ts`;
 * - `kernels.ts`: the kernel table (WGSL file, entry point, uniforms, bindings, prelude) and
 *   the kernel choices (`WebGpuKernels`, `defaultKernels`, `GPT2_WEBGPU_MATMUL`);
 * - `matmul.ts`, `attention.ts`, `layers.ts`: the fused kernels, by layer; `kv_cache.ts`:
 *   generation's cached attention;
 * - `naive.ts`: the eager paths the speedup ladder switches to;
 * - this module: the `Backend` over them, picking per call between fused and eager.
 *
 * How it keeps the work on the device: buffers stay on the GPU and `read` is the only wait;
 * dispatches are recorded into one command encoder and submitted in batches; pipelines,
 * bind groups and freed buffers are reused. Every kernel is deterministic: reductions are
 * loops in a fixed order, no float atomics. Kernels are chosen per adapter
 * (`WebGpuKernels`): matmuls in workgroup-memory tiles on GPUs, register-blocked on
 * software adapters; `setMatmulPrecision("f16")` rounds matmul operands to half precision
 * where the adapter has `shader-f16`. Matmuls take vec4 loads when the feature counts are
 * multiples of 4 (all of GPT-2's), scalar ones otherwise.
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
  DeviceInfo,
  DType,
  KernelVariant,
  KVCacheDims,
  LayerNormGrads,
  LayerNormSaved,
  MatmulDims,
  MatmulGrads,
  MatmulPrecision,
  PeakFlops,
  RowDims,
  SpeedupLadder,
} from "../../backend.ts";
import { attentionBackward, attentionForward, AttentionSaved } from "./attention.ts";
import { type BindingLimits, GpuDevice, openDevice, quietMesa } from "./device.ts";
import { defaultKernels, matmulFromEnv, readWgslSources, type WebGpuKernels } from "./kernels.ts";
import * as kvCache from "./kv_cache.ts";
import * as layers from "./layers.ts";
import {
  matmulBackward,
  type MatmulChoice,
  matmulForward,
  type WebGpuPrecision,
} from "./matmul.ts";
import * as naive from "./naive.ts";
import { checkKVCacheDims } from "../kv_cache_dims.ts";
import { webGpuLadder, type WebGpuRung } from "./ladder.ts";
import { knownPeakTflops } from "./peaks.ts";

export { WebGpuBuffer } from "./device.ts";
export { defaultKernels, type WebGpuKernels, WGSL_FILES } from "./kernels.ts";
export { webGpuLadder, type WebGpuRung } from "./ladder.ts";

/** Options of `createWebGpuBackend`. */
export interface WebGpuOptions extends BindingLimits {
  /** Print nothing about the adapter (it is still in `adapterSummary`). */
  quiet?: boolean;
  /** `navigator.gpu.requestAdapter`'s power preference; default "high-performance". */
  powerPreference?: GPUPowerPreference;
  /** Kernel choices over the adapter's defaults (`defaultKernels`). */
  kernels?: Partial<WebGpuKernels>;
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
  const { device, info } = await openDevice(options.powerPreference ?? "high-performance");
  const backend = new WebGpuBackend(device, info, await readWgslSources(), {
    ...options,
    kernels: { matmul: matmulFromEnv(), ...options.kernels },
  });
  if (!options.quiet) {
    console.log(
      `webgpu: ${backend.adapterSummary}; matmul kernel: ${backend.kernels.matmul}${
        backend.hasF16 ? "; shader-f16 available (--precision f16)" : ""
      }`,
    );
    if (info.isFallbackAdapter) {
      console.log(
        "webgpu: WARNING: this is a FALLBACK adapter (software rendering on the CPU), " +
          "not a GPU: correct but slow",
      );
    }
  }
  return backend;
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
  /** The kernels in use; change them between steps (the ladder does). */
  kernels: WebGpuKernels;
  #precision: WebGpuPrecision = "f32";
  readonly #gpu: GpuDevice;

  /** Use `createWebGpuBackend`, which opens the adapter and reads the kernels. */
  constructor(
    device: GPUDevice,
    info: GPUAdapterInfo,
    sources: Map<string, string>,
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
    this.#gpu = new GpuDevice(device, sources, options);
  }

  /** The GPU device. */
  get device(): GPUDevice {
    return this.#gpu.device;
  }

  /** Largest storage binding, in bytes. */
  get maxBinding(): number {
    return this.#gpu.maxBinding;
  }

  /** Allocations served from the pool so far (buffers whose wrapper was collected). */
  get reusedBuffers(): number {
    return this.#gpu.reusedBuffers;
  }

  /** Whether matmul operands are rounded to f16 (`setMatmulPrecision`). */
  get matmulPrecision(): MatmulPrecision {
    return this.#precision;
  }

  /** The adapter, by its summary. */
  get deviceInfo(): DeviceInfo {
    return { name: this.adapterSummary };
  }

  /** The GPU's fp32 datasheet peak, for the GPUs peaks.ts knows (f32 only: no tensor cores). */
  peakFlops(precision: MatmulPrecision): PeakFlops | null {
    const tflops = precision === "f32" ? knownPeakTflops(this.adapterSummary) : null;
    return tflops === null
      ? null
      : { flops: tflops * 1e12, source: `the ${this.adapterSummary} fp32 datasheet peak` };
  }

  /**
   * The matmul's kernels: the adapter's pick, the other tiles, and the tiled kernel with f16
   * operands (where the adapter has shader-f16).
   */
  kernelVariants(): KernelVariant[] {
    const pick = this.kernels.matmul, other = pick === "tiled" ? "register" : "tiled";
    const variant = (
      matmul: WebGpuKernels["matmul"],
      precision: WebGpuPrecision,
    ): KernelVariant => ({
      kernel: "matmul",
      name: `${matmul} ${precision}`,
      isDefault: matmul === pick && precision === "f32",
      unavailable: precision === "f16" && !this.hasF16
        ? `no shader-f16 on ${this.adapterSummary}`
        : undefined,
      use: () => {
        const kernels = this.kernels, before = this.#precision;
        this.kernels = { ...kernels, matmul };
        this.setMatmulPrecision(precision);
        return () => {
          this.kernels = kernels;
          this.setMatmulPrecision(before);
        };
      },
    });
    return [variant(pick, "f32"), variant(other, "f32"), variant("tiled", "f16")];
  }

  /**
   * The lecture's ladder (ladder.ts) for this adapter: each rung's kernels set between steps;
   * `restore` puts back the ones found.
   */
  speedupLadder(): SpeedupLadder<WebGpuRung> {
    const before = this.kernels;
    return {
      rungs: webGpuLadder(this.isSoftwareAdapter),
      enter: (rung) => {
        this.kernels = rung.kernels;
        return this;
      },
      restore: () => {
        this.kernels = before;
      },
    };
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
  setMatmulPrecision(precision: MatmulPrecision): void {
    if (precision !== "f32" && precision !== "f16") {
      throw new Error(`WebGPU has f32 and f16 matmuls only, found ${precision}`);
    }
    if (precision === "f16" && !this.hasF16) {
      throw new Error(
        `f16 matmuls need the shader-f16 feature, which this adapter (${this.adapterSummary}) lacks`,
      );
    }
    this.#precision = precision;
  }

  // ---- buffers ---------------------------------------------------------------------

  alloc(length: number, dtype: DType): DeviceBuffer {
    return this.#gpu.alloc(length, dtype);
  }

  /**
   * Returns a dead tensor's GPU buffer to the pool now, not when the garbage collector (which
   * does not see GPU memory) gets to its wrapper: commands already recorded read it first.
   */
  recycle(buf: DeviceBuffer): void {
    this.#gpu.release(this.#gpu.buffer(buf));
  }

  zero(buf: DeviceBuffer): void {
    this.#gpu.zero(buf);
  }

  upload(data: Float32Array | Int32Array): DeviceBuffer {
    return this.#gpu.upload(data);
  }

  write(buf: DeviceBuffer, data: Float32Array | Int32Array): void {
    this.#gpu.write(buf, data);
  }

  read(buf: DeviceBuffer): Promise<Float32Array | Int32Array> {
    return this.#gpu.read(buf);
  }

  /** Submits everything recorded so far (the GPU runs it while the host goes on). */
  flush(): void {
    this.#gpu.flush();
  }

  /** Submits and waits until the GPU has finished everything submitted. */
  sync(): Promise<void> {
    return this.#gpu.sync();
  }

  /** Destroys every buffer this backend still pools, and the device. */
  destroy(): void {
    this.#gpu.destroy();
  }

  // ---- kernels ---------------------------------------------------------------------

  addForward(out: DeviceBuffer, a: DeviceBuffer, b: DeviceBuffer, n: number, nb: number): void {
    const g = this.#gpu;
    layers.addForward(g, g.f32(out), g.f32(a), g.f32(b), n, nb);
  }

  accumulate(dst: DeviceBuffer, src: DeviceBuffer, n: number, nDst: number): void {
    const g = this.#gpu;
    layers.accumulate(g, g.f32(dst), g.f32(src), n, nDst);
  }

  scale(out: DeviceBuffer, inp: DeviceBuffer, alpha: number, n: number, acc: boolean): void {
    const g = this.#gpu;
    layers.scale(g, g.f32(out), g.f32(inp), alpha, n, acc);
  }

  embeddingForward(
    out: DeviceBuffer,
    idx: DeviceBuffer,
    weight: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const g = this.#gpu;
    layers.embeddingForward(g, g.f32(out), g.i32(idx), g.f32(weight), N, C);
  }

  embeddingBackward(
    dweight: DeviceBuffer,
    dout: DeviceBuffer,
    idx: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const g = this.#gpu;
    layers.embeddingBackward(g, g.f32(dweight), g.f32(dout), g.i32(idx), N, C);
  }

  matmulForward(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    dims: MatmulDims,
  ): void {
    const g = this.#gpu;
    const o = g.f32(out), x = g.f32(inp), w = g.f32(weight), b = bias && g.f32(bias);
    const fuseBias = this.kernels.fusedElementwise;
    matmulForward(g, this.#matmulChoice(), o, x, w, fuseBias ? b : null, dims);
    if (b && !fuseBias) naive.addBiasEager(g, o, b, dims.N, dims.OC);
  }

  matmulBackward(
    { dinp, dweight, dbias }: MatmulGrads,
    dout: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    dims: MatmulDims,
  ): void {
    const g = this.#gpu;
    const d = g.f32(dout), x = g.f32(inp), w = g.f32(weight);
    const grads = {
      dinp: dinp && g.f32(dinp),
      dweight: dweight && g.f32(dweight),
      dbias: dbias && g.f32(dbias),
    };
    matmulBackward(g, this.#matmulChoice(), grads, d, x, w, dims);
  }

  #matmulChoice(): MatmulChoice {
    return { kernel: this.kernels.matmul, precision: this.#precision };
  }

  layernormForward(
    out: DeviceBuffer,
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer,
    dims: RowDims,
  ): void {
    const g = this.#gpu;
    const x = g.f32(inp), w = g.f32(weight), b = g.f32(bias), o = g.f32(out);
    const stats = { inp: x, weight: w, mean: g.f32(mean), rstd: g.f32(rstd) };
    layers.layernormForward(g, o, stats, b, dims);
  }

  layernormBackward(
    { dinp, dweight, dbias }: LayerNormGrads,
    dout: DeviceBuffer,
    { inp, weight, mean, rstd }: LayerNormSaved,
    dims: RowDims,
  ): void {
    const g = this.#gpu;
    const d = g.f32(dout), x = g.f32(inp), mu = g.f32(mean), rs = g.f32(rstd);
    const saved = { inp: x, weight: g.f32(weight), mean: mu, rstd: rs };
    const grads = { dinp: g.f32(dinp), dweight: g.f32(dweight), dbias: g.f32(dbias) };
    layers.layernormBackward(g, grads, d, saved, dims);
  }

  geluForward(out: DeviceBuffer, inp: DeviceBuffer, n: number): void {
    const g = this.#gpu, o = g.f32(out), x = g.f32(inp);
    if (this.kernels.fusedElementwise) layers.geluForward(g, o, x, n);
    else naive.geluForwardEager(g, o, x, n);
  }

  geluBackward(dinp: DeviceBuffer, inp: DeviceBuffer, dout: DeviceBuffer, n: number): void {
    const g = this.#gpu, di = g.f32(dinp), x = g.f32(inp), d = g.f32(dout);
    if (this.kernels.fusedElementwise) layers.geluBackward(g, di, x, d, n);
    else naive.geluBackwardEager(g, di, x, d, n);
  }

  attentionForward(out: DeviceBuffer, qkv: DeviceBuffer, dims: AttentionDims): DeviceBuffer {
    const g = this.#gpu, o = g.f32(out), x = g.f32(qkv);
    return this.kernels.attention === "materialized"
      ? naive.attentionForwardMaterialized(g, o, x, dims)
      : attentionForward(g, o, x, dims);
  }

  attentionBackward(
    dqkv: DeviceBuffer,
    dout: DeviceBuffer,
    qkv: DeviceBuffer,
    saved: DeviceBuffer,
    dims: AttentionDims,
  ): void {
    const g = this.#gpu;
    // the saved state says which forward ran, whatever the kernels are now
    if (saved instanceof naive.AttentionMatrix) {
      naive.attentionBackwardMaterialized(g, g.f32(dqkv), g.f32(dout), g.f32(qkv), saved, dims);
      return;
    }
    if (!(saved instanceof AttentionSaved)) {
      throw new Error("Expected the buffer that attentionForward of the webgpu backend returned");
    }
    attentionBackward(g, g.f32(dqkv), g.f32(dout), g.f32(qkv), saved, dims);
  }

  kvCacheAppend(
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    qkv: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const g = this.#gpu;
    checkKVCacheDims(dims, kCache, vCache);
    kvCache.kvCacheAppend(g, { k: g.f32(kCache), v: g.f32(vCache) }, g.f32(qkv), dims);
  }

  attentionDecode(
    out: DeviceBuffer,
    qkv: DeviceBuffer,
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const g = this.#gpu;
    checkKVCacheDims(dims, kCache, vCache);
    const cache = { k: g.f32(kCache), v: g.f32(vCache) };
    kvCache.attentionDecode(g, g.f32(out), g.f32(qkv), cache, dims);
  }

  crossEntropyForward(
    loss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const g = this.#gpu, z = g.f32(logits), y = g.i32(targets);
    layers.crossEntropyForward(g, g.f32(loss), z, y, N, V);
  }

  crossEntropyBackward(
    dlogits: DeviceBuffer,
    dloss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const g = this.#gpu, dz = g.f32(dlogits), z = g.f32(logits), y = g.i32(targets);
    layers.crossEntropyBackward(g, dz, g.f32(dloss), z, y, N, V);
  }

  async sumOfSquares(buf: DeviceBuffer, n: number): Promise<number> {
    return (await this.sumsOfSquares([buf], [n]))[0];
  }

  /** `sumOfSquares` of every buffer, with one read-back for all of them. */
  async sumsOfSquares(bufs: DeviceBuffer[], ns: number[]): Promise<number[]> {
    const g = this.#gpu;
    return await layers.sumsOfSquares(g, bufs.map((b) => g.f32(b)), ns);
  }

  adamw(
    param: DeviceBuffer,
    grad: DeviceBuffer,
    m: DeviceBuffer,
    v: DeviceBuffer,
    n: number,
    hp: AdamWParams,
  ): void {
    const g = this.#gpu;
    const bufs = { param: g.f32(param), grad: g.f32(grad), m: g.f32(m), v: g.f32(v) };
    if (this.kernels.adamw === "elementwise") naive.adamwEager(g, bufs, n, hp);
    else layers.adamw(g, bufs, n, hp);
  }
}
