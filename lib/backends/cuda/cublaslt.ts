/**
 * nn.Linear's GEMMs through cuBLASLt (`Deno.dlopen` of libcublasLt): the forward with its
 * bias in the epilogue, and both backward products accumulating into their gradients
 * (beta = 1), in f32, TF32 or bf16.
 *
 * cuBLASLt is column-major and our buffers are row-major: a row-major (R, S) matrix is a
 * column-major (S, R) one, its transpose, so each product is computed transposed with the
 * operands swapped (`gemmShapes`):
 * - forward: out (N, OC) = inp (N, C) @ W (OC, C)^T is out^T (OC, N) = W (OC, C) @ inp^T (C, N)
 * - dinp (N, C) += dout (N, OC) @ W (OC, C) is dinp^T (C, N) += W^T (C, OC) @ dout^T (OC, N)
 * - dweight (OC, C) += dout^T (OC, N) @ inp (N, C) is dweight^T (C, OC) += inp^T (C, N) @ op(dout^T) (N, OC)
 *
 * Precision: "f32" is CUBLAS_COMPUTE_32F on f32 operands (the reference semantics); "tf32"
 * CUBLAS_COMPUTE_32F_FAST_TF32 (tensor cores, f32 storage); "bf16" takes bf16 copies of A and
 * B (the caller's, convert.cu) with C and D in f32 and CUBLAS_COMPUTE_32F, so products sum in
 * f32 and the master weights stay f32. A plan per (product, shape, precision, bias) holds the
 * descriptors, layouts and the heuristic's algorithm, made once; where cuBLASLt has no
 * algorithm for a combination the plan falls back, bias epilogue first (a separate bias
 * kernel), then precision (f32), and says so in `fallbacks`.
 *
 * @module
 */

import type { CudaDriver } from "./driver.ts";
import { findCudaLibrary } from "./libraries.ts";

/** The cuBLASLt entry points used (cublasLt.h). */
export const CUBLASLT_SYMBOLS = {
  cublasLtCreate: { parameters: ["buffer"], result: "i32" },
  cublasLtDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtGetVersion: { parameters: [], result: "usize" },
  cublasLtGetStatusName: { parameters: ["i32"], result: "pointer" },
  cublasLtMatmulDescCreate: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cublasLtMatmulDescDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtMatmulDescSetAttribute: {
    parameters: ["usize", "i32", "buffer", "usize"],
    result: "i32",
  },
  cublasLtMatrixLayoutCreate: { parameters: ["buffer", "i32", "u64", "u64", "i64"], result: "i32" },
  cublasLtMatrixLayoutDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtMatmulPreferenceCreate: { parameters: ["buffer"], result: "i32" },
  cublasLtMatmulPreferenceDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtMatmulPreferenceSetAttribute: {
    parameters: ["usize", "i32", "buffer", "usize"],
    result: "i32",
  },
  cublasLtMatmulAlgoGetHeuristic: {
    parameters: [
      "usize",
      "usize",
      "usize",
      "usize",
      "usize",
      "usize",
      "usize",
      "i32",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  cublasLtMatmul: {
    parameters: [
      "usize", // handle
      "usize", // computeDesc
      "buffer", // alpha (host)
      "u64", // A
      "usize", // Adesc
      "u64", // B
      "usize", // Bdesc
      "buffer", // beta (host)
      "u64", // C
      "usize", // Cdesc
      "u64", // D
      "usize", // Ddesc
      "buffer", // algo
      "u64", // workspace
      "usize", // workspaceSizeInBytes
      "usize", // stream
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** cuBLASLt's functions, as `Deno.dlopen` returns them (or a stand-in with the same types). */
export type CublasLtSymbols = Deno.DynamicLibrary<typeof CUBLASLT_SYMBOLS>["symbols"];

/** cudaDataType_t (library_types.h) and cublasComputeType_t (cublas_api.h) values. */
export const CUDA_R_32F = 0, CUDA_R_16BF = 14;
export const CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
/** cublasOperation_t. */
export const CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
/** cublasLtMatmulDescAttributes_t. */
export const DESC_TRANSA = 3, DESC_TRANSB = 4, DESC_EPILOGUE = 7, DESC_BIAS_POINTER = 8;
export const DESC_BIAS_DATA_TYPE = 26;
/** cublasLtEpilogue_t. */
export const EPILOGUE_DEFAULT = 1, EPILOGUE_BIAS = 4;
/** cublasLtMatmulPreferenceAttributes_t. */
export const PREF_MAX_WORKSPACE_BYTES = 1;
/** sizeof(cublasLtMatmulHeuristicResult_t): algo (64), workspaceSize (8), state, wavesCount, reserved[4]. */
export const HEURISTIC_RESULT_BYTES = 96;

/** The matmul precisions cuBLASLt runs here. */
export type GemmPrecision = "f32" | "tf32" | "bf16";

/** Which of nn.Linear's three products. */
export type GemmKind = "forward" | "dinp" | "dweight";

/** A column-major product D (m, n) = op(A) (m, k) @ op(B) (k, n) + beta C, with leading dimensions. */
export interface GemmShape {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  /** Rows and columns of A and B as stored (before op), and of C/D. */
  a: [number, number];
  b: [number, number];
  /** Leading dimension (rows as stored, column-major) of A, B and C/D. */
  lda: number;
  ldb: number;
  ldc: number;
}

/**
 * The column-major product computing `kind` for row-major nn.Linear of (N, C) -> (N, OC):
 * A is the weight for forward and dinp and the input for dweight; B is the input (forward)
 * or dout (dinp, dweight); D is out, dinp or dweight.
 */
export function gemmShapes(kind: GemmKind, N: number, C: number, OC: number): GemmShape {
  switch (kind) {
    case "forward": // out^T (OC, N) = op(W as stored, (C, OC)) (OC, C) @ inp^T (C, N)
      return {
        transA: true,
        transB: false,
        m: OC,
        n: N,
        k: C,
        a: [C, OC],
        b: [C, N],
        lda: C,
        ldb: C,
        ldc: OC,
      };
    case "dinp": // dinp^T (C, N) += W as stored (C, OC) @ dout^T (OC, N)
      return {
        transA: false,
        transB: false,
        m: C,
        n: N,
        k: OC,
        a: [C, OC],
        b: [OC, N],
        lda: C,
        ldb: OC,
        ldc: C,
      };
    case "dweight": // dweight^T (C, OC) += inp^T (C, N) @ op(dout^T as stored, (OC, N)) (N, OC)
      return {
        transA: false,
        transB: true,
        m: C,
        n: OC,
        k: N,
        a: [C, N],
        b: [OC, N],
        lda: C,
        ldb: OC,
        ldc: C,
      };
  }
}

/** A product's prepared descriptors (`CublasLt.planPrecision`'s, for `CublasLt.run`). */
export interface GemmPlan {
  /** The key it is stored under (kind, shape, precision asked for, bias). */
  readonly key: string;
  readonly desc: bigint;
  readonly layouts: readonly [bigint, bigint, bigint]; // A, B, C (= D)
  readonly algo: Uint8Array;
  readonly workspaceBytes: number;
  /** `workspaceBytes` as cublasLtMatmul takes it. */
  readonly workspace: bigint;
  /** The precision it runs in (a fallback may have lowered it to f32). */
  readonly precision: GemmPrecision;
  /** Whether the bias is added in the epilogue (else the caller adds it). */
  readonly biasEpilogue: boolean;
  /** Whether a product ran with it (a refusal after that is an error, not a fallback). */
  ran: boolean;
}
type Plan = GemmPlan;

/** cublasStatus_t values the plans act on. */
const STATUS_INVALID_VALUE = 7, STATUS_NOT_SUPPORTED = 15;

/**
 * A product that cuBLASLt refused on the first use of its plan; the plan is gone and the
 * next `planPrecision` picks the next fallback (the caller redoes its operands and runs again).
 */
export class GemmPlanRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GemmPlanRejected";
  }
}

function planKey(
  kind: GemmKind,
  N: number,
  C: number,
  OC: number,
  precision: GemmPrecision,
  bias: boolean,
): string {
  return `${kind} ${N} ${C} ${OC} ${precision} ${bias}`;
}

/** One GEMM to run: the device pointers and what to do with C. */
export interface GemmCall {
  kind: GemmKind;
  N: number;
  C: number;
  OC: number;
  /** f32 operands, or bf16 copies when the plan's precision is bf16 (see `planPrecision`). */
  a: bigint;
  b: bigint;
  d: bigint;
  /** D += (1) or D = (0). */
  beta: 0 | 1;
  /** The bias (forward only), or 0n; selects the plan made with a bias. */
  bias: bigint;
}

/** cuBLASLt with its handle, workspace and the plans made so far. */
export class CublasLt {
  readonly path: string;
  readonly version: number;
  /** What fell back, in words (one line per plan that did). */
  readonly fallbacks: string[] = [];
  /** cublasLtMatmul calls enqueued so far (for the host-side benchmark). */
  matmuls = 0;
  readonly #lt: CublasLtSymbols;
  readonly #driver: CudaDriver;
  readonly #handle: bigint;
  readonly #workspace: bigint;
  readonly #workspaceBytes: number;
  readonly #plans = new Map<string, Plan>();
  /** Combinations (a plan's key, precision, epilogue) the library refused when run. */
  readonly #banned = new Set<string>();
  readonly #one = new Float32Array([1]);
  readonly #zero = new Float32Array([0]);
  readonly #pointer = new BigUint64Array(1);

  /**
   * Opens cuBLASLt (`symbols`: the library's, or a stand-in with the same types) with a
   * workspace of `workspaceBytes` at device address `workspace`.
   */
  constructor(
    driver: CudaDriver,
    workspace: bigint,
    workspaceBytes: number,
    library: { symbols: CublasLtSymbols; path: string },
  ) {
    this.#driver = driver;
    this.#lt = library.symbols;
    this.path = library.path;
    this.version = Number(this.#lt.cublasLtGetVersion());
    this.#workspace = workspace;
    this.#workspaceBytes = workspaceBytes;
    const out = new BigUint64Array(1);
    this.#check(this.#lt.cublasLtCreate(out), "cublasLtCreate");
    this.#handle = out[0];
  }

  /** libcublasLt opened from the first place `findCudaLibrary` finds it, or an error line. */
  static openLibrary(): { symbols: CublasLtSymbols; path: string } | { error: string } {
    const hit = findCudaLibrary("cublasLt");
    if (!hit.path) {
      return {
        error:
          `No cuBLASLt: libcublasLt.so.13 (or .12) not found (looked in ${hit.tried.length} places: ${
            hit.tried.slice(0, 4).join(", ")
          }, ...)`,
      };
    }
    try {
      return { symbols: Deno.dlopen(hit.path, CUBLASLT_SYMBOLS).symbols, path: hit.path };
    } catch (e) {
      return {
        error: `No cuBLASLt: ${hit.path} did not load (${(e as Error).message.split("\n")[0]})`,
      };
    }
  }

  /**
   * The plan of a product of this shape when `precision` is asked for: its precision says
   * what it runs in (lower where cuBLASLt has no algorithm), so the caller knows whether to
   * pass bf16 operands; hand it to `run`.
   */
  planPrecision(
    kind: GemmKind,
    N: number,
    C: number,
    OC: number,
    precision: GemmPrecision,
    bias: boolean,
  ): GemmPlan {
    return this.#plan(kind, N, C, OC, precision, bias);
  }

  /**
   * Enqueues one product on the driver's stream, with `planned` (`planPrecision`'s for this
   * call's shape, the precision asked for and its bias) or else the plan for its shape and
   * `precision` (the plan's may be lower: `planPrecision` says, and the operands must match
   * it). The bias goes into the epilogue where the plan has one; else the caller adds it.
   */
  run(call: GemmCall, precision: GemmPrecision, planned?: GemmPlan): void {
    const plan = planned ??
      this.#plan(call.kind, call.N, call.C, call.OC, precision, call.bias !== 0n);
    if (plan.biasEpilogue) this.#setPointer(plan.desc, DESC_BIAS_POINTER, call.bias);
    const [la, lb, lc] = plan.layouts;
    const status = this.#lt.cublasLtMatmul(
      this.#handle,
      plan.desc,
      this.#one,
      call.a,
      la,
      call.b,
      lb,
      call.beta === 1 ? this.#one : this.#zero,
      call.d,
      lc,
      call.d,
      lc,
      plan.algo,
      this.#workspace,
      plan.workspace,
      this.#driver.stream,
    );
    if (status !== 0) this.#failed(call, plan, status);
    plan.ran = true;
    this.matmuls++;
  }

  /** Throws for a product cuBLASLt refused; a refusal on a plan's first use drops the plan. */
  #failed(call: GemmCall, plan: Plan, status: number): never {
    const what =
      `cublasLtMatmul(${call.kind}, N ${call.N}, C ${call.C}, OC ${call.OC}, ${plan.precision}${
        plan.biasEpilogue ? ", bias epilogue" : ""
      })`;
    if (!plan.ran && (status === STATUS_NOT_SUPPORTED || status === STATUS_INVALID_VALUE)) {
      // the heuristic offered it, the library refuses it: plan again without it
      this.#banned.add(`${plan.key} ${plan.precision} ${plan.biasEpilogue}`);
      if (this.#plans.get(plan.key) === plan) this.#plans.delete(plan.key);
      this.#destroyPlan(plan);
      this.fallbacks.push(`${what}: refused (${this.#statusName(status)}), planned again`);
      throw new GemmPlanRejected(`${what} failed: ${this.#statusName(status)} (${status})`);
    }
    throw new Error(`${what} failed: ${this.#statusName(status)} (${status})`);
  }

  /** Destroys the plans and the handle. */
  destroy(): void {
    for (const plan of this.#plans.values()) this.#destroyPlan(plan);
    this.#plans.clear();
    this.#lt.cublasLtDestroy(this.#handle);
  }

  #destroyPlan(plan: Plan): void {
    this.#lt.cublasLtMatmulDescDestroy(plan.desc);
    for (const l of plan.layouts) this.#lt.cublasLtMatrixLayoutDestroy(l);
  }

  #plan(
    kind: GemmKind,
    N: number,
    C: number,
    OC: number,
    precision: GemmPrecision,
    bias: boolean,
  ): Plan {
    const key = planKey(kind, N, C, OC, precision, bias);
    let plan = this.#plans.get(key);
    if (plan) return plan;
    // the preferred combination first, then without the bias epilogue, then in f32
    const tries: [GemmPrecision, boolean][] = [[precision, bias]];
    if (bias) tries.push([precision, false]);
    if (precision !== "f32") {
      tries.push(["f32", bias]);
      if (bias) tries.push(["f32", false]);
    }
    const failures: string[] = [];
    for (const [p, b] of tries) {
      if (this.#banned.has(`${key} ${p} ${b}`)) {
        failures.push(`${p}${b ? " with the bias epilogue" : ""}: refused when run`);
        continue;
      }
      const made = this.#tryPlan(key, gemmShapes(kind, N, C, OC), p, b);
      if ("plan" in made) {
        plan = made.plan;
        break;
      }
      failures.push(`${p}${b ? " with the bias epilogue" : ""}: ${made.why}`);
    }
    if (!plan) {
      throw new Error(`cuBLASLt has no algorithm for ${key}: ${failures.join("; ")}`);
    }
    if (failures.length) this.fallbacks.push(`${key}: ${failures.join("; ")}`);
    this.#plans.set(key, plan);
    return plan;
  }

  #tryPlan(
    key: string,
    s: GemmShape,
    precision: GemmPrecision,
    bias: boolean,
  ): { plan: Plan } | { why: string } {
    const lt = this.#lt;
    const out = new BigUint64Array(1);
    const compute = precision === "tf32" ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const operand = precision === "bf16" ? CUDA_R_16BF : CUDA_R_32F;
    this.#check(lt.cublasLtMatmulDescCreate(out, compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const desc = out[0];
    const layouts: bigint[] = [];
    let ok = false;
    try {
      this.#setInt(desc, DESC_TRANSA, s.transA ? CUBLAS_OP_T : CUBLAS_OP_N);
      this.#setInt(desc, DESC_TRANSB, s.transB ? CUBLAS_OP_T : CUBLAS_OP_N);
      this.#setInt(desc, DESC_EPILOGUE, bias ? EPILOGUE_BIAS : EPILOGUE_DEFAULT);
      if (bias) {
        this.#setInt(desc, DESC_BIAS_DATA_TYPE, CUDA_R_32F);
        // the heuristic reads the pointer's alignment: any 256-byte-aligned address will do
        this.#setPointer(desc, DESC_BIAS_POINTER, this.#workspace);
      }
      for (
        const [type, [rows, cols], ld] of [
          [operand, s.a, s.lda],
          [operand, s.b, s.ldb],
          [CUDA_R_32F, [s.m, s.n], s.ldc],
        ] as const
      ) {
        this.#check(
          lt.cublasLtMatrixLayoutCreate(out, type, BigInt(rows), BigInt(cols), BigInt(ld)),
          "cublasLtMatrixLayoutCreate",
        );
        layouts.push(out[0]);
      }
      const found = this.#heuristic(desc, layouts[0], layouts[1], layouts[2]);
      if ("why" in found) return found;
      ok = true;
      return {
        plan: {
          key,
          desc,
          layouts: [layouts[0], layouts[1], layouts[2]],
          algo: found.algo,
          workspaceBytes: found.workspaceBytes,
          workspace: BigInt(found.workspaceBytes),
          precision,
          biasEpilogue: bias,
          ran: false,
        },
      };
    } finally {
      if (!ok) {
        lt.cublasLtMatmulDescDestroy(desc);
        for (const l of layouts) lt.cublasLtMatrixLayoutDestroy(l);
      }
    }
  }

  #heuristic(desc: bigint, a: bigint, b: bigint, c: bigint):
    | { algo: Uint8Array; workspaceBytes: number }
    | { why: string } {
    const lt = this.#lt;
    const out = new BigUint64Array(1);
    this.#check(lt.cublasLtMatmulPreferenceCreate(out), "cublasLtMatmulPreferenceCreate");
    const pref = out[0];
    try {
      const ws = new BigUint64Array([BigInt(this.#workspaceBytes)]);
      this.#check(
        lt.cublasLtMatmulPreferenceSetAttribute(pref, PREF_MAX_WORKSPACE_BYTES, ws, 8n),
        "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)",
      );
      const results = new Uint8Array(new ArrayBuffer(HEURISTIC_RESULT_BYTES));
      const count = new Int32Array(1);
      const r = lt.cublasLtMatmulAlgoGetHeuristic(
        this.#handle,
        desc,
        a,
        b,
        c,
        c,
        pref,
        1,
        results,
        count,
      );
      if (r !== 0) return { why: this.#statusName(r) };
      if (count[0] < 1) return { why: "no algorithm returned" };
      const view = new DataView(results.buffer);
      const state = view.getInt32(72, true);
      if (state !== 0) return { why: `algorithm state ${this.#statusName(state)}` };
      const workspaceBytes = Number(view.getBigUint64(64, true));
      if (workspaceBytes > this.#workspaceBytes) {
        return { why: `needs ${workspaceBytes} bytes of workspace` };
      }
      const algo = new Uint8Array(new ArrayBuffer(64));
      algo.set(results.subarray(0, 64));
      return { algo, workspaceBytes };
    } finally {
      lt.cublasLtMatmulPreferenceDestroy(pref);
    }
  }

  #setInt(desc: bigint, attribute: number, value: number): void {
    const v = new Int32Array([value]);
    this.#check(
      this.#lt.cublasLtMatmulDescSetAttribute(desc, attribute, v, 4n),
      `cublasLtMatmulDescSetAttribute(${attribute})`,
    );
  }

  #setPointer(desc: bigint, attribute: number, pointer: bigint): void {
    this.#pointer[0] = pointer;
    const status = this.#lt.cublasLtMatmulDescSetAttribute(desc, attribute, this.#pointer, 8n);
    if (status !== 0) this.#check(status, `cublasLtMatmulDescSetAttribute(${attribute})`);
  }

  #check(status: number, what: string): void {
    if (status !== 0) throw new Error(`${what} failed: ${this.#statusName(status)} (${status})`);
  }

  #statusName(status: number): string {
    const p = this.#lt.cublasLtGetStatusName(status);
    return p ? Deno.UnsafePointerView.getCString(p) : `cublasStatus_t ${status}`;
  }
}
