/**
 * The CUDA backend on the CPU, for checking lib/backends/cuda and kernels/cuda without a GPU:
 * the same kernels compiled as C++ (this folder's headers: a block's threads are fibers,
 * barriers and warp shuffles are checked), and stand-ins with the real symbol tables' types
 * for the driver (device memory is host memory with guard bytes around each block) and for
 * cuBLASLt (a column-major GEMM that checks the layouts it is given as cuBLASLt would).
 * Everything above those two tables runs as it does on a GPU: argument packing, the pool,
 * read-backs, the cuBLASLt plans and their fallbacks, bf16 operand copies.
 *
 * Launches are checked against what each kernel takes on a GPU (resources.ts: nvcc's
 * registers, static shared memory and `__launch_bounds__` for sm_80 and sm_90, which the C++
 * build defines away): a block or shared memory too large for either is refused with the
 * CUresult a driver returns. Without nvcc that check is off, and the emulator says so once.
 *
 * What it cannot check: timing and concurrency (one thread at a time, in order), the real
 * libraries' behaviour, and GPU-only arithmetic (FMA contraction, fast intrinsics).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheDir } from "../../lib/io/cache.ts";
import { CUDA_KERNEL_DIR, readSources, unitSource } from "../../lib/backends/cuda/build.ts";
import {
  CUBLAS_COMPUTE_32F_FAST_TF32,
  CUBLAS_OP_T,
  type CublasLtSymbols,
  CUDA_R_16BF,
  CUDA_R_32F,
  DESC_BIAS_DATA_TYPE,
  DESC_BIAS_POINTER,
  DESC_EPILOGUE,
  DESC_TRANSA,
  DESC_TRANSB,
  EPILOGUE_BIAS,
  EPILOGUE_DEFAULT,
  HEURISTIC_RESULT_BYTES,
} from "../../lib/backends/cuda/cublaslt.ts";
import {
  CudaDriver,
  CudaError,
  type DriverSymbols,
  FUNC_ATTRIBUTE,
} from "../../lib/backends/cuda/driver.ts";
import { KERNELS } from "../../lib/backends/cuda/kernels.ts";
import { CudaBackend } from "../../lib/backends/cuda/mod.ts";
import {
  kernelResources,
  launchRefusal,
  MAX_BLOCK_THREADS,
  RESOURCE_ARCHES,
  type ResourceTable,
} from "../../lib/backends/cuda/resources.ts";

/** This folder: the emulator's headers (cuda_emulator.h, runtime.h). */
const EMULATOR_DIR = fileURLToPath(new URL(".", import.meta.url));

const EMULATOR_SYMBOLS = {
  emu_kernel_count: { parameters: [], result: "i32" },
  emu_kernel_name: { parameters: ["i32"], result: "pointer" },
  emu_kernel_signature: { parameters: ["i32"], result: "pointer" },
  emu_launch: {
    parameters: ["i32", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "buffer", "buffer", "i32"],
    result: "i32",
  },
  emu_gemm: {
    parameters: [
      "i32",
      "i32",
      "i64",
      "i64",
      "i64",
      "u64",
      "i32",
      "i64",
      "u64",
      "i32",
      "i64",
      "f32",
      "u64",
      "i64",
      "u64",
      "i32",
    ],
    result: "void",
  },
} as const satisfies Deno.ForeignLibraryInterface;

type EmulatorSymbols = Deno.DynamicLibrary<typeof EMULATOR_SYMBOLS>["symbols"];

/** What a cuBLASLt plan combines, for `EmulatorOptions`' refusals. */
export interface GemmCombination {
  bf16: boolean;
  tf32: boolean;
  bias: boolean;
}

/** Options of the emulated backend. */
export interface EmulatorOptions {
  /** The emulated device's memory, in bytes (default 1 GiB): cuMemAlloc fails past it. */
  memoryBytes?: number;
  /**
   * cuBLASLt combinations to refuse (no algorithm), to exercise the plans' fallbacks:
   * e.g. `({ bf16, bias }) => bf16 && bias`.
   */
  refuseGemm?: (c: GemmCombination) => boolean;
  /** Combinations the heuristic offers but cublasLtMatmul refuses (NOT_SUPPORTED) when run. */
  refuseMatmul?: (c: GemmCombination) => boolean;
  /**
   * The kernels' resources to check launches against; default `kernelResources()` (nvcc's,
   * cached), null to launch unchecked (as without nvcc).
   */
  resources?: ResourceTable | null;
  quiet?: boolean;
}

let measured: Promise<ResourceTable | null> | null = null;
let saidUnchecked = false;

/** nvcc's table, measured once a process (a cache hit after the first). */
function defaultResources(quiet: boolean): Promise<ResourceTable | null> {
  return measured ??= kernelResources({ quiet }).catch((e) => {
    measured = null; // a failed nvcc run is an error every time, not a silent "unchecked"
    throw e;
  });
}

/** The emulator's library: the kernels compiled by the system C++ compiler, cached. */
export async function buildEmulator(): Promise<string> {
  const sources = readSources();
  const runtime = ["cuda_emulator.h", "runtime.h"].map((n) =>
    Deno.readTextFileSync(join(EMULATOR_DIR, n))
  );
  const names = Object.keys(KERNELS);
  const unit = [
    `#include "${join(EMULATOR_DIR, "runtime.h")}"`,
    unitSource(sources),
    "static const emu::Entry ENTRIES[] = {",
    ...names.map((n) => `  EMU_KERNEL(${n}),`),
    "};",
    "const emu::Entry* emu_entries() { return ENTRIES; }",
    `int emu_entry_count() { return ${names.length}; }`,
  ].join("\n");
  const cxx = Deno.env.get("CXX") ?? "c++";
  const flags = [
    "-O2",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-Wno-unknown-pragmas",
  ];
  const key = createHash("sha256").update(unit).update(runtime.join("\0")).update(flags.join(" "))
    .update([...sources.values()].join("\0")).digest("hex").slice(0, 16);
  const dir = cacheDir("cuda");
  const path = join(dir, `emulator-${key}.so`);
  try {
    if (Deno.statSync(path).isFile) return path;
  } catch {
    // not built yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const src = join(dir, `emulator-${key}.${Deno.pid}.cpp`), tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(src, unit);
  try {
    const r = await new Deno.Command(cxx, {
      args: [...flags, "-I", EMULATOR_DIR, "-I", CUDA_KERNEL_DIR, "-o", tmp, src],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      throw new Error(
        `Compiling the CUDA emulator with ${cxx} failed:\n${new TextDecoder().decode(r.stderr)}`,
      );
    }
    await Deno.rename(tmp, path);
    return path;
  } finally {
    await Deno.remove(src).catch(() => {});
  }
}

/** The CUDA backend over the emulator (see the module comment). */
export async function createEmulatedCudaBackend(
  options: EmulatorOptions = {},
): Promise<CudaBackend> {
  const [path, resources] = await Promise.all([
    buildEmulator(),
    options.resources !== undefined ? options.resources : defaultResources(options.quiet ?? false),
  ]);
  if (!resources && !saidUnchecked && !options.quiet) {
    saidUnchecked = true;
    console.log(
      "cuda (emulated): no nvcc, so launches are not checked against the kernels' registers, " +
        "shared memory and __launch_bounds__",
    );
  }
  const lib = Deno.dlopen(path, EMULATOR_SYMBOLS);
  const memory = new EmulatedMemory(options.memoryBytes ?? 2 ** 30);
  const kernels = new EmulatedKernels(lib.symbols, resources);
  const driver = CudaDriver.open(0, {
    symbols: emulatedDriver(memory, kernels),
    libraryPath: `the CPU emulator (${path})`,
  });
  const lt = {
    symbols: emulatedCublasLt(memory, lib.symbols, options),
    path: "the CPU emulator's GEMM",
  };
  const backend = CudaBackend.open(
    driver,
    { path, via: "emulator", log: "compiled for the CPU" },
    lt,
  );
  if (!options.quiet) console.log(`cuda (emulated): ${backend.describe()}`);
  return backend;
}

// ---- memory ---------------------------------------------------------------------------

/** Guard bytes on each side of a block: written with 0xff, checked after every launch. */
const GUARD = 256;

interface Block {
  buffer: ArrayBuffer;
  base: bigint; // address of the first usable byte
  bytes: number;
}

/** Device (and page-locked) memory as host ArrayBuffers, which never move. */
class EmulatedMemory {
  readonly blocks = new Map<bigint, Block>();
  used = 0;

  constructor(readonly capacity: number) {}

  alloc(bytes: number, device: boolean): bigint | null {
    if (device && this.used + bytes > this.capacity) return null;
    const buffer = new ArrayBuffer(bytes + 2 * GUARD);
    new Uint8Array(buffer).fill(0xff); // NaNs: reading memory nothing wrote shows
    const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(new Uint8Array(buffer)))) +
      BigInt(GUARD);
    this.blocks.set(base, { buffer, base, bytes });
    if (device) this.used += bytes;
    return base;
  }

  free(pointer: bigint, device: boolean): number {
    const b = this.blocks.get(pointer);
    if (!b) return 1; // CUDA_ERROR_INVALID_VALUE
    this.checkGuards("cuMemFree", b);
    this.blocks.delete(pointer);
    if (device) this.used -= b.bytes;
    return 0;
  }

  /** The bytes [pointer, pointer + bytes) as a view, which must lie inside one block. */
  view(pointer: bigint, bytes: number, what: string): Uint8Array {
    for (const b of this.blocks.values()) {
      if (pointer >= b.base && pointer + BigInt(bytes) <= b.base + BigInt(b.bytes)) {
        return new Uint8Array(b.buffer, GUARD + Number(pointer - b.base), bytes);
      }
    }
    throw new Error(
      `${what}: ${bytes} bytes at 0x${pointer.toString(16)} are not inside one allocation`,
    );
  }

  checkAll(what: string): void {
    for (const b of this.blocks.values()) this.checkGuards(what, b);
  }

  checkGuards(what: string, b: Block): void {
    const all = new Uint8Array(b.buffer);
    for (const start of [0, GUARD + b.bytes]) {
      for (let i = start; i < start + GUARD; i++) {
        if (all[i] !== 0xff) {
          throw new Error(
            `${what}: memory just ${
              start === 0 ? "before" : "after"
            } the block of ${b.bytes} bytes at 0x${
              b.base.toString(16)
            } was written (out of bounds)`,
          );
        }
      }
    }
  }
}

// ---- kernels ----------------------------------------------------------------------------

class EmulatedKernels {
  readonly names: string[] = [];
  readonly signatures: string[] = [];

  constructor(readonly emu: EmulatorSymbols, readonly resources: ResourceTable | null) {
    for (let i = 0; i < emu.emu_kernel_count(); i++) {
      this.names.push(cString(emu.emu_kernel_name(i)));
      this.signatures.push(cString(emu.emu_kernel_signature(i)));
    }
  }

  /** The kernel's index, after checking the backend's table against the compiler's signature. */
  find(name: string): number {
    const i = this.names.indexOf(name);
    if (i < 0) throw new Error(`The emulator has no kernel ${name}`);
    const table = (KERNELS as Record<string, readonly string[]>)[name]?.join(",");
    if (table !== this.signatures[i]) {
      throw new Error(
        `Kernel ${name}: kernels.ts says (${table}), the .cu says (${this.signatures[i]})`,
      );
    }
    return i;
  }

  /** Kernel `name`'s static shared memory (the larger of sm_80's and sm_90's), in bytes. */
  staticShared(name: string): number {
    return this.attribute(name, FUNC_ATTRIBUTE.SHARED_SIZE_BYTES) ?? 0;
  }

  /**
   * A CUfunction_attribute of kernel `name` on the emulated device, from the resource table:
   * the largest block over sm_80 and sm_90 (1024 without a table), sm_90's registers, the
   * larger static shared memory; null for an attribute not answered here.
   */
  attribute(name: string, attribute: number): number | null {
    const entries = this.resources
      ? RESOURCE_ARCHES.map((a) => this.resources!.kernels[a][name]).filter((k) => k)
      : [];
    switch (attribute) {
      case FUNC_ATTRIBUTE.MAX_THREADS_PER_BLOCK:
        return Math.min(MAX_BLOCK_THREADS, ...entries.map((k) => k.maxThreads));
      case FUNC_ATTRIBUTE.NUM_REGS:
        return this.resources?.kernels.sm_90[name]?.registers ?? 0;
      case FUNC_ATTRIBUTE.SHARED_SIZE_BYTES:
        return Math.max(0, ...entries.map((k) => k.staticSharedBytes));
      case FUNC_ATTRIBUTE.LOCAL_SIZE_BYTES:
        return 0;
      default:
        return null;
    }
  }
}

function cString(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

/** A NUL-terminated string in memory that never moves, and its address. */
function staticCString(s: string): { bytes: Uint8Array<ArrayBuffer>; address: bigint } {
  const bytes = new Uint8Array(new ArrayBuffer(s.length + 1));
  bytes.set(new TextEncoder().encode(s));
  return { bytes, address: BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))) };
}

function u64(buf: AllowSharedBufferSource | null): BigUint64Array {
  if (!buf || !ArrayBuffer.isView(buf)) throw new Error("Expected an out-parameter array");
  return new BigUint64Array(buf.buffer, buf.byteOffset, 1);
}

function i32(buf: AllowSharedBufferSource | null): Int32Array {
  if (!buf || !ArrayBuffer.isView(buf)) throw new Error("Expected an out-parameter array");
  return new Int32Array(buf.buffer, buf.byteOffset, 1);
}

function bytesOf(buf: AllowSharedBufferSource | null): Uint8Array {
  if (!buf || !ArrayBuffer.isView(buf)) throw new Error("Expected a buffer");
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

const ERROR_NAMES: Record<number, string> = {
  0: "CUDA_SUCCESS",
  1: "CUDA_ERROR_INVALID_VALUE",
  2: "CUDA_ERROR_OUT_OF_MEMORY",
  400: "CUDA_ERROR_INVALID_HANDLE",
  500: "CUDA_ERROR_NOT_FOUND",
  701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
  719: "CUDA_ERROR_LAUNCH_FAILED",
};
const errorStrings = new Map<number, ReturnType<typeof staticCString>>();

function errorNameAddress(code: number): bigint {
  let s = errorStrings.get(code);
  if (!s) errorStrings.set(code, s = staticCString(ERROR_NAMES[code] ?? `CUDA_ERROR_${code}`));
  return s.address;
}

/** The emulated device's opt-in shared memory per block (cuDeviceGetAttribute 97, an H100's). */
const SHARED_OPTIN = 227 * 1024;

/** A loaded kernel of the emulated driver. */
interface EmulatedFunction {
  index: number;
  name: string;
  /** CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, as cuFuncSetAttribute left it. */
  maxDynamicShared: number;
}

/**
 * Throws what a GPU's cuLaunchKernel returns for a block or shared memory the kernel cannot
 * take on sm_80 or sm_90 (`__launch_bounds__` or CUDA's 1024 threads: INVALID_VALUE; too few
 * registers: LAUNCH_OUT_OF_RESOURCES; shared memory: INVALID_VALUE), naming the kernel and why.
 */
function refuseOversized(
  resources: ResourceTable | null,
  fn: EmulatedFunction,
  block: readonly number[],
  shared: number,
): void {
  const threads = block[0] * block[1] * block[2];
  let refusal = resources ? launchRefusal(resources, fn.name, threads, shared) : null;
  if (!refusal && shared > fn.maxDynamicShared) {
    refusal = {
      reason: "shared",
      message: `${fn.name}: ${shared} bytes of dynamic shared memory, the kernel is set to ` +
        `take at most ${fn.maxDynamicShared} (above 48 KiB needs cuFuncSetAttribute first)`,
    };
  }
  if (!refusal) return;
  const code = refusal.reason === "registers" ? 701 : 1;
  throw new CudaError(
    `cuLaunchKernel(${fn.name}, block ${block.join("x")}) failed: ${ERROR_NAMES[code]} ` +
      `(${code}): ${refusal.message}`,
    code,
    ERROR_NAMES[code],
  );
}

/** The driver's functions over emulated memory and kernels. */
function emulatedDriver(memory: EmulatedMemory, kernels: EmulatedKernels): DriverSymbols {
  const name = new TextEncoder().encode("CUDA emulator on the CPU\0");
  const functions = new Map<bigint, EmulatedFunction>();
  let nextHandle = 1n;
  const handle = () => nextHandle++;
  const n = (x: number | bigint) => Number(x);
  return {
    cuInit: () => 0,
    cuDriverGetVersion: (out) => (i32(out)[0] = 13000, 0),
    cuGetErrorName: (code, out) => (u64(out)[0] = errorNameAddress(code), 0),
    cuGetErrorString: (code, out) => (u64(out)[0] = errorNameAddress(code), 0),
    cuDeviceGetCount: (out) => (i32(out)[0] = 1, 0),
    cuDeviceGet: (out, ordinal) => ordinal === 0 ? (i32(out)[0] = 0, 0) : 101,
    cuDeviceGetName: (out, len) => {
      bytesOf(out).set(name.subarray(0, Math.min(name.length, len)));
      return 0;
    },
    cuDeviceGetAttribute: (out, attribute) => {
      const values: Record<number, number> = { 16: 4, 75: 9, 76: 0, 97: 227 * 1024 };
      if (!(attribute in values)) return 1;
      i32(out)[0] = values[attribute];
      return 0;
    },
    cuDeviceTotalMem_v2: (out) => (u64(out)[0] = BigInt(memory.capacity), 0),
    cuDevicePrimaryCtxRetain: (out) => (u64(out)[0] = handle(), 0),
    cuDevicePrimaryCtxRelease_v2: () => 0,
    cuCtxSetCurrent: () => 0,
    cuMemGetInfo_v2: (free, total) => {
      u64(free)[0] = BigInt(memory.capacity - memory.used);
      u64(total)[0] = BigInt(memory.capacity);
      return 0;
    },
    cuMemAlloc_v2: (out, bytes) => {
      const p = memory.alloc(n(bytes), true);
      if (p === null) return 2;
      u64(out)[0] = p;
      return 0;
    },
    cuMemFree_v2: (p) => memory.free(BigInt(p), true),
    cuMemHostAlloc: (out, bytes) => (u64(out)[0] = memory.alloc(n(bytes), false)!, 0),
    cuMemFreeHost: (p) => memory.free(BigInt(p), false),
    cuMemcpyHtoDAsync_v2: (dst, src, bytes) => {
      memory.view(BigInt(dst), n(bytes), "cuMemcpyHtoDAsync").set(
        bytesOf(src).subarray(0, n(bytes)),
      );
      return 0;
    },
    cuMemcpyDtoHAsync_v2: (dst, src, bytes) => {
      const from = memory.view(BigInt(src), n(bytes), "cuMemcpyDtoHAsync (source)");
      memory.view(BigInt(dst), n(bytes), "cuMemcpyDtoHAsync (destination)").set(from);
      return 0;
    },
    cuMemcpyDtoDAsync_v2: (dst, src, bytes) => {
      const from = memory.view(BigInt(src), n(bytes), "cuMemcpyDtoDAsync (source)");
      memory.view(BigInt(dst), n(bytes), "cuMemcpyDtoDAsync (destination)").set(from);
      return 0;
    },
    cuMemsetD32Async: (dst, value, count) => {
      const v = memory.view(BigInt(dst), 4 * n(count), "cuMemsetD32Async");
      new Uint32Array(v.buffer, v.byteOffset, n(count)).fill(value);
      return 0;
    },
    cuModuleLoadData: (out) => (u64(out)[0] = handle(), 0),
    cuModuleUnload: () => 0,
    cuModuleGetFunction: (out, _module, cName) => {
      const bytes = bytesOf(cName);
      const fname = new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0)));
      const h = handle();
      const index = kernels.find(fname);
      const staticShared = kernels.staticShared(fname);
      functions.set(h, {
        index,
        name: fname,
        // the driver's default dynamic limit: 48 KiB less the kernel's static shared memory
        maxDynamicShared: Math.max(0, 48 * 1024 - staticShared),
      });
      u64(out)[0] = h;
      return 0;
    },
    cuFuncSetAttribute: (f, attribute, value) => {
      const fn = functions.get(BigInt(f));
      if (!fn) return 400; // CUDA_ERROR_INVALID_HANDLE
      if (attribute !== FUNC_ATTRIBUTE.MAX_DYNAMIC_SHARED_SIZE_BYTES) return 1;
      const staticShared = kernels.staticShared(fn.name);
      if (value < 0 || staticShared + value > SHARED_OPTIN) return 1; // as the driver refuses
      fn.maxDynamicShared = value;
      return 0;
    },
    cuFuncGetAttribute: (out, attribute, f) => {
      const fn = functions.get(BigInt(f));
      if (!fn) return 400;
      const value = attribute === FUNC_ATTRIBUTE.MAX_DYNAMIC_SHARED_SIZE_BYTES
        ? fn.maxDynamicShared
        : kernels.attribute(fn.name, attribute);
      if (value === null) return 1;
      i32(out)[0] = value;
      return 0;
    },
    cuLaunchKernel: (f, gx, gy, gz, bx, by, bz, shared, _stream, params) => {
      const fn = functions.get(BigInt(f));
      if (!fn) return 400; // CUDA_ERROR_INVALID_HANDLE
      refuseOversized(kernels.resources, fn, [bx, by, bz], shared);
      const message = new Uint8Array(512);
      const r = kernels.emu.emu_launch(
        fn.index,
        gx,
        gy,
        gz,
        bx,
        by,
        bz,
        shared,
        params,
        message,
        message.length,
      );
      if (r !== 0) {
        throw new Error(
          `Emulated kernel failed: ${
            new TextDecoder().decode(message.subarray(0, message.indexOf(0)))
          }`,
        );
      }
      memory.checkAll(`kernel ${fn.name}`);
      return 0;
    },
    cuStreamCreate: (out) => (u64(out)[0] = handle(), 0),
    cuStreamDestroy_v2: () => 0,
    cuStreamSynchronize: () => 0,
    cuEventCreate: (out) => (u64(out)[0] = handle(), 0),
    cuEventRecord: () => 0,
    cuEventQuery: () => 0,
    cuEventSynchronize: () => 0,
    cuEventDestroy_v2: () => 0,
    cuEventElapsedTime_v2: (out) => {
      new Float32Array(bytesOf(out).buffer, bytesOf(out).byteOffset, 1)[0] = 0;
      return 0;
    },
    cuEventElapsedTime: null,
  };
}

// ---- cuBLASLt ------------------------------------------------------------------------------

interface Desc {
  compute: number;
  transA: boolean;
  transB: boolean;
  epilogue: number;
  bias: bigint;
  biasType: number;
}

interface Layout {
  type: number;
  rows: number;
  cols: number;
  ld: number;
}

/** D = op(A) op(B) + beta D (+ bias) through the emulator's GEMM, checked as cuBLASLt would. */
function emulatedMatmul(
  memory: EmulatedMemory,
  emu: EmulatorSymbols,
  ds: Desc,
  [la, lb, lc]: [Layout, Layout, Layout],
  [A, B, D]: [bigint, bigint, bigint],
  alpha: number,
  beta: number,
): void {
  const s = gemmShape(ds, la, lb, lc);
  if (typeof s === "string") throw new Error(`Emulated cublasLtMatmul: ${s}`);
  const [m, n, k] = s;
  if (alpha !== 1) {
    throw new Error(`Emulated cublasLtMatmul: alpha ${alpha}, the backend always passes 1`);
  }
  const elem = la.type === CUDA_R_16BF ? 2 : 4;
  // every operand must lie inside an allocation (cuBLASLt would fault)
  memory.view(A, elem * (la.ld * (la.cols - 1) + la.rows), "cublasLtMatmul A");
  memory.view(B, elem * (lb.ld * (lb.cols - 1) + lb.rows), "cublasLtMatmul B");
  memory.view(D, 4 * (lc.ld * (lc.cols - 1) + lc.rows), "cublasLtMatmul D");
  const bias = ds.epilogue === EPILOGUE_BIAS ? ds.bias : 0n;
  if (bias) memory.view(bias, 4 * m, "cublasLtMatmul bias");
  const big = BigInt;
  emu.emu_gemm(
    ds.transA ? 1 : 0,
    ds.transB ? 1 : 0,
    big(m),
    big(n),
    big(k),
    A,
    la.type,
    big(la.ld),
    B,
    lb.type,
    big(lb.ld),
    beta,
    D,
    big(lc.ld),
    bias,
    ds.compute === CUBLAS_COMPUTE_32F_FAST_TF32 ? 1 : 0,
  );
  memory.checkAll("cublasLtMatmul");
}

/** The product's (m, n, k), or why the layouts do not fit together. */
function gemmShape(d: Desc, a: Layout, bl: Layout, c: Layout): [number, number, number] | string {
  const [m, k] = d.transA ? [a.cols, a.rows] : [a.rows, a.cols];
  const [k2, nn] = d.transB ? [bl.cols, bl.rows] : [bl.rows, bl.cols];
  if (k !== k2) return `op(A) is ${m}x${k} but op(B) is ${k2}x${nn}`;
  if (c.rows !== m || c.cols !== nn) return `C/D is ${c.rows}x${c.cols}, expected ${m}x${nn}`;
  for (const l of [a, bl, c]) {
    if (l.ld < l.rows) return `a leading dimension ${l.ld} below ${l.rows} rows`;
  }
  if (c.type !== CUDA_R_32F || a.type !== bl.type) return "unsupported types";
  return [m, nn, k];
}

function combinationOf(d: Desc, a: Layout): GemmCombination {
  return {
    bf16: a.type === CUDA_R_16BF,
    tf32: d.compute === CUBLAS_COMPUTE_32F_FAST_TF32,
    bias: d.epilogue === EPILOGUE_BIAS,
  };
}

/** cuBLASLt's functions over the emulator's GEMM, checking layouts as cuBLASLt does. */
function emulatedCublasLt(
  memory: EmulatedMemory,
  emu: EmulatorSymbols,
  { refuseGemm, refuseMatmul }: EmulatorOptions,
): CublasLtSymbols {
  const descs = new Map<bigint, Desc>(), layouts = new Map<bigint, Layout>();
  let next = 1000n;
  const statusNames = new Map<number, ReturnType<typeof staticCString>>();
  const b = (x: number | bigint) => BigInt(x);
  return {
    cublasLtCreate: (out) => (u64(out)[0] = next++, 0),
    cublasLtDestroy: () => 0,
    cublasLtGetVersion: () => 130000n,
    cublasLtGetStatusName: (status) => {
      let s = statusNames.get(status);
      if (!s) statusNames.set(status, s = staticCString(`CUBLAS_STATUS_${status}`));
      return Deno.UnsafePointer.of(s.bytes);
    },
    cublasLtMatmulDescCreate: (out, compute) => {
      const h = next++;
      descs.set(h, {
        compute,
        transA: false,
        transB: false,
        epilogue: EPILOGUE_DEFAULT,
        bias: 0n,
        biasType: CUDA_R_32F,
      });
      u64(out)[0] = h;
      return 0;
    },
    cublasLtMatmulDescDestroy: (h) => (descs.delete(b(h)), 0),
    cublasLtMatmulDescSetAttribute: (h, attribute, buf, size) => {
      const d = descs.get(b(h));
      if (!d) return 7;
      const bytes = bytesOf(buf),
        view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const want = attribute === DESC_BIAS_POINTER ? 8 : 4;
      if (Number(size) !== want) return 7; // CUBLAS_STATUS_INVALID_VALUE
      if (attribute === DESC_TRANSA) d.transA = view.getInt32(0, true) === CUBLAS_OP_T;
      else if (attribute === DESC_TRANSB) d.transB = view.getInt32(0, true) === CUBLAS_OP_T;
      else if (attribute === DESC_EPILOGUE) d.epilogue = view.getInt32(0, true);
      else if (attribute === DESC_BIAS_POINTER) d.bias = view.getBigUint64(0, true);
      else if (attribute === DESC_BIAS_DATA_TYPE) d.biasType = view.getInt32(0, true);
      else return 7;
      return 0;
    },
    cublasLtMatrixLayoutCreate: (out, type, rows, cols, ld) => {
      const h = next++;
      layouts.set(h, { type, rows: Number(rows), cols: Number(cols), ld: Number(ld) });
      u64(out)[0] = h;
      return 0;
    },
    cublasLtMatrixLayoutDestroy: (h) => (layouts.delete(b(h)), 0),
    cublasLtMatmulPreferenceCreate: (out) => (u64(out)[0] = next++, 0),
    cublasLtMatmulPreferenceDestroy: () => 0,
    cublasLtMatmulPreferenceSetAttribute: () => 0,
    cublasLtMatmulAlgoGetHeuristic: (_h, desc, a, bl, c, d, _pref, _count, results, count) => {
      const ds = descs.get(b(desc)),
        la = layouts.get(b(a)),
        lb = layouts.get(b(bl)),
        lc = layouts.get(b(c));
      if (!ds || !la || !lb || !lc || b(c) !== b(d)) return 7;
      const s = gemmShape(ds, la, lb, lc);
      if (typeof s === "string") return 7;
      if (refuseGemm?.(combinationOf(ds, la))) return (i32(count)[0] = 0, 0);
      const r = bytesOf(results);
      if (r.byteLength < HEURISTIC_RESULT_BYTES) return 7;
      r.fill(0, 0, HEURISTIC_RESULT_BYTES);
      i32(count)[0] = 1;
      return 0;
    },
    cublasLtMatmul: (_h, desc, alpha, A, a, B, bl, beta, C, c, D, d) => {
      const ds = descs.get(b(desc)),
        la = layouts.get(b(a)),
        lb = layouts.get(b(bl)),
        lc = layouts.get(b(c));
      if (!ds || !la || !lb || !lc || b(c) !== b(d) || b(C) !== b(D)) return 7;
      if (refuseMatmul?.(combinationOf(ds, la))) return 15; // CUBLAS_STATUS_NOT_SUPPORTED
      const scalar = (x: AllowSharedBufferSource | null) =>
        new Float32Array(bytesOf(x).slice(0, 4).buffer)[0];
      emulatedMatmul(
        memory,
        emu,
        ds,
        [la, lb, lc],
        [b(A), b(B), b(D)],
        scalar(alpha),
        scalar(beta),
      );
      return 0;
    },
  };
}
