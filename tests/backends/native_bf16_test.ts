// --precision bf16 on the native backend against the reference backend's model of it
// (CpuBackend({ matmulPrecision: "bf16" }): operands rounded to bf16, products summed in f64):
// nn.Linear's three GEMM orientations and attention's forward and backward, on shapes off the
// tile sizes and GPT-2-like ones, within bounds derived from the rounding model, and far from
// the f32 results (so skipping a rounding fails); which bf16 path runs on this CPU and that
// GPT2_BF16_PATH forces the FMA one; that the AVX-512 BF16 micro-kernel compiles (it runs only
// on a CPU that has vdpbf16ps); and short training runs in bf16, three seeds, whose train and
// validation losses stay within a band of the f32 runs' (and that truncation instead of
// rounding to nearest even would leave).
import { deepStrictEqual, equal, match, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AttentionDims, Backend, DeviceBuffer } from "../../lib/backend.ts";
import { bf16Round, bf16RoundArray } from "../../lib/backends/cpu/bf16.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { type Bf16Path, NativeBackend } from "../../lib/backends/native/mod.ts";
import { Generator } from "../../lib/model/random.ts";
import { train } from "../../lib/train/train.ts";
import { smallRecipe } from "../support.ts";

const native = await NativeBackend.create();
const model = new CpuBackend({ matmulPrecision: "bf16" });
const f32Reference = new CpuBackend();
const rng = new Generator(7);

/** fp32's unit roundoff. */
const U = 2 ** -24;

function randn(n: number): Float32Array {
  return rng.fillNormal(new Float32Array(n), 0, 1);
}

/** The CPU's feature flags from /proc/cpuinfo (empty where there is none). */
function cpuFlags(): Set<string> {
  try {
    const line = Deno.readTextFileSync("/proc/cpuinfo").split("\n").find((l) =>
      l.startsWith("flags")
    );
    return new Set(line?.split(":")[1].trim().split(/\s+/) ?? []);
  } catch {
    return new Set();
  }
}

/** The bf16 paths this CPU can run: the FMA one everywhere, vdpbf16ps where it exists. */
const PATHS: Bf16Path[] = native.hasAvx512Bf16 ? ["fp32_fma", "avx512_bf16"] : ["fp32_fma"];

/**
 * A sum of n terms computed in fp32 in some order (FMA chains, blocks, threads; a gradient's
 * starting value is a term too) against the same sum in f64: within (4 + 2 sqrt(n)) fp32
 * ulps of the sum of the terms' magnitudes (rounding errors of random sign grow as sqrt(n)),
 * plus one ulp of the result for storing it.
 */
function sumBound(n: number, absSum: number, result: number): number {
  return U * (4 + 2 * Math.sqrt(n)) * absSum + 2 * U * Math.abs(result);
}

/**
 * Asserts |actual - expected| <= bound elementwise, naming the worst element; and, where
 * `f32` is given (the result without bf16 rounding), that it lies outside the bound for a
 * quarter of the elements at least, so that the bound would catch a kernel that skipped the
 * rounding. (Over 90% for GEMMs; about half for attention's dqkv, where the gradients of the
 * first queries and last keys are sums of one or two nearly cancelling terms.)
 */
function assertWithin(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  bound: ArrayLike<number>,
  f32?: ArrayLike<number>,
): void {
  equal(actual.length, expected.length, `${name}: length`);
  let worst = -1, excess = 0, outside = 0;
  for (let i = 0; i < actual.length; i++) {
    const e = Math.abs(actual[i] - expected[i]) - bound[i];
    if (!(e <= 0) && (worst < 0 || e > excess || Number.isNaN(e))) [worst, excess] = [i, e];
    if (f32 && Math.abs(f32[i] - expected[i]) > bound[i]) outside++;
  }
  if (worst >= 0) {
    throw new Error(
      `${name}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} within ${
        bound[worst]
      }`,
    );
  }
  if (f32) {
    ok(
      outside > 0.25 * actual.length,
      `${name}: expected the f32 result outside the bf16 bound for a quarter of the elements, found ${outside} of ${actual.length}`,
    );
  }
}

function abs(a: Float32Array): Float32Array {
  return a.map(Math.abs);
}

async function read(be: Backend, buf: DeviceBuffer): Promise<Float32Array> {
  return (await be.read(buf)) as Float32Array;
}

Deno.test("bf16 rounding: to nearest even, NaN kept, overflow to infinity, subnormals kept", () => {
  const cases: [number, number][] = [
    [1, 1],
    [1 + 2 ** -8, 1], // a tie: to the even neighbour
    [1 + 3 * 2 ** -8, 1 + 2 ** -6], // a tie: up, to the even neighbour
    [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], // past the tie
    [-3.1415927, -3.140625],
    [3.4028234663852886e38, Infinity],
    [2 ** -130 + 2 ** -140, 2 ** -130],
    [Infinity, Infinity],
    [0, 0],
  ];
  for (const [x, r] of cases) equal(bf16Round(x), r, `bf16Round(${x})`);
  ok(Number.isNaN(bf16Round(NaN)));
  deepStrictEqual(
    Array.from(bf16RoundArray(Float32Array.from(cases, ([x]) => x))),
    cases.map(([, r]) => r),
  );
});

// M x N x K of the GEMM: off every tile (8 x 48, 6 x 16, 4 x 8) and block (KC 768, MC 576);
// and GPT-2's c_attn and mlp c_proj at 64 tokens.
const SHAPES: [number, number, number][] = [
  [17, 33, 65],
  [7, 50, 769],
  [600, 20, 9],
  [64, 2304, 768],
  [64, 768, 3072],
];

/**
 * nn.Linear's three GEMMs (forward out = inp @ W^T + bias, dinp += dout @ W, dweight +=
 * dout^T @ inp) with the GEMM's M x N x K as given, on `be`.
 */
async function linear(
  be: Backend,
  [M, N, K]: [number, number, number],
  x: Record<string, Float32Array>,
): Promise<Record<string, Float32Array>> {
  const up = (a: Float32Array) => be.upload(a);
  const out = be.alloc(M * N, "f32");
  be.matmulForward(out, up(x.inp), up(x.w), up(x.bias), { N: M, C: K, OC: N });
  const dinp = up(x.dinp0);
  be.matmulBackward({ dinp, dweight: null, dbias: null }, up(x.dout), up(x.inp), up(x.wd), {
    N: M,
    C: N,
    OC: K,
  });
  const dweight = up(x.dw0);
  be.matmulBackward({ dinp: null, dweight, dbias: null }, up(x.doutT), up(x.inpT), up(x.w), {
    N: K,
    C: N,
    OC: M,
  });
  return { out: await read(be, out), dinp: await read(be, dinp), dweight: await read(be, dweight) };
}

/**
 * Each result's bound: the model's GEMMs on the terms' magnitudes (operands, bias, starting
 * gradients) give the sums of |terms|.
 */
async function linearBounds(
  [M, N, K]: [number, number, number],
  x: Record<string, Float32Array>,
  expected: Record<string, Float32Array>,
): Promise<Record<string, Float64Array>> {
  const a = await linear(model, [M, N, K], {
    inp: abs(x.inp),
    w: abs(x.w),
    bias: abs(x.bias),
    dinp0: abs(x.dinp0),
    dout: abs(x.dout),
    wd: abs(x.wd),
    dw0: abs(x.dw0),
    doutT: abs(x.doutT),
    inpT: abs(x.inpT),
  });
  const bound = (absSum: Float32Array, result: Float32Array) =>
    Float64Array.from(absSum, (s, i) => sumBound(K, s, result[i]));
  return {
    out: bound(a.out, expected.out),
    dinp: bound(a.dinp, expected.dinp),
    dweight: bound(a.dweight, expected.dweight),
  };
}

Deno.test("native bf16: matmul's three GEMM orientations against the reference's bf16 model", async () => {
  const before = native.bf16Path;
  try {
    for (const [M, N, K] of SHAPES) {
      const x = {
        inp: randn(M * K),
        w: randn(N * K),
        bias: randn(N),
        dinp0: randn(M * N),
        dout: randn(M * K),
        wd: randn(K * N),
        dw0: randn(M * N),
        doutT: randn(K * M),
        inpT: randn(K * N),
      };
      const expected = await linear(model, [M, N, K], x);
      const bounds = await linearBounds([M, N, K], x, expected);
      const f32 = await linear(f32Reference, [M, N, K], x);
      for (const path of PATHS) {
        equal(native.setBf16Path(path), path);
        native.setMatmulPrecision("bf16");
        const actual = await linear(native, [M, N, K], x);
        native.setMatmulPrecision("f32");
        for (const key of ["out", "dinp", "dweight"]) {
          assertWithin(
            `${path} ${key} ${M}x${N}x${K}`,
            actual[key],
            expected[key],
            bounds[key],
            f32[key],
          );
        }
      }
      // and f32 again afterwards: the same bound, now from the f32 reference
      const back = await linear(native, [M, N, K], x);
      assertWithin(`f32 out ${M}x${N}x${K}`, back.out, f32.out, bounds.out);
    }
  } finally {
    native.setBf16Path(before);
    native.setMatmulPrecision("f32");
  }
});

/** Relative noise of the native backend's f32 probabilities against the model's f64 ones. */
const P_WINDOW = 1e-4;

/** How far rounding `x` to bf16 can move when x is only known to within +-noise. */
function flip(x: number, noise: number): number {
  return Math.abs(bf16Round(x + noise) - bf16Round(x - noise));
}

/**
 * Per element of out and dqkv: the bound between a kernel's bf16 attention and the model's,
 * from the model's probabilities `att`: the sums' rounding (sumBound) and, where p or ds was
 * close enough to a bf16 rounding boundary that the kernel's f32 p or ds (exp, sums in f32)
 * may round the other way, one bf16 step of it times the other operand.
 */
function attentionBounds(
  qkv: Float32Array,
  dout: Float32Array,
  dqkv0: Float32Array,
  att: Float32Array,
  out: Float32Array,
  dqkv: Float32Array,
  { B, T, C, NH }: AttentionDims,
): { out: Float64Array; dqkv: Float64Array } {
  const hs = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(hs);
  const x = bf16RoundArray(qkv), d = bf16RoundArray(dout);
  const outBound = new Float64Array(B * T * C), flips = new Float64Array(B * T * C3);
  const absSum = Float64Array.from(dqkv0, Math.abs); // the starting gradient is a term
  const at = (b: number, t: number, part: number, h: number) =>
    (b * T + t) * C3 + part * C + h * hs;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t <= T - 1; t++) {
        const a0 = ((b * NH + h) * T + t) * T, o0 = (b * T + t) * C + h * hs;
        for (let i = 0; i < hs; i++) {
          let s = 0, f = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            const p = att[a0 + t2], v = Math.abs(x[at(b, t2, 2, h) + i]);
            s += bf16Round(p) * v;
            f += flip(p, P_WINDOW * p) * v;
          }
          outBound[o0 + i] = sumBound(t + 1, s, out[o0 + i]) + f;
        }
      }
      for (let t = 0; t < T; t++) {
        const a0 = ((b * NH + h) * T + t) * T, o0 = (b * T + t) * C + h * hs;
        let D = 0, Dnoise = 0, dAbs = 0;
        for (let i = 0; i < hs; i++) {
          D += dout[o0 + i] * out[o0 + i];
          dAbs += Math.abs(dout[o0 + i] * out[o0 + i]);
          Dnoise += Math.abs(dout[o0 + i]) * outBound[o0 + i];
        }
        Dnoise += sumBound(hs, dAbs, D);
        const qi = at(b, t, 0, h);
        for (let t2 = 0; t2 <= t; t2++) {
          const p = att[a0 + t2], ki = at(b, t2, 1, h), vi = at(b, t2, 2, h);
          let dp = 0, dpAbs = 0;
          for (let i = 0; i < hs; i++) {
            dp += d[o0 + i] * x[vi + i];
            dpAbs += Math.abs(d[o0 + i] * x[vi + i]);
          }
          const ds = p * (dp - D);
          const noise = p * (sumBound(hs, dpAbs, dp) + Dnoise) + P_WINDOW * Math.abs(ds);
          const ds16 = Math.abs(bf16Round(ds)) * scale, dsFlip = flip(ds, noise) * scale;
          const p16 = bf16Round(p), pFlip = flip(p, P_WINDOW * p);
          for (let i = 0; i < hs; i++) {
            absSum[qi + i] += ds16 * Math.abs(x[ki + i]);
            flips[qi + i] += dsFlip * Math.abs(x[ki + i]);
            absSum[ki + i] += ds16 * Math.abs(x[qi + i]);
            flips[ki + i] += dsFlip * Math.abs(x[qi + i]);
            absSum[vi + i] += p16 * Math.abs(d[o0 + i]);
            flips[vi + i] += pFlip * Math.abs(d[o0 + i]);
          }
        }
      }
    }
  }
  const dqkvBound = Float64Array.from(absSum, (s, i) => sumBound(T, s, dqkv[i]) + flips[i]);
  return { out: outBound, dqkv: dqkvBound };
}

async function attention(
  be: Backend,
  qkv: Float32Array,
  dout: Float32Array,
  dqkv0: Float32Array,
  dims: AttentionDims,
): Promise<{ out: Float32Array; dqkv: Float32Array; saved: Float32Array }> {
  const { B, T, C } = dims;
  const x = be.upload(qkv), out = be.alloc(B * T * C, "f32");
  const saved = be.attentionForward(out, x, dims);
  const dqkv = be.upload(dqkv0);
  be.attentionBackward(dqkv, be.upload(dout), x, saved, dims);
  return { out: await read(be, out), dqkv: await read(be, dqkv), saved: await read(be, saved) };
}

Deno.test("native bf16: attention forward and backward against the reference's bf16 model", async () => {
  // head sizes 16 and GPT-2's 64; T off the 16- and 32-key blocks
  const shapes: AttentionDims[] = [{ B: 2, T: 37, C: 48, NH: 3 }, { B: 1, T: 70, C: 128, NH: 2 }];
  try {
    for (const dims of shapes) {
      const { B, T, C } = dims;
      const qkv = randn(B * T * 3 * C), dout = randn(B * T * C);
      // a starting gradient to accumulate into, small beside the increments (or its own
      // rounding would hide bf16's in the check against f32)
      const dqkv0 = randn(B * T * 3 * C).map((v) => v * 1e-3);
      const expected = await attention(model, qkv, dout, dqkv0, dims);
      const f32 = await attention(f32Reference, qkv, dout, dqkv0, dims);
      const { saved, out, dqkv } = expected;
      const bounds = attentionBounds(qkv, dout, dqkv0, saved, out, dqkv, dims);
      native.setMatmulPrecision("bf16");
      const actual = await attention(native, qkv, dout, dqkv0, dims);
      native.setMatmulPrecision("f32");
      const name = `B=${B} T=${T} C=${C} NH=${dims.NH}`;
      assertWithin(`attention out ${name}`, actual.out, expected.out, bounds.out, f32.out);
      assertWithin(`attention dqkv ${name}`, actual.dqkv, expected.dqkv, bounds.dqkv, f32.dqkv);
    }
  } finally {
    native.setMatmulPrecision("f32");
  }
});

Deno.test("native bf16: the path this CPU runs, GPT2_BF16_PATH, describe() and the peak", async () => {
  const flags = cpuFlags();
  const expected: Bf16Path = Deno.build.arch === "x86_64" && flags.has("avx512_bf16")
    ? "avx512_bf16"
    : "fp32_fma";
  if (Deno.build.arch === "x86_64") equal(native.compiledAvx512Bf16, true);
  equal(native.hasAvx512Bf16, expected === "avx512_bf16");
  const before = Deno.env.get("GPT2_BF16_PATH"), path = native.bf16Path;
  try {
    Deno.env.delete("GPT2_BF16_PATH");
    const auto = await NativeBackend.create();
    equal(auto.bf16Path, expected);
    match(
      auto.describe(),
      expected === "avx512_bf16"
        ? /--precision bf16: bf16 dot products \(avx512_bf16\)/
        : /--precision bf16: bf16 operands on fp32 FMA \(this CPU has no avx512_bf16\)/,
    );
    Deno.env.set("GPT2_BF16_PATH", "fp32_fma");
    const forced = await NativeBackend.create();
    equal(forced.bf16Path, "fp32_fma");
    match(forced.describe(), /bf16 operands on fp32 FMA/);
    // asking for vdpbf16ps where the CPU lacks it leaves the FMA path
    equal(forced.setBf16Path("avx512_bf16"), expected);
    Deno.env.set("GPT2_BF16_PATH", "amx");
    await rejects(
      NativeBackend.create(),
      /GPT2_BF16_PATH must be "auto" or "fp32_fma", found "amx"/,
    );
  } finally {
    if (before === undefined) Deno.env.delete("GPT2_BF16_PATH");
    else Deno.env.set("GPT2_BF16_PATH", before);
    native.setBf16Path(path);
  }
  // precisions: f32 and bf16 only
  native.setMatmulPrecision("bf16");
  equal(native.matmulPrecision, "bf16");
  native.setMatmulPrecision("f32");
  equal(native.matmulPrecision, "f32");
  for (const p of ["f16", "tf32"] as const) {
    let message = "";
    try {
      native.setMatmulPrecision(p);
    } catch (e) {
      message = (e as Error).message;
    }
    equal(message, `The native backend's matmuls are f32 or bf16, found "${p}"`);
  }
  // MFU's denominator: the fp32 FMA peak again where bf16 runs on FMAs; vdpbf16ps's own
  // (two multiply-adds per lane) where it runs
  const f32Peak = native.peakFlops("f32"), bf16Peak = native.peakFlops("bf16");
  ok(f32Peak && bf16Peak && f32Peak.flops > 0);
  if (native.bf16Path === "fp32_fma") {
    equal(bf16Peak.flops, f32Peak.flops);
    match(bf16Peak.source, /fp32 FMA peak .*bf16 operands run on fp32 FMAs/);
    equal(bf16Peak.rateOf, "f32");
  } else {
    match(bf16Peak.source, /vdpbf16ps/);
    equal(bf16Peak.rateOf, undefined);
  }
  equal(f32Peak.rateOf, undefined);
  equal(native.peakFlops("tf32"), null);
});

const KERNELS = fileURLToPath(new URL("../../kernels/cpu/", import.meta.url));

Deno.test("native bf16: the AVX-512 BF16 micro-kernel compiles (with -march=x86-64-v4 -mavx512bf16)", async () => {
  if (Deno.build.arch !== "x86_64") return console.log("not x86-64: no AVX-512 BF16 path");
  const dir = await Deno.makeTempDir({ prefix: "bf16_build_" });
  try {
    const sources = [...Deno.readDirSync(KERNELS)].filter((e) => e.name.endsWith(".c"))
      .map((e) => join(KERNELS, e.name));
    const cc = Deno.env.get("CC") ?? "cc";
    // the whole library for an AVX-512 BF16 CPU (Zen 4, Sapphire Rapids), and gemm.c for one
    // without AVX-512, where the kernel is compiled by its target attribute
    for (const march of [["-march=x86-64-v4", "-mavx512bf16"], ["-march=x86-64-v3"]]) {
      const args = [
        "-O3",
        ...march,
        "-fopenmp",
        "-fno-math-errno",
        "-shared",
        "-fPIC",
        "-std=c11",
        "-Werror",
        "-Wall",
        ...(march.length > 1 ? sources : [join(KERNELS, "gemm.c")]),
        "-o",
        join(dir, "lib.so"),
        "-lm",
      ];
      const built = await new Deno.Command(cc, { args, stderr: "piped" }).output();
      ok(
        built.success,
        `Expected ${cc} ${march.join(" ")} to build the kernels, found: ${
          new TextDecoder().decode(built.stderr)
        }`,
      );
      // vdpbf16ps zmm is EVEX.512.F3.0F38.W0 52: its opcode bytes appear in the library
      const code = await Deno.readFile(join(dir, "lib.so"));
      ok(hasDpbf16ps(code), `Expected vdpbf16ps in the ${march.join(" ")} build`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether `code` holds a vdpbf16ps zmm: EVEX 62 [R X B R' 0 0 1 0] [W=0 vvvv 1 10] ... 52. */
function hasDpbf16ps(code: Uint8Array): boolean {
  for (let i = 0; i + 4 < code.length; i++) {
    if (code[i] !== 0x62 || (code[i + 1] & 0x03) !== 0x02) continue; // map 0F38
    if ((code[i + 2] & 0x87) !== 0x06) continue; // W0, pp = F3
    if ((code[i + 3] & 0x60) === 0x40 && code[i + 4] === 0x52) return true; // L'L = 512
  }
  return false;
}

/** A short run's train losses and validation losses (at steps 0, 10 and 19), in one precision. */
async function shortRun(precision: "f32" | "bf16", seed: number) {
  const r = await train(
    smallRecipe({
      backend: native,
      precision,
      seed,
      steps: 20,
      evalEvery: 10,
      valBatches: 8,
      sampleLength: 10,
    }),
  );
  return { train: r.history.map((s) => s.loss), val: r.evals.map((e) => e.valLoss) };
}

// The short run against f32 within the band, the tiny model's counterpart of the 124M target
// (docs/measurements.md: the shakespeare preset's validation loss after 200 steps in bf16
// within 0.02 of the f32 run's). Three seeds of 20 steps, 8 validation batches at steps 0, 10
// and 19. Measured on this recipe: round-to-nearest-even moves a seed's validation loss by at
// most 0.0021 (seeds 1337, 42, 7: +0.0003, +0.0006, -0.0021 at step 19), in both directions;
// bf16 by truncation instead (rounding toward zero, a bias of half a bf16 unit per operand)
// moves every seed up, by 0.0084 to 0.0094, and its train losses by up to 0.011.
Deno.test("native bf16: a short run's train and validation losses stay within the band of the f32 run's, three seeds", async () => {
  const seeds = [1337, 42, 7];
  const lastValDiffs: number[] = [];
  for (const seed of seeds) {
    const f32 = await shortRun("f32", seed), bf16 = await shortRun("bf16", seed);
    equal(native.matmulPrecision, "f32", "the run puts the precision back");
    equal(bf16.train.length, 20);
    equal(bf16.val.length, 3, "validation at steps 0, 10 and 19");
    let maxDiff = 0;
    for (let i = 0; i < f32.train.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(bf16.train[i] - f32.train[i]));
    }
    const valDiffs = bf16.val.map((v, i) => v - f32.val[i]);
    console.log(`seed ${seed}: f32 val ${f32.val.map((l) => l.toFixed(4)).join(" ")}`);
    console.log(
      `seed ${seed}: bf16 - f32 val ${valDiffs.map((d) => d.toFixed(5)).join(" ")}, ` +
        `train max |diff| ${maxDiff.toFixed(5)}`,
    );
    ok(
      maxDiff <= 0.01,
      `Expected seed ${seed}'s bf16 train losses within 0.01 of f32's, found ${maxDiff}`,
    );
    ok(maxDiff > 0, `Expected seed ${seed}'s bf16 run to differ from the f32 run`);
    ok(
      bf16.train[19] < bf16.train[0] - 0.5,
      `Expected the bf16 run to learn, found ${bf16.train[0]} -> ${bf16.train[19]}`,
    );
    for (const [i, d] of valDiffs.entries()) {
      ok(
        Math.abs(d) <= 0.005,
        `Expected seed ${seed}'s bf16 validation loss at eval ${i} within 0.005 of f32's ${
          f32.val[i]
        }, found ${bf16.val[i]}`,
      );
    }
    lastValDiffs.push(valDiffs[2]);
  }
  // a biased rounding moves every seed the same way: the mean difference stays near zero
  const mean = lastValDiffs.reduce((a, b) => a + b, 0) / seeds.length;
  ok(
    Math.abs(mean) <= 0.003,
    `Expected the seeds' mean bf16 - f32 validation loss at step 19 within 0.003 of 0, found ${mean}`,
  );
});
