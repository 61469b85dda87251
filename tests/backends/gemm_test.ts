// The project's own GEMM (kernels/cpu/gemm.c) against a plain loop, on shapes off its tile and
// block sizes, in the three orientations nn.Linear uses (forward out = inp @ W^T, dinp = dout @ W,
// dweight = dout^T @ inp), both through the native backend (own GEMM and OpenBLAS) and built
// alone for each vector width: AVX-512, AVX2 and the portable vector-extension path.
import { deepEqual, equal } from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { benchGemm, gemmDims, gemmTable } from "../../lib/bench/gemm.ts";
import { Generator } from "../../lib/model/random.ts";
import { assertClose } from "../support.ts";

const rng = new Generator(5);

function randn(n: number): Float32Array {
  return rng.fillNormal(new Float32Array(n), 0, 1);
}

/**
 * C (M, N) = beta * C + A' @ B' in double, where A' is A (M, K) or, with transA, A stored
 * (K, M) read transposed; B' is B (K, N) or, with transB, B stored (N, K).
 */
function referenceGemm(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  A: Float32Array,
  B: Float32Array,
  beta: number,
  C: Float32Array,
): Float32Array {
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        s += (transA ? A[k * M + m] : A[m * K + k]) * (transB ? B[n * K + k] : B[k * N + n]);
      }
      out[m * N + n] = (beta === 0 ? 0 : beta * C[m * N + n]) + s;
    }
  }
  return out;
}

// M x N x K of the GEMM: single elements; every dimension off the micro-tile (8 x 48 on
// AVX-512, 6 x 16 on AVX2, 4 x 8 portable); K over two K blocks (KC 768); on two threads M
// over one row block (MC 576), both split over rows (N < M) and shared (N >= M, the team
// packing A' together), and N over one column block (NC 192) per thread.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 33, 65],
  [13, 50, 769],
  [100, 3, 5],
  [4100, 20, 4],
  [3, 2200, 50],
  [1100, 1200, 2],
];

const native = await NativeBackend.create();

type Tolerance = { rtol: number; atol: number };

/** fp32 sums of K products of unit normals drift by about sqrt(K) ulps. */
function tolerance(K: number): Tolerance {
  return { rtol: 1e-4, atol: 1e-4 * Math.sqrt(K) };
}

/** forward, out = inp @ W^T: the GEMM's M x N x K is tokens x out features x in features. */
async function checkForward(M: number, N: number, K: number, tol: Tolerance): Promise<void> {
  const dims = { N: M, OC: N, C: K };
  const inp = randn(M * K), w = randn(N * K), bias = randn(N);
  // beta 0: out starts as NaN, which must not leak into the product
  const out = native.upload(new Float32Array(M * N).fill(NaN));
  native.matmulForward(out, native.upload(inp), native.upload(w), null, dims);
  const product = referenceGemm(false, true, M, N, K, inp, w, 0, new Float32Array(M * N));
  assertClose(`forward ${M}x${N}x${K}`, await native.read(out), product, tol);
  // with a bias: the bias rows, then beta 1
  native.matmulForward(out, native.upload(inp), native.upload(w), native.upload(bias), dims);
  const biased = product.map((x, i) => x + bias[i % N]);
  assertClose(`forward + bias ${M}x${N}x${K}`, await native.read(out), biased, tol);
}

/** dinp += dout @ W: the GEMM's M x N x K is tokens x in features x out features. */
async function checkDinp(M: number, N: number, K: number, tol: Tolerance): Promise<void> {
  const dout = randn(M * K), w = randn(K * N), dinp0 = randn(M * N);
  const dinp = native.upload(dinp0);
  native.matmulBackward(
    { dinp, dweight: null, dbias: null },
    native.upload(dout),
    native.upload(randn(M * N)),
    native.upload(w),
    { N: M, C: N, OC: K },
  );
  const expected = referenceGemm(false, false, M, N, K, dout, w, 1, dinp0);
  assertClose(`dinp ${M}x${N}x${K}`, await native.read(dinp), expected, tol);
}

/** dweight += dout^T @ inp: the GEMM's M x N x K is out features x in features x tokens. */
async function checkDweight(M: number, N: number, K: number, tol: Tolerance): Promise<void> {
  const dout = randn(K * M), inp = randn(K * N), dw0 = randn(M * N);
  const dweight = native.upload(dw0);
  native.matmulBackward(
    { dinp: null, dweight, dbias: null },
    native.upload(dout),
    native.upload(inp),
    native.upload(randn(M * N)),
    { OC: M, C: N, N: K },
  );
  const expected = referenceGemm(true, false, M, N, K, dout, inp, 1, dw0);
  assertClose(`dweight ${M}x${N}x${K}`, await native.read(dweight), expected, tol);
}

for (const blas of [false, true]) {
  const label = blas ? "OpenBLAS" : "own GEMM";
  Deno.test(`native (${label}): matmul's three GEMM orientations against a plain loop`, async () => {
    if (blas && !native.library.blas) return console.log("no OpenBLAS on this machine: skipped");
    native.useBlas(blas);
    try {
      for (const [M, N, K] of SHAPES) {
        await checkForward(M, N, K, tolerance(K));
        await checkDinp(M, N, K, tolerance(K));
        await checkDweight(M, N, K, tolerance(K));
      }
    } finally {
      native.useBlas(true);
    }
  });
}

const GEMM_C = join(fileURLToPath(new URL("../../kernels/cpu/", import.meta.url)), "gemm.c");
const GEMM_SYMBOLS = {
  gpt2_sgemm: {
    parameters: ["i32", "i32", "i32", "i32", "i32", "buffer", "buffer", "f32", "buffer"],
    result: "void",
  },
  gpt2_sgemm_shape: { parameters: ["buffer"], result: "void" },
  gpt2_sgemm_fma_peak: { parameters: ["i64"], result: "f64" },
} as const;

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

/** The builds to check: -march for each vector width this CPU runs, and the lanes expected. */
function variants(): { march: string; lanes: number }[] {
  if (Deno.build.arch !== "x86_64") return [{ march: "-march=native", lanes: 4 }];
  const flags = cpuFlags();
  return [
    { march: "-march=x86-64", lanes: 4 },
    ...(flags.has("avx2") && flags.has("fma") ? [{ march: "-march=x86-64-v3", lanes: 8 }] : []),
    ...(flags.has("avx512f") && flags.has("avx512bw") && flags.has("avx512dq") &&
        flags.has("avx512vl")
      ? [{ march: "-march=x86-64-v4", lanes: 16 }]
      : []),
  ];
}

for (const { march, lanes } of variants()) {
  Deno.test(`gemm.c built with ${march}: ${lanes} lanes, every transpose and beta`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "gemm_test_" });
    try {
      const lib = join(dir, "libgemm.so");
      const cc = Deno.env.get("CC") ?? "cc";
      const args = ["-O3", march, "-fopenmp", "-shared", "-fPIC", "-std=c11", GEMM_C, "-o", lib];
      const built = await new Deno.Command(cc, { args, stderr: "piped" }).output();
      if (!built.success) {
        throw new Error(
          `Expected ${cc} to build gemm.c with ${march}, found: ${
            new TextDecoder().decode(built.stderr)
          }`,
        );
      }
      const gemm = Deno.dlopen(lib, GEMM_SYMBOLS), symbols = gemm.symbols;
      try {
        const shape = new Int32Array(3);
        symbols.gpt2_sgemm_shape(shape);
        equal(shape[0], lanes, `${march} compiled ${shape[0]} lanes, expected ${lanes}`);
        // the peak counts 2 FLOPs per lane per FMA on every thread, over 16 chains where there
        // are 32 vector registers (AVX-512) and 12 elsewhere (16 would spill on AVX2)
        const chains = lanes === 16 ? 16 : 12;
        const perThread = 2 * lanes * chains * 1000;
        const flops = symbols.gpt2_sgemm_fma_peak(1000n);
        equal(flops % perThread, 0, `Expected a multiple of ${perThread} FLOPs, found ${flops}`);
        equal(flops > 0, true, `Expected FLOPs counted, found ${flops}`);
        for (const [M, N, K] of SHAPES) {
          const A = randn(M * K), B = randn(K * N), C0 = randn(M * N);
          for (
            const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]
          ) {
            for (const beta of [0, 1, 0.5]) {
              const C = beta === 0 ? new Float32Array(M * N).fill(NaN) : C0.slice();
              symbols.gpt2_sgemm(+transA, +transB, M, N, K, A, B, beta, C);
              assertClose(
                `${M}x${N}x${K} transA ${transA} transB ${transB} beta ${beta}`,
                C,
                referenceGemm(transA, transB, M, N, K, A, B, beta, C0),
                tolerance(K),
              );
            }
          }
        }
      } finally {
        gemm.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("lib/bench/gemm.ts: each product's GEMM dims, and a table row per shape and product", () => {
  const shape = { name: "tiny", tokens: 5, outFeatures: 7, inFeatures: 3 };
  // forward: out (tokens, out) from in; dinp (tokens, in) from out; dweight (out, in) from tokens
  deepEqual(gemmDims(shape, "forward"), { M: 5, N: 7, K: 3 });
  deepEqual(gemmDims(shape, "dinp"), { M: 5, N: 3, K: 7 });
  deepEqual(gemmDims(shape, "dweight"), { M: 7, N: 3, K: 5 });
  const report = benchGemm(native, { shapes: [shape], rounds: 1, seconds: 0.001 });
  deepEqual(report.rows.map((r) => r.orientation), ["forward", "dinp", "dweight"]);
  deepEqual(report.kernels.map((k) => k.name), ["OpenBLAS", "own blocked GEMM"]);
  for (const r of report.rows) {
    const [blas, own] = r.gflops;
    equal(own !== null && own > 0, true, `Expected own GFLOP/s for ${r.orientation}, found ${own}`);
    equal(blas === null, native.library.blas === null, "OpenBLAS timed iff linked");
  }
  const lines = gemmTable(report).split("\n");
  equal(lines.filter((l) => l.startsWith("| tiny |")).length, 3);
  const peak = report.peakGflops.toFixed(1);
  equal(lines.some((l) => l.includes(`Peak: ${peak} GFLOP/s`)), true, "The peak under the table");
  equal(native.usesBlas, native.library.blas !== null, "The backend back on OpenBLAS if linked");
});
