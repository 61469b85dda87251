/**
 * The kernels of the speedrun's options (modded-nanogpt: ReLU², QK-norm, rotary), in plain
 * TypeScript over host arrays. The `Backend` interface has no elementwise product, so these
 * cannot be composed from its kernels; `ops.ts` runs them on backends whose buffers are host
 * memory (`hostView`: cpu, native) and refuses the others, naming the option.
 *
 * Layout: `qkv` is (rows, 3C) as `c_attn` makes it, q then k then v, each C split into heads
 * of `headDim`; only q and k are touched.
 *
 * @module
 */

/** The epsilon of PyTorch's `F.rms_norm` in f32 (`torch.finfo(torch.float32).eps`). */
export const RMS_NORM_EPS = 1.1920928955078125e-7;

/** out[i] = max(x[i], 0)². */
export function relu2Forward(out: Float32Array, x: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const r = x[i] > 0 ? x[i] : 0;
    out[i] = r * r;
  }
}

/** dx[i] += 2 max(x[i], 0) dout[i]. */
export function relu2Backward(dx: Float32Array, x: Float32Array, dout: Float32Array): void {
  for (let i = 0; i < x.length; i++) if (x[i] > 0) dx[i] += 2 * x[i] * dout[i];
}

/** The sizes of a packed qkv: rows (B * T), C, heads and their size. */
export interface QkvDims {
  rows: number;
  C: number;
  nHead: number;
}

/**
 * q and k of each head divided by their root mean square (no learned scale); v copied.
 * `rstd` (rows * 2 * nHead) keeps each head's 1/rms for the backward.
 */
export function qkNormForward(
  out: Float32Array,
  rstd: Float32Array,
  qkv: Float32Array,
  { rows, C, nHead }: QkvDims,
): void {
  const hd = C / nHead;
  out.set(qkv);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < 2 * nHead; h++) {
      const o = r * 3 * C + h * hd;
      let ss = 0;
      for (let i = 0; i < hd; i++) ss += qkv[o + i] * qkv[o + i];
      const s = 1 / Math.sqrt(ss / hd + RMS_NORM_EPS);
      rstd[r * 2 * nHead + h] = s;
      for (let i = 0; i < hd; i++) out[o + i] = qkv[o + i] * s;
    }
  }
}

/**
 * dqkv += the gradient of `qkNormForward`: per head, dx = s (g - y mean(g y)) with y = x s;
 * v's gradient passes through.
 */
export function qkNormBackward(
  dqkv: Float32Array,
  dout: Float32Array,
  qkv: Float32Array,
  rstd: Float32Array,
  { rows, C, nHead }: QkvDims,
): void {
  const hd = C / nHead;
  for (let r = 0; r < rows; r++) {
    const row = r * 3 * C;
    for (let h = 0; h < 2 * nHead; h++) {
      const o = row + h * hd, s = rstd[r * 2 * nHead + h];
      let gy = 0;
      for (let i = 0; i < hd; i++) gy += dout[o + i] * qkv[o + i] * s;
      const m = gy / hd;
      for (let i = 0; i < hd; i++) dqkv[o + i] += s * (dout[o + i] - qkv[o + i] * s * m);
    }
    for (let i = 2 * C; i < 3 * C; i++) dqkv[row + i] += dout[row + i];
  }
}

/** The sizes of a packed qkv for rotary: batch, positions, C, heads; positions start at pos0. */
export interface RotaryDims {
  B: number;
  T: number;
  C: number;
  nHead: number;
  /** The position of the first of the T (generation's KV cache: the positions cached). */
  pos0: number;
}

/**
 * cos and sin (T, headDim / 2) of the speedrun's rotary: angle t * base^(-2i / headDim) for
 * pair i of position pos0 + t, base 10000.
 */
export function rotaryTables(
  T: number,
  headDim: number,
  pos0: number,
  base = 10000,
): { cos: Float32Array; sin: Float32Array } {
  const d = headDim / 2;
  const cos = new Float32Array(T * d), sin = new Float32Array(T * d);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < d; i++) {
      const invFreq = 1 / base ** ((2 * i) / headDim);
      const angle = (pos0 + t) * invFreq;
      cos[t * d + i] = Math.cos(angle);
      sin[t * d + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/**
 * The rotation of q and k, each head's first half x1 paired with its second half x2 (the
 * speedrun's `apply_rotary_emb`): y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos. `inverse`
 * rotates back (the backward: the transpose of a rotation), accumulating into `out`.
 */
export function rotaryApply(
  out: Float32Array,
  x: Float32Array,
  { B, T, C, nHead }: RotaryDims,
  tables: { cos: Float32Array; sin: Float32Array },
  inverse: boolean,
): void {
  const hd = C / nHead, d = hd / 2, sign = inverse ? -1 : 1;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = (b * T + t) * 3 * C;
      for (let h = 0; h < 2 * nHead; h++) {
        const o = row + h * hd;
        for (let i = 0; i < d; i++) {
          const c = tables.cos[t * d + i], s = sign * tables.sin[t * d + i];
          const x1 = x[o + i], x2 = x[o + d + i];
          out[o + i] += x1 * c + x2 * s;
          out[o + d + i] += -x1 * s + x2 * c;
        }
      }
      for (let i = 2 * C; i < 3 * C; i++) out[row + i] += x[row + i];
    }
  }
}
