/**
 * The GEMM benchmark: GPT-2 124M's matmul shapes (B * T = 512 tokens) in the three orientations
 * nn.Linear runs (forward `out = inp @ W^T`, `dinp = dout @ W`, `dweight = dout^T @ inp`), each
 * through every matmul kernel of the backend (its `kernelVariants`: on the native backend
 * OpenBLAS and the project's own GEMM) in the same run, as GFLOP/s and percent of the FMA
 * peak measured in that run (`measurePeakGflops`). The kernels and the peak are measured in
 * turn, round after round, and each keeps its best round, so a machine busy with other work
 * depresses them all alike rather than whichever ran while it was busiest.
 *
 * Run: `deno task bench-gemm [--rounds N] [--shapes c_attn,lm_head,...]` (lib/cli/bench_gemm.ts).
 *
 * @module
 */

import type { Backend, DeviceBuffer, KernelVariant, MatmulDims } from "../backend.ts";
import { Generator } from "../model/random.ts";

/** One nn.Linear of GPT-2 124M: `tokens` rows of `inFeatures` in, `outFeatures` out. */
export interface LinearShape {
  name: string;
  tokens: number;
  outFeatures: number;
  inFeatures: number;
}

/** GPT-2 124M's Linears at B * T = 512 tokens, and a square 1024^3 for comparison. */
export const GPT2_LINEARS: readonly LinearShape[] = [
  { name: "c_attn", tokens: 512, outFeatures: 2304, inFeatures: 768 },
  { name: "attn c_proj", tokens: 512, outFeatures: 768, inFeatures: 768 },
  { name: "c_fc", tokens: 512, outFeatures: 3072, inFeatures: 768 },
  { name: "mlp c_proj", tokens: 512, outFeatures: 768, inFeatures: 3072 },
  { name: "lm_head", tokens: 512, outFeatures: 50304, inFeatures: 768 },
  { name: "1024^3", tokens: 1024, outFeatures: 1024, inFeatures: 1024 },
];

/** Which of nn.Linear's three products a GEMM computes. */
export type Orientation = "forward" | "dinp" | "dweight";

/** The orientations, in the order the table lists them. */
export const ORIENTATIONS: readonly Orientation[] = ["forward", "dinp", "dweight"];

/** The GEMM's C (M, N) += A' (M, K) @ B' (K, N) dimensions for one product of a Linear. */
export function gemmDims(s: LinearShape, o: Orientation): { M: number; N: number; K: number } {
  const { tokens: T, outFeatures: OC, inFeatures: C } = s;
  if (o === "forward") return { M: T, N: OC, K: C };
  if (o === "dinp") return { M: T, N: C, K: OC };
  return { M: OC, N: C, K: T };
}

/** A matmul kernel of the run, as its report names it. */
export interface GemmKernel {
  name: string;
  /** What runs it (a library's path), for the footnote. */
  detail?: string;
  /** Why it did not run here. */
  unavailable?: string;
}

/** One row of the table: a shape and orientation through every kernel. */
export interface GemmRow {
  shape: LinearShape;
  orientation: Orientation;
  /** Each kernel's best round, GFLOP/s, in the report's kernel order; null where it cannot run. */
  gflops: (number | null)[];
}

/** The whole run: the kernels, the rows and the peak they are measured against. */
export interface GemmReport {
  kernels: GemmKernel[];
  rows: GemmRow[];
  /**
   * The best FMA peak of all threads measured during the run, GFLOP/s: the backend's
   * `measurePeakGflops`, chains of the micro-kernel's own FMA instruction.
   */
  peakGflops: number;
  rounds: number;
}

/** Options of {@link benchGemm}. */
export interface GemmBenchOptions {
  /** Shapes to time (default {@link GPT2_LINEARS}). */
  shapes?: readonly LinearShape[];
  /** Rounds of own GEMM, OpenBLAS and peak, the best of which is kept (default 3). */
  rounds?: number;
  /** About how long each timing runs, s (default 0.15): enough calls to fill it. */
  seconds?: number;
  /** Called after each row, for progress. */
  onRow?: (row: GemmRow, peakGflops: number) => void;
}

/** The operands of one Linear on the backend, and a call that runs one product. */
function linearOperands(
  backend: Backend,
  s: LinearShape,
  rng: Generator,
): (o: Orientation) => void {
  const dims: MatmulDims = { N: s.tokens, C: s.inFeatures, OC: s.outFeatures };
  const buf = (n: number): DeviceBuffer =>
    backend.upload(rng.fillNormal(new Float32Array(n), 0, 1));
  const inp = buf(s.tokens * s.inFeatures), weight = buf(s.outFeatures * s.inFeatures);
  const out = buf(s.tokens * s.outFeatures), dout = buf(s.tokens * s.outFeatures);
  const dinp = buf(s.tokens * s.inFeatures), dweight = buf(s.outFeatures * s.inFeatures);
  return (o) => {
    if (o === "forward") backend.matmulForward(out, inp, weight, null, dims);
    else if (o === "dinp") {
      backend.matmulBackward({ dinp, dweight: null, dbias: null }, dout, inp, weight, dims);
    } else backend.matmulBackward({ dinp: null, dweight, dbias: null }, dout, inp, weight, dims);
  };
}

/** The best GFLOP/s of single calls of `run` over about `seconds`, after one warm-up call. */
function bestGflops(run: () => void, flops: number, seconds: number): number {
  run();
  let best = Infinity, spent = 0;
  for (let calls = 0; calls < 2 || spent < seconds; calls++) {
    const t0 = performance.now();
    run();
    const dt = (performance.now() - t0) / 1000;
    best = Math.min(best, dt);
    spent += dt;
  }
  return flops / best / 1e9;
}

/** The backend's matmul kernels (its own one alone where it has no choice). */
function matmulVariants(backend: Backend): readonly KernelVariant[] {
  const variants = backend.kernelVariants?.().filter((v) => v.kernel === "matmul") ?? [];
  return variants.length ? variants : [{
    kernel: "matmul",
    name: backend.name,
    isDefault: true,
    use: () => () => {},
  }];
}

/**
 * Times each shape in each orientation through every matmul kernel of `backend`, interleaved
 * with the FMA peak; leaves the backend on the kernel it had.
 *
 * @throws {Error} when the backend cannot measure its peak (`measurePeakGflops`)
 */
export function benchGemm(backend: Backend, options: GemmBenchOptions = {}): GemmReport {
  const { shapes = GPT2_LINEARS, rounds = 3, seconds = 0.15 } = options;
  const measure = backend.measurePeakGflops?.bind(backend);
  if (!measure) {
    throw new Error(`Expected a backend that measures its peak, found ${backend.name}`);
  }
  const rng = new Generator(0);
  const variants = matmulVariants(backend);
  let peak = measure(seconds / 3);
  const rows: GemmRow[] = [];
  for (const s of shapes) {
    const run = linearOperands(backend, s, rng);
    for (const o of ORIENTATIONS) {
      const { M, N, K } = gemmDims(s, o);
      const flops = 2 * M * N * K;
      const row: GemmRow = { shape: s, orientation: o, gflops: variants.map(() => null) };
      for (let r = 0; r < rounds; r++) {
        variants.forEach((v, i) => {
          if (v.unavailable) return;
          const restore = v.use();
          try {
            row.gflops[i] = Math.max(row.gflops[i] ?? 0, bestGflops(() => run(o), flops, seconds));
          } finally {
            restore();
          }
        });
        peak = Math.max(peak, measure(seconds / 3));
      }
      rows.push(row);
      options.onRow?.(row, peak);
    }
  }
  return {
    kernels: variants.map(({ name, detail, unavailable }) => ({ name, detail, unavailable })),
    rows,
    peakGflops: peak,
    rounds,
  };
}

/** One cell: GFLOP/s and percent of the peak. */
function cell(gflops: number | null, peak: number): string {
  return gflops === null ? "n/a" : `${gflops.toFixed(1)} | ${(100 * gflops / peak).toFixed(0)}%`;
}

/** One table row in Markdown. */
export function gemmRowMarkdown(row: GemmRow, peakGflops: number): string {
  const { M, N, K } = gemmDims(row.shape, row.orientation);
  const cells = row.gflops.map((g) => cell(g, peakGflops));
  return `| ${row.shape.name} | ${row.orientation} | ${M} x ${N} x ${K} | ${cells.join(" | ")} |`;
}

/** The report as a Markdown table, with the peak and the library under it. */
export function gemmTable(report: GemmReport): string {
  const names = report.kernels.map((k) => k.name);
  return [
    `| Linear | product | M x N x K | ${
      names.map((n) => `${n} GFLOP/s | ${n} % of peak`).join(" | ")
    } |`,
    `| --- | --- | --- | ${names.map(() => "--- | ---").join(" | ")} |`,
    ...report.rows.map((r) => gemmRowMarkdown(r, report.peakGflops)),
    "",
    `Peak: ${report.peakGflops.toFixed(1)} GFLOP/s, the best fp32 FMA peak of all threads ` +
    `during the run (chains of the micro-kernel's FMA instruction); each GEMM's best of ` +
    `${report.rounds} interleaved rounds.`,
    ...report.kernels.flatMap((k) => {
      const note = k.detail ?? k.unavailable;
      return note ? [`${k.name}: ${note}`] : [];
    }),
  ].join("\n");
}
