/**
 * NCCL through Deno FFI (`Deno.dlopen` of libnccl.so.2, found by `findCudaLibrary("nccl")`),
 * and the few CUDA driver calls its caller needs beside it: the context a stream belongs to,
 * and events, to learn without blocking when a stream has passed a collective.
 *
 * This module is a typed binding, no policy: every call returns NCCL's result code, and the
 * process group over it (lib/ddp/nccl_group.ts) decides what waits, what times out and what
 * the errors say. Enum values and the layouts below are nccl.h's and cuda.h's (x86-64):
 * `ncclUniqueId` is 128 bytes passed by value; `ncclConfig_t` is passed as its first five
 * fields (40 bytes, `size` saying so), which NCCL reads as a config of that size with every
 * later field at its default.
 *
 * @module
 */

import { findCudaLibrary, searchSummary } from "./libraries.ts";

/** `ncclResult_t` (nccl.h). */
export const NcclResult = {
  success: 0,
  unhandledCudaError: 1,
  systemError: 2,
  internalError: 3,
  invalidArgument: 4,
  invalidUsage: 5,
  remoteError: 6,
  inProgress: 7,
  /** NCCL 2.29 and later. */
  timeout: 8,
} as const;

/** `ncclDataType_t` (nccl.h): the two element types of a `DeviceBuffer`. */
export const NcclDataType = { int32: 2, float32: 7 } as const;

/** `ncclRedOp_t` (nccl.h). */
export const NcclRedOp = { sum: 0, avg: 4 } as const;

/** `NCCL_UNIQUE_ID_BYTES`: the size of `ncclUniqueId`, which rank 0 sends to every rank. */
export const NCCL_UNIQUE_ID_BYTES = 128;

/** `NCCL_VERSION(2, 14, 0)`: non-blocking communicators, `ncclCommFinalize`. */
export const NCCL_NONBLOCKING_VERSION = 21400;

/** `NCCL_API_MAGIC`, the mark of an initialised `ncclConfig_t`. */
const NCCL_CONFIG_MAGIC = 0xcafebeef;
/** `NCCL_CONFIG_UNDEF_INT` (INT_MIN): "NCCL's default" for an int field of the config. */
const NCCL_CONFIG_UNDEF_INT = -2147483648;
/** The prefix of `ncclConfig_t` passed: size, magic, version, blocking, cgaClusterSize, minCTAs, maxCTAs, netName. */
const NCCL_CONFIG_BYTES = 40;
/** The config version those fields belong to (`NCCL_VERSION(2, 17, 0)`). */
const NCCL_CONFIG_VERSION = 21700;

const UNIQUE_ID: Deno.NativeStructType = {
  struct: new Array<Deno.NativeType>(NCCL_UNIQUE_ID_BYTES).fill("u8"),
};

/**
 * The NCCL functions used, with nccl.h's signatures: `ncclComm_t`, device pointers and
 * `cudaStream_t` as `usize` (bigint handles), enums as `i32`, out-parameters as buffers.
 * The ones NCCL 2.14 added are optional, so an older library loads and is refused by version.
 */
export const NCCL_SYMBOLS = {
  ncclGetVersion: { parameters: ["buffer"], result: "i32" },
  ncclGetUniqueId: { parameters: ["buffer"], result: "i32" },
  // (ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank, ncclConfig_t* config)
  ncclCommInitRankConfig: {
    parameters: ["buffer", "i32", UNIQUE_ID, "i32", "buffer"],
    result: "i32",
    optional: true,
  },
  ncclCommGetAsyncError: { parameters: ["usize", "buffer"], result: "i32" },
  ncclCommCount: { parameters: ["usize", "buffer"], result: "i32" },
  ncclCommCuDevice: { parameters: ["usize", "buffer"], result: "i32" },
  ncclCommUserRank: { parameters: ["usize", "buffer"], result: "i32" },
  ncclCommFinalize: { parameters: ["usize"], result: "i32", optional: true },
  ncclCommDestroy: { parameters: ["usize"], result: "i32" },
  ncclCommAbort: { parameters: ["usize"], result: "i32" },
  ncclGetErrorString: { parameters: ["i32"], result: "pointer" },
  ncclGetLastError: { parameters: ["usize"], result: "pointer", optional: true },
  ncclGroupStart: { parameters: [], result: "i32" },
  ncclGroupEnd: { parameters: [], result: "i32" },
  // (const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t, ncclRedOp_t, comm, stream)
  ncclAllReduce: {
    parameters: ["usize", "usize", "usize", "i32", "i32", "usize", "usize"],
    result: "i32",
  },
  // (const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t, int root, comm, stream)
  ncclBroadcast: {
    parameters: ["usize", "usize", "usize", "i32", "i32", "usize", "usize"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** `CUresult` values the fence tells apart (cuda.h). */
export const CudaResult = { success: 0, notReady: 600 } as const;

/** `CU_EVENT_DISABLE_TIMING` (cuda.h): an event only to wait on, cheaper to record. */
const CU_EVENT_DISABLE_TIMING = 0x2;

/** The CUDA driver calls a stream's fence needs (cuda.h; `cuEventDestroy` is `_v2`). */
export const CUDA_FENCE_SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
  cuStreamGetCtx: { parameters: ["usize", "buffer"], result: "i32" },
  cuCtxGetCurrent: { parameters: ["buffer"], result: "i32" },
  cuCtxSetCurrent: { parameters: ["usize"], result: "i32" },
  cuCtxGetDevice: { parameters: ["buffer"], result: "i32" },
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuEventRecord: { parameters: ["usize", "usize"], result: "i32" },
  cuEventQuery: { parameters: ["usize"], result: "i32" },
  cuEventDestroy_v2: { parameters: ["usize"], result: "i32" },
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** A C string from a pointer NCCL or CUDA returned, "" for null. */
function cString(ptr: Deno.PointerValue): string {
  return ptr ? Deno.UnsafePointerView.getCString(ptr) : "";
}

/** "2.27.3" from `NCCL_VERSION_CODE` (2.8 and older: X*1000+Y*100+Z; later: X*10000+Y*100+Z). */
export function ncclVersionString(code: number): string {
  const [major, rest] = code >= 10000
    ? [Math.floor(code / 10000), code % 10000]
    : [Math.floor(code / 1000), code % 1000];
  return `${major}.${Math.floor(rest / 100)}.${rest % 100}`;
}

/**
 * The 40 bytes of an `ncclConfig_t` that asks for a non-blocking communicator (`blocking = 0`:
 * its calls return `ncclInProgress` instead of waiting for the other ranks, so that a caller
 * can time out and abort), every other field left to NCCL.
 */
export function nonBlockingConfig(libraryVersion: number): Uint8Array {
  const bytes = new Uint8Array(NCCL_CONFIG_BYTES);
  const v = new DataView(bytes.buffer);
  v.setBigUint64(0, BigInt(NCCL_CONFIG_BYTES), true); // size_t size
  v.setUint32(8, NCCL_CONFIG_MAGIC, true); // unsigned int magic
  v.setUint32(12, Math.min(libraryVersion, NCCL_CONFIG_VERSION), true); // unsigned int version
  v.setInt32(16, 0, true); // int blocking
  v.setInt32(20, NCCL_CONFIG_UNDEF_INT, true); // int cgaClusterSize
  v.setInt32(24, NCCL_CONFIG_UNDEF_INT, true); // int minCTAs
  v.setInt32(28, NCCL_CONFIG_UNDEF_INT, true); // int maxCTAs
  v.setBigUint64(32, 0n, true); // const char* netName: NULL
  return bytes;
}

/** libnccl, opened: the calls of nccl.h, each returning its `ncclResult_t`. */
export class NcclLibrary {
  /** The file loaded. */
  readonly path: string;
  /** `NCCL_VERSION_CODE` of the library. */
  readonly versionCode: number;
  #lib: Deno.DynamicLibrary<typeof NCCL_SYMBOLS>;

  private constructor(path: string, lib: Deno.DynamicLibrary<typeof NCCL_SYMBOLS>) {
    this.path = path;
    this.#lib = lib;
    const out = new Int32Array(1);
    const rc = lib.symbols.ncclGetVersion(out);
    if (rc !== NcclResult.success) {
      lib.close();
      throw new Error(`ncclGetVersion failed in ${path}: ${this.errorString(rc)}`);
    }
    this.versionCode = out[0];
  }

  /**
   * Opens `path`, or the libnccl.so.2 that `findCudaLibrary("nccl")` finds.
   *
   * @throws {Error} saying where it looked when no copy is found, or that the copy is older
   * than 2.14 (no non-blocking communicators, so a hung rank could not time out).
   */
  static open(path?: string): NcclLibrary {
    let file = path ?? null;
    if (!file) {
      const hit = findCudaLibrary("nccl");
      if (!hit.path) {
        throw new Error(
          `Expected NCCL (libnccl.so.2) for DDP on CUDA devices, found none; looked in ${searchSummary()} (pip install nvidia-nccl-cu13, or set LD_LIBRARY_PATH)`,
        );
      }
      file = hit.path;
    }
    let lib: Deno.DynamicLibrary<typeof NCCL_SYMBOLS>;
    try {
      lib = Deno.dlopen(file, NCCL_SYMBOLS);
    } catch (e) {
      throw new Error(`Cannot load NCCL from ${file}: ${(e as Error).message}`);
    }
    const nccl = new NcclLibrary(file, lib);
    if (
      nccl.versionCode < NCCL_NONBLOCKING_VERSION || !lib.symbols.ncclCommInitRankConfig ||
      !lib.symbols.ncclCommFinalize
    ) {
      lib.close();
      throw new Error(
        `Expected NCCL 2.14 or later (non-blocking communicators, so that a hung rank times out), found ${nccl.version} in ${file}`,
      );
    }
    return nccl;
  }

  /** "2.27.3". */
  get version(): string {
    return ncclVersionString(this.versionCode);
  }

  /** `ncclGetErrorString`: "unhandled system error", and so on. */
  errorString(code: number): string {
    return cString(this.#lib.symbols.ncclGetErrorString(code));
  }

  /** `ncclGetLastError`: NCCL's own words on the last failure ("" where it has none). */
  lastError(comm: bigint): string {
    const fn = this.#lib.symbols.ncclGetLastError;
    return fn ? cString(fn(comm)) : "";
  }

  /** `ncclGetUniqueId`: the 128 bytes rank 0 hands every rank (they name its bootstrap socket). */
  uniqueId(): { rc: number; id: Uint8Array } {
    const id = new Uint8Array(NCCL_UNIQUE_ID_BYTES);
    return { rc: this.#lib.symbols.ncclGetUniqueId(id), id };
  }

  /**
   * `ncclCommInitRankConfig` with {@linkcode nonBlockingConfig}: joins the communicator of
   * `worldSize` ranks named by `id` as `rank`, on the CUDA device whose context is current.
   * It returns at once (`ncclInProgress`) with the handle; `asyncError` says when it is ready.
   */
  initRankNonBlocking(
    worldSize: number,
    id: Uint8Array,
    rank: number,
  ): { rc: number; comm: bigint } {
    if (id.byteLength !== NCCL_UNIQUE_ID_BYTES) {
      throw new Error(
        `Expected an ncclUniqueId of ${NCCL_UNIQUE_ID_BYTES} bytes, found ${id.byteLength}`,
      );
    }
    const out = new BigUint64Array(1);
    const config = nonBlockingConfig(this.versionCode);
    const rc = this.#lib.symbols.ncclCommInitRankConfig!(out, worldSize, id, rank, config);
    return { rc, comm: out[0] };
  }

  /** `ncclCommGetAsyncError`: the communicator's state (success, in progress, or its error). */
  asyncError(comm: bigint): number {
    const out = new Int32Array(1);
    const rc = this.#lib.symbols.ncclCommGetAsyncError(comm, out);
    return rc === NcclResult.success ? out[0] : rc;
  }

  /** `ncclCommCount`, `ncclCommCuDevice` and `ncclCommUserRank`: what the communicator is. */
  commInfo(comm: bigint): { rc: number; count: number; device: number; rank: number } {
    const count = new Int32Array(1), device = new Int32Array(1), rank = new Int32Array(1);
    const s = this.#lib.symbols;
    const rc = [
      s.ncclCommCount(comm, count),
      s.ncclCommCuDevice(comm, device),
      s.ncclCommUserRank(comm, rank),
    ]
      .find((r) => r !== NcclResult.success) ?? NcclResult.success;
    return { rc, count: count[0], device: device[0], rank: rank[0] };
  }

  /** `ncclGroupStart`: the calls until `groupEnd` are launched together. */
  groupStart(): number {
    return this.#lib.symbols.ncclGroupStart();
  }

  /** `ncclGroupEnd` (on a non-blocking communicator it may return `ncclInProgress`). */
  groupEnd(): number {
    return this.#lib.symbols.ncclGroupEnd();
  }

  /** `ncclAllReduce` in place: `count` elements at `pointer`, reduced over every rank. */
  allReduce(
    pointer: bigint,
    count: number,
    dataType: number,
    op: number,
    comm: bigint,
    stream: bigint,
  ): number {
    const n = BigInt(count);
    return this.#lib.symbols.ncclAllReduce(pointer, pointer, n, dataType, op, comm, stream);
  }

  /** `ncclBroadcast` in place: rank `root`'s `count` elements at `pointer` on every rank. */
  broadcast(
    pointer: bigint,
    count: number,
    dataType: number,
    root: number,
    comm: bigint,
    stream: bigint,
  ): number {
    const n = BigInt(count);
    return this.#lib.symbols.ncclBroadcast(pointer, pointer, n, dataType, root, comm, stream);
  }

  /** `ncclCommFinalize`: flushes the communicator's work (then poll `asyncError`). */
  finalize(comm: bigint): number {
    return this.#lib.symbols.ncclCommFinalize!(comm);
  }

  /** `ncclCommDestroy`: frees this rank's part of a finalized communicator. */
  destroy(comm: bigint): number {
    return this.#lib.symbols.ncclCommDestroy(comm);
  }

  /** `ncclCommAbort`: stops the communicator's work, even work stuck on a peer, and frees it. */
  abort(comm: bigint): number {
    return this.#lib.symbols.ncclCommAbort(comm);
  }

  /**
   * Unloads the library. Only once no communicator of it is left, and not needed at a run's
   * end: NCCL's threads may outlive a destroyed communicator for a moment.
   */
  close(): void {
    this.#lib.close();
  }
}

/**
 * What a DDP rank asks of the CUDA driver beside NCCL: how many devices there are, the
 * context of the backend's stream made current (NCCL takes its device from it), and where
 * the stream stands without blocking: a mark (a CUDA event recorded after what was enqueued
 * so far) and whether the stream has passed it. The process group waits on NCCL's work this
 * way, so that a collective stuck on a dead peer times out instead of hanging the process
 * inside a blocking CUDA call.
 */
export interface RankDevice {
  /** The CUDA devices this process sees. */
  deviceCount(): number;
  /** Makes the context of `stream` current on this thread; returns its device ordinal. */
  useStreamContext(stream: bigint): number;
  /** Records a mark on `stream` after everything enqueued on it so far. */
  mark(stream: bigint): void;
  /** True once the stream has passed the last mark; throws on a CUDA error. */
  passed(): boolean;
  /** Releases the mark's event. */
  close(): void;
}

/** {@linkcode RankDevice} through libcuda.so.1 (`findCudaLibrary("cuda")`). */
export class CudaFence implements RankDevice {
  #cu: Deno.DynamicLibrary<typeof CUDA_FENCE_SYMBOLS>;
  #event = 0n;

  private constructor(cu: Deno.DynamicLibrary<typeof CUDA_FENCE_SYMBOLS>) {
    this.#cu = cu;
  }

  /** Opens the driver (it is already loaded by the backend: the same library). */
  static open(): CudaFence {
    const hit = findCudaLibrary("cuda");
    if (!hit.path) {
      throw new Error(
        `Expected the CUDA driver (libcuda.so.1), found none; looked in ${searchSummary()}`,
      );
    }
    const fence = new CudaFence(Deno.dlopen(hit.path, CUDA_FENCE_SYMBOLS));
    fence.#check(fence.#cu.symbols.cuInit(0), "cuInit");
    return fence;
  }

  #check(rc: number, what: string): void {
    if (rc === CudaResult.success) return;
    const name = new BigUint64Array(1);
    const named = this.#cu.symbols.cuGetErrorName(rc, name) === CudaResult.success && name[0]
      ? cString(Deno.UnsafePointer.create(name[0]))
      : `CUresult ${rc}`;
    throw new Error(`${what} failed: ${named}`);
  }

  /** `cuDeviceGetCount`: the CUDA devices this process sees. */
  deviceCount(): number {
    const out = new Int32Array(1);
    this.#check(this.#cu.symbols.cuDeviceGetCount(out), "cuDeviceGetCount");
    return out[0];
  }

  /**
   * Makes the context of `stream` current on this thread (NCCL takes its device from the
   * current context) and returns that context's device ordinal.
   */
  useStreamContext(stream: bigint): number {
    const s = this.#cu.symbols;
    const ctx = new BigUint64Array(1), current = new BigUint64Array(1);
    this.#check(s.cuStreamGetCtx(stream, ctx), "cuStreamGetCtx");
    this.#check(s.cuCtxGetCurrent(current), "cuCtxGetCurrent");
    if (current[0] !== ctx[0]) this.#check(s.cuCtxSetCurrent(ctx[0]), "cuCtxSetCurrent");
    const device = new Int32Array(1);
    this.#check(s.cuCtxGetDevice(device), "cuCtxGetDevice");
    return device[0];
  }

  mark(stream: bigint): void {
    const s = this.#cu.symbols;
    if (this.#event === 0n) {
      const out = new BigUint64Array(1);
      this.#check(s.cuEventCreate(out, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
      this.#event = out[0];
    }
    this.#check(s.cuEventRecord(this.#event, stream), "cuEventRecord");
  }

  passed(): boolean {
    if (this.#event === 0n) return true;
    const rc = this.#cu.symbols.cuEventQuery(this.#event);
    if (rc === CudaResult.notReady) return false;
    this.#check(rc, "cuEventQuery");
    return true;
  }

  /** Destroys the event; the driver stays loaded (the backend opened it too). */
  close(): void {
    if (this.#event !== 0n) this.#cu.symbols.cuEventDestroy_v2(this.#event);
    this.#event = 0n;
  }
}
