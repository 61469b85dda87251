/**
 * The CUDA kernels' table (every `extern "C" __global__` entry point of kernels/cuda and the
 * types of its parameters) and the launcher that packs arguments for `cuLaunchKernel`.
 *
 * `cuLaunchKernel` takes its arguments as an array of pointers, one per argument, each
 * pointing at the argument's value. The launcher keeps one ArrayBuffer of 8-byte value slots
 * and a second holding the slots' addresses, written once: a launch writes its values into
 * the slots and passes the address array (the driver copies the values before returning).
 * The table must match the .cu signatures exactly; the CPU emulator (tests/cuda_emulator/)
 * checks it against the compiler's view of each kernel when it loads one.
 *
 * @module
 */

import { type CudaDriver, FUNC_ATTRIBUTE } from "./driver.ts";
import { largestBlock } from "./resources.ts";

/** A kernel parameter's C type: a device pointer, int, long long, float or double. */
export type ParamType = "ptr" | "i32" | "i64" | "f32" | "f64";

const ATTENTION = ["ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] as const;
const ATTENTION_BACKWARD = [
  "ptr",
  "ptr",
  "ptr",
  "ptr",
  "ptr",
  "i32",
  "i32",
  "i32",
  "i32",
  "i32",
] as const;
const NAIVE = ["ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] as const;

/** Every kernel by name, with its parameters' types in order. */
export const KERNELS = {
  // residual.cu
  add_forward: ["ptr", "ptr", "ptr", "i64", "i64"],
  accumulate: ["ptr", "ptr", "i64", "i64", "i32"],
  scale_forward: ["ptr", "ptr", "f64", "i64", "i32"],
  // embedding.cu
  embedding_forward: ["ptr", "ptr", "ptr", "i32", "i32", "i32", "ptr"],
  embedding_backward_buckets: ["ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32"],
  embedding_backward_columns: ["ptr", "ptr", "ptr", "i32", "i32", "i32"],
  // layernorm.cu
  layernorm_forward: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32"],
  layernorm_backward: [
    "ptr",
    "ptr",
    "ptr",
    "ptr",
    "ptr",
    "ptr",
    "ptr",
    "i32",
    "i32",
    "i32",
    "i32",
  ],
  // gelu.cu
  gelu_forward: ["ptr", "ptr", "i64"],
  gelu_backward: ["ptr", "ptr", "ptr", "i64", "i32"],
  // matmul_bias.cu
  column_sums_partial: ["ptr", "ptr", "i32", "i32", "i32"],
  column_sums_finish: ["ptr", "ptr", "ptr", "i32", "i32", "i32"],
  add_bias: ["ptr", "ptr", "i32", "i32"],
  // convert.cu
  f32_to_bf16: ["ptr", "ptr", "i64"],
  // crossentropy.cu
  crossentropy_forward_rows: ["ptr", "ptr", "ptr", "i32", "i32", "ptr"],
  crossentropy_forward_mean: ["ptr", "ptr", "i32"],
  crossentropy_backward: ["ptr", "ptr", "ptr", "ptr", "i32", "i32"],
  crossentropy_backward_inplace: ["ptr", "ptr", "ptr", "i32", "i32"],
  // sum_of_squares.cu
  sum_of_squares_partial: ["ptr", "ptr", "i32"],
  sum_of_squares_finish: ["ptr", "ptr", "i32", "i32"],
  // init.cu
  init_normal: ["ptr", "i64", "i32", "i32", "f64"],
  // adamw.cu
  adamw_update: [
    "ptr",
    "ptr",
    "ptr",
    "ptr",
    "ptr",
    "i64",
    "f64",
    "f64",
    "f64",
    "f64",
    "f64",
    "f64",
    "f64",
  ],
  adamw_moments: ["ptr", "ptr", "ptr", "i64", "f64", "f64", "f64"],
  adamw_apply: ["ptr", "ptr", "ptr", "ptr", "i64", "f64", "f64", "f64", "f64"],
  // attention.cu
  attention_forward_hs16: ATTENTION,
  attention_forward_hs32: ATTENTION,
  attention_forward_hs64: ATTENTION,
  attention_forward_hs128: ATTENTION,
  attention_backward_dkdv_hs16: ATTENTION_BACKWARD,
  attention_backward_dkdv_hs32: ATTENTION_BACKWARD,
  attention_backward_dkdv_hs64: ATTENTION_BACKWARD,
  attention_backward_dkdv_hs128: ATTENTION_BACKWARD,
  attention_backward_dq_hs16: ATTENTION_BACKWARD,
  attention_backward_dq_hs32: ATTENTION_BACKWARD,
  attention_backward_dq_hs64: ATTENTION_BACKWARD,
  attention_backward_dq_hs128: ATTENTION_BACKWARD,
  attention_backward_prep: ["ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"],
  attention_forward_generic: ATTENTION,
  attention_backward_dq_generic: ATTENTION_BACKWARD,
  attention_backward_dkdv_generic: ATTENTION_BACKWARD,
  // attention_decode.cu
  kv_cache_append: ["ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32", "i32"],
  attention_decode: ["ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32", "i32"],
  // attention_naive.cu
  att_naive_scores: ["ptr", "ptr", "i32", "i32", "i32", "i32"],
  att_naive_softmax: ["ptr", "i32", "i32", "i32"],
  att_naive_values: NAIVE,
  att_naive_datt: NAIVE,
  att_naive_dpre: ["ptr", "ptr", "i32", "i32", "i32", "f32"],
  att_naive_dv: NAIVE,
  att_naive_dq: NAIVE,
  att_naive_dk: NAIVE,
  // attention_bf16.cu
  attention_forward_bf16_hs64: ATTENTION,
  attention_forward_bf16_hs128: ATTENTION,
  attention_backward_dkdv_bf16_hs64: ATTENTION_BACKWARD,
  attention_backward_dkdv_bf16_hs128: ATTENTION_BACKWARD,
  attention_backward_dq_bf16_hs64: ATTENTION_BACKWARD,
  attention_backward_dq_bf16_hs128: ATTENTION_BACKWARD,
  attention_forward_tf32_hs64: ATTENTION,
  attention_backward_dkdv_tf32_hs64: ATTENTION_BACKWARD,
  attention_backward_dq_tf32_hs64: ATTENTION_BACKWARD,
} as const satisfies Record<string, readonly ParamType[]>;

/** A kernel's name. */
export type KernelName = keyof typeof KERNELS;

type ValueOf<P> = P extends "ptr" ? bigint : P extends "i64" ? number | bigint : number;

/** A tuple of values for a tuple of parameter types (a mapped type keeps it a tuple). */
type ArgsOf<T extends readonly ParamType[]> = { -readonly [I in keyof T]: ValueOf<T[I]> };

/** The arguments of kernel K, typed by its parameters (pointers are bigints). */
export type KernelArgs<K extends KernelName> = ArgsOf<(typeof KERNELS)[K]>;

/** Grid or block dimensions: x, or [x, y, z]. */
export type Dim3 = number | readonly [number, number?, number?];

/** The head sizes with tiled (shared-memory) flash-attention kernels. */
export const TILED_HEAD_SIZES = [16, 32, 64, 128] as const;

/**
 * Dynamic shared memory of the tiled attention kernels, in bytes: attention.cu's
 * FlashSmem<HS> layouts (64 x 64 tiles, hs-wide rows padded to hs + 1 floats).
 */
export function attentionSmemBytes(kind: "forward" | "dkdv" | "dq", hs: number): number {
  const tile = 64, qs = hs + 1, ps = tile + 1;
  const floats = kind === "forward"
    ? 2 * tile * qs + tile * hs + tile * ps
    : kind === "dkdv"
    ? 4 * tile * qs + 2 * tile * ps + 2 * tile
    : 4 * tile * qs + tile * ps;
  return 4 * floats;
}

/** The head sizes with bf16 tensor-core flash-attention kernels (attention_bf16.cu). */
export const BF16_HEAD_SIZES = [64, 128] as const;

/** The head sizes with TF32 tensor-core flash-attention kernels (attention_bf16.cu's PrecTf32). */
export const TF32_HEAD_SIZES = [64] as const;

/** Threads per block of the bf16 and TF32 attention kernels (ATT_BF16_THREADS: 4 warps). */
export const BF16_ATTENTION_THREADS = 128;

/**
 * Dynamic shared memory of the bf16 (or TF32) attention kernels, in bytes: attention_bf16.cu's
 * Bf16Smem<HS, P> layouts (64-row operand tiles of stride hs + 8; per warp (4) a 16 x 64
 * operand P or dS of stride 72 and an f32 scratch of 16 rows of stride max(68, hs + 4));
 * operands are 2 bytes in bf16, 4 in TF32 (f32 holding TF32 values).
 */
export function attentionBf16SmemBytes(
  kind: "forward" | "dkdv" | "dq",
  hs: number,
  operand: "bf16" | "tf32" = "bf16",
): number {
  const tile = 64, warps = 4, e = operand === "bf16" ? 2 : 4;
  const tileBytes = tile * (hs + 8) * e;
  const psBytes = warps * 16 * (tile + 8) * e;
  const scratchBytes = warps * 16 * Math.max(tile + 4, hs + 4) * 4;
  return kind === "forward"
    ? 3 * tileBytes + psBytes + scratchBytes
    : kind === "dkdv"
    ? 4 * tileBytes + 2 * psBytes + 2 * scratchBytes + 2 * tile * 4
    : 4 * tileBytes + psBytes + 2 * scratchBytes;
}

/** Threads per block of attention_decode (DECODE_THREADS in attention_decode.cu). */
export const DECODE_THREADS = 128;

/**
 * Dynamic shared memory of attention_decode, in bytes: q (hs floats), the softmax merge's
 * scratch (64) and a probability per key (pos + T at most).
 */
export function attentionDecodeSmemBytes(hs: number, keys: number): number {
  return 4 * (hs + 64 + keys);
}

/** What a loaded kernel can take, from the driver (`cuFuncGetAttribute`). */
interface LoadedFunction {
  fn: bigint;
  /** Dynamic shared memory it may launch with now (raised by cuFuncSetAttribute). */
  smemLimit: number;
  /** CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: its `__launch_bounds__` and registers. */
  maxThreads: number;
  /** CU_FUNC_ATTRIBUTE_NUM_REGS: registers per thread. */
  registers: number;
  /** CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: its static shared memory. */
  staticShared: number;
}

/** Shared memory a block gets without opting in. */
const DEFAULT_SHARED_LIMIT = 48 * 1024;
/** The most arguments any kernel takes (KERNELS' longest list is 12). */
const MAX_ARGS = 16;

/** Launches the kernels of one loaded module, packing arguments into reused buffers. */
export class KernelLauncher {
  readonly #driver: CudaDriver;
  readonly #module: bigint;
  readonly #functions = new Map<string, LoadedFunction>();
  readonly #values = new ArrayBuffer(8 * MAX_ARGS);
  readonly #view = new DataView(this.#values);
  readonly #pointers = new Uint8Array(new ArrayBuffer(8 * MAX_ARGS));
  /** The grid and block of the launch being made (reused: no arrays per launch). */
  readonly #grid: [number, number, number] = [1, 1, 1];
  readonly #block: [number, number, number] = [1, 1, 1];
  /** Launches so far (for benchmarks). */
  launches = 0;

  /** `module` from `CudaDriver.loadModule` of the kernels' fatbin or cubin. */
  constructor(driver: CudaDriver, module: bigint, readonly maxSharedOptin: number) {
    this.#driver = driver;
    this.#module = module;
    const base = BigInt(
      Deno.UnsafePointer.value(Deno.UnsafePointer.of(new Uint8Array(this.#values))),
    );
    const slots = new BigUint64Array(this.#pointers.buffer);
    for (let i = 0; i < MAX_ARGS; i++) slots[i] = base + BigInt(8 * i);
  }

  /**
   * Enqueues kernel `name` on the driver's stream.
   *
   * @throws {Error} for dimensions CUDA does not allow, a block or shared memory larger than
   * the kernel takes on this device (saying why, before the driver's bare error code), or
   * arguments of the wrong kind.
   */
  launch<K extends KernelName>(
    name: K,
    grid: Dim3,
    block: Dim3,
    args: KernelArgs<K>,
    sharedBytes = 0,
  ): void {
    const g = dims(grid, this.#grid), b = dims(block, this.#block);
    checkLaunch(name, g, b);
    const fn = this.#function(name, b[0] * b[1] * b[2], sharedBytes);
    this.#pack(name, args as readonly (number | bigint)[]);
    this.#driver.launch(fn, g, b, sharedBytes, this.#pointers, name);
    this.launches++;
  }

  /** Loads every kernel of the table now (a missing one is an error at start, not mid-run). */
  loadAll(): void {
    for (const name of Object.keys(KERNELS)) this.#function(name as KernelName, 1, 0);
  }

  /** What the driver says kernel `name` takes (loading it on first use). */
  limits(name: KernelName): { maxThreads: number; registers: number; staticShared: number } {
    const { maxThreads, registers, staticShared } = this.#load(name);
    return { maxThreads, registers, staticShared };
  }

  #load(name: KernelName): LoadedFunction {
    let entry = this.#functions.get(name);
    if (!entry) {
      const fn = this.#driver.getFunction(this.#module, name);
      const attribute = (a: number) => this.#driver.functionAttribute(fn, a);
      const staticShared = attribute(FUNC_ATTRIBUTE.SHARED_SIZE_BYTES);
      entry = {
        fn,
        // the driver's default: the block's 48 KiB less what the kernel declares itself
        smemLimit: Math.max(0, DEFAULT_SHARED_LIMIT - staticShared),
        maxThreads: attribute(FUNC_ATTRIBUTE.MAX_THREADS_PER_BLOCK),
        registers: attribute(FUNC_ATTRIBUTE.NUM_REGS),
        staticShared,
      };
      this.#functions.set(name, entry);
    }
    return entry;
  }

  #function(name: KernelName, threads: number, sharedBytes: number): bigint {
    const entry = this.#load(name);
    if (threads > entry.maxThreads) {
      // registers alone would allow more: the kernel's __launch_bounds__ is the limit
      const why = largestBlock(entry.registers).threads > entry.maxThreads
        ? "__launch_bounds__"
        : `registers: ${entry.registers} per thread, 65536 per block`;
      throw new Error(
        `${name}: block of ${threads} threads, the kernel takes at most ${entry.maxThreads} ` +
          `(${why}) on this device`,
      );
    }
    if (sharedBytes > entry.smemLimit) {
      if (entry.staticShared + sharedBytes > this.maxSharedOptin) {
        throw new Error(
          `${name}: ${sharedBytes} bytes of dynamic shared memory and ${entry.staticShared} ` +
            `static, the device allows at most ${this.maxSharedOptin} per block`,
        );
      }
      this.#driver.setMaxDynamicSharedMemory(entry.fn, sharedBytes);
      entry.smemLimit = sharedBytes;
    }
    return entry.fn;
  }

  #pack(name: KernelName, args: readonly (number | bigint)[]): void {
    const types: readonly ParamType[] = KERNELS[name];
    if (args.length !== types.length) {
      throw new Error(`${name} takes ${types.length} arguments, found ${args.length}`);
    }
    const v = this.#view;
    for (let i = 0; i < types.length; i++) {
      const a = args[i], at = 8 * i;
      switch (types[i]) {
        case "ptr":
          if (typeof a !== "bigint") throw new Error(`${name} argument ${i}: expected a pointer`);
          v.setBigUint64(at, a, true);
          break;
        case "i64":
          v.setBigInt64(at, BigInt(a), true);
          break;
        case "i32":
          if (typeof a !== "number" || !Number.isInteger(a) || a < -(2 ** 31) || a >= 2 ** 31) {
            throw new Error(`${name} argument ${i}: expected a 32-bit integer, found ${a}`);
          }
          v.setInt32(at, a, true);
          break;
        case "f32":
          v.setFloat32(at, Number(a), true);
          break;
        case "f64":
          v.setFloat64(at, Number(a), true);
          break;
      }
    }
  }
}

/** `d` as three dimensions, written into `out`. */
function dims(d: Dim3, out: [number, number, number]): [number, number, number] {
  if (typeof d === "number") {
    out[0] = d;
    out[1] = out[2] = 1;
  } else {
    out[0] = d[0];
    out[1] = d[1] ?? 1;
    out[2] = d[2] ?? 1;
  }
  return out;
}

function positiveInteger(x: number): boolean {
  return Number.isInteger(x) && x >= 1;
}

function checkLaunch(name: string, g: [number, number, number], b: [number, number, number]): void {
  const ok = positiveInteger(g[0]) && positiveInteger(g[1]) && positiveInteger(g[2]) &&
    g[0] < 2 ** 31 && g[1] <= 65535 && g[2] <= 65535 && positiveInteger(b[0]) &&
    positiveInteger(b[1]) && positiveInteger(b[2]) && b[0] * b[1] * b[2] <= 1024;
  if (!ok) {
    throw new Error(
      `${name}: a grid of ${g.join("x")} blocks of ${b.join("x")} threads is outside CUDA's limits`,
    );
  }
}
