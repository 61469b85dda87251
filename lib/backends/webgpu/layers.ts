/**
 * The WebGPU backend's other fused kernels, one kernel (per binding chunk) per call:
 * residual adds, accumulation and scaling (`residual.wgsl`), embedding, LayerNorm, GELU,
 * cross-entropy, the sum of squares and AdamW, each from the WGSL file of its name.
 *
 * @module
 */

import type { AdamWParams, RowDims } from "../../backend.ts";
import { type GpuDevice, grid, slice, type WebGpuBuffer } from "./device.ts";

/** Workgroups of sum_of_squares per chunk (each of 64 invocations). */
const NORM_GROUPS = 256;

/** out[i] = a[i] + b[i % nb]. */
export function addForward(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  a: WebGpuBuffer,
  b: WebGpuBuffer,
  n: number,
  nb: number,
): void {
  for (const [i0, i1] of gpu.rowChunks(n, [1])) {
    const len = i1 - i0;
    // same shape: b is sliced like a; broadcast (wpe over the batch): b is bound whole
    const [bs, nbs, base] = nb >= n ? [slice(b, i0, len), len, 0] : [slice(b, 0, nb), nb, i0];
    gpu.dispatch(
      "addForward",
      [len, nbs, base, 0, 0],
      [slice(a, i0, len), bs, slice(out, i0, len)],
      grid(len),
    );
  }
}

/** dst[i % nDst] += src[i]. */
export function accumulate(
  gpu: GpuDevice,
  dst: WebGpuBuffer,
  src: WebGpuBuffer,
  n: number,
  nDst: number,
): void {
  if (nDst >= n) {
    gpu.each("accumulate", n, (len) => [len, 0, 0, 0, 0], [src, dst]);
    return;
  }
  const chunks = n * 4 <= gpu.maxBinding ? [[0, n / nDst]] : gpu.rowChunks(n / nDst, [nDst]);
  if (chunks.length > 1 && n % nDst !== 0) {
    throw new Error(`Cannot sum ${n} elements into ${nDst}: ${n} is not a multiple`);
  }
  for (const [r0, r1] of chunks) {
    const len = r1 === n / nDst ? n - r0 * nDst : (r1 - r0) * nDst;
    gpu.dispatch(
      "accumulateBroadcast",
      [len, nDst, 0, 0, 0],
      [slice(src, r0 * nDst, len), slice(dst, 0, nDst)],
      grid(nDst),
    );
  }
}

/** out[i] = alpha * inp[i], or out[i] += alpha * inp[i] with `acc`. */
export function scale(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  inp: WebGpuBuffer,
  alpha: number,
  n: number,
  acc: boolean,
): void {
  const params = (len: number) => [len, 0, 0, acc ? 1 : 0, alpha];
  if (out.gpu === inp.gpu) gpu.each("scaleInplace", n, params, [out]);
  else gpu.each("scale", n, params, [inp, out]);
}

/** out (N, C) = weight[idx] with idx (N); the table is bound in row chunks. */
export function embeddingForward(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  idx: WebGpuBuffer,
  weight: WebGpuBuffer,
  N: number,
  C: number,
): void {
  const V = Math.floor(weight.length / C);
  for (const [r0, r1] of gpu.rowChunks(V, [C])) {
    gpu.dispatch(
      "embeddingForward",
      [N, C, r0, r1 - r0],
      [slice(idx, 0, N), slice(weight, r0 * C, (r1 - r0) * C), slice(out, 0, N * C)],
      grid(N * C),
    );
  }
}

/** dweight[idx[n]] += dout[n], summed in a fixed order through linked lists of positions. */
export function embeddingBackward(
  gpu: GpuDevice,
  dweight: WebGpuBuffer,
  dout: WebGpuBuffer,
  idx: WebGpuBuffer,
  N: number,
  C: number,
): void {
  const V = Math.floor(dweight.length / C);
  const links = gpu.alloc(2 * N, "i32");
  gpu.dispatch("embeddingLinks", [N, C, 0, 0], [slice(idx, 0, N), links], grid(N));
  for (const [r0, r1] of gpu.rowChunks(V, [C])) {
    gpu.dispatch(
      "embeddingBackward",
      [N, C, r0, r1 - r0],
      [slice(idx, 0, N), links, slice(dout, 0, N * C), slice(dweight, r0 * C, (r1 - r0) * C)],
      grid(N * C),
    );
  }
}

/** LayerNorm's buffers, as this backend's: the input, parameters and statistics. */
export interface LayerNormBuffers {
  inp: WebGpuBuffer;
  weight: WebGpuBuffer;
  mean: WebGpuBuffer;
  rstd: WebGpuBuffer;
}

/** out = LayerNorm(inp) with `bias`; writes the rows' mean and rstd. */
export function layernormForward(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  { inp, weight, mean, rstd }: LayerNormBuffers,
  bias: WebGpuBuffer,
  { N, C }: RowDims,
): void {
  gpu.dispatch(
    "layernormForward",
    [N, C],
    [
      slice(inp, 0, N * C),
      slice(weight, 0, C),
      slice(bias, 0, C),
      slice(out, 0, N * C),
      slice(mean, 0, N),
      slice(rstd, 0, N),
    ],
    [Math.ceil(N / 64)],
  );
}

/** dinp, dweight, dbias += LayerNorm's backward of dout: one kernel per row, one per channel. */
export function layernormBackward(
  gpu: GpuDevice,
  grads: { dinp: WebGpuBuffer; dweight: WebGpuBuffer; dbias: WebGpuBuffer },
  dout: WebGpuBuffer,
  saved: LayerNormBuffers,
  { N, C }: RowDims,
): void {
  const d = slice(dout, 0, N * C), x = slice(saved.inp, 0, N * C);
  const mu = slice(saved.mean, 0, N), rs = slice(saved.rstd, 0, N);
  gpu.dispatch(
    "layernormBackwardInput",
    [N, C],
    [d, x, slice(saved.weight, 0, C), mu, rs, slice(grads.dinp, 0, N * C)],
    [Math.ceil(N / 64)],
  );
  gpu.dispatch(
    "layernormBackwardParams",
    [N, C],
    [d, x, mu, rs, slice(grads.dweight, 0, C), slice(grads.dbias, 0, C)],
    [Math.ceil(C / 64)],
  );
}

/** GELU (tanh approximation) in one kernel. */
export function geluForward(gpu: GpuDevice, out: WebGpuBuffer, inp: WebGpuBuffer, n: number): void {
  gpu.each("geluForward", n, (len) => [len], [inp, out]);
}

/** dinp += GELU'(inp) dout in one kernel. */
export function geluBackward(
  gpu: GpuDevice,
  dinp: WebGpuBuffer,
  inp: WebGpuBuffer,
  dout: WebGpuBuffer,
  n: number,
): void {
  gpu.each("geluBackward", n, (len) => [len], [inp, dout, dinp]);
}

/** loss = mean cross-entropy of the rows: a workgroup per row, then one mean. */
export function crossEntropyForward(
  gpu: GpuDevice,
  loss: WebGpuBuffer,
  logits: WebGpuBuffer,
  targets: WebGpuBuffer,
  N: number,
  V: number,
): void {
  const losses = gpu.alloc(N, "f32");
  for (const [n0, n1] of gpu.rowChunks(N, [V])) {
    gpu.dispatch(
      "crossEntropyForwardRows",
      [n1 - n0, V, n0, N],
      [slice(logits, n0 * V, (n1 - n0) * V), slice(targets, 0, N), losses],
      grid((n1 - n0) * 64), // a workgroup per row
    );
  }
  gpu.dispatch("crossEntropyMean", [N, V, 0, N], [losses, slice(loss, 0, 1)], [1]);
}

/** dlogits += (softmax(logits) - onehot(targets)) dloss / N, a workgroup per row. */
export function crossEntropyBackward(
  gpu: GpuDevice,
  dlogits: WebGpuBuffer,
  dloss: WebGpuBuffer,
  logits: WebGpuBuffer,
  targets: WebGpuBuffer,
  N: number,
  V: number,
): void {
  for (const [n0, n1] of gpu.rowChunks(N, [V])) {
    gpu.dispatch(
      "crossEntropyBackward",
      [n1 - n0, V, n0, N],
      [
        slice(logits, n0 * V, (n1 - n0) * V),
        slice(targets, 0, N),
        slice(dloss, 0, 1),
        slice(dlogits, n0 * V, (n1 - n0) * V),
      ],
      grid((n1 - n0) * 64), // a workgroup per row
    );
  }
}

/**
 * The sum of squares of the first `ns[k]` elements of every buffer, with one read-back
 * for all: each chunk of each buffer writes its own run of partial sums (64 per
 * workgroup), which the host adds in order.
 */
export async function sumsOfSquares(
  gpu: GpuDevice,
  bufs: WebGpuBuffer[],
  ns: number[],
): Promise<number[]> {
  const plan: {
    k: number;
    x: WebGpuBuffer;
    i0: number;
    len: number;
    at: number;
    groups: number;
  }[] = [];
  const maxGroups = Math.max(1, Math.min(NORM_GROUPS, Math.floor(gpu.maxBinding / 256)));
  let total = 0;
  bufs.forEach((x, k) => {
    for (const [i0, i1] of gpu.rowChunks(ns[k], [1])) {
      const groups = Math.min(maxGroups, Math.max(1, Math.ceil((i1 - i0) / 4096)));
      plan.push({ k, x, i0, len: i1 - i0, at: total, groups });
      total += groups * 64;
    }
  });
  const partial = gpu.alloc(Math.max(1, total), "f32");
  for (const { x, i0, len, at, groups } of plan) {
    gpu.dispatch(
      "sumOfSquares",
      [len, 0],
      [slice(x, i0, len), slice(partial, at, groups * 64)],
      [groups],
    );
  }
  const parts = (await gpu.read(partial)) as Float32Array;
  const sums = new Array<number>(bufs.length).fill(0);
  for (const { k, at, groups } of plan) {
    for (let i = at; i < at + groups * 64; i++) sums[k] += parts[i];
  }
  return sums;
}

/** AdamW's moment buffers and the parameter they update, as this backend's buffers. */
export interface AdamWBuffers {
  param: WebGpuBuffer;
  grad: WebGpuBuffer;
  m: WebGpuBuffer;
  v: WebGpuBuffer;
}

/** One AdamW update of n parameters in one kernel. */
export function adamw(
  gpu: GpuDevice,
  { param, grad, m, v }: AdamWBuffers,
  n: number,
  hp: AdamWParams,
): void {
  const { lr, beta1, beta2, eps, weightDecay, step, gradScale = 1 } = hp;
  const stepSize = lr / (1 - beta1 ** step), sqrtBc2 = Math.sqrt(1 - beta2 ** step);
  gpu.each(
    "adamw",
    n,
    (len) => [len, beta1, beta2, eps, stepSize, sqrtBc2, 1 - lr * weightDecay, gradScale],
    [grad, param, m, v],
  );
}
