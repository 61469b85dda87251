/**
 * The CUDA driver API through `Deno.dlopen("libcuda.so.1")`: initialisation, the device and
 * its primary context, memory (device and pinned host), copies and fills on one stream,
 * loading the kernels' fatbin, kernel launches with an argument buffer, and events.
 *
 * Handles and device pointers are `bigint`s (declared `usize`/`u64` in the symbol table);
 * out-parameters are one-element typed arrays. Every failing call throws an `Error` naming
 * the call and the driver's error name (`cuGetErrorName`), e.g.
 * "cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory".
 *
 * Every call runs in the context made current by `CudaDriver.open` on the calling thread (JS
 * runs on one thread; a process drives one GPU, as DDP's one process per GPU does).
 *
 * @module
 */

import { findCudaLibrary, libraryOverride, searchSummary } from "./libraries.ts";

/** The driver entry points the backend uses (`_v2` where cuda.h maps the plain name to it). */
export const DRIVER_SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32" },
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" },
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceTotalMem_v2: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRelease_v2: { parameters: ["i32"], result: "i32" },
  cuCtxSetCurrent: { parameters: ["usize"], result: "i32" },
  cuMemGetInfo_v2: { parameters: ["buffer", "buffer"], result: "i32" },
  cuMemAlloc_v2: { parameters: ["buffer", "usize"], result: "i32" },
  cuMemFree_v2: { parameters: ["u64"], result: "i32" },
  cuMemHostAlloc: { parameters: ["buffer", "usize", "u32"], result: "i32" },
  cuMemFreeHost: { parameters: ["usize"], result: "i32" },
  cuMemcpyHtoDAsync_v2: { parameters: ["u64", "buffer", "usize", "usize"], result: "i32" },
  cuMemcpyDtoHAsync_v2: { parameters: ["usize", "u64", "usize", "usize"], result: "i32" },
  cuMemcpyDtoDAsync_v2: { parameters: ["u64", "u64", "usize", "usize"], result: "i32" },
  cuMemsetD32Async: { parameters: ["u64", "u32", "usize", "usize"], result: "i32" },
  cuModuleLoadData: { parameters: ["buffer", "buffer"], result: "i32" },
  cuModuleUnload: { parameters: ["usize"], result: "i32" },
  cuModuleGetFunction: { parameters: ["buffer", "usize", "buffer"], result: "i32" },
  cuFuncSetAttribute: { parameters: ["usize", "i32", "i32"], result: "i32" },
  cuFuncGetAttribute: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  cuLaunchKernel: {
    parameters: [
      "usize",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "usize",
      "buffer",
      "usize",
    ],
    result: "i32",
  },
  cuStreamCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuStreamDestroy_v2: { parameters: ["usize"], result: "i32" },
  cuStreamSynchronize: { parameters: ["usize"], result: "i32" },
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuEventRecord: { parameters: ["usize", "usize"], result: "i32" },
  cuEventQuery: { parameters: ["usize"], result: "i32" },
  cuEventSynchronize: { parameters: ["usize"], result: "i32" },
  cuEventDestroy_v2: { parameters: ["usize"], result: "i32" },
  // CUDA 13's headers map cuEventElapsedTime to _v2; older drivers have only the plain one
  cuEventElapsedTime_v2: {
    parameters: ["buffer", "usize", "usize"],
    result: "i32",
    optional: true,
  },
  cuEventElapsedTime: { parameters: ["buffer", "usize", "usize"], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

/** The driver's functions, as `Deno.dlopen` returns them (or a stand-in with the same types). */
export type DriverSymbols = Deno.DynamicLibrary<typeof DRIVER_SYMBOLS>["symbols"];

/** CUresult values the backend acts on (cuda.h). */
export const CU = {
  SUCCESS: 0,
  ERROR_OUT_OF_MEMORY: 2,
  ERROR_NOT_INITIALIZED: 3,
  ERROR_NO_DEVICE: 100,
  ERROR_INVALID_DEVICE: 101,
  ERROR_NOT_READY: 600,
} as const;

/** CUdevice_attribute values (cuda.h). */
const ATTRIBUTE = {
  MULTIPROCESSOR_COUNT: 16,
  COMPUTE_CAPABILITY_MAJOR: 75,
  COMPUTE_CAPABILITY_MINOR: 76,
  MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
} as const;
/**
 * CUfunction_attribute values (CUDA 13's cuda.h, CUfunction_attribute_enum; the driver API
 * reference, https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__TYPES.html, and
 * "cuFuncGetAttribute" in group__CUDA__EXEC): MAX_THREADS_PER_BLOCK is the block "beyond which a launch of the
 * function would fail", from its `__launch_bounds__` and registers on this device.
 */
export const FUNC_ATTRIBUTE = {
  MAX_THREADS_PER_BLOCK: 0,
  SHARED_SIZE_BYTES: 1,
  LOCAL_SIZE_BYTES: 3,
  NUM_REGS: 4,
  MAX_DYNAMIC_SHARED_SIZE_BYTES: 8,
} as const;
/** CU_EVENT_DISABLE_TIMING (cuda.h). */
const EVENT_DISABLE_TIMING = 2;

/** A failed driver call: the call, and the driver's error code and name. */
export class CudaError extends Error {
  constructor(message: string, readonly code: number, readonly errorName: string) {
    super(message);
    this.name = "CudaError";
  }
}

/** The driver library opened, or why it could not be: the one line `cudaUnavailable` says. */
export function openDriverLibrary():
  | { symbols: DriverSymbols; path: string }
  | { error: string } {
  // the dynamic linker's own search first (the driver's folder is usually on it), then ours;
  // a file named by GPT2_CUDA_DRIVER_LIB alone
  const override = libraryOverride("cuda");
  const candidates = override ? [] : ["libcuda.so.1"];
  const hit = findCudaLibrary("cuda");
  if (hit.path) candidates.push(hit.path);
  if (override && !hit.path) {
    return { error: `No NVIDIA driver: ${hit.tried[0]} is no file` };
  }
  for (const path of candidates) {
    try {
      return { symbols: Deno.dlopen(path, DRIVER_SYMBOLS).symbols, path };
    } catch (e) {
      if (path !== "libcuda.so.1") {
        return { error: `No NVIDIA driver: ${path} did not load (${firstLine(e)})` };
      }
    }
  }
  return {
    error: `No NVIDIA driver: libcuda.so.1 not found (looked in the dynamic linker's paths, ${
      searchSummary("cuda")
    })`,
  };
}

/** Counts of the calls a driver enqueued (`CudaDriver.calls`). */
export interface DriverCalls {
  /** cuLaunchKernel calls. */
  launches: number;
  /** cuMemcpy*Async calls (host to device, device to host and device to device). */
  copies: number;
  /** cuMemsetD32Async calls. */
  memsets: number;
}

/** An opened device: its primary context, one stream, and the calls the backend makes. */
export class CudaDriver {
  /** The device's ordinal (CUDA's device number). */
  readonly device: number;
  /** The device's primary context (CUcontext), as a bigint. */
  readonly context: bigint;
  /** The stream every call of the backend is ordered on (CUstream), as a bigint. */
  readonly stream: bigint;
  /** Where libcuda was loaded from ("libcuda.so.1" when the dynamic linker found it). */
  readonly libraryPath: string;
  /** The driver's CUDA version, e.g. 13000 for 13.0. */
  readonly driverVersion: number;
  /** Calls enqueued on the stream so far, by kind (for the host-side benchmark). */
  readonly calls: DriverCalls = { launches: 0, copies: 0, memsets: 0 };
  readonly #cu: DriverSymbols;
  readonly #handle: Int32Array = new Int32Array(1); // a CUdevice
  #destroyed = false;

  private constructor(
    cu: DriverSymbols,
    libraryPath: string,
    device: number,
    context: bigint,
    stream: bigint,
    driverVersion: number,
  ) {
    this.#cu = cu;
    this.libraryPath = libraryPath;
    this.device = device;
    this.context = context;
    this.stream = stream;
    this.driverVersion = driverVersion;
  }

  /**
   * Initialises the driver, retains device `device`'s primary context, makes it current and
   * creates the stream. `symbols` replaces the real driver (a stand-in with the same types).
   *
   * @throws {Error} with one line saying what is missing: the driver, a device, that device.
   */
  static open(
    device = 0,
    options: { symbols?: DriverSymbols; libraryPath?: string } = {},
  ): CudaDriver {
    let cu = options.symbols, path = options.libraryPath ?? "(given)";
    if (!cu) {
      const lib = openDriverLibrary();
      if ("error" in lib) throw new Error(lib.error);
      ({ symbols: cu, path } = lib);
    }
    const init = cu.cuInit(0);
    if (init === CU.ERROR_NO_DEVICE) {
      throw new CudaError(
        `No CUDA device: cuInit found none (${path})`,
        init,
        "CUDA_ERROR_NO_DEVICE",
      );
    }
    if (init !== CU.SUCCESS) {
      throw new CudaError(
        `No usable NVIDIA driver: cuInit failed with ${errorName(cu, init)} (${path})`,
        init,
        errorName(cu, init),
      );
    }
    const i32 = new Int32Array(1);
    check(cu, cu.cuDriverGetVersion(i32), "cuDriverGetVersion");
    const version = i32[0];
    check(cu, cu.cuDeviceGetCount(i32), "cuDeviceGetCount");
    if (i32[0] === 0) {
      throw new CudaError("No CUDA device: the driver found none", 100, "CUDA_ERROR_NO_DEVICE");
    }
    if (!Number.isInteger(device) || device < 0 || device >= i32[0]) {
      throw new Error(`No CUDA device ${device}: the driver found ${i32[0]} (0 to ${i32[0] - 1})`);
    }
    check(cu, cu.cuDeviceGet(i32, device), "cuDeviceGet");
    const dev = i32[0];
    const out = new BigUint64Array(1);
    check(cu, cu.cuDevicePrimaryCtxRetain(out, dev), "cuDevicePrimaryCtxRetain");
    const context = out[0];
    check(cu, cu.cuCtxSetCurrent(context), "cuCtxSetCurrent");
    // a blocking stream (flags 0): ordered with the legacy default stream too
    check(cu, cu.cuStreamCreate(out, 0), "cuStreamCreate");
    const driver = new CudaDriver(cu, path, device, context, out[0], version);
    driver.#handle[0] = dev;
    return driver;
  }

  /** Throws, naming `what` and the driver's error, unless `result` is CUDA_SUCCESS. */
  check(result: number, what: string): void {
    check(this.#cu, result, what);
  }

  /** The driver's name of a CUresult, e.g. "CUDA_ERROR_OUT_OF_MEMORY". */
  errorName(result: number): string {
    return errorName(this.#cu, result);
  }

  // ---- the device ---------------------------------------------------------------------

  /** The device's marketing name, e.g. "NVIDIA H200". */
  deviceName(): string {
    const buf = new Uint8Array(256);
    this.check(this.#cu.cuDeviceGetName(buf, buf.length, this.#handle[0]), "cuDeviceGetName");
    const end = buf.indexOf(0);
    return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
  }

  /** A CUdevice_attribute of the device. */
  attribute(attribute: number): number {
    const out = new Int32Array(1);
    this.check(
      this.#cu.cuDeviceGetAttribute(out, attribute, this.#handle[0]),
      `cuDeviceGetAttribute(${attribute})`,
    );
    return out[0];
  }

  /** [major, minor], e.g. [9, 0] for Hopper. */
  computeCapability(): [number, number] {
    return [
      this.attribute(ATTRIBUTE.COMPUTE_CAPABILITY_MAJOR),
      this.attribute(ATTRIBUTE.COMPUTE_CAPABILITY_MINOR),
    ];
  }

  /** Streaming multiprocessors. */
  multiprocessors(): number {
    return this.attribute(ATTRIBUTE.MULTIPROCESSOR_COUNT);
  }

  /** The most dynamic shared memory a block may opt in to, in bytes. */
  maxSharedMemoryOptin(): number {
    return this.attribute(ATTRIBUTE.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
  }

  /** The device's memory, in bytes. */
  totalMemory(): number {
    const out = new BigUint64Array(1);
    this.check(this.#cu.cuDeviceTotalMem_v2(out, this.#handle[0]), "cuDeviceTotalMem_v2");
    return Number(out[0]);
  }

  /** Free and total device memory now, in bytes. */
  memoryInfo(): { free: number; total: number } {
    const free = new BigUint64Array(1), total = new BigUint64Array(1);
    this.check(this.#cu.cuMemGetInfo_v2(free, total), "cuMemGetInfo_v2");
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  // ---- memory -----------------------------------------------------------------------

  /** Device memory of `bytes`, or null when the device has none left (other errors throw). */
  tryAlloc(bytes: number): bigint | null {
    const out = new BigUint64Array(1);
    const r = this.#cu.cuMemAlloc_v2(out, BigInt(bytes));
    if (r === CU.ERROR_OUT_OF_MEMORY) return null;
    this.check(r, `cuMemAlloc_v2(${bytes} bytes)`);
    return out[0];
  }

  /** Returns device memory from `tryAlloc`. */
  free(pointer: bigint): void {
    this.check(this.#cu.cuMemFree_v2(pointer), "cuMemFree_v2");
  }

  /** Page-locked host memory of `bytes` (the target of asynchronous read-backs). */
  hostAlloc(bytes: number): bigint {
    const out = new BigUint64Array(1);
    this.check(this.#cu.cuMemHostAlloc(out, BigInt(bytes), 0), `cuMemHostAlloc(${bytes} bytes)`);
    return out[0];
  }

  /** Returns page-locked memory from `hostAlloc`. */
  hostFree(pointer: bigint): void {
    this.check(this.#cu.cuMemFreeHost(pointer), "cuMemFreeHost");
  }

  /**
   * Copies `src` to device memory, in order on the stream. The host array may be reused at
   * once: for pageable memory the driver has staged it before returning.
   */
  copyToDevice(dst: bigint, src: ArrayBufferView, bytes = src.byteLength): void {
    if (bytes === 0) return;
    this.check(
      this.#cu.cuMemcpyHtoDAsync_v2(dst, src, BigInt(bytes), this.stream),
      "cuMemcpyHtoDAsync_v2",
    );
    this.calls.copies++;
  }

  /** Enqueues a copy of device memory into page-locked host memory (see `hostAlloc`). */
  copyToPinned(dstHost: bigint, src: bigint, bytes: number): void {
    if (bytes === 0) return;
    this.check(
      this.#cu.cuMemcpyDtoHAsync_v2(dstHost, src, BigInt(bytes), this.stream),
      "cuMemcpyDtoHAsync_v2",
    );
    this.calls.copies++;
  }

  /** Enqueues a device-to-device copy. */
  copyOnDevice(dst: bigint, src: bigint, bytes: number): void {
    if (bytes === 0) return;
    this.check(
      this.#cu.cuMemcpyDtoDAsync_v2(dst, src, BigInt(bytes), this.stream),
      "cuMemcpyDtoDAsync_v2",
    );
    this.calls.copies++;
  }

  /** Enqueues setting `count` 32-bit words at `dst` to `value`. */
  fill32(dst: bigint, value: number, count: number): void {
    if (count === 0) return;
    this.check(
      this.#cu.cuMemsetD32Async(dst, value >>> 0, BigInt(count), this.stream),
      "cuMemsetD32Async",
    );
    this.calls.memsets++;
  }

  // ---- kernels ----------------------------------------------------------------------

  /** Loads a fatbin or cubin image (no JIT of PTX where the image has the device's cubin). */
  loadModule(image: Uint8Array): bigint {
    const out = new BigUint64Array(1);
    this.check(this.#cu.cuModuleLoadData(out, image), "cuModuleLoadData");
    return out[0];
  }

  /** Unloads a module from `loadModule`. */
  unloadModule(module: bigint): void {
    this.check(this.#cu.cuModuleUnload(module), "cuModuleUnload");
  }

  /** A kernel of a loaded module, by its (unmangled) name. */
  getFunction(module: bigint, name: string): bigint {
    const out = new BigUint64Array(1);
    const cName = new TextEncoder().encode(`${name}\0`);
    this.check(
      this.#cu.cuModuleGetFunction(out, module, cName),
      `cuModuleGetFunction("${name}")`,
    );
    return out[0];
  }

  /** A CUfunction_attribute (`FUNC_ATTRIBUTE`) of a kernel from `getFunction`. */
  functionAttribute(fn: bigint, attribute: number): number {
    const out = new Int32Array(1);
    this.check(
      this.#cu.cuFuncGetAttribute(out, attribute, fn),
      `cuFuncGetAttribute(${attribute})`,
    );
    return out[0];
  }

  /** Lets `fn` launch with up to `bytes` of dynamic shared memory (above the default 48 KiB). */
  setMaxDynamicSharedMemory(fn: bigint, bytes: number): void {
    this.check(
      this.#cu.cuFuncSetAttribute(fn, FUNC_ATTRIBUTE.MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
      `cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, ${bytes})`,
    );
  }

  /**
   * Enqueues a launch; `params` is cuLaunchKernel's kernelParams array (one pointer per
   * argument, pointing at the argument's value), read by the driver before this returns.
   */
  launch(
    fn: bigint,
    grid: readonly [number, number, number],
    block: readonly [number, number, number],
    sharedBytes: number,
    params: Uint8Array,
    name: string,
  ): void {
    const r = this.#cu.cuLaunchKernel(
      fn,
      grid[0],
      grid[1],
      grid[2],
      block[0],
      block[1],
      block[2],
      sharedBytes,
      this.stream,
      params,
      0n,
    );
    // the message only on failure: a step makes hundreds of launches
    if (r !== CU.SUCCESS) {
      this.check(r, `cuLaunchKernel(${name}, grid ${grid.join("x")}, block ${block.join("x")})`);
    }
    this.calls.launches++;
  }

  // ---- waiting ------------------------------------------------------------------------

  /** An event; `timing` for `elapsedMs`, else a cheaper one for waiting only. */
  createEvent(timing = false): bigint {
    const out = new BigUint64Array(1);
    this.check(this.#cu.cuEventCreate(out, timing ? 0 : EVENT_DISABLE_TIMING), "cuEventCreate");
    return out[0];
  }

  /** Records `event` on the stream, after everything enqueued so far. */
  recordEvent(event: bigint): void {
    this.check(this.#cu.cuEventRecord(event, this.stream), "cuEventRecord");
  }

  /** Whether the work before `event` has finished (throws on a failed kernel). */
  eventDone(event: bigint): boolean {
    const r = this.#cu.cuEventQuery(event);
    if (r === CU.ERROR_NOT_READY) return false;
    this.check(r, "cuEventQuery (a kernel before it failed)");
    return true;
  }

  /** Milliseconds between two recorded timing events. */
  elapsedMs(start: bigint, end: bigint): number {
    const out = new Float32Array(1);
    const fn = this.#cu.cuEventElapsedTime_v2 ?? this.#cu.cuEventElapsedTime;
    if (!fn) throw new Error("Expected cuEventElapsedTime in libcuda, found neither version");
    this.check(fn(out, start, end), "cuEventElapsedTime");
    return out[0];
  }

  destroyEvent(event: bigint): void {
    this.check(this.#cu.cuEventDestroy_v2(event), "cuEventDestroy_v2");
  }

  /**
   * Waits, without blocking the thread, until everything enqueued so far has run: polls an
   * event, yielding to the event loop between polls (a message-channel hop first, about
   * 10-50 us, then 1 ms sleeps), so timers, I/O and finalizers run meanwhile.
   */
  async drain(): Promise<void> {
    const event = this.createEvent();
    try {
      this.recordEvent(event);
      await this.waitFor(event);
    } finally {
      this.destroyEvent(event);
    }
  }

  /** Waits, as `drain` does, until `event` (recorded earlier) has been reached. */
  async waitFor(event: bigint): Promise<void> {
    const start = performance.now();
    while (!this.eventDone(event)) {
      await (performance.now() - start < 20 ? nextTurn() : sleep(1));
    }
  }

  /** Blocks the thread until the stream is idle (before freeing memory kernels may use). */
  synchronize(): void {
    this.check(this.#cu.cuStreamSynchronize(this.stream), "cuStreamSynchronize");
  }

  /** Waits for the stream, destroys it and releases the primary context. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#cu.cuStreamSynchronize(this.stream);
    this.#cu.cuStreamDestroy_v2(this.stream);
    this.#cu.cuDevicePrimaryCtxRelease_v2(this.#handle[0]);
  }
}

/**
 * One turn of the event loop (a macrotask: finalizers and WeakRef clearing happen between
 * turns), without timers' 1 ms granularity.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      channel.port2.close();
      resolve();
    };
    channel.port2.postMessage(0);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function check(cu: DriverSymbols, result: number, what: string): void {
  if (result === CU.SUCCESS) return;
  const name = errorName(cu, result);
  throw new CudaError(
    `${what} failed: ${name} (${result}): ${errorString(cu, result)}`,
    result,
    name,
  );
}

function errorName(cu: DriverSymbols, result: number): string {
  return cString(cu, result, "cuGetErrorName") ?? `CUresult ${result}`;
}

function errorString(cu: DriverSymbols, result: number): string {
  return cString(cu, result, "cuGetErrorString") ?? "no description";
}

function cString(
  cu: DriverSymbols,
  result: number,
  which: "cuGetErrorName" | "cuGetErrorString",
): string | null {
  const out = new BigUint64Array(1);
  if (cu[which](result, out) !== CU.SUCCESS || out[0] === 0n) return null;
  const p = Deno.UnsafePointer.create(out[0]);
  return p ? Deno.UnsafePointerView.getCString(p) : null;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}
