/**
 * The eager paths only the speedup ladder's first rungs use (`lib/backends/webgpu/ladder.ts`,
 * notebook 02): attention with the (B, NH, T, T) matrix stored (`attention_naive.wgsl`),
 * and GELU, bias adds and AdamW as chains of one-op kernels (`elementwise.wgsl`), each op
 * reading its inputs from memory and writing a new temporary, the way eager PyTorch runs
 * unfused code. The same math as the fused kernels, so every rung trains alike.
 *
 * @module
 */

import type { AdamWParams, AttentionDims, DeviceBuffer, DType } from "../../backend.ts";
import { type GpuDevice, grid, slice, type WebGpuBuffer } from "./device.ts";
import { accumulate, type AdamWBuffers, scale } from "./layers.ts";

/** Elementwise ops of elementwise.wgsl (the unfused rungs' building blocks). */
const UNARY = { affine: 0, tanh: 1, cube: 2, square: 3, sqrt: 4 } as const;
const BINARY = { mul: 0, add: 1, div: 2 } as const;

/** out = op(a), elementwise over n, with alpha and beta for "affine" (alpha a + beta). */
function unary(
  gpu: GpuDevice,
  op: keyof typeof UNARY,
  out: WebGpuBuffer,
  a: WebGpuBuffer,
  n: number,
  alpha = 1,
  beta = 0,
): void {
  gpu.each("ewUnary", n, (len) => [len, UNARY[op], 0, alpha, beta], [a, out]);
}

/** out = op(a, b), elementwise over n ("add" is a + alpha b). */
function binary(
  gpu: GpuDevice,
  op: keyof typeof BINARY,
  out: WebGpuBuffer,
  a: WebGpuBuffer,
  b: WebGpuBuffer,
  n: number,
  alpha = 1,
): void {
  gpu.each("ewBinary", n, (len) => [len, BINARY[op], 0, alpha, 0], [a, b, out]);
}

/** out (N, OC) += bias (OC) on every row: the bias add a matmul did not fuse. */
export function addBiasEager(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  bias: WebGpuBuffer,
  N: number,
  OC: number,
): void {
  for (const [n0, n1] of gpu.rowChunks(N, [OC])) {
    const len = (n1 - n0) * OC;
    gpu.dispatch(
      "ewAddBias",
      [len, 0, OC, 0, 0],
      [slice(bias, 0, OC), slice(out, n0 * OC, len)],
      grid(len),
    );
  }
}

/** tanh(sqrt(2/pi) (x + 0.044715 x^3)) in four elementwise kernels. */
function geluTanh(gpu: GpuDevice, x: WebGpuBuffer, n: number): WebGpuBuffer {
  const cube = gpu.temp(n), inner = gpu.temp(n), u = gpu.temp(n), th = gpu.temp(n);
  unary(gpu, "cube", cube, x, n);
  binary(gpu, "add", inner, x, cube, n, 0.044715);
  unary(gpu, "affine", u, inner, n, Math.sqrt(2 / Math.PI), 0);
  unary(gpu, "tanh", th, u, n);
  gpu.release(cube, inner, u);
  return th;
}

/** Eager PyTorch's GELU(approximate="tanh"): six kernels, five temporaries. */
export function geluForwardEager(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  x: WebGpuBuffer,
  n: number,
): void {
  const t = geluTanh(gpu, x, n), half = gpu.temp(n);
  unary(gpu, "affine", half, t, n, 0.5, 0.5); // (1 + tanh) / 2
  binary(gpu, "mul", out, x, half, n);
  gpu.release(t, half);
}

/**
 * Autograd's chain for GELU: d/dx [x (1 + tanh u) / 2] = (1 + tanh u) / 2
 * + x (1 - tanh^2 u) u' / 2, u' = sqrt(2/pi) (1 + 3 0.044715 x^2); dinp += that times dout.
 */
export function geluBackwardEager(
  gpu: GpuDevice,
  dinp: WebGpuBuffer,
  x: WebGpuBuffer,
  dout: WebGpuBuffer,
  n: number,
): void {
  const th = geluTanh(gpu, x, n), k = Math.sqrt(2 / Math.PI);
  const left = gpu.temp(n), sq = gpu.temp(n), sech2 = gpu.temp(n);
  unary(gpu, "affine", left, th, n, 0.5, 0.5);
  unary(gpu, "square", sq, th, n);
  unary(gpu, "affine", sech2, sq, n, -1, 1);
  const x2 = gpu.temp(n), du = gpu.temp(n), r1 = gpu.temp(n), r2 = gpu.temp(n);
  unary(gpu, "square", x2, x, n);
  unary(gpu, "affine", du, x2, n, 3 * 0.044715 * k, k);
  binary(gpu, "mul", r1, x, sech2, n);
  binary(gpu, "mul", r2, r1, du, n);
  const local = gpu.temp(n), g = gpu.temp(n);
  binary(gpu, "add", local, left, r2, n, 0.5);
  binary(gpu, "mul", g, local, dout, n);
  accumulate(gpu, dinp, g, n, n);
  gpu.release(th, left, sq, sech2, x2, du, r1, r2, local, g);
}

/**
 * torch.optim.AdamW(foreach=False): one kernel per op per parameter, ten temporaries (and
 * one more for a gradient scale other than 1: clipping's own pass, as PyTorch's).
 */
export function adamwEager(
  gpu: GpuDevice,
  { param: p, grad, m, v }: AdamWBuffers,
  n: number,
  hp: AdamWParams,
): void {
  const { lr, beta1, beta2, eps, weightDecay, step, gradScale = 1 } = hp;
  const g = gradScale === 1 ? grad : gpu.temp(n);
  if (g !== grad) unary(gpu, "affine", g, grad, n, gradScale, 0);
  const stepSize = lr / (1 - beta1 ** step), sqrtBc2 = Math.sqrt(1 - beta2 ** step);
  const m1 = gpu.temp(n), m2 = gpu.temp(n), g2 = gpu.temp(n), v1 = gpu.temp(n);
  const v2 = gpu.temp(n), root = gpu.temp(n), den = gpu.temp(n), upd = gpu.temp(n);
  const p1 = gpu.temp(n), p2 = gpu.temp(n);
  unary(gpu, "affine", m1, m, n, beta1, 0);
  binary(gpu, "add", m2, m1, g, n, 1 - beta1);
  unary(gpu, "square", g2, g, n);
  unary(gpu, "affine", v1, v, n, beta2, 0);
  binary(gpu, "add", v2, v1, g2, n, 1 - beta2);
  unary(gpu, "sqrt", root, v2, n);
  unary(gpu, "affine", den, root, n, 1 / sqrtBc2, eps);
  binary(gpu, "div", upd, m2, den, n);
  unary(gpu, "affine", p1, p, n, 1 - lr * weightDecay, 0);
  binary(gpu, "add", p2, p1, upd, n, -stepSize);
  scale(gpu, m, m2, 1, n, false);
  scale(gpu, v, v2, 1, n, false);
  scale(gpu, p, p2, 1, n, false);
  gpu.release(m1, m2, g2, v1, v2, root, den, upd, p1, p2);
  if (g !== grad) gpu.release(g);
}

/** What materialized attention saves for backward: the (B, NH, T, T) softmax itself. */
export class AttentionMatrix implements DeviceBuffer {
  readonly length: number;
  readonly dtype: DType = "f32";

  constructor(readonly att: WebGpuBuffer) {
    this.length = att.length;
  }
}

/** The lecture's att = softmax(mask(q k^T / sqrt(hs))) @ v, att kept for backward. */
export function attentionForwardMaterialized(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  qkv: WebGpuBuffer,
  { B, T, C, NH }: AttentionDims,
): AttentionMatrix {
  const hs = C / NH, tt = NH * T * T, att = gpu.temp(B * tt);
  for (const [b0, b1] of gpu.rowChunks(B, [tt, T * 3 * C, T * C])) {
    const nb = b1 - b0, params = [nb, T, C, NH, 1 / Math.sqrt(hs), 0, 0, 0, 0];
    const xs = slice(qkv, b0 * T * 3 * C, nb * T * 3 * C), as = slice(att, b0 * tt, nb * tt);
    // scores: q (channel 0 of 3C-wide rows) against k (channel C)
    const scores = [nb, T, C, NH, 1 / Math.sqrt(hs), 3 * C, 0, 3 * C, C];
    gpu.dispatch("attnDots", scores, [xs, xs, as], grid(nb * tt));
    gpu.dispatch("attnSoftmax", params, [as], grid(nb * NH * T));
    gpu.dispatch(
      "attnValues",
      params,
      [as, xs, slice(out, b0 * T * C, nb * T * C)],
      grid(nb * T * C),
    );
  }
  return new AttentionMatrix(att);
}

/** dqkv += the backward of materialized attention, through the stored softmax. */
export function attentionBackwardMaterialized(
  gpu: GpuDevice,
  dqkv: WebGpuBuffer,
  dout: WebGpuBuffer,
  qkv: WebGpuBuffer,
  saved: AttentionMatrix,
  { B, T, C, NH }: AttentionDims,
): void {
  const tt = NH * T * T, datt = gpu.temp(B * tt);
  for (const [b0, b1] of gpu.rowChunks(B, [tt, T * 3 * C, T * C])) {
    const nb = b1 - b0, params = [nb, T, C, NH, 1 / Math.sqrt(C / NH), 0, 0, 0, 0];
    const xs = slice(qkv, b0 * T * 3 * C, nb * T * 3 * C), ds = slice(dout, b0 * T * C, nb * T * C);
    const as = slice(saved.att, b0 * tt, nb * tt), das = slice(datt, b0 * tt, nb * tt);
    // datt: dout (C-wide rows) against v (channel 2C of 3C-wide rows)
    const dots = [nb, T, C, NH, 1, C, 0, 3 * C, 2 * C];
    gpu.dispatch("attnDots", dots, [ds, xs, das], grid(nb * tt));
    gpu.dispatch("attnSoftmaxBackward", params, [as, das], grid(nb * NH * T));
    gpu.dispatch(
      "attnDqkv",
      params,
      [as, das, xs, ds, slice(dqkv, b0 * T * 3 * C, nb * T * 3 * C)],
      grid(nb * T * 3 * C),
    );
  }
  gpu.release(datt);
}
