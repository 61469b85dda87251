/**
 * The native CPU backend: the C kernels of `kernels/cpu/` (OpenMP over both cores, GEMMs in
 * the project's own kernel or in OpenBLAS), called through `Deno.dlopen`. Buffers are the
 * reference backend's host arrays, handed to C as pointers, so memory is managed by V8 as
 * before and any tensor can be checked against the reference kernel on the same data.
 *
 * @module
 */

import type {
  AdamWParams,
  AttentionDims,
  DeviceBuffer,
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
import { CpuBackend, CpuBuffer } from "../cpu/mod.ts";
import { checkKVCacheDims } from "../kv_cache_dims.ts";
import { buildNativeLibrary, type NativeBuildOptions, type NativeLibrary } from "./build.ts";
import { nativeLadder, type Rung } from "./ladder.ts";

const SYMBOLS = {
  gpt2_has_cblas: { parameters: [], result: "i32" },
  gpt2_set_cblas: { parameters: ["i32"], result: "void" },
  gpt2_bf16_dot_compiled: { parameters: [], result: "i32" },
  gpt2_bf16_dot_supported: { parameters: [], result: "i32" },
  gpt2_set_bf16_dot: { parameters: ["i32"], result: "i32" },
  gpt2_bf16_dot: { parameters: [], result: "i32" },
  gpt2_bf16_dot_peak: { parameters: ["i64"], result: "f64" },
  matmul_forward: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "i32", "i32", "i32", "i32"],
    result: "void",
  },
  matmul_forward_fused: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "i32", "i32", "i32", "i32"],
    result: "void",
  },
  matmul_backward: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
      "i32",
      "i32",
    ],
    result: "void",
  },
  gemm_nt: {
    parameters: ["buffer", "buffer", "buffer", "i32", "i32", "i32", "i32"],
    result: "void",
  },
  layernorm_forward: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer", "i32", "i32"],
    result: "void",
  },
  layernorm_backward: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
    ],
    result: "void",
  },
  gelu_forward: { parameters: ["buffer", "buffer", "i64"], result: "void" },
  gelu_backward: { parameters: ["buffer", "buffer", "buffer", "i64"], result: "void" },
  add_forward: { parameters: ["buffer", "buffer", "buffer", "i64", "i64"], result: "void" },
  accumulate: { parameters: ["buffer", "buffer", "i64", "i64"], result: "void" },
  scale: { parameters: ["buffer", "buffer", "f32", "i64", "i32"], result: "void" },
  embedding_forward: {
    parameters: ["buffer", "buffer", "buffer", "i32", "i32", "i32"],
    result: "i32",
  },
  embedding_backward: { parameters: ["buffer", "buffer", "buffer", "i32", "i32"], result: "void" },
  attention_forward: {
    parameters: ["buffer", "buffer", "buffer", "i32", "i32", "i32", "i32", "i32"],
    result: "void",
  },
  attention_backward: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
    ],
    result: "void",
  },
  kv_cache_append: {
    parameters: ["buffer", "buffer", "buffer", "i32", "i32", "i32", "i32", "i32", "i32"],
    result: "void",
  },
  attention_decode: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
    ],
    result: "void",
  },
  crossentropy_forward: { parameters: ["buffer", "buffer", "buffer", "i32", "i32"], result: "i32" },
  crossentropy_backward: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "i32", "i32"],
    result: "void",
  },
  adamw_update: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i64",
      "f32",
      "f32",
      "f32",
      "f32",
      "f32",
      "i32",
      "f32",
    ],
    result: "void",
  },
  sum_of_squares: { parameters: ["buffer", "i64"], result: "f64" },
  fma_peak_flops: { parameters: ["i64"], result: "f64" },
  gpt2_keep_freed_memory: { parameters: [], result: "i32" },
} as const;

type Kernels = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Where GEMMs run: the project's own kernel (kernels/cpu/gemm.c) or OpenBLAS. */
export type GemmChoice = "own" | "openblas";

/** How {@linkcode NativeBackend.create} builds the library and routes GEMMs. */
export interface NativeOptions extends NativeBuildOptions {
  /**
   * "own" or "openblas" (where linked; otherwise the own kernel). Default: `GPT2_GEMM`, else
   * "own": the own GEMM is faster than OpenBLAS on every product of GPT-2 here
   * (docs/measurements.md).
   */
  gemm?: GemmChoice;
}

/** The GEMM choice: the option, else `GPT2_GEMM`, else "own". */
function gemmChoice(option: string | undefined): GemmChoice {
  const [value, source] = option !== undefined
    ? [option, "The gemm option"]
    : [Deno.env.get("GPT2_GEMM") ?? "own", "GPT2_GEMM"];
  if (value !== "own" && value !== "openblas") {
    throw new Error(`${source} must be "own" or "openblas", found "${value}"`);
  }
  return value;
}

/**
 * Which way each loaded library's GEMM switch (a C global, one per library file, shared by
 * every backend opened on it) is set now, so that each backend sets it to its own choice
 * before a GEMM only when another backend changed it.
 */
const gemmSwitches = new Map<string, { blas: boolean }>();

/**
 * How bf16 matmuls run: "avx512_bf16" (vdpbf16ps, where the CPU has it) or "fp32_fma" (bf16
 * operands on the fp32 FMA micro-kernel, on every CPU).
 */
export type Bf16Path = "avx512_bf16" | "fp32_fma";

/**
 * `GPT2_BF16_PATH`: "auto" (the default: avx512_bf16 where the CPU has it) or "fp32_fma"
 * (always the FMA path, to compare the two or rule one out).
 */
function bf16PathChoice(): "auto" | "fp32_fma" {
  const value = Deno.env.get("GPT2_BF16_PATH") ?? "auto";
  if (value !== "auto" && value !== "fp32_fma") {
    throw new Error(`GPT2_BF16_PATH must be "auto" or "fp32_fma", found "${value}"`);
  }
  return value;
}

function f32(buf: DeviceBuffer): Float32Array {
  const b = buf as CpuBuffer;
  if (!(b instanceof CpuBuffer) || !(b.data instanceof Float32Array)) {
    throw new Error(`Expected an f32 host buffer, found ${buf.constructor.name} (${buf.dtype})`);
  }
  return b.data;
}

function i32(buf: DeviceBuffer): Int32Array {
  const b = buf as CpuBuffer;
  if (!(b instanceof CpuBuffer) || !(b.data instanceof Int32Array)) {
    throw new Error(`Expected an i32 host buffer, found ${buf.constructor.name} (${buf.dtype})`);
  }
  return b.data;
}

/** The native backend; make it with `NativeBackend.create()`. */
export class NativeBackend extends CpuBackend {
  override readonly name: string = "native";
  override readonly isReference = false;
  readonly library: NativeLibrary;
  readonly #k: Kernels;
  /** This backend's GEMMs go to OpenBLAS (only ever true where it is linked). */
  #blas: boolean;
  /** Its library's GEMM switch, shared with the other backends on the same library. */
  readonly #switch: { blas: boolean };
  #peakGflops: number | undefined;
  #bf16PeakGflops: number | undefined;
  /** Kernel fusion on: biases and GELU in the GEMM's epilogue (`useFusion`). */
  #fusion = true;

  private constructor(library: NativeLibrary, kernels: Kernels, blas: boolean) {
    super();
    this.library = library;
    this.#k = kernels;
    let shared = gemmSwitches.get(library.path);
    if (shared === undefined) {
      shared = { blas: kernels.gpt2_has_cblas() === 1 };
      gemmSwitches.set(library.path, shared);
    }
    this.#switch = shared;
    this.#blas = blas && library.blas !== null;
  }

  /**
   * Compiles or loads the kernels: with OpenBLAS linked unless `options.linkBlas` is false
   * (default: `GPT2_NO_BLAS` unset), GEMMs in `options.gemm` (default: `GPT2_GEMM`, else the
   * own kernel). Backends made with different options work side by side in one process.
   *
   * @throws {Error} without a C compiler, when the build fails, or for an unknown GEMM choice.
   */
  static async create(options: NativeOptions = {}): Promise<NativeBackend> {
    const gemm = gemmChoice(options.gemm);
    // OpenMP's threads must sleep between kernels, not spin, or they steal the cores
    // OpenBLAS's own threads need; both libraries read this when they load.
    if (!Deno.env.get("OMP_WAIT_POLICY")) Deno.env.set("OMP_WAIT_POLICY", "PASSIVE");
    // and OpenBLAS's threads otherwise spin for about 2^28 cycles after each GEMM, taking the
    // cores from the OpenMP kernel that follows it; 2^4 cycles makes them yield at once
    if (!Deno.env.get("OPENBLAS_THREAD_TIMEOUT")) Deno.env.set("OPENBLAS_THREAD_TIMEOUT", "4");
    const library = await buildNativeLibrary({ linkBlas: options.linkBlas });
    const lib = Deno.dlopen(library.path, SYMBOLS);
    // tensors are V8 ArrayBuffers from glibc's calloc: keep their pages mapped between steps
    // instead of faulting them in again each step (kernels/cpu/allocator.c says why)
    lib.symbols.gpt2_keep_freed_memory();
    lib.symbols.gpt2_set_bf16_dot(bf16PathChoice() === "auto" ? 1 : 0);
    return new NativeBackend(library, lib.symbols, gemm === "openblas");
  }

  /** A one-line description: the library, the GEMM in use and the path bf16 matmuls take. */
  override describe(): string {
    return `${this.#describeGemm()}; --precision bf16: ${this.describeBf16()}`;
  }

  #describeGemm(): string {
    if (this.usesBlas && !this.bf16Operands) {
      return `native C kernels, GEMMs in OpenBLAS (${this.library.blas})`;
    }
    const blas = this.library.blas
      ? this.usesBlas
        ? "OpenBLAS linked, for f32 GEMMs only"
        : "OpenBLAS linked: GPT2_GEMM=openblas takes it"
      : "OpenBLAS not linked";
    return `native C kernels, GEMMs in the project's own kernel (kernels/cpu/gemm.c; ${blas})`;
  }

  /** The matmuls' precision now: "f32" or "bf16". */
  get matmulPrecision(): MatmulPrecision {
    return this.bf16Operands ? "bf16" : "f32";
  }

  /**
   * "bf16": every matmul (forward and backward, the classifier's too) and attention's two
   * products take operands rounded to bf16 and sum in fp32 (PyTorch's CPU autocast to bf16;
   * the reference backend's `matmulPrecision: "bf16"` is its model); weights, gradients and
   * AdamW's moments stay fp32. "f32" goes back.
   *
   * @throws {Error} for any other precision.
   */
  setMatmulPrecision(precision: MatmulPrecision): void {
    if (precision !== "f32" && precision !== "bf16") {
      throw new Error(`The native backend's matmuls are f32 or bf16, found "${precision}"`);
    }
    this.bf16Operands = precision === "bf16";
  }

  /** The path bf16 matmuls take on this CPU now. */
  get bf16Path(): Bf16Path {
    return this.#k.gpt2_bf16_dot() ? "avx512_bf16" : "fp32_fma";
  }

  /** Whether this build has the vdpbf16ps micro-kernel (x86-64; it runs only where supported). */
  get compiledAvx512Bf16(): boolean {
    return this.#k.gpt2_bf16_dot_compiled() === 1;
  }

  /** Whether this CPU (and build) has the vdpbf16ps path. */
  get hasAvx512Bf16(): boolean {
    return this.#k.gpt2_bf16_dot_supported() === 1;
  }

  /**
   * Chooses the bf16 path: "avx512_bf16" where the CPU has it (the default; elsewhere the FMA
   * path stays), or "fp32_fma" always. Returns the path now in use.
   */
  setBf16Path(path: Bf16Path): Bf16Path {
    this.#k.gpt2_set_bf16_dot(path === "avx512_bf16" ? 1 : 0);
    return this.bf16Path;
  }

  /** One line on how bf16 matmuls run here, for a run's header. */
  describeBf16(): string {
    if (this.bf16Path === "avx512_bf16") return "bf16 dot products (avx512_bf16)";
    return this.hasAvx512Bf16
      ? "bf16 operands on fp32 FMA (avx512_bf16 switched off: GPT2_BF16_PATH=fp32_fma)"
      : "bf16 operands on fp32 FMA (this CPU has no avx512_bf16)";
  }

  /** Routes this backend's GEMMs to OpenBLAS (when linked) or to the project's own kernel. */
  useBlas(on: boolean): void {
    this.#blas = on && this.library.blas !== null;
  }

  /**
   * Kernel fusion (torch.compile's rung of the lecture) on or off: on (the default), a
   * Linear's bias is added in its GEMM's epilogue, not copied into the output first, and
   * `matmulGeluForward` writes GELU of each tile as the tile is finished (the MLP's c_fc and
   * GELU in one pass); off, the same work runs as separate kernels. The numbers are the same.
   */
  useFusion(on: boolean): void {
    this.#fusion = on;
  }

  /** Whether kernel fusion is on (`useFusion`). */
  get usesFusion(): boolean {
    return this.#fusion;
  }

  /** Whether this backend's GEMMs go to OpenBLAS now. */
  get usesBlas(): boolean {
    return this.#blas;
  }

  /** Sets the library's GEMM switch to this backend's choice (another may have changed it). */
  #gemmSwitch(): void {
    if (this.#switch.blas === this.#blas) return;
    this.#k.gpt2_set_cblas(this.#blas ? 1 : 0);
    this.#switch.blas = this.#blas;
  }

  /**
   * C (M, N) = A (M, K) @ B (N, K)^T: the forward GEMM alone, for benchmarks, at the matmuls'
   * precision.
   */
  gemm(c: Float32Array, a: Float32Array, b: Float32Array, M: number, N: number, K: number): void {
    this.#gemmSwitch();
    this.#k.gemm_nt(c, a, b, M, N, K, this.bf16Operands ? 1 : 0);
  }

  /**
   * The peak of the matmuls at `precision`, measured once (about a second) and remembered:
   * f32, the fp32 FMA peak; bf16, the vdpbf16ps peak where that path runs (two multiply-adds
   * per fp32 lane), else the fp32 FMA peak again, since bf16 operands run on the same FMAs.
   */
  peakFlops(precision: MatmulPrecision): PeakFlops | null {
    if (precision !== "f32" && precision !== "bf16") return null;
    const shared = true; // DDP ranks on one machine share its cores
    if (precision === "bf16" && this.bf16Path === "avx512_bf16") {
      this.#bf16PeakGflops ??= this.measurePeakGflops(0.3, "bf16");
      return {
        flops: this.#bf16PeakGflops * 1e9,
        source: "the measured vdpbf16ps (avx512_bf16) peak of this CPU",
        sharedByRanks: shared,
      };
    }
    this.#peakGflops ??= this.measurePeakGflops();
    return {
      flops: this.#peakGflops * 1e9,
      source: precision === "bf16"
        ? "the measured fp32 FMA peak of this CPU (bf16 operands run on fp32 FMAs here)"
        : "the measured fp32 FMA peak of this CPU",
      sharedByRanks: shared,
      ...(precision === "bf16" ? { rateOf: "f32" as const } : {}),
    };
  }

  /**
   * The GEMM's two kernels: OpenBLAS (where linked) and the project's own, the one in use
   * marked as the default.
   */
  kernelVariants(): KernelVariant[] {
    const gemm = (name: string, blas: boolean): KernelVariant => ({
      kernel: "matmul",
      name,
      isDefault: this.usesBlas === blas,
      unavailable: blas && !this.library.blas
        ? "not linked (GPT2_NO_BLAS set, or none found)"
        : undefined,
      detail: blas ? this.library.blas ?? undefined : undefined,
      use: () => {
        const before = this.usesBlas;
        this.useBlas(blas);
        return () => this.useBlas(before);
      },
    });
    return [gemm("OpenBLAS", true), gemm("own blocked GEMM", false)];
  }

  /**
   * The CPU ladder (ladder.ts): each rung's precision, fusion and reference kernels set;
   * `restore` puts back the switches found.
   */
  speedupLadder(): SpeedupLadder<Rung> {
    return nativeLadder(this);
  }

  /**
   * The measured peak of all threads, in GFLOP/s (for MFU): the best of 3 runs of the fp32
   * FMA ("f32") or, where the CPU has it, vdpbf16ps ("bf16"; 0 without it).
   */
  measurePeakGflops(seconds = 0.3, precision: "f32" | "bf16" = "f32"): number {
    if (precision === "bf16" && !this.hasAvx512Bf16) return 0;
    let iters = 1_000_000n, best = 0;
    for (let run = 0; run < 3;) {
      const t0 = performance.now();
      const flops = precision === "bf16"
        ? this.#k.gpt2_bf16_dot_peak(iters)
        : this.#k.fma_peak_flops(iters);
      const dt = (performance.now() - t0) / 1000;
      if (dt < seconds) {
        iters *= 4n;
        continue;
      }
      best = Math.max(best, flops / dt / 1e9);
      run++;
    }
    return best;
  }

  override addForward(
    out: DeviceBuffer,
    a: DeviceBuffer,
    b: DeviceBuffer,
    n: number,
    nb: number,
  ): void {
    this.#k.add_forward(f32(out), f32(a), f32(b), BigInt(n), BigInt(nb));
  }

  override accumulate(dst: DeviceBuffer, src: DeviceBuffer, n: number, nDst: number): void {
    this.#k.accumulate(f32(dst), f32(src), BigInt(n), BigInt(nDst));
  }

  override scale(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    alpha: number,
    n: number,
    acc: boolean,
  ): void {
    this.#k.scale(f32(out), f32(inp), alpha, BigInt(n), acc ? 1 : 0);
  }

  override embeddingForward(
    out: DeviceBuffer,
    idx: DeviceBuffer,
    weight: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const w = f32(weight), ix = i32(idx);
    const bad = this.#k.embedding_forward(f32(out), ix, w, N, C, w.length / C);
    if (bad) {
      throw new RangeError(
        `Token id ${ix[bad - 1]} at position ${bad - 1} is outside the table of ${
          w.length / C
        } rows`,
      );
    }
  }

  override embeddingBackward(
    dweight: DeviceBuffer,
    dout: DeviceBuffer,
    idx: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    this.#k.embedding_backward(f32(dweight), f32(dout), i32(idx), N, C);
  }

  override matmulForward(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    { N, C, OC }: MatmulDims,
  ): void {
    const bf16 = this.bf16Operands ? 1 : 0;
    this.#gemmSwitch();
    if (this.#fusion) {
      this.#k.matmul_forward_fused(
        f32(out),
        null,
        f32(inp),
        f32(weight),
        bias ? f32(bias) : null,
        N,
        C,
        OC,
        bf16,
      );
      return;
    }
    this.#k.matmul_forward(
      f32(out),
      f32(inp),
      f32(weight),
      bias ? f32(bias) : null,
      N,
      C,
      OC,
      bf16,
    );
  }

  override matmulGeluForward(
    pre: DeviceBuffer,
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    dims: MatmulDims,
  ): void {
    if (!this.#fusion) {
      this.matmulForward(pre, inp, weight, bias, dims);
      this.geluForward(out, pre, dims.N * dims.OC);
      return;
    }
    this.#gemmSwitch();
    this.#k.matmul_forward_fused(
      f32(pre),
      f32(out),
      f32(inp),
      f32(weight),
      bias ? f32(bias) : null,
      dims.N,
      dims.C,
      dims.OC,
      this.bf16Operands ? 1 : 0,
    );
  }

  override matmulBackward(
    { dinp, dweight, dbias }: MatmulGrads,
    dout: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    { N, C, OC }: MatmulDims,
  ): void {
    this.#gemmSwitch();
    this.#k.matmul_backward(
      dinp ? f32(dinp) : null,
      dweight ? f32(dweight) : null,
      dbias ? f32(dbias) : null,
      f32(dout),
      f32(inp),
      f32(weight),
      N,
      C,
      OC,
      this.bf16Operands ? 1 : 0,
    );
  }

  override layernormForward(
    out: DeviceBuffer,
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer,
    { N, C }: RowDims,
  ): void {
    this.#k.layernorm_forward(
      f32(out),
      f32(mean),
      f32(rstd),
      f32(inp),
      f32(weight),
      f32(bias),
      N,
      C,
    );
  }

  override layernormBackward(
    { dinp, dweight, dbias }: LayerNormGrads,
    dout: DeviceBuffer,
    { inp, weight, mean, rstd }: LayerNormSaved,
    { N, C }: RowDims,
  ): void {
    this.#k.layernorm_backward(
      f32(dinp),
      f32(dweight),
      f32(dbias),
      f32(dout),
      f32(inp),
      f32(weight),
      f32(mean),
      f32(rstd),
      N,
      C,
    );
  }

  override geluForward(out: DeviceBuffer, inp: DeviceBuffer, n: number): void {
    this.#k.gelu_forward(f32(out), f32(inp), BigInt(n));
  }

  override geluBackward(
    dinp: DeviceBuffer,
    inp: DeviceBuffer,
    dout: DeviceBuffer,
    n: number,
  ): void {
    this.#k.gelu_backward(f32(dinp), f32(inp), f32(dout), BigInt(n));
  }

  // Saves the softmax statistics (B, NH, T) only: flash-style, no (T, T) matrix is kept.
  override attentionForward(
    out: DeviceBuffer,
    qkv: DeviceBuffer,
    dims: AttentionDims,
  ): DeviceBuffer {
    const { B, T, C, NH } = dims;
    const lse = new Float32Array(B * NH * T);
    this.#k.attention_forward(f32(out), lse, f32(qkv), B, T, C, NH, this.bf16Operands ? 1 : 0);
    // backward needs out too; keep both in one saved buffer: [out | lse]
    const saved = new Float32Array(B * T * C + lse.length);
    saved.set(f32(out));
    saved.set(lse, B * T * C);
    return new CpuBuffer(saved, "f32");
  }

  override attentionBackward(
    dqkv: DeviceBuffer,
    dout: DeviceBuffer,
    qkv: DeviceBuffer,
    saved: DeviceBuffer,
    dims: AttentionDims,
  ): void {
    const { B, T, C, NH } = dims;
    const s = f32(saved);
    this.#k.attention_backward(
      f32(dqkv),
      f32(dout),
      f32(qkv),
      s.subarray(0, B * T * C),
      s.subarray(B * T * C),
      B,
      T,
      C,
      NH,
      this.bf16Operands ? 1 : 0,
    );
  }

  override kvCacheAppend(
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    qkv: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const { B, T, C, NH, pos, maxT } = checkKVCacheDims(dims, kCache, vCache);
    const x = f32(qkv);
    if (x.length < B * T * 3 * C) {
      throw new RangeError(
        `kvCacheAppend: expected qkv of ${B * T * 3 * C} elements, found ${x.length}`,
      );
    }
    this.#k.kv_cache_append(f32(kCache), f32(vCache), x, B, T, C, NH, pos, maxT);
  }

  override attentionDecode(
    out: DeviceBuffer,
    qkv: DeviceBuffer,
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const { B, T, C, NH, pos, maxT } = checkKVCacheDims(dims, kCache, vCache);
    const o = f32(out), x = f32(qkv);
    if (o.length < B * T * C || x.length < B * T * 3 * C) {
      throw new RangeError(
        `attentionDecode: expected out of ${B * T * C} and qkv of ${B * T * 3 * C} elements, ` +
          `found ${o.length} and ${x.length}`,
      );
    }
    this.#k.attention_decode(o, x, f32(kCache), f32(vCache), B, T, C, NH, pos, maxT);
  }

  override crossEntropyForward(
    loss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const y = i32(targets);
    const bad = this.#k.crossentropy_forward(f32(loss), f32(logits), y, N, V);
    if (bad) {
      throw new RangeError(
        `Target ${y[bad - 1]} at position ${bad - 1} is outside the vocabulary of ${V}`,
      );
    }
  }

  override crossEntropyBackward(
    dlogits: DeviceBuffer,
    dloss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    this.#k.crossentropy_backward(f32(dlogits), f32(dloss), f32(logits), i32(targets), N, V);
  }

  override sumOfSquares(buf: DeviceBuffer, n: number): Promise<number> {
    return Promise.resolve(this.#k.sum_of_squares(f32(buf), BigInt(n)));
  }

  override adamw(
    param: DeviceBuffer,
    grad: DeviceBuffer,
    m: DeviceBuffer,
    v: DeviceBuffer,
    n: number,
    hp: AdamWParams,
  ): void {
    this.#k.adamw_update(
      f32(param),
      f32(grad),
      f32(m),
      f32(v),
      BigInt(n),
      hp.lr,
      hp.beta1,
      hp.beta2,
      hp.eps,
      hp.weightDecay,
      hp.step,
      hp.gradScale ?? 1,
    );
  }
}
