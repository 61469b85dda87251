/**
 * Attention as eager PyTorch runs the lecture's fp32 baseline: per head, the (T, T) scores as a
 * GEMM, the causal mask and the softmax over whole rows, the probabilities stored (B, NH, T, T)
 * for the backward pass, then a second GEMM by V. The GEMMs are the backend's own
 * (`matmulForward`, `matmulBackward`, at its matmul precision); the mask and the softmax are
 * TypeScript loops over the stored matrix. The speedup ladder's rungs below flash attention
 * run it (ladder.ts), so that the flash rung is timed against naive attention on the same GEMMs.
 *
 * @module
 */

import type { AttentionDims, Backend, DeviceBuffer } from "../../backend.ts";
import { CpuBuffer } from "../cpu/mod.ts";

function f32(buf: DeviceBuffer, what: string): Float32Array {
  if (!(buf instanceof CpuBuffer) || !(buf.data instanceof Float32Array)) {
    throw new Error(`Naive attention: expected ${what} as an f32 host buffer, found ${buf.dtype}`);
  }
  return buf.data;
}

const host = (a: Float32Array): CpuBuffer => new CpuBuffer(a, "f32");

/** One head's rows (T, hs) of q (part 0), k (1) or v (2) copied out of qkv (B, T, 3C). */
function gather(
  dst: Float32Array,
  src: Float32Array,
  b: number,
  h: number,
  part: number,
  d: AttentionDims,
  stride: number,
): void {
  const hs = d.C / d.NH;
  for (let t = 0; t < d.T; t++) {
    const s = (b * d.T + t) * stride + part * d.C + h * hs;
    dst.set(src.subarray(s, s + hs), t * hs);
  }
}

/** Adds (or, with `add` false, writes) one head's rows (T, hs) into a (B, T, stride) buffer. */
function scatter(
  dst: Float32Array,
  src: Float32Array,
  b: number,
  h: number,
  part: number,
  d: AttentionDims,
  stride: number,
  add: boolean,
): void {
  const hs = d.C / d.NH;
  for (let t = 0; t < d.T; t++) {
    const o = (b * d.T + t) * stride + part * d.C + h * hs;
    if (!add) {
      dst.set(src.subarray(t * hs, (t + 1) * hs), o);
      continue;
    }
    for (let i = 0; i < hs; i++) dst[o + i] += src[t * hs + i];
  }
}

/** The dims of a (T, hs) by (T, hs) product through the backend's matmul entry points. */
const headDims = (d: AttentionDims) => ({ N: d.T, C: d.C / d.NH, OC: d.T });

/**
 * out (B, T, C) = softmax(mask(q k^T / sqrt(hs))) v per head; returns the probabilities
 * (B, NH, T, T), which `naiveAttentionBackward` reads.
 */
export function naiveAttentionForward(
  backend: Backend,
  out: DeviceBuffer,
  qkv: DeviceBuffer,
  dims: AttentionDims,
): DeviceBuffer {
  const { B, T, C, NH } = dims;
  const hs = C / NH, scale = 1 / Math.sqrt(hs), x = f32(qkv, "qkv"), o = f32(out, "out");
  const att = new Float32Array(B * NH * T * T);
  const q = new Float32Array(T * hs), k = new Float32Array(T * hs), v = new Float32Array(T * hs);
  const y = new Float32Array(T * hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      gather(q, x, b, h, 0, dims, 3 * C);
      gather(k, x, b, h, 1, dims, 3 * C);
      gather(v, x, b, h, 2, dims, 3 * C);
      const p = att.subarray((b * NH + h) * T * T, (b * NH + h + 1) * T * T);
      // the scores, every (t, t2) as eager PyTorch computes them; the mask comes after
      backend.matmulForward(host(p), host(q), host(k), null, headDims(dims));
      for (let t = 0; t < T; t++) {
        const row = p.subarray(t * T, (t + 1) * T);
        let max = -Infinity;
        for (let t2 = 0; t2 <= t; t2++) max = Math.max(max, row[t2] * scale);
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const e = Math.exp(row[t2] * scale - max);
          row[t2] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let t2 = 0; t2 <= t; t2++) row[t2] *= inv;
        row.fill(0, t + 1);
      }
      // y = p v: matmulBackward's dinp += dout @ weight, with p as dout and v as weight
      y.fill(0);
      backend.matmulBackward(
        { dinp: host(y), dweight: null, dbias: null },
        host(p),
        host(q),
        host(v),
        headDims(dims),
      );
      scatter(o, y, b, h, 0, { B, T, C, NH }, C, false);
    }
  }
  return host(att);
}

/** dqkv += the gradient of `naiveAttentionForward`, from its stored probabilities. */
export function naiveAttentionBackward(
  backend: Backend,
  dqkv: DeviceBuffer,
  dout: DeviceBuffer,
  qkv: DeviceBuffer,
  saved: DeviceBuffer,
  dims: AttentionDims,
): void {
  const { B, T, C, NH } = dims;
  const hs = C / NH, scale = 1 / Math.sqrt(hs);
  const x = f32(qkv, "qkv"), dx = f32(dqkv, "dqkv"), d = f32(dout, "dout");
  const att = f32(saved, "the saved probabilities");
  if (att.length !== B * NH * T * T) {
    throw new Error(
      `Naive attention: expected ${B * NH * T * T} saved probabilities, found ${att.length}`,
    );
  }
  const q = new Float32Array(T * hs), k = new Float32Array(T * hs), v = new Float32Array(T * hs);
  const dy = new Float32Array(T * hs), dq = new Float32Array(T * hs);
  const dk = new Float32Array(T * hs), dv = new Float32Array(T * hs);
  const ds = new Float32Array(T * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      gather(q, x, b, h, 0, dims, 3 * C);
      gather(k, x, b, h, 1, dims, 3 * C);
      gather(v, x, b, h, 2, dims, 3 * C);
      gather(dy, d, b, h, 0, dims, C);
      const p = att.subarray((b * NH + h) * T * T, (b * NH + h + 1) * T * T);
      // dp = dy v^T, then through the softmax: ds = p * (dp - sum(p * dp)), times the scale
      backend.matmulForward(host(ds), host(dy), host(v), null, headDims(dims));
      for (let t = 0; t < T; t++) {
        const pr = p.subarray(t * T, (t + 1) * T), row = ds.subarray(t * T, (t + 1) * T);
        let dot = 0;
        for (let t2 = 0; t2 <= t; t2++) dot += pr[t2] * row[t2];
        for (let t2 = 0; t2 <= t; t2++) row[t2] = pr[t2] * (row[t2] - dot) * scale;
        row.fill(0, t + 1);
      }
      // dq = ds k (dinp) and dk = ds^T q (dweight) in one call; dv = p^T dy
      dq.fill(0), dk.fill(0), dv.fill(0);
      backend.matmulBackward(
        { dinp: host(dq), dweight: host(dk), dbias: null },
        host(ds),
        host(q),
        host(k),
        headDims(dims),
      );
      backend.matmulBackward(
        { dinp: null, dweight: host(dv), dbias: null },
        host(p),
        host(dy),
        host(v),
        headDims(dims),
      );
      scatter(dx, dq, b, h, 0, dims, 3 * C, true);
      scatter(dx, dk, b, h, 1, dims, 3 * C, true);
      scatter(dx, dv, b, h, 2, dims, 3 * C, true);
    }
  }
}
