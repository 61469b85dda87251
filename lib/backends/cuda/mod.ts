/**
 * The CUDA backend: GPT-2's kernels on NVIDIA GPUs through Deno FFI, with no addon: the
 * driver API (`libcuda.so.1`), cuBLASLt for the GEMMs (tensor cores in TF32 or bf16), and
 * the project's own kernels (`kernels/cuda/`, one .cu per layer) compiled by nvcc into one
 * fatbin on first use (or NVRTC where nvcc is missing).
 *
 * The folder, by job:
 * - `libraries.ts`: where the CUDA libraries are (CUDA_HOME, the linker, Python's wheels);
 * - `driver.ts`: the driver API (device, context, stream, memory, launches, events);
 * - `build.ts` (with `nvrtc.ts`): compiling the kernels, cached by a hash;
 * - `kernels.ts`: the kernel table and the launcher that packs arguments;
 * - `memory.ts`: the caching allocator (blocks return when their buffer is collected);
 *   `memory_estimate.ts`: a training step's peak memory, checked before a run;
 * - `device.ts`: buffers, copies, read-backs (the only waits), device-side fault checks;
 * - `cublaslt.ts`, `matmul.ts`: nn.Linear's products, precisions and bias gradients;
 * - `attention.ts`, `layers.ts`: the other kernels, by layer; `kv_cache.ts`: generation's
 *   cached attention;
 * - `driver.ts` and `cublaslt.ts` take their symbol tables as an option, so the tests' CPU
 *   emulator (tests/cuda_emulator/) drives this folder without a GPU;
 * - this module: `createCudaBackend`, `cudaUnavailable`, and the `Backend` over the rest.
 *
 * Buffers stay on the GPU for a whole step, kernels are enqueued in order on one stream,
 * and only `read` and the sums of squares wait. Every kernel is deterministic (fixed
 * reduction orders, no float atomics) and matches the reference backend's semantics.
 *
 * @module
 */

import type {
  AdamWParams,
  AttentionDims,
  Backend,
  DeviceBuffer,
  DeviceCalls,
  DeviceInfo,
  DeviceMemory,
  DType,
  KVCacheDims,
  LayerNormGrads,
  LayerNormSaved,
  MatmulDims,
  MatmulGrads,
  MatmulPrecision,
  PeakFlops,
  RowDims,
  SpeedupLadder,
  TrainingMemoryShape,
} from "../../backend.ts";
import { attentionBackward, attentionForward } from "./attention.ts";
import {
  buildCudaKernels,
  type CudaKernelBuild,
  findNvccFile,
  findShippedFatbin,
} from "./build.ts";
import { CublasLt, type CublasLtSymbols } from "./cublaslt.ts";
import { AttentionSaved, type CudaBuffer, CudaDevice } from "./device.ts";
import { CU, CudaDriver, type DriverSymbols, openDriverLibrary } from "./driver.ts";
import { KernelLauncher } from "./kernels.ts";
import * as kvCache from "./kv_cache.ts";
import * as layers from "./layers.ts";
import { findCudaLibrary } from "./libraries.ts";
import { Bf16Copies, matmulBackward, type MatmulContext, matmulForward } from "./matmul.ts";
import { DevicePool } from "./memory.ts";
import { checkTrainingFits, CUBLASLT_WORKSPACE_BYTES } from "./memory_estimate.ts";
import type { CudaKernels, CudaPrecision } from "./choices.ts";
import { CUDA_LADDER, type CudaRung } from "./ladder.ts";
import { gpuPeakTflops } from "./peaks.ts";
import { checkKVCacheDims } from "../kv_cache_dims.ts";

export { CudaBuffer } from "./device.ts";
export { CudaDriver } from "./driver.ts";
export { buildCudaKernels, CUDA_KERNEL_DIR, type CudaKernelBuild } from "./build.ts";
export type { AttentionPrecision } from "./attention.ts";
export {
  estimateTrainingMemory,
  type TrainingMemoryEstimate,
  type TrainingShape,
} from "./memory_estimate.ts";

export type { CudaKernels, CudaPrecision } from "./choices.ts";
export { CUDA_LADDER, type CudaRung } from "./ladder.ts";

/** Options of `createCudaBackend`. */
export interface CudaOptions {
  /** The CUDA device's ordinal (LOCAL_RANK under DDP); default 0. */
  device?: number;
  /** Print nothing about the device and libraries (still in `describe()`). */
  quiet?: boolean;
}

/** The workspace cuBLASLt may use, in bytes (Hopper's kernels want 32 MiB). */
const CUBLASLT_WORKSPACE = CUBLASLT_WORKSPACE_BYTES;

let unavailable: Promise<string | null> | null = null;

/**
 * Null when a CUDA GPU is usable here; else one line saying what is missing: the NVIDIA
 * driver (libcuda.so.1), a device, cuBLASLt, or a way to build the kernels. Fast where
 * there is no driver (one dlopen attempt and a few file checks); runs no compiler.
 */
export function cudaUnavailable(): Promise<string | null> {
  unavailable ??= Promise.resolve().then(probe);
  return unavailable;
}

function probe(): string | null {
  const lib = openDriverLibrary();
  if ("error" in lib) return lib.error;
  const cu = lib.symbols;
  const init = cu.cuInit(0);
  if (init === CU.ERROR_NO_DEVICE) {
    return "No CUDA device: the NVIDIA driver is installed but cuInit found no GPU";
  }
  if (init !== CU.SUCCESS) {
    return `No usable NVIDIA driver: cuInit failed with CUresult ${init} (${lib.path})`;
  }
  const count = new Int32Array(1);
  if (cu.cuDeviceGetCount(count) !== CU.SUCCESS || count[0] === 0) {
    return "No CUDA device: the driver found none";
  }
  if (!findCudaLibrary("cublasLt").path) {
    return "No cuBLASLt: libcublasLt.so.13 (or .12) not found (install the CUDA toolkit or PyTorch's nvidia-cublas wheel)";
  }
  if (!findNvccFile() && !findShippedFatbin() && !findCudaLibrary("nvrtc").path) {
    return "No CUDA compiler for the kernels: no nvcc, no shipped fatbin and no libnvrtc found";
  }
  return null;
}

/**
 * Opens CUDA device `device`, builds (or finds) the kernels, opens cuBLASLt, and prints the
 * GPU's name, memory and compute capability and which library copies were loaded.
 *
 * @throws {Error} with one line saying what is missing, where something is.
 */
export async function createCudaBackend(options: CudaOptions = {}): Promise<CudaBackend> {
  const driver = CudaDriver.open(options.device ?? 0);
  try {
    const lt = CublasLt.openLibrary();
    if ("error" in lt) throw new Error(lt.error);
    const [major, minor] = driver.computeCapability();
    const build = await buildCudaKernels({
      quiet: options.quiet,
      nvrtc: { arch: `sm_${major}${minor}` },
    });
    const backend = CudaBackend.open(driver, build, lt);
    if (!options.quiet) console.log(`cuda: ${backend.describe()}`);
    return backend;
  } catch (e) {
    driver.destroy();
    throw e;
  }
}

/** The CUDA backend; make it with `createCudaBackend`. */
export class CudaBackend implements Backend {
  readonly name = "cuda";
  readonly isReference = false;
  readonly isSoftwareAdapter = false;
  /** The driver (NCCL shares its context and stream). */
  readonly driver: CudaDriver;
  /** The GPU's name, e.g. "NVIDIA H200". */
  readonly deviceName: string;
  /** The GPU's compute capability, e.g. [9, 0]. */
  readonly computeCapability: [number, number];
  /** The GPU's memory, in bytes. */
  readonly totalMemoryBytes: number;
  /** How the kernels were built (nvcc, a shipped fatbin, NVRTC) and where they are. */
  readonly build: CudaKernelBuild;
  /** The kernel choices; change them between steps. */
  kernels: CudaKernels = { attention: "flash", adamw: "fused" };
  readonly #dev: CudaDevice;
  readonly #gemm: CublasLt;
  readonly #bf16: Bf16Copies;
  readonly #module: bigint;
  /** cuBLASLt's workspace, held as long as the backend. */
  readonly #workspace: CudaBuffer;
  #precision: CudaPrecision = "f32";
  #destroyed = false;

  private constructor(parts: {
    driver: CudaDriver;
    build: CudaKernelBuild;
    dev: CudaDevice;
    gemm: CublasLt;
    module: bigint;
    workspace: CudaBuffer;
  }) {
    const { driver, dev } = parts;
    this.driver = driver;
    this.build = parts.build;
    this.#dev = dev;
    this.#gemm = parts.gemm;
    this.#module = parts.module;
    this.#workspace = parts.workspace;
    this.#bf16 = new Bf16Copies(dev);
    this.deviceName = driver.deviceName();
    this.computeCapability = driver.computeCapability();
    this.totalMemoryBytes = driver.totalMemory();
  }

  /**
   * The backend over an opened driver, a kernel build and cuBLASLt's symbols (the library's,
   * or a stand-in with the same types).
   */
  static open(
    driver: CudaDriver,
    build: CudaKernelBuild,
    lt: { symbols: CublasLtSymbols; path: string },
  ): CudaBackend {
    const module = driver.loadModule(Deno.readFileSync(build.path));
    const launcher = new KernelLauncher(driver, module, driver.maxSharedMemoryOptin());
    launcher.loadAll();
    const { free, total } = driver.memoryInfo();
    const pool = new DevicePool(driver, {
      softLimit: Math.floor(free * memoryFraction()),
      collectEvery: Math.max(256 * 2 ** 20, total / 20),
    });
    const dev = new CudaDevice(driver, pool, launcher);
    const workspace = dev.empty(CUBLASLT_WORKSPACE / 4);
    const gemm = new CublasLt(driver, workspace.pointer, CUBLASLT_WORKSPACE, lt);
    return new CudaBackend({ driver, build, dev, gemm, module, workspace });
  }

  /** The GPU, its memory and compute capability, the kernels' build, the libraries loaded. */
  /** The GPU's datasheet peak for `precision` (f16: none in the table). */
  peakFlops(precision: MatmulPrecision): PeakFlops | null {
    if (precision === "f16") return null;
    const named = precision === "f32" ? "fp32" : precision;
    const tflops = gpuPeakTflops(this.deviceName, named);
    return tflops === null
      ? null
      : { flops: tflops * 1e12, source: `the ${this.deviceName} ${named} datasheet peak` };
  }

  describe(): string {
    const gib = (this.totalMemoryBytes / 2 ** 30).toFixed(1);
    const [major, minor] = this.computeCapability;
    return `${this.deviceName}, ${gib} GiB, compute capability ${major}.${minor}; kernels by ` +
      `${this.build.via} (${this.build.path}); libcuda ${this.driver.libraryPath} (driver CUDA ${
        formatVersion(this.driver.driverVersion)
      }), cuBLASLt ${this.#gemm.path} (${this.#gemm.version}); matmuls ${this.#precision}`;
  }

  /** A training run's default: bf16 autocast, as build-nanogpt trains on GPUs. */
  readonly trainingPrecision: MatmulPrecision = "bf16";

  /** What `setMatmulPrecision` accepts here. */
  readonly matmulPrecisions: readonly MatmulPrecision[] = ["f32", "tf32", "bf16"];

  /** The matmuls' precision. */
  get matmulPrecision(): MatmulPrecision {
    return this.#precision;
  }

  /**
   * "f32" (CUBLAS_COMPUTE_32F), "tf32" (tensor cores, f32 storage) or "bf16" (bf16
   * operands, f32 sums and master weights). "f16" is WebGPU's and not offered here.
   */
  setMatmulPrecision(precision: MatmulPrecision): void {
    if (precision === "f16") {
      throw new Error("The cuda backend's matmuls are f32, tf32 or bf16, not f16 (use bf16)");
    }
    this.#precision = precision;
  }

  /** The most device memory the backend has held at once, in bytes. */
  peakMemoryBytes(): number {
    return this.#dev.pool.peakBytes;
  }

  /** Returns the pool's free memory to the driver and starts the peak again from what is held. */
  resetPeakMemory(): void {
    this.trimMemory();
    this.#dev.pool.resetPeak();
  }

  /** The calls enqueued so far: launches, GEMMs, copies, memsets and the pool's collections. */
  deviceCalls(): DeviceCalls {
    const { launches, copies, memsets } = this.driver.calls;
    return {
      launches,
      gemms: this.#gemm.matmuls,
      copies,
      memsets,
      collections: this.#dev.pool.collections,
    };
  }

  /** The GPU: its name, compute capability and memory. */
  get deviceInfo(): DeviceInfo {
    return {
      name: this.deviceName,
      computeCapability: this.computeCapability,
      totalMemoryBytes: this.totalMemoryBytes,
    };
  }

  /**
   * The lecture's GPU ladder (ladder.ts): each rung's precision and kernels set between
   * steps; `restore` puts back the ones found.
   */
  speedupLadder(): SpeedupLadder<CudaRung> {
    const kernels = this.kernels, precision = this.#precision;
    return {
      rungs: CUDA_LADDER,
      enter: (rung) => {
        this.kernels = rung.kernels;
        this.setMatmulPrecision(rung.precision);
        return this;
      },
      restore: () => {
        this.kernels = kernels;
        this.setMatmulPrecision(precision);
      },
    };
  }

  /**
   * Throws when a training step of `shape` in the current precision would not fit in the
   * device's free memory (cuMemGetInfo's, plus the pool's free blocks) by
   * `estimateTrainingMemory` (memory_estimate.ts); the message names B, T, the estimate and
   * the micro batch size that would fit.
   */
  checkTrainingMemory(shape: TrainingMemoryShape): void {
    const { free, total } = this.driver.memoryInfo();
    checkTrainingFits(
      { ...shape, precision: this.#precision },
      free + this.#dev.pool.freeBytes,
      total,
    );
  }

  /** Device memory held now (buffers in use and the pool's free blocks), in bytes. */
  heldMemoryBytes(): number {
    return this.#dev.pool.heldBytes;
  }

  /**
   * Returns to the driver the memory the pool holds free (after collecting garbage), so
   * another process on the GPU (a PyTorch peer) can have it; returns the bytes still held.
   * Buffers made since the last await stay (a WeakRef rule): call it after one.
   */
  trimMemory(): number {
    this.#dev.pool.collect();
    this.#dev.pool.trim();
    return this.#dev.pool.heldBytes;
  }

  /** cuBLASLt plans that fell back to a lower precision or a separate bias kernel. */
  get gemmFallbacks(): readonly string[] {
    return this.#gemm.fallbacks;
  }

  /** Zero fills enqueued so far (`alloc` and `zero`; `empty` makes none). */
  get zeroFills(): number {
    return this.#dev.zeroFills;
  }

  /** Kernel launches so far. */
  get launches(): number {
    return this.#dev.kernels.launches;
  }

  /** The buffer's device address, device and stream, for NCCL's in-place collectives. */
  deviceMemory(buf: DeviceBuffer): DeviceMemory {
    const b = this.#dev.buffer(buf);
    this.#dev.written(b); // the collective writes it
    return {
      pointer: b.pointer,
      bytes: b.length * 4,
      device: this.driver.device,
      stream: this.driver.stream,
    };
  }

  /** Waits until every enqueued kernel has finished. */
  sync(): Promise<void> {
    return this.#dev.sync();
  }

  /** Frees every buffer and the device; the backend is unusable afterwards. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#gemm.destroy();
    this.#dev.release(this.#workspace);
    this.#dev.destroy();
    this.#dev.pool.destroy();
    this.driver.unloadModule(this.#module);
    this.driver.destroy();
  }

  // ---- buffers ---------------------------------------------------------------------

  alloc(length: number, dtype: DType): DeviceBuffer {
    return this.#dev.alloc(length, dtype);
  }

  /**
   * Returns a dead tensor's device memory (and its bf16 copy's) to the pool now, not when the
   * garbage collector (which does not see device memory) gets to its wrapper: its last use is
   * enqueued, and the stream runs the next user after it.
   */
  recycle(buf: DeviceBuffer): void {
    const b = this.#dev.own(buf); // no pending fill: nothing reads it again
    this.#bf16.drop(b); // its bf16 copy is as dead as it is
    this.#dev.release(b);
  }

  upload(data: Float32Array | Int32Array): DeviceBuffer {
    return this.#dev.upload(data);
  }

  write(buf: DeviceBuffer, data: Float32Array | Int32Array): void {
    this.#dev.write(buf, data);
  }

  read(buf: DeviceBuffer): Promise<Float32Array | Int32Array> {
    return this.#dev.read(buf);
  }

  zero(buf: DeviceBuffer): void {
    this.#dev.zero(buf);
  }

  /** A buffer for a kernel to write in full: no fill is enqueued. */
  empty(length: number, dtype: DType): DeviceBuffer {
    return this.#dev.empty(length, dtype);
  }

  // ---- kernels ---------------------------------------------------------------------

  addForward(out: DeviceBuffer, a: DeviceBuffer, b: DeviceBuffer, n: number, nb: number): void {
    const d = this.#dev;
    layers.addForward(
      d,
      d.f32(out, n, "addForward out"),
      d.f32(a, n, "addForward a"),
      d.f32(b, nb, "addForward b"),
      n,
      nb,
    );
  }

  accumulate(dst: DeviceBuffer, src: DeviceBuffer, n: number, nDst: number): void {
    const d = this.#dev;
    const source = d.f32(src, n, "accumulate src");
    if (n > 0 && nDst > 0) {
      // a gradient's first contribution is written: a copy (no fill, no kernel), or the sums
      const out = d.writable(dst, nDst, "accumulate dst");
      if (out.fresh && n === nDst) {
        d.driver.copyOnDevice(out.buf.pointer, source.pointer, 4 * n);
        d.written(out.buf);
        return;
      }
      return layers.accumulate(d, out.buf, source, n, nDst, out.fresh);
    }
    layers.accumulate(d, d.f32(dst, nDst, "accumulate dst"), source, n, nDst);
  }

  scale(out: DeviceBuffer, inp: DeviceBuffer, alpha: number, n: number, acc: boolean): void {
    const d = this.#dev;
    const input = d.f32(inp, n, "scale inp");
    const o = acc && n > 0 ? d.writable(out, n, "scale out") : null;
    if (o?.fresh) return layers.scale(d, o.buf, input, alpha, n, false); // zeros plus: a write
    layers.scale(d, d.f32(out, n, "scale out"), input, alpha, n, acc);
  }

  embeddingForward(
    out: DeviceBuffer,
    idx: DeviceBuffer,
    weight: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const d = this.#dev;
    const w = d.f32(weight, C, "embeddingForward weight");
    layers.embeddingForward(
      d,
      d.f32(out, N * C, "embeddingForward out"),
      d.i32(idx, N, "embeddingForward idx"),
      w,
      N,
      C,
    );
  }

  embeddingBackward(
    dweight: DeviceBuffer,
    dout: DeviceBuffer,
    idx: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const d = this.#dev;
    const w = d.own(dweight);
    // a gradient's first contribution: layers.embeddingBackward writes it or fills it
    const out = C > 0 ? d.writable(w, w.length, "embeddingBackward dweight") : null;
    layers.embeddingBackward(
      d,
      d.f32(out?.buf ?? w, C, "embeddingBackward dweight"),
      d.f32(dout, N * C, "embeddingBackward dout"),
      d.i32(idx, N, "embeddingBackward idx"),
      N,
      C,
      out?.fresh ?? false,
    );
  }

  matmulForward(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    dims: MatmulDims,
  ): void {
    const d = this.#dev, { N, C, OC } = dims;
    matmulForward(
      this.#matmul(),
      d.f32(out, N * OC, "matmulForward out"),
      d.f32(inp, N * C, "matmulForward inp"),
      d.f32(weight, OC * C, "matmulForward weight"),
      bias && d.f32(bias, OC, "matmulForward bias"),
      dims,
    );
  }

  matmulBackward(
    { dinp, dweight, dbias }: MatmulGrads,
    dout: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    dims: MatmulDims,
  ): void {
    const d = this.#dev, { N, C, OC } = dims;
    // a gradient a GEMM writes in full for the first time is written (beta 0), not added to
    const gemmOut = (buf: DeviceBuffer | null, n: number, what: string) =>
      !buf ? null : N > 0 && OC > 0 && C > 0 ? d.writable(buf, n, what) : {
        buf: d.f32(buf, n, what),
        fresh: false,
      };
    const dinpOut = gemmOut(dinp, N * C, "matmulBackward dinp");
    const dweightOut = gemmOut(dweight, OC * C, "matmulBackward dweight");
    // the bias gradient's column sums write every element whenever N and OC are positive
    const dbiasOut = !dbias
      ? null
      : N > 0 && OC > 0
      ? d.writable(dbias, OC, "matmulBackward dbias")
      : { buf: d.f32(dbias, OC, "matmulBackward dbias"), fresh: false };
    const grads = {
      dinp: dinpOut?.buf ?? null,
      dweight: dweightOut?.buf ?? null,
      dbias: dbiasOut?.buf ?? null,
      overwrite: {
        dinp: dinpOut?.fresh ?? false,
        dweight: dweightOut?.fresh ?? false,
        dbias: dbiasOut?.fresh ?? false,
      },
    };
    matmulBackward(
      this.#matmul(),
      grads,
      d.f32(dout, N * OC, "matmulBackward dout"),
      d.f32(inp, N * C, "matmulBackward inp"),
      d.f32(weight, OC * C, "matmulBackward weight"),
      dims,
    );
  }

  #matmul(): MatmulContext {
    return { dev: this.#dev, gemm: this.#gemm, bf16: this.#bf16, precision: this.#precision };
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
    const d = this.#dev;
    layers.layernormForward(
      d,
      d.f32(out, N * C, "layernormForward out"),
      {
        mean: d.f32(mean, N, "layernormForward mean"),
        rstd: d.f32(rstd, N, "layernormForward rstd"),
      },
      d.f32(inp, N * C, "layernormForward inp"),
      {
        weight: d.f32(weight, C, "layernormForward weight"),
        bias: d.f32(bias, C, "layernormForward bias"),
      },
      N,
      C,
    );
  }

  layernormBackward(
    { dinp, dweight, dbias }: LayerNormGrads,
    dout: DeviceBuffer,
    { inp, weight, mean, rstd }: LayerNormSaved,
    { N, C }: RowDims,
  ): void {
    const d = this.#dev;
    // each gradient is written in full when N and C are positive: its first contribution is a write
    const out = (buf: DeviceBuffer, n: number, what: string) =>
      N > 0 && C > 0 ? d.writable(buf, n, what) : { buf: d.f32(buf, n, what), fresh: false };
    const gi = out(dinp, N * C, "layernormBackward dinp");
    const gw = out(dweight, C, "layernormBackward dweight");
    const gb = out(dbias, C, "layernormBackward dbias");
    layers.layernormBackward(
      d,
      {
        dinp: gi.buf,
        dweight: gw.buf,
        dbias: gb.buf,
        overwrite: { dinp: gi.fresh, dweight: gw.fresh, dbias: gb.fresh },
      },
      d.f32(dout, N * C, "layernormBackward dout"),
      {
        inp: d.f32(inp, N * C, "layernormBackward inp"),
        weight: d.f32(weight, C, "layernormBackward weight"),
        mean: d.f32(mean, N, "layernormBackward mean"),
        rstd: d.f32(rstd, N, "layernormBackward rstd"),
      },
      N,
      C,
    );
  }

  geluForward(out: DeviceBuffer, inp: DeviceBuffer, n: number): void {
    const d = this.#dev;
    layers.geluForward(d, d.f32(out, n, "geluForward out"), d.f32(inp, n, "geluForward inp"), n);
  }

  /** Fills `buf` with N(0, std^2) on the device (init.cu), keyed by `seed` and `stream`. */
  initNormal(buf: DeviceBuffer, std: number, seed: number, stream: number): void {
    const d = this.#dev, n = buf.length;
    const out = d.writable(buf, n, "initNormal buf"); // written in full: no pending fill
    layers.initNormal(d, out.buf, n, std, seed, stream);
  }

  geluBackward(dinp: DeviceBuffer, inp: DeviceBuffer, dout: DeviceBuffer, n: number): void {
    const d = this.#dev;
    const x = d.f32(inp, n, "geluBackward inp"), g = d.f32(dout, n, "geluBackward dout");
    const out = n > 0 ? d.writable(dinp, n, "geluBackward dinp") : null;
    if (out) layers.geluBackward(d, out.buf, x, g, n, !out.fresh); // fresh: written, not added
    else layers.geluBackward(d, d.f32(dinp, n, "geluBackward dinp"), x, g, n);
  }

  attentionForward(out: DeviceBuffer, qkv: DeviceBuffer, dims: AttentionDims): DeviceBuffer {
    const d = this.#dev, { B, T, C } = dims;
    checkHeads(dims);
    const choice = {
      kind: this.kernels.attention,
      // an NVRTC build may lack mma.h, leaving the tensor-core kernels as traps (attention_bf16.cu)
      precision: this.build.via === "nvrtc" ? "f32" : this.kernels.attentionPrecision ?? "auto",
      matmulPrecision: this.#precision,
    } as const;
    return attentionForward(
      d,
      choice,
      d.f32(out, B * T * C, "attentionForward out"),
      d.f32(qkv, B * T * 3 * C, "attentionForward qkv"),
      dims,
    );
  }

  attentionBackward(
    dqkv: DeviceBuffer,
    dout: DeviceBuffer,
    qkv: DeviceBuffer,
    saved: DeviceBuffer,
    dims: AttentionDims,
  ): void {
    const d = this.#dev, { B, T, C, NH } = dims;
    checkHeads(dims);
    if (
      !(saved instanceof AttentionSaved) || saved.dims.B !== B || saved.dims.T !== T ||
      saved.dims.C !== C || saved.dims.NH !== NH
    ) {
      throw new Error(
        "Expected the buffer that attentionForward of the cuda backend returned, for the same sizes",
      );
    }
    // a gradient's first contribution: the flash kernels write every element of it
    const out = d.writable(dqkv, B * T * 3 * C, "attentionBackward dqkv");
    attentionBackward(
      d,
      out.buf,
      d.f32(dout, B * T * C, "attentionBackward dout"),
      d.f32(qkv, B * T * 3 * C, "attentionBackward qkv"),
      saved,
      dims,
      out.fresh,
    );
  }

  kvCacheAppend(
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    qkv: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const d = this.#dev, { B, T, C, maxT } = checkKVCacheDims(dims, kCache, vCache);
    kvCache.kvCacheAppend(
      d,
      d.f32(kCache, B * maxT * C, "kvCacheAppend kCache"),
      d.f32(vCache, B * maxT * C, "kvCacheAppend vCache"),
      d.f32(qkv, B * T * 3 * C, "kvCacheAppend qkv"),
      dims,
    );
  }

  attentionDecode(
    out: DeviceBuffer,
    qkv: DeviceBuffer,
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const d = this.#dev, { B, T, C, maxT } = checkKVCacheDims(dims, kCache, vCache);
    kvCache.attentionDecode(
      d,
      d.f32(out, B * T * C, "attentionDecode out"),
      d.f32(qkv, B * T * 3 * C, "attentionDecode qkv"),
      d.f32(kCache, B * maxT * C, "attentionDecode kCache"),
      d.f32(vCache, B * maxT * C, "attentionDecode vCache"),
      dims,
    );
  }

  crossEntropyForward(
    loss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const d = this.#dev, what = "crossEntropyForward";
    layers.crossEntropyForward(
      d,
      d.f32(loss, 1, `${what} loss`),
      d.f32(logits, N * V, `${what} logits`),
      d.i32(targets, N, `${what} targets`),
      N,
      V,
    );
  }

  crossEntropyBackward(
    dlogits: DeviceBuffer,
    dloss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const d = this.#dev, what = "crossEntropyBackward";
    layers.crossEntropyBackward(
      d,
      d.f32(dlogits, N * V, `${what} dlogits`),
      d.f32(dloss, 1, `${what} dloss`),
      d.f32(logits, N * V, `${what} logits`),
      d.i32(targets, N, `${what} targets`),
      N,
      V,
    );
  }

  /** The gradient of the mean loss written over the logits: one V-wide buffer for both. */
  crossEntropyBackwardInPlace(
    logits: DeviceBuffer,
    dloss: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const d = this.#dev, what = "crossEntropyBackwardInPlace";
    layers.crossEntropyBackwardInPlace(
      d,
      d.f32(logits, N * V, `${what} logits`),
      d.f32(dloss, 1, `${what} dloss`),
      d.i32(targets, N, `${what} targets`),
      N,
      V,
    );
  }

  async sumOfSquares(buf: DeviceBuffer, n: number): Promise<number> {
    return (await this.sumsOfSquares([buf], [n]))[0];
  }

  /** `sumOfSquares` of every buffer, with one read-back for all of them. */
  sumsOfSquares(bufs: DeviceBuffer[], ns: number[]): Promise<number[]> {
    if (bufs.length !== ns.length) {
      throw new Error(
        `sumsOfSquares: expected a length per buffer, found ${ns.length} for ${bufs.length}`,
      );
    }
    const d = this.#dev;
    return layers.sumsOfSquares(d, bufs.map((b, i) => d.f32(b, ns[i], "sumsOfSquares")), ns);
  }

  adamw(
    param: DeviceBuffer,
    grad: DeviceBuffer,
    m: DeviceBuffer,
    v: DeviceBuffer,
    n: number,
    hp: AdamWParams,
  ): void {
    const d = this.#dev;
    const bufs = {
      param: d.f32(param, n, "adamw param"),
      grad: d.f32(grad, n, "adamw grad"),
      m: d.f32(m, n, "adamw m"),
      v: d.f32(v, n, "adamw v"),
    };
    layers.adamw(d, this.#bf16, bufs, n, hp, this.kernels.adamw === "fused");
  }
}

function checkHeads({ C, NH }: AttentionDims): void {
  if (!(NH >= 1) || C % NH !== 0) {
    throw new Error(`Attention: expected C (${C}) to be a multiple of the number of heads (${NH})`);
  }
}

/** `dims` after checking the heads and that the T new positions fit the cache. */
/** The share of free device memory the pool grows into before reusing garbage: GPT2_CUDA_MEMORY_FRACTION, default 0.9. */
function memoryFraction(): number {
  const v = Number(Deno.env.get("GPT2_CUDA_MEMORY_FRACTION") ?? "0.9");
  return v > 0 && v <= 1 ? v : 0.9;
}

function formatVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

export type { CublasLtSymbols, DriverSymbols };
