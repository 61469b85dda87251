// The CUDA backend's bf16 and TF32 tensor-core flash attention (kernels/cuda/attention_bf16.cu)
// on the CPU emulator through the real FFI (tests/cuda_emulator/mod.ts, libcuda_emu.cpp opened
// by driver.ts; WMMA emulated in cuda_emulator.h): forward and backward against a float64 host
// model of the same bf16 (TF32) roundings (tight), against the reference CPU backend's f32
// attention (a bound from the format's rounding), a check that the result really is bf16
// (TF32: far from the f32 kernels' one), and which kernels the backend chooses
// (attentionPrecision, matmul precision). Shapes are not multiples of the 64-row tiles. The emulated half is ignored, saying why, without a C++
// compiler or where a GPU is usable (the same suite then runs on the GPU).
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import type { AttentionDims } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import {
  attentionBf16SmemBytes,
  BF16_ATTENTION_THREADS,
  BF16_HEAD_SIZES,
  KernelLauncher,
  type KernelName,
  TF32_HEAD_SIZES,
} from "../../lib/backends/cuda/kernels.ts";
import {
  kernelResources,
  launchRefusal,
  SHARED_OPTIN_BYTES,
} from "../../lib/backends/cuda/resources.ts";
import {
  createCudaBackend,
  type CudaBackend,
  CudaBuffer,
  cudaUnavailable,
} from "../../lib/backends/cuda/mod.ts";
import type { Backend, DeviceBuffer } from "../../lib/backend.ts";
import { Generator } from "../../lib/model/random.ts";
import { assertClose, assertSameBits, hasCxx } from "../support.ts";

const bits = new Uint32Array(1), asFloat = new Float32Array(bits.buffer);

/** x rounded to f32, then to bf16 (to nearest even), as __float2bfloat16_rn of an f32. */
function bf16(x: number): number {
  asFloat[0] = x;
  const u = bits[0];
  bits[0] = (((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16) >>> 0;
  return asFloat[0];
}

/** x rounded to f32, then to TF32 (to nearest, ties away from zero), as __float_to_tf32. */
function tf32(x: number): number {
  asFloat[0] = x;
  bits[0] = ((bits[0] + 0x1000) & 0xffffe000) >>> 0;
  return asFloat[0];
}

/** An operand format of the tensor-core kernels: its rounding and its mantissa bits. */
interface Operand {
  name: "bf16" | "tf32";
  round: (x: number) => number;
  /** Explicit mantissa bits (bf16 7, TF32 10). */
  bits: number;
}

const BF16: Operand = { name: "bf16", round: bf16, bits: 7 };
const TF32: Operand = { name: "tf32", round: tf32, bits: 10 };

/**
 * One ulp of x in `op` (2^-bits of its binade) when x lies within a relative `window` of a
 * rounding midpoint of `op`, else 0: where noise of that size can round x the other way.
 */
function flipUlp(x: number, window: number, op: Operand = BF16): number {
  asFloat[0] = x;
  const dropped = 23 - op.bits, u = bits[0], low = u & (2 ** dropped - 1);
  if (Math.abs(low - 2 ** (dropped - 1)) * 2 ** -23 >= window) return 0;
  bits[0] = (u & 0x7f800000) >>> 0;
  return asFloat[0] * 2 ** -op.bits;
}

/** Relative noise of an f32 p or ds against the model's f64 one (f32 sums, exp, lse). */
const P_WINDOW = 1e-4, DS_WINDOW = 1e-3;

interface Result {
  out: Float32Array;
  dqkv: Float32Array;
}

/** The model's result and, per element, what rounding flips may move it by. */
interface Model extends Result {
  outFlips: Float64Array;
  dqkvFlips: Float64Array;
}

interface Inputs {
  qkv: Float32Array;
  dqkv0: Float32Array;
  dout: Float32Array;
}

function inputs(rng: Generator, { B, T, C }: AttentionDims): Inputs {
  const normal = (n: number) => rng.fillNormal(new Float32Array(n), 0, 1);
  return { qkv: normal(B * T * 3 * C), dqkv0: normal(B * T * 3 * C), dout: normal(B * T * C) };
}

async function attention(be: Backend, x: Inputs, dims: AttentionDims): Promise<Result> {
  const { B, T, C } = dims;
  const qkv = be.upload(x.qkv), out = be.alloc(B * T * C, "f32");
  const saved = be.attentionForward(out, qkv, dims);
  const dqkv = be.upload(x.dqkv0);
  be.attentionBackward(dqkv, be.upload(x.dout), qkv, saved, dims);
  return {
    out: (await be.read(out)) as Float32Array,
    dqkv: (await be.read(dqkv)) as Float32Array,
  };
}

/**
 * The kernels' algorithm in float64 with their roundings to bf16 (or TF32, `op`): q, k, v,
 * dout rounded; the
 * forward's online softmax over 64-key tiles (p = exp(s - running max) rounded before P V,
 * the row sums of the unrounded p); the backward's p = exp(s - lse) and ds = p (dp - D)
 * rounded before their products, D = dout . out. What is left between this and the kernels
 * is f32 arithmetic (sums, exp) and, rarely, a p or ds on the other side of a bf16 rounding
 * boundary because of it.
 */
function bf16Model(x: Inputs, { B, T, C, NH }: AttentionDims, op: Operand = BF16): Model {
  const hs = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(hs), round = op.round;
  const q16 = Float64Array.from(x.qkv, round), d16 = Float64Array.from(x.dout, round);
  const out = new Float32Array(B * T * C), dqkv = Float64Array.from(x.dqkv0);
  const outFlips = new Float64Array(B * T * C), dqkvFlips = new Float64Array(B * T * C3);
  const at = (b: number, t: number, part: number, h: number) =>
    (b * T + t) * C3 + part * C + h * hs;
  const dot = (a: Float64Array, i: number, b: Float64Array, j: number) => {
    let s = 0;
    for (let d = 0; d < hs; d++) s += a[i + d] * b[j + d];
    return s;
  };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const lse = new Float64Array(T), D = new Float64Array(T);
      for (let t = 0; t < T; t++) {
        let m = -Infinity, l = 0;
        const o = new Float64Array(hs), flips = new Float64Array(hs);
        for (let k0 = 0; k0 <= t; k0 += 64) {
          const last = Math.min(k0 + 63, t), s: number[] = [];
          for (let k = k0; k <= last; k++) {
            s.push(scale * dot(q16, at(b, t, 0, h), q16, at(b, k, 1, h)));
          }
          const mNew = Math.max(m, ...s), corr = Math.exp(m - mNew);
          l *= corr;
          for (let d = 0; d < hs; d++) {
            o[d] *= corr;
            flips[d] *= corr;
          }
          for (let k = k0; k <= last; k++) {
            const p = Math.exp(s[k - k0] - mNew), pr = round(p), v = at(b, k, 2, h);
            const flip = flipUlp(p, P_WINDOW, op);
            l += p;
            for (let d = 0; d < hs; d++) {
              o[d] += pr * q16[v + d];
              flips[d] += flip * Math.abs(q16[v + d]);
            }
          }
          m = mNew;
        }
        lse[t] = m + Math.log(l);
        const row = (b * T + t) * C + h * hs;
        let dsum = 0;
        for (let d = 0; d < hs; d++) {
          out[row + d] = o[d] / l;
          outFlips[row + d] = flips[d] / l;
          dsum += x.dout[row + d] * out[row + d];
        }
        D[t] = dsum;
      }
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * C + h * hs, qi = at(b, t, 0, h);
        for (let k = 0; k <= t; k++) {
          const ki = at(b, k, 1, h), vi = at(b, k, 2, h);
          const p = Math.exp(scale * dot(q16, qi, q16, ki) - lse[t]);
          const dsExact = p * (dot(d16, row, q16, vi) - D[t]);
          const ds = round(dsExact), pr = round(p);
          const dsFlip = scale * flipUlp(dsExact, DS_WINDOW, op);
          const pFlip = flipUlp(p, P_WINDOW, op);
          for (let d = 0; d < hs; d++) {
            dqkv[qi + d] += scale * ds * q16[ki + d];
            dqkv[ki + d] += scale * ds * q16[qi + d];
            dqkv[vi + d] += pr * d16[row + d];
            dqkvFlips[qi + d] += dsFlip * Math.abs(q16[ki + d]);
            dqkvFlips[ki + d] += dsFlip * Math.abs(q16[qi + d]);
            dqkvFlips[vi + d] += pFlip * Math.abs(d16[row + d]);
          }
        }
      }
    }
  }
  return { out, dqkv: Float32Array.from(dqkv), outFlips, dqkvFlips };
}

/** |a - e| <= atol + rtol |e| + flips elementwise, naming the worst element. */
function assertNearModel(
  name: string,
  actual: Float32Array,
  expected: Float32Array,
  flips: Float64Array,
  { rtol, atol }: { rtol: number; atol: number },
): void {
  let worst = -1, excess = 0;
  for (let i = 0; i < actual.length; i++) {
    const e = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]) + flips[i]);
    if (!(e <= 0) && (worst < 0 || e > excess || Number.isNaN(e))) [worst, excess] = [i, e];
  }
  if (worst >= 0) {
    throw new Error(
      `${name}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (rtol ${rtol}, ` +
        `atol ${atol}, rounding flips ${flips[worst]})`,
    );
  }
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** [B, T, C, NH]: head size 64 at T = 1, 17, 65, 130 (B and NH above 1) and 1024, one of 128. */
const SHAPES: [number, number, number, number][] = [
  [2, 1, 128, 2],
  [2, 17, 128, 2],
  [1, 65, 192, 3],
  [2, 130, 128, 2],
  [1, 70, 128, 1],
  [1, 1024, 64, 1],
];

/**
 * A one-warp program on the emulator's header alone: a 16x16x16 WMMA product (bf16 a row-major
 * and b col-major from shared memory, f32 accumulator), or the misuse named by `mode`; prints
 * the accumulator (row by row) or the emulator's error, then bf16 conversions of `ROUNDED`.
 */
const WMMA_PROGRAM = `
#define GPT2_CUDA_EMULATION 1
#include "cuda_emulator.h"
namespace wmma = nvcuda::wmma;
static int mode = 0;  // 0: a whole warp; 1: lanes 16..31 skip mma_sync; 2: a misaligned load;
                      // 3: a 16x16x8 TF32 product, b not rounded by __float_to_tf32
static float result[256];
static void tf32Kernel() {
  float* a = reinterpret_cast<float*>(gpt2_dynamic_smem);
  float* b = a + 128;
  float* c = b + 128;
  int lane = threadIdx.x;
  for (int i = lane; i < 128; i += 32) {
    a[i] = wmma::__float_to_tf32(1.0f + (float)(i % 7) / 1024.0f + 1e-5f);
    b[i] = (float)(i % 5) - 2.0f + (float)(i % 3) / 2048.0f + 3e-6f;
  }
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 4096.0f);
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 8);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_col_major);
  __syncwarp();
  if (lane == 0) for (int i = 0; i < 256; i++) result[i] = c[i];
}
static void kernel() {
  __nv_bfloat16* a = reinterpret_cast<__nv_bfloat16*>(gpt2_dynamic_smem);
  __nv_bfloat16* b = a + 256;
  int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) {
    a[i] = __float2bfloat16_rn(1.0f + (float)(i % 7) / 128.0f);
    b[i] = __float2bfloat16_rn((float)(i % 5) - 2.0f + (float)(i % 3) / 256.0f);
  }
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 4096.0f);  // so that f32 sums round
  wmma::load_matrix_sync(fa, mode == 2 ? a + 8 : a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  if (mode != 1 || lane < 16) wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(reinterpret_cast<float*>(b + 256), acc, 16, wmma::mem_col_major);
  __syncwarp();
  if (lane == 0) for (int i = 0; i < 256; i++) result[i] = reinterpret_cast<float*>(b + 256)[i];
}
int main(int argc, char** argv) {
  mode = argv[1][0] - '0';
  emu::threadCount = 32;
  emu::blockDimension = dim3(32);
  emu::dynamicShared.assign(4096, 0xff);
  emu::body = mode == 3 ? tf32Kernel : kernel;
  if (!emu::runBlock()) {
    std::printf("error: %s\\n", emu::error.c_str());
    return 0;
  }
  for (int i = 0; i < 256; i++) std::printf("%.9g\\n", result[i]);
  for (int i = 2; i < argc; i++) {
    float v = std::strtof(argv[i], 0);
    std::printf("%.9g\\n", mode == 3 ? wmma::__float_to_tf32(v)
                                     : __bfloat162float(__float2bfloat16_rn(v)));
  }
  return 0;
}
`;

/** f32 values and what round-to-nearest-even to bf16 makes of them (ties included). */
const ROUNDED: [number, number][] = [
  [1 + 2 ** -8, 1], // a tie: to the even neighbour 1
  [1 + 3 * 2 ** -8, 1 + 2 ** -6], // a tie: up to the even 1 + 4 2^-8
  [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], // above the tie
  [-(1 + 2 ** -8 + 2 ** -20), -(1 + 2 ** -7)],
  [3.14159265, 3.140625],
  [65504, 65536],
];

/** f32 values and what __float_to_tf32 makes of them: to nearest, ties away from zero. */
const ROUNDED_TF32: [number, number][] = [
  [1 + 2 ** -11, 1 + 2 ** -10], // a tie: away from zero
  [-(1 + 2 ** -11), -(1 + 2 ** -10)],
  [1 + 3 * 2 ** -11, 1 + 2 ** -9], // a tie above an odd neighbour: up
  [1 + 2 ** -11 - 2 ** -23, 1], // below the tie
  [3.14159265, 3.140625],
];

async function runWmmaProgram(dir: string, mode: number): Promise<string[]> {
  const r = await new Deno.Command(`${dir}/wmma`, {
    args: [String(mode), ...(mode === 3 ? ROUNDED_TF32 : ROUNDED).map(([x]) => String(x))],
    stdout: "piped",
  }).output();
  ok(r.success, `the WMMA program failed in mode ${mode}`);
  return new TextDecoder().decode(r.stdout).trim().split("\n");
}

/**
 * The bf16 attention against the model and the reference, and which kernels run, on the
 * CUDA backend `open` makes (emulated here, a GPU where one is present).
 */
function bf16AttentionSuite(label: string, open: () => Promise<CudaBackend>): void {
  const cpu = new CpuBackend();

  // TF32 (head size 64 only) is checked as bf16 is, with its own rounding and unit roundoff
  for (const op of [BF16, TF32]) {
    const U = 2 ** -(op.bits + 1), name = op.name;
    Deno.test(`${label}: ${name} forward and backward match a float64 model of its ${name} roundings and stay within ${name}'s bound of the f32 reference`, async () => {
      const be = await open();
      be.setMatmulPrecision("f32");
      const rng = new Generator(7);
      try {
        for (const [B, T, C, NH] of SHAPES) {
          const dims = { B, T, C, NH },
            x = inputs(rng, dims),
            tag = `B=${B} T=${T} C=${C} NH=${NH}`;
          if (op === TF32 && C / NH !== 64) continue;
          be.kernels = { ...be.kernels, attentionPrecision: name };
          const got = await attention(be, x, dims);
          be.kernels = { ...be.kernels, attentionPrecision: "f32" };
          const f32 = await attention(be, x, dims);
          const ref = await attention(cpu, x, dims), model = bf16Model(x, dims, op);
          // Against the model: only f32 arithmetic differs (relative 2^-24 per operation, sums
          // of at most T or hs terms: below 1e-5 of the terms' scale at these sizes; the
          // backward's D and lse carry the forward's differences, hence its larger atol), and a
          // p or ds that this noise puts across a bf16 rounding midpoint moves its products by
          // one bf16 ulp: the model adds that ulp times |the other factor| for every p within a
          // relative 1e-4 of a midpoint (ds: 1e-3, as dp - D cancels).
          assertNearModel(`${tag} out vs the ${name} model`, got.out, model.out, model.outFlips, {
            rtol: 1e-4,
            atol: 1e-4,
          });
          assertNearModel(
            `${tag} dqkv vs the ${name} model`,
            got.dqkv,
            model.dqkv,
            model.dqkvFlips,
            {
              rtol: 1e-4,
              atol: 1e-3,
            },
          );
          // Against the f32 reference: q and k rounded to bf16 (relative u each) move a score
          // s = scale q . k by at most 2u scale sum |q_d k_d| (the f32 sums add ~hs 2^-24);
          // with unit-normal inputs and hs 64, scale sum |q k| is about 0.64 sqrt(hs) = 5, so
          // the worst case is 10u in a score and about twice that, relative, in a softmax
          // weight. The roundings are independent and of both signs, so the typical score error
          // is about 2u scale sqrt(sum (q k)^2 / 3) = 1.2u; the weights move by about that
          // relative, and P and V (or dS, dO, Q, K) add u each: a few u relative to the largest
          // magnitudes. We allow 4u of the largest magnitude of each output (for dqkv, of the
          // gradient added to dqkv0); these shapes and seeds come within about 1u.
          const outBound = 4 * U * maxAbs(ref.out);
          assertClose(`${tag} out vs f32`, got.out, ref.out, { rtol: 0, atol: outBound });
          const gradRef = ref.dqkv.map((v, i) => v - x.dqkv0[i]);
          const gradGot = got.dqkv.map((v, i) => v - x.dqkv0[i]);
          assertClose(`${tag} dqkv vs f32`, gradGot, gradRef, {
            rtol: 0,
            atol: 4 * U * maxAbs(gradRef),
          });
          // Really bf16 (TF32): the f32 kernels are within f32 noise of the reference (1e-4 of
          // the scale), the bf16 (TF32) ones at least a sixteenth of u away somewhere.
          const f32Dist = maxDiff(f32.out, ref.out), opDist = maxDiff(got.out, ref.out);
          ok(
            f32Dist < 1e-4 * Math.max(1, maxAbs(ref.out)),
            `${tag}: f32 kernels off by ${f32Dist}`,
          );
          ok(
            opDist > (U / 16) * maxAbs(ref.out),
            `${tag}: no ${name} rounding seen in out (max diff from f32 ${opDist})`,
          );
          ok(
            maxDiff(gradGot, gradRef) > 10 * maxDiff(f32.dqkv, ref.dqkv),
            `${tag}: no ${name} rounding seen in dqkv`,
          );
        }
      } finally {
        be.kernels = { ...be.kernels, attentionPrecision: undefined };
      }
    });
  }

  Deno.test(`${label}: chosen under bf16 matmuls for head sizes 64 and 128, the TF32 ones under TF32 matmuls for 64, the f32 kernels otherwise or when forced`, async () => {
    const be = await open();
    const rng = new Generator(8);
    const run = async (
      dims: AttentionDims,
      x: Inputs,
      precision: "f32" | "tf32" | "bf16",
      attentionPrecision?: "auto" | "f32" | "bf16" | "tf32",
    ) => {
      be.setMatmulPrecision(precision);
      be.kernels = { ...be.kernels, attentionPrecision };
      try {
        return await attention(be, x, dims);
      } finally {
        be.setMatmulPrecision("f32");
        be.kernels = { ...be.kernels, attentionPrecision: undefined };
      }
    };
    const dims = { B: 1, T: 20, C: 64, NH: 1 }, x = inputs(rng, dims);
    const bf16Kernels = await run(dims, x, "f32", "bf16");
    const tf32Kernels = await run(dims, x, "f32", "tf32");
    const f32Kernels = await run(dims, x, "f32", "f32");
    ok(maxDiff(bf16Kernels.out, f32Kernels.out) > 0, "forcing bf16 changed nothing");
    ok(maxDiff(tf32Kernels.out, f32Kernels.out) > 0, "forcing tf32 changed nothing");
    ok(maxDiff(tf32Kernels.out, bf16Kernels.out) > 0, "tf32 kernels equal the bf16 ones");
    for (
      const [precision, option, expected] of [
        ["bf16", undefined, bf16Kernels],
        ["bf16", "auto", bf16Kernels],
        ["bf16", "f32", f32Kernels],
        ["tf32", undefined, tf32Kernels],
        ["tf32", "auto", tf32Kernels],
        ["tf32", "f32", f32Kernels],
        ["f32", "auto", f32Kernels],
      ] as const
    ) {
      const r = await run(dims, x, precision, option);
      assertSameBits(`${precision} matmuls, attention ${option} out`, r.out, expected.out);
      assertSameBits(`${precision} matmuls, attention ${option} dqkv`, r.dqkv, expected.dqkv);
    }
    // head size 16 has no bf16 kernels: forcing bf16 runs the f32 ones
    const small = { B: 1, T: 20, C: 32, NH: 2 }, y = inputs(rng, small);
    const forced = await run(small, y, "bf16", "bf16"), plain = await run(small, y, "f32", "f32");
    assertSameBits("head size 16 out", forced.out, plain.out);
    assertEquals(forced.dqkv.length, plain.dqkv.length);
    assertSameBits("head size 16 dqkv", forced.dqkv, plain.dqkv);
    // head size 128 has no TF32 kernels (sm_80's shared memory): forcing tf32 runs the f32 ones
    const wide = { B: 1, T: 20, C: 128, NH: 1 }, w = inputs(rng, wide);
    const tf32Wide = await run(wide, w, "tf32", "tf32"), f32Wide = await run(wide, w, "f32", "f32");
    assertSameBits("head size 128 tf32 out", tf32Wide.out, f32Wide.out);
  });
}

// where a GPU is usable its half below runs these checks on it; the emulated half is then left
// out (the device check's time is the GPU's)
const noGpu = await cudaUnavailable();
if (noGpu === null) {
  console.log("cuda bf16 attention (emulated): skipped: a usable GPU is here, the GPU half runs");
  Deno.test({ name: "cuda bf16 attention (emulated): a GPU is here", ignore: true, fn() {} });
} else if (!(await hasCxx())) {
  console.log("cuda bf16 attention (emulated): skipped: no C++ compiler (c++ or $CXX)");
  Deno.test({ name: "cuda bf16 attention (emulated): no C++ compiler", ignore: true, fn() {} });
} else {
  let made: Promise<CudaBackend> | null = null;
  const open = () => made ??= createEmulatedCudaBackend({ quiet: true });
  bf16AttentionSuite("cuda bf16 attention (emulated)", open);

  Deno.test("cuda emulator: WMMA bf16 and TF32 products summed in f32, warp-collective and aligned; bf16 rounds to nearest even, TF32 ties away from zero", async () => {
    const dir = await Deno.makeTempDir({ prefix: "gpt2-wmma-" });
    try {
      const cxx = Deno.env.get("CXX") ?? "c++";
      const src = `${dir}/wmma.cpp`;
      await Deno.writeTextFile(src, WMMA_PROGRAM);
      const header = new URL("../cuda_emulator", import.meta.url).pathname;
      const built = await new Deno.Command(cxx, {
        args: ["-O1", "-std=c++17", "-ffp-contract=off", "-I", header, "-o", `${dir}/wmma`, src],
      }).output();
      ok(built.success, new TextDecoder().decode(built.stderr));
      const lines = await runWmmaProgram(dir, 0);
      // the expected tile: the same bf16 operands, each product exact in f32 (8-bit
      // significands give 16-bit products), summed in f32 in the order k = 0..15 onto 4096 (2^12: the sums round)
      const a = Array.from({ length: 256 }, (_, i) => bf16(1 + (i % 7) / 128));
      const b = Array.from({ length: 256 }, (_, i) => bf16((i % 5) - 2 + (i % 3) / 256));
      const tile = new Float32Array(256);
      for (let i = 0; i < 16; i++) {
        for (let j = 0; j < 16; j++) {
          let s = 4096;
          // b col-major: (k, j) at b[k + 16 j]
          for (let k = 0; k < 16; k++) s = Math.fround(s + a[i * 16 + k] * b[k + 16 * j]);
          tile[i + 16 * j] = s; // stored col-major
        }
      }
      assertSameBits("WMMA tile", Float32Array.from(lines.slice(0, 256), Number), tile);
      assertEquals(lines.slice(256).map(Number), ROUNDED.map(([, r]) => r));
      const skipped = await runWmmaProgram(dir, 1);
      ok(/WMMA/.test(skipped[0]), `Expected an error naming WMMA, found ${skipped[0]}`);
      const misaligned = await runWmmaProgram(dir, 2);
      assertEquals(misaligned[0], "error: wmma::load_matrix_sync: pointer not 256-bit aligned");
      // TF32: a rounded by __float_to_tf32, b read as the tensor cores read f32 (its low 13
      // mantissa bits dropped), products exact in f32 (11-bit significands), summed in f32
      // in the order k = 0..7 onto 4096
      const tf32Lines = await runWmmaProgram(dir, 3);
      const truncate = (x: number) => {
        const v = new Float32Array([x]), u = new Uint32Array(v.buffer);
        u[0] = (u[0] & 0xffffe000) >>> 0;
        return v[0];
      };
      const ta = Array.from({ length: 128 }, (_, i) => tf32(1 + (i % 7) / 1024 + 1e-5));
      const tb = Array.from(
        { length: 128 },
        (_, i) => truncate((i % 5) - 2 + (i % 3) / 2048 + 3e-6),
      );
      const tfTile = new Float32Array(256);
      for (let i = 0; i < 16; i++) {
        for (let j = 0; j < 16; j++) {
          let s = 4096;
          for (let k = 0; k < 8; k++) s = Math.fround(s + ta[i * 8 + k] * tb[k + 8 * j]);
          tfTile[i + 16 * j] = s;
        }
      }
      assertSameBits("TF32 WMMA tile", Float32Array.from(tf32Lines.slice(0, 256), Number), tfTile);
      // %.9g identifies an f32 (not always its shortest decimal): read back through f32
      const tf32Rounded = tf32Lines.slice(256).map((l) => Math.fround(Number(l)));
      assertEquals(tf32Rounded, ROUNDED_TF32.map(([, r]) => r));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test("cuda bf16 attention (emulated): bf16 and TF32 kernels launched with the shared memory their layouts need, within sm_80's opt-in and nvcc's limits", async () => {
    const be = await open();
    const table = await kernelResources({ quiet: true });
    const module = be.driver.loadModule(Deno.readFileSync(be.build.path));
    const launcher = new KernelLauncher(be.driver, module, be.driver.maxSharedMemoryOptin());
    const dims = { B: 1, T: 3, C: 64, NH: 1 }, x = inputs(new Generator(9), dims);
    const qkv = be.upload(x.qkv), dout = be.upload(x.dout);
    const out = be.upload(new Float32Array(3 * 64)), stats = be.upload(new Float32Array(3));
    const grads = be.upload(new Float32Array(3 * 192));
    const pointer = (b: DeviceBuffer) => {
      ok(b instanceof CudaBuffer);
      return b.pointer;
    };
    const operands = [["bf16", BF16_HEAD_SIZES], ["tf32", TF32_HEAD_SIZES]] as const;
    for (
      const [operand, hs] of operands.flatMap(([o, sizes]) => sizes.map((h) => [o, h] as const))
    ) {
      for (const kind of ["forward", "dkdv", "dq"] as const) {
        const name = (kind === "forward"
          ? `attention_forward_${operand}_hs${hs}`
          : `attention_backward_${kind}_${operand}_hs${hs}`) as KernelName;
        const bytes = attentionBf16SmemBytes(kind, hs, operand);
        ok(bytes <= SHARED_OPTIN_BYTES.sm_80, `${name}: ${bytes} bytes of shared memory`);
        if (table) {
          assertEquals(launchRefusal(table, name, BF16_ATTENTION_THREADS, bytes), null);
          // GPT-2's head size: no local-memory spills on the H100/H200
          const k = table.kernels.sm_90[name];
          if (hs === 64) {
            assertEquals([k.spillStoreBytes, k.spillLoadBytes], [0, 0], name);
          }
        }
        if (hs !== 64) {
          continue; // C = 64 holds one head of 64 (the trap comes first anyway)
        }
        const args = kind === "forward"
          ? [out, stats, qkv].map(pointer)
          : [grads, dout, qkv, stats, stats].map(pointer);
        const overwrite = kind === "forward" ? [] : [0]; // the backward's: add into dqkv
        const launch = (shared: number) =>
          launcher.launch(
            name as "attention_forward_bf16_hs64",
            1,
            BF16_ATTENTION_THREADS,
            [...args, 1, 3, 64, 1, ...overwrite] as never,
            shared,
          );
        launch(bytes); // enough
        await be.read(out);
        let trapped = "";
        try {
          launch(bytes - 4);
          await be.read(out);
        } catch (e) {
          trapped = (e as Error).message;
        }
        ok(
          /__trap/.test(trapped),
          `${name} with 4 bytes less: expected a trap, found "${trapped}"`,
        );
      }
    }
  });
}

if (noGpu !== null) {
  console.log(`cuda bf16 attention (GPU): skipped: ${noGpu}`);
  Deno.test({ name: "cuda bf16 attention (GPU): no usable GPU", ignore: true, fn() {} });
} else {
  let gpu: Promise<CudaBackend> | null = null;
  bf16AttentionSuite("cuda bf16 attention (GPU)", () => gpu ??= createCudaBackend({ quiet: true }));
}
