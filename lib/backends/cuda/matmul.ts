/**
 * nn.Linear on the CUDA backend: cuBLASLt's products (cublaslt.ts) in the precision asked
 * for, the bias in the forward's epilogue, and the bias gradient as deterministic column
 * sums (matmul_bias.cu): cuBLASLt's BGRADB epilogue overwrites its output, and every
 * backward here accumulates.
 *
 * In bf16, each operand is read through a bf16 copy made by convert.cu and kept beside its
 * f32 buffer for as long as the buffer's version is unchanged: a weight is converted once
 * per optimizer step (AdamW writes the copy in its own pass), an activation once for its
 * forward and its backward's dweight product, dout once for both backward products.
 *
 * @module
 */

import type { MatmulDims } from "../../backend.ts";
import { type CublasLt, type GemmKind, GemmPlanRejected, type GemmPrecision } from "./cublaslt.ts";
import type { CudaBuffer, CudaDevice } from "./device.ts";

/** A bf16 copy of an f32 buffer, valid while the buffer's version is `version`. */
export class Bf16Copy {
  version = -1;
  constructor(readonly pointer: bigint) {}
}

/** The bf16 copies of f32 buffers (returned to the pool when their buffer is recycled, else collected with it). */
export class Bf16Copies {
  readonly #copies = new WeakMap<CudaBuffer, Bf16Copy>();

  constructor(private readonly dev: CudaDevice) {}

  /** The bf16 copy of `buf`'s first `n` elements, converted now if stale. */
  of(buf: CudaBuffer, n: number): bigint {
    let copy = this.#copies.get(buf);
    if (!copy) {
      copy = this.dev.allocate(buf.length * 2, (p) => new Bf16Copy(p));
      this.#copies.set(buf, copy);
    }
    if (copy.version !== buf.version) {
      const k = this.dev.kernels;
      k.launch("f32_to_bf16", this.dev.blocks(n), 256, [copy.pointer, buf.pointer, n]);
      copy.version = buf.version;
    }
    return copy.pointer;
  }

  /** Returns `buf`'s copy to the pool now (`buf` is being recycled), if it has one. */
  drop(buf: CudaBuffer): void {
    const copy = this.#copies.get(buf);
    if (!copy) return;
    this.#copies.delete(buf);
    this.dev.release(copy);
  }

  /** `buf`'s copy if it has one (AdamW refreshes it in its pass), else null. */
  existing(buf: CudaBuffer): Bf16Copy | null {
    return this.#copies.get(buf) ?? null;
  }
}

/** The pieces nn.Linear's kernels need. */
export interface MatmulContext {
  dev: CudaDevice;
  gemm: CublasLt;
  bf16: Bf16Copies;
  precision: GemmPrecision;
}

/** out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC). */
export function matmulForward(
  ctx: MatmulContext,
  out: CudaBuffer,
  inp: CudaBuffer,
  weight: CudaBuffer,
  bias: CudaBuffer | null,
  { N, C, OC }: MatmulDims,
): void {
  if (N === 0 || OC === 0) return;
  const { dev } = ctx;
  let biasAdded = false;
  if (C === 0) {
    dev.driver.fill32(out.pointer, 0, N * OC); // an empty sum (cuBLASLt wants k >= 1)
  } else {
    biasAdded = runGemm(ctx, "forward", { N, C, OC }, [weight, OC * C], [inp, N * C], out, 0, bias);
  }
  if (bias && !biasAdded) {
    dev.kernels.launch("add_bias", dev.blocks(N * OC), 256, [out.pointer, bias.pointer, N, OC]);
  }
  dev.written(out);
}

/**
 * dinp += dout @ weight; dweight += dout^T @ inp; dbias += column sums of dout. With
 * `overwrite.dinp`, `overwrite.dweight` or `overwrite.dbias` that gradient is written (beta
 * 0: the buffer held no values yet), not added.
 */
export function matmulBackward(
  ctx: MatmulContext,
  grads: {
    dinp: CudaBuffer | null;
    dweight: CudaBuffer | null;
    dbias: CudaBuffer | null;
    overwrite?: { dinp: boolean; dweight: boolean; dbias?: boolean };
  },
  dout: CudaBuffer,
  inp: CudaBuffer,
  weight: CudaBuffer,
  { N, C, OC }: MatmulDims,
): void {
  if (N === 0 || OC === 0) return;
  const { dev } = ctx;
  const products: [GemmKind, CudaBuffer][] = [];
  if (grads.dinp && C > 0) products.push(["dinp", grads.dinp]);
  if (grads.dweight && C > 0) products.push(["dweight", grads.dweight]);
  for (const [kind, d] of products) {
    const a: [CudaBuffer, number] = kind === "dinp" ? [weight, OC * C] : [inp, N * C];
    const beta = grads.overwrite?.[kind === "dinp" ? "dinp" : "dweight"] ? 0 : 1;
    runGemm(ctx, kind, { N, C, OC }, a, [dout, N * OC], d, beta, null);
    dev.written(d);
  }
  if (grads.dbias) {
    columnSums(dev, grads.dbias, dout, N, OC, grads.overwrite?.dbias ?? false);
    dev.written(grads.dbias);
  }
}

/**
 * dst (cols) += sum over rows of src (rows, cols), or = with `overwrite`: partial sums over
 * fixed chunks of rows, then the chunks in order (matmul_bias.cu), deterministic.
 */
export function columnSums(
  dev: CudaDevice,
  dst: CudaBuffer,
  src: CudaBuffer,
  rows: number,
  cols: number,
  overwrite = false,
): void {
  if (rows === 0 || cols === 0) return;
  const rowsPerChunk = Math.max(64, Math.ceil(rows / 1024));
  const chunks = Math.ceil(rows / rowsPerChunk);
  const partials = dev.scratch(4 * chunks * cols);
  const k = dev.kernels;
  k.launch("column_sums_partial", [Math.ceil(cols / 32), chunks], [32, 8], [
    partials,
    src.pointer,
    rows,
    cols,
    rowsPerChunk,
  ]);
  k.launch("column_sums_finish", dev.blocks(cols), 256, [
    dst.pointer,
    0n,
    partials,
    chunks,
    cols,
    overwrite ? 1 : 0,
  ]);
  dev.giveBack(partials);
}

/**
 * Enqueues one product with the plan for its shape, in the plan's precision (bf16 copies of
 * the operands where it is bf16); a plan cuBLASLt refuses on first use is replaced by its
 * fallback and the product run again. Returns whether the bias went into the epilogue.
 */
function runGemm(
  ctx: MatmulContext,
  kind: GemmKind,
  { N, C, OC }: MatmulDims,
  a: [CudaBuffer, number],
  b: [CudaBuffer, number],
  d: CudaBuffer,
  beta: 0 | 1,
  bias: CudaBuffer | null,
): boolean {
  for (let attempt = 0;; attempt++) {
    const plan = ctx.gemm.planPrecision(kind, N, C, OC, ctx.precision, bias !== null);
    const [pa, pb] = operands(ctx, plan.precision, a, b);
    try {
      const call = {
        kind,
        N,
        C,
        OC,
        a: pa,
        b: pb,
        d: d.pointer,
        beta,
        bias: bias ? bias.pointer : 0n,
      };
      ctx.gemm.run(call, ctx.precision, plan);
      return plan.biasEpilogue && bias !== null;
    } catch (e) {
      if (!(e instanceof GemmPlanRejected) || attempt >= 4) throw e;
    }
  }
}

/** The two operands' device pointers: the f32 buffers, or their bf16 copies for bf16. */
function operands(
  ctx: MatmulContext,
  precision: GemmPrecision,
  a: [CudaBuffer, number],
  b: [CudaBuffer, number],
): [bigint, bigint] {
  if (precision !== "bf16") return [a[0].pointer, b[0].pointer];
  return [ctx.bf16.of(a[0], a[1]), ctx.bf16.of(b[0], b[1])];
}
