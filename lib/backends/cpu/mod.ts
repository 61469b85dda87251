/**
 * The reference backend: plain TypeScript loops on Float32Array, written to be read, as
 * plain as llm.c's `train_gpt2.c`. Every faster backend is tested against this one, and
 * this one is tested against PyTorch (`../shared/reference`).
 *
 * Sums are accumulated in JavaScript numbers (f64) and stored as f32.
 *
 * `new CpuBackend({ matmulPrecision: "bf16" })` is the model of `--precision bf16` (PyTorch's
 * autocast to bf16) that the native backend's bf16 kernels are tested against: every matmul
 * (forward and backward) and attention's two products (q . k and p v, and their backward
 * products) round their operands to bf16 (`bf16.ts`) and multiply them in f64, where the
 * product of two bf16 is exact, as it is in f32; the sums are f64, stored as f32. Attention's
 * probabilities p and the backward's ds = p (dp - dout . out) are rounded after the f64 softmax
 * and before the scale 1 / sqrt(hs); biases, softmax and everything else stay as in f32. The
 * reference does not train in bf16 itself (`setMatmulPrecision` is the native backend's).
 *
 * @module
 */

import type {
  AdamWParams,
  AttentionDims,
  Backend,
  DeviceBuffer,
  DType,
  KVCacheDims,
  LayerNormGrads,
  LayerNormSaved,
  MatmulDims,
  MatmulGrads,
  RowDims,
} from "../../backend.ts";
import { checkKVCacheDims } from "../kv_cache_dims.ts";
import { bf16Round, bf16RoundArray } from "./bf16.ts";
import { BufferPool } from "./buffer_pool.ts";

/** A CPU buffer: the typed array itself. */
export class CpuBuffer implements DeviceBuffer {
  constructor(readonly data: Float32Array | Int32Array, readonly dtype: DType) {}
  get length(): number {
    return this.data.length;
  }
}

function f32(buf: DeviceBuffer): Float32Array {
  const b = buf as CpuBuffer;
  if (!(b instanceof CpuBuffer) || !(b.data instanceof Float32Array)) {
    throw new Error(`Expected an f32 buffer of the cpu backend, found ${describe(buf)}`);
  }
  return b.data;
}

function i32(buf: DeviceBuffer): Int32Array {
  const b = buf as CpuBuffer;
  if (!(b instanceof CpuBuffer) || !(b.data instanceof Int32Array)) {
    throw new Error(`Expected an i32 buffer of the cpu backend, found ${describe(buf)}`);
  }
  return b.data;
}

function describe(buf: DeviceBuffer): string {
  return `${buf.constructor.name} (${buf.dtype}, ${buf.length} elements)`;
}

const GELU_SCALE = Math.sqrt(2 / Math.PI);
/** The most the recycled buffers hold: GPT-2 124M's gradients at B=8, T=1024 are under it. */
const RECYCLE_LIMIT_BYTES = 2 ** 30;
const LN_EPS = 1e-5;

/** Options of the reference backend. */
export interface CpuBackendOptions {
  /**
   * "f32" (the default), or "bf16": the matmuls' and attention's products on operands rounded
   * to bf16, the model the native backend's bf16 kernels are tested against.
   */
  matmulPrecision?: "f32" | "bf16";
}

/** The reference CPU backend. */
export class CpuBackend implements Backend {
  readonly name: string = "cpu";
  readonly isReference: boolean = true;
  readonly isSoftwareAdapter = false;
  /** Whether the matmuls' and attention's operands are rounded to bf16. */
  protected bf16Operands: boolean;

  constructor(options: CpuBackendOptions = {}) {
    const precision = options.matmulPrecision ?? "f32";
    if (precision !== "f32" && precision !== "bf16") {
      throw new Error(`CpuBackend's matmulPrecision must be "f32" or "bf16", found "${precision}"`);
    }
    this.bf16Operands = precision === "bf16";
  }

  /** `a`, or under bf16 operands a copy of it rounded to bf16. */
  private operand(a: Float32Array): Float32Array {
    return this.bf16Operands ? bf16RoundArray(a) : a;
  }

  describe(): string {
    return "the reference CPU backend (plain TypeScript)";
  }

  /** A buffer over `data` itself (a shared-memory mapping's gradients, say), no copy. */
  wrapHost(data: Float32Array): DeviceBuffer {
    return new CpuBuffer(data, "f32");
  }

  /** The typed array itself: buffers live in host memory. */
  hostView(buf: DeviceBuffer): Float32Array | Int32Array {
    const b = buf as CpuBuffer;
    if (!(b instanceof CpuBuffer)) {
      throw new Error(`Expected a buffer of the ${this.name} backend, found ${describe(buf)}`);
    }
    return b.data;
  }

  /** Arrays of dead tensors, for the next `alloc` of their size (a step's worth at most). */
  private readonly pool = new BufferPool(RECYCLE_LIMIT_BYTES);

  alloc(length: number, dtype: DType): DeviceBuffer {
    return new CpuBuffer(this.pool.take(length, dtype), dtype);
  }

  /** Takes back a buffer no tensor uses any more (arrays `alloc` made; others are ignored). */
  recycle(buf: DeviceBuffer): void {
    this.pool.give(this.hostView(buf));
  }

  /** Bytes of recycled buffers waiting for an `alloc`. */
  get recycledBytes(): number {
    return this.pool.bytes;
  }

  upload(data: Float32Array | Int32Array): DeviceBuffer {
    return new CpuBuffer(data.slice(), data instanceof Float32Array ? "f32" : "i32");
  }

  write(buf: DeviceBuffer, data: Float32Array | Int32Array): void {
    const dst = (buf as CpuBuffer).data;
    if (dst.length !== data.length || dst.constructor !== data.constructor) {
      throw new Error(
        `Cannot write ${data.constructor.name}(${data.length}) into ${describe(buf)}`,
      );
    }
    dst.set(data);
  }

  zero(buf: DeviceBuffer): void {
    (buf as CpuBuffer).data.fill(0);
  }

  read(buf: DeviceBuffer): Promise<Float32Array | Int32Array> {
    return Promise.resolve((buf as CpuBuffer).data.slice());
  }

  addForward(out: DeviceBuffer, a: DeviceBuffer, b: DeviceBuffer, n: number, nb: number): void {
    const o = f32(out), x = f32(a), y = f32(b);
    for (let i = 0; i < n; i++) o[i] = x[i] + y[i % nb];
  }

  accumulate(dst: DeviceBuffer, src: DeviceBuffer, n: number, nDst: number): void {
    const d = f32(dst), s = f32(src);
    for (let i = 0; i < n; i++) d[i % nDst] += s[i];
  }

  scale(out: DeviceBuffer, inp: DeviceBuffer, alpha: number, n: number, acc: boolean): void {
    const o = f32(out), x = f32(inp);
    if (acc) { for (let i = 0; i < n; i++) o[i] += alpha * x[i]; }
    else for (let i = 0; i < n; i++) o[i] = alpha * x[i];
  }

  // out is (N, C); weight is (V, C); idx is (N)
  embeddingForward(
    out: DeviceBuffer,
    idx: DeviceBuffer,
    weight: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const o = f32(out), ix = i32(idx), w = f32(weight);
    const V = w.length / C;
    for (let n = 0; n < N; n++) {
      const token = ix[n];
      if (token < 0 || token >= V) {
        throw new RangeError(
          `Token id ${token} at position ${n} is outside the table of ${V} rows`,
        );
      }
      o.set(w.subarray(token * C, token * C + C), n * C);
    }
  }

  embeddingBackward(
    dweight: DeviceBuffer,
    dout: DeviceBuffer,
    idx: DeviceBuffer,
    N: number,
    C: number,
  ): void {
    const dw = f32(dweight), d = f32(dout), ix = i32(idx);
    for (let n = 0; n < N; n++) {
      const row = ix[n] * C;
      for (let c = 0; c < C; c++) dw[row + c] += d[n * C + c];
    }
  }

  // out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC)
  matmulForward(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    { N, C, OC }: MatmulDims,
  ): void {
    const o = f32(out), x = this.operand(f32(inp)), w = this.operand(f32(weight));
    const b = bias ? f32(bias) : null;
    // Four rows at a time so each weight row is loaded once per four dot products.
    let n = 0;
    for (; n + 4 <= N; n += 4) {
      const x0 = n * C, x1 = x0 + C, x2 = x1 + C, x3 = x2 + C;
      for (let oc = 0; oc < OC; oc++) {
        const w0 = oc * C;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let c = 0; c < C; c++) {
          const wv = w[w0 + c];
          s0 += x[x0 + c] * wv;
          s1 += x[x1 + c] * wv;
          s2 += x[x2 + c] * wv;
          s3 += x[x3 + c] * wv;
        }
        const bv = b ? b[oc] : 0;
        o[n * OC + oc] = s0 + bv;
        o[(n + 1) * OC + oc] = s1 + bv;
        o[(n + 2) * OC + oc] = s2 + bv;
        o[(n + 3) * OC + oc] = s3 + bv;
      }
    }
    for (; n < N; n++) {
      for (let oc = 0; oc < OC; oc++) {
        let s = b ? b[oc] : 0;
        for (let c = 0; c < C; c++) s += x[n * C + c] * w[oc * C + c];
        o[n * OC + oc] = s;
      }
    }
  }

  matmulBackward(
    { dinp, dweight, dbias }: MatmulGrads,
    dout: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    { N, C, OC }: MatmulDims,
  ): void {
    const d = this.operand(f32(dout)), x = this.operand(f32(inp)), w = this.operand(f32(weight));
    if (dinp) {
      // dinp (N, C) += dout (N, OC) @ weight (OC, C)
      const di = f32(dinp);
      for (let n = 0; n < N; n++) {
        const row = n * C;
        for (let oc = 0; oc < OC; oc++) {
          const g = d[n * OC + oc];
          if (g === 0) continue;
          const w0 = oc * C;
          for (let c = 0; c < C; c++) di[row + c] += g * w[w0 + c];
        }
      }
    }
    if (dweight) {
      // dweight (OC, C) += dout^T (OC, N) @ inp (N, C), accumulated in f64 per row
      const dw = f32(dweight);
      const acc = new Float64Array(C);
      for (let oc = 0; oc < OC; oc++) {
        acc.fill(0);
        for (let n = 0; n < N; n++) {
          const g = d[n * OC + oc];
          if (g === 0) continue;
          const x0 = n * C;
          for (let c = 0; c < C; c++) acc[c] += g * x[x0 + c];
        }
        const w0 = oc * C;
        for (let c = 0; c < C; c++) dw[w0 + c] += acc[c];
      }
    }
    if (dbias) {
      const db = f32(dbias), g = f32(dout); // a sum, not a matmul: never rounded
      for (let oc = 0; oc < OC; oc++) {
        let s = 0;
        for (let n = 0; n < N; n++) s += g[n * OC + oc];
        db[oc] += s;
      }
    }
  }

  layernormForward(
    out: DeviceBuffer,
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer,
    { N, C }: RowDims,
  ): void {
    const o = f32(out),
      mu = f32(mean),
      rs = f32(rstd),
      x = f32(inp),
      w = f32(weight),
      b = f32(bias);
    for (let n = 0; n < N; n++) {
      const x0 = n * C;
      let m = 0;
      for (let c = 0; c < C; c++) m += x[x0 + c];
      m /= C;
      let v = 0;
      for (let c = 0; c < C; c++) v += (x[x0 + c] - m) ** 2;
      v /= C; // biased variance, as nn.LayerNorm uses
      const s = 1 / Math.sqrt(v + LN_EPS);
      for (let c = 0; c < C; c++) o[x0 + c] = (x[x0 + c] - m) * s * w[c] + b[c];
      mu[n] = m;
      rs[n] = s;
    }
  }

  layernormBackward(
    { dinp, dweight, dbias }: LayerNormGrads,
    dout: DeviceBuffer,
    { inp, weight, mean, rstd }: LayerNormSaved,
    { N, C }: RowDims,
  ): void {
    const di = f32(dinp), dw = f32(dweight), db = f32(dbias), d = f32(dout);
    const x = f32(inp), w = f32(weight), mu = f32(mean), rs = f32(rstd);
    for (let n = 0; n < N; n++) {
      const x0 = n * C, m = mu[n], s = rs[n];
      // the two reductions of the normalisation's backward
      let dnormMean = 0, dnormNormMean = 0;
      for (let c = 0; c < C; c++) {
        const norm = (x[x0 + c] - m) * s;
        const dnorm = w[c] * d[x0 + c];
        dnormMean += dnorm;
        dnormNormMean += dnorm * norm;
      }
      dnormMean /= C;
      dnormNormMean /= C;
      for (let c = 0; c < C; c++) {
        const norm = (x[x0 + c] - m) * s;
        const dnorm = w[c] * d[x0 + c];
        db[c] += d[x0 + c];
        dw[c] += norm * d[x0 + c];
        di[x0 + c] += (dnorm - dnormMean - norm * dnormNormMean) * s;
      }
    }
  }

  /** The fused kernel's reference: the two kernels it fuses, one after the other. */
  matmulGeluForward(
    pre: DeviceBuffer,
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    dims: MatmulDims,
  ): void {
    this.matmulForward(pre, inp, weight, bias, dims);
    this.geluForward(out, pre, dims.N * dims.OC);
  }

  geluForward(out: DeviceBuffer, inp: DeviceBuffer, n: number): void {
    const o = f32(out), x = f32(inp);
    for (let i = 0; i < n; i++) {
      const v = x[i];
      o[i] = 0.5 * v * (1 + Math.tanh(GELU_SCALE * (v + 0.044715 * v * v * v)));
    }
  }

  geluBackward(dinp: DeviceBuffer, inp: DeviceBuffer, dout: DeviceBuffer, n: number): void {
    const di = f32(dinp), x = f32(inp), d = f32(dout);
    for (let i = 0; i < n; i++) {
      const v = x[i];
      const u = GELU_SCALE * (v + 0.044715 * v * v * v);
      const th = Math.tanh(u);
      const sech2 = 1 - th * th;
      const local = 0.5 * (1 + th) + 0.5 * v * sech2 * GELU_SCALE * (1 + 3 * 0.044715 * v * v);
      di[i] += local * d[i];
    }
  }

  // Saves the attention probabilities (B, NH, T, T): fine for a reference, which is why the
  // fast backends use flash-style attention instead.
  attentionForward(out: DeviceBuffer, qkv: DeviceBuffer, dims: AttentionDims): DeviceBuffer {
    const { B, T, C, NH } = dims;
    const hs = C / NH, scale = 1 / Math.sqrt(hs);
    const o = f32(out), x = this.operand(f32(qkv));
    const att = new Float32Array(B * NH * T * T);
    const row = new Float64Array(T);
    const p = new Float64Array(T); // the probabilities as p v multiplies them
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < NH; h++) {
          const q0 = (b * T + t) * 3 * C + h * hs;
          let max = -Infinity;
          for (let t2 = 0; t2 <= t; t2++) {
            const k0 = (b * T + t2) * 3 * C + C + h * hs;
            let s = 0;
            for (let i = 0; i < hs; i++) s += x[q0 + i] * x[k0 + i];
            row[t2] = s * scale;
            if (row[t2] > max) max = row[t2];
          }
          let sum = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            row[t2] = Math.exp(row[t2] - max);
            sum += row[t2];
          }
          const a0 = ((b * NH + h) * T + t) * T;
          for (let t2 = 0; t2 <= t; t2++) {
            att[a0 + t2] = row[t2] / sum;
            p[t2] = this.bf16Operands ? bf16Round(att[a0 + t2]) : att[a0 + t2];
          }
          const o0 = (b * T + t) * C + h * hs;
          for (let i = 0; i < hs; i++) {
            let s = 0;
            for (let t2 = 0; t2 <= t; t2++) {
              s += p[t2] * x[(b * T + t2) * 3 * C + 2 * C + h * hs + i];
            }
            o[o0 + i] = s;
          }
        }
      }
    }
    return new CpuBuffer(att, "f32");
  }

  attentionBackward(
    dqkv: DeviceBuffer,
    dout: DeviceBuffer,
    qkv: DeviceBuffer,
    saved: DeviceBuffer,
    dims: AttentionDims,
  ): void {
    const { B, T, C, NH } = dims;
    const hs = C / NH, scale = 1 / Math.sqrt(hs);
    const dx = f32(dqkv), d32 = f32(dout), att = f32(saved);
    // the products' operands (rounded to bf16 under bf16 operands)
    const x = this.operand(f32(qkv)), d = this.operand(d32);
    const bf16 = this.bf16Operands;
    const datt = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < NH; h++) {
          const a0 = ((b * NH + h) * T + t) * T;
          const o0 = (b * T + t) * C + h * hs;
          // through y = att @ v
          for (let t2 = 0; t2 <= t; t2++) {
            const v0 = (b * T + t2) * 3 * C + 2 * C + h * hs;
            const p = bf16 ? bf16Round(att[a0 + t2]) : att[a0 + t2];
            let s = 0;
            for (let i = 0; i < hs; i++) {
              s += x[v0 + i] * d[o0 + i];
              dx[v0 + i] += p * d[o0 + i];
            }
            datt[t2] = s;
          }
          // through the softmax: dpre = att * (datt - sum(att * datt)); that sum is dout . out,
          // which bf16 operands take as flash attention does, from out as the forward stored it
          let dot = 0;
          if (bf16) {
            for (let i = 0; i < hs; i++) {
              let y = 0;
              for (let t2 = 0; t2 <= t; t2++) {
                y += bf16Round(att[a0 + t2]) * x[(b * T + t2) * 3 * C + 2 * C + h * hs + i];
              }
              dot += d32[o0 + i] * Math.fround(y);
            }
          } else {
            for (let t2 = 0; t2 <= t; t2++) dot += att[a0 + t2] * datt[t2];
          }
          // through pre = q @ k^T * scale
          const q0 = (b * T + t) * 3 * C + h * hs;
          for (let t2 = 0; t2 <= t; t2++) {
            const ds = att[a0 + t2] * (datt[t2] - dot);
            const dpre = (bf16 ? bf16Round(ds) : ds) * scale;
            const k0 = (b * T + t2) * 3 * C + C + h * hs;
            for (let i = 0; i < hs; i++) {
              dx[q0 + i] += x[k0 + i] * dpre;
              dx[k0 + i] += x[q0 + i] * dpre;
            }
          }
        }
      }
    }
  }

  // The caches are (B, NH, maxT, hs): a head's keys are contiguous, position after position.
  kvCacheAppend(
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    qkv: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const { B, T, C, NH, pos, maxT } = checkKVCacheDims(dims, kCache, vCache);
    const hs = C / NH, kc = f32(kCache), vc = f32(vCache), x = f32(qkv);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < NH; h++) {
          const src = (b * T + t) * 3 * C + h * hs;
          const dst = ((b * NH + h) * maxT + pos + t) * hs;
          for (let i = 0; i < hs; i++) {
            kc[dst + i] = x[src + C + i];
            vc[dst + i] = x[src + 2 * C + i];
          }
        }
      }
    }
  }

  // attentionForward's loops, with the keys and values read from the caches: new position t
  // sits at pos + t and sees cached positions 0 .. pos + t
  attentionDecode(
    out: DeviceBuffer,
    qkv: DeviceBuffer,
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    dims: KVCacheDims,
  ): void {
    const { B, T, C, NH, pos, maxT } = checkKVCacheDims(dims, kCache, vCache);
    const hs = C / NH, scale = 1 / Math.sqrt(hs);
    const o = f32(out), x = f32(qkv), kc = f32(kCache), vc = f32(vCache);
    const row = new Float64Array(pos + T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const n = pos + t + 1; // keys seen by this query
        for (let h = 0; h < NH; h++) {
          const q0 = (b * T + t) * 3 * C + h * hs, head = (b * NH + h) * maxT * hs;
          let max = -Infinity;
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let i = 0; i < hs; i++) s += x[q0 + i] * kc[head + j * hs + i];
            row[j] = s * scale;
            if (row[j] > max) max = row[j];
          }
          let sum = 0;
          for (let j = 0; j < n; j++) {
            row[j] = Math.exp(row[j] - max);
            sum += row[j];
          }
          // rounded to f32 as attentionForward stores its probabilities, so both agree
          for (let j = 0; j < n; j++) row[j] = Math.fround(row[j] / sum);
          const o0 = (b * T + t) * C + h * hs;
          for (let i = 0; i < hs; i++) {
            let s = 0;
            for (let j = 0; j < n; j++) s += row[j] * vc[head + j * hs + i];
            o[o0 + i] = s;
          }
        }
      }
    }
  }

  crossEntropyForward(
    loss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const l = f32(loss), z = f32(logits), y = i32(targets);
    let total = 0;
    for (let n = 0; n < N; n++) {
      const target = checkTarget(y[n], n, V);
      total += rowLogSumExp(z, n * V, V) - z[n * V + target];
    }
    l[0] = total / N;
  }

  crossEntropyBackward(
    dlogits: DeviceBuffer,
    dloss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void {
    const dz = f32(dlogits), z = f32(logits), y = i32(targets);
    const g = f32(dloss)[0] / N;
    for (let n = 0; n < N; n++) {
      const target = checkTarget(y[n], n, V);
      const z0 = n * V;
      const lse = rowLogSumExp(z, z0, V);
      for (let v = 0; v < V; v++) {
        const p = Math.exp(z[z0 + v] - lse);
        dz[z0 + v] += g * (p - (v === target ? 1 : 0));
      }
    }
  }

  sumOfSquares(buf: DeviceBuffer, n: number): Promise<number> {
    const x = f32(buf);
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i] * x[i];
    return Promise.resolve(s);
  }

  adamw(
    param: DeviceBuffer,
    grad: DeviceBuffer,
    m: DeviceBuffer,
    v: DeviceBuffer,
    n: number,
    hp: AdamWParams,
  ): void {
    const p = f32(param), g = f32(grad), mm = f32(m), vv = f32(v);
    const { lr, beta1, beta2, eps, weightDecay, step, gradScale = 1 } = hp;
    const bc1 = 1 - beta1 ** step, bc2 = 1 - beta2 ** step;
    const stepSize = lr / bc1, sqrtBc2 = Math.sqrt(bc2);
    const decay = 1 - lr * weightDecay;
    for (let i = 0; i < n; i++) {
      // (rounded to f32 as a gradient scaled in place would be)
      const gi = gradScale === 1 ? g[i] : Math.fround(g[i] * gradScale);
      const mi = beta1 * mm[i] + (1 - beta1) * gi;
      const vi = beta2 * vv[i] + (1 - beta2) * gi * gi;
      mm[i] = mi;
      vv[i] = vi;
      // decoupled weight decay first, then the Adam step, as torch.optim.AdamW does
      p[i] = p[i] * decay - stepSize * mi / (Math.sqrt(vi) / sqrtBc2 + eps);
    }
  }
}

/** log(sum(exp(row))) of z[start .. start + V), shifted by the row's max for stability. */
function rowLogSumExp(z: Float32Array, start: number, V: number): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) if (z[start + v] > max) max = z[start + v];
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(z[start + v] - max);
  return max + Math.log(sum);
}

function checkTarget(target: number, n: number, V: number): number {
  if (target < 0 || target >= V) {
    throw new RangeError(`Target ${target} at position ${n} is outside the vocabulary of ${V}`);
  }
  return target;
}
