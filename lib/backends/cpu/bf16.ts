/**
 * Rounding to bfloat16 (8 significant bits, fp32's exponent range), the model of
 * `--precision bf16`'s operands: to nearest, ties to even, as `vcvtneps2bf16`, CUDA's
 * `__float2bfloat16_rn` and the C kernels' `bf16.h` round; NaN stays NaN; subnormals are kept.
 * A bf16 value is returned as a number (exactly an fp32 whose low 16 bits are zero).
 *
 * @module
 */

const bits = new Uint32Array(1), asFloat = new Float32Array(bits.buffer);

/** `x` rounded to fp32, then to bf16 (to nearest even). */
export function bf16Round(x: number): number {
  asFloat[0] = x;
  const u = bits[0];
  if ((u & 0x7fffffff) > 0x7f800000) return x; // NaN
  bits[0] = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  return asFloat[0];
}

/** A copy of `a` with every element rounded to bf16. */
export function bf16RoundArray(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const src = new Uint32Array(a.buffer, a.byteOffset, a.length), dst = new Uint32Array(out.buffer);
  for (let i = 0; i < a.length; i++) {
    const u = src[i];
    dst[i] = (u & 0x7fffffff) > 0x7f800000 ? u : (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  }
  return out;
}
