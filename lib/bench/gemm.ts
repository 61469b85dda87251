/**
 * The GEMM benchmark: GPT-2 124M's matmul shapes (B * T = 512 tokens) in the three orientations
 * nn.Linear runs (forward `out = inp @ W^T`, `dinp = dout @ W`, `dweight = dout^T @ inp`), each
 * through the project's own GEMM and through OpenBLAS in the same run, as GFLOP/s and percent
 * of the FMA peak measured in that run. Own GEMM, OpenBLAS and the peak are measured in turn,
 * round after round, and each keeps its best round, so a machine busy with other work
 * depresses all three alike rather than whichever ran while it was busiest.
 *
 * Run: `deno task bench-gemm [--rounds N] [--shapes c_attn,lm_head,...]` (lib/cli/bench_gemm.ts).
 *
 * @module
 */

import type { DeviceBuffer, MatmulDims } from "../backend.ts";
import { NativeBackend } from "../backends/native/mod.ts";
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

/** One row of the table: a shape and orientation through both GEMMs. */
export interface GemmRow {
  shape: LinearShape;
  orientation: Orientation;
  /** The project's own GEMM, best round, GFLOP/s. */
  ownGflops: number;
  /** OpenBLAS, best round, GFLOP/s; null when the build has no OpenBLAS. */
  blasGflops: number | null;
}

/** The whole run: the rows and the peak they are measured against. */
export interface GemmReport {
  rows: GemmRow[];
  /**
   * The best FMA peak of all threads measured during the run, GFLOP/s: the backend's
   * `measurePeakGflops`, chains of the micro-kernel's own FMA instruction.
   */
  peakGflops: number;
  /** The OpenBLAS library linked, or null. */
  blas: string | null;
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
  backend: NativeBackend,
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

/**
 * Times each shape in each orientation through the own GEMM and OpenBLAS, interleaved with
 * the FMA peak; leaves the backend on OpenBLAS when it has it.
 */
export function benchGemm(backend: NativeBackend, options: GemmBenchOptions = {}): GemmReport {
  const { shapes = GPT2_LINEARS, rounds = 3, seconds = 0.15 } = options;
  const rng = new Generator(0);
  const hasBlas = backend.library.blas !== null, before = backend.usesBlas;
  let peak = backend.measurePeakGflops(seconds / 3);
  const rows: GemmRow[] = [];
  try {
    for (const s of shapes) {
      const run = linearOperands(backend, s, rng);
      for (const o of ORIENTATIONS) {
        const { M, N, K } = gemmDims(s, o);
        const flops = 2 * M * N * K;
        const row: GemmRow = { shape: s, orientation: o, ownGflops: 0, blasGflops: null };
        for (let r = 0; r < rounds; r++) {
          backend.useBlas(false);
          row.ownGflops = Math.max(row.ownGflops, bestGflops(() => run(o), flops, seconds));
          if (hasBlas) {
            backend.useBlas(true);
            const g = bestGflops(() => run(o), flops, seconds);
            row.blasGflops = Math.max(row.blasGflops ?? 0, g);
          }
          peak = Math.max(peak, backend.measurePeakGflops(seconds / 3));
        }
        rows.push(row);
        options.onRow?.(row, peak);
      }
    }
  } finally {
    backend.useBlas(before);
  }
  return {
    rows,
    peakGflops: peak,
    blas: backend.library.blas,
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
  return `| ${row.shape.name} | ${row.orientation} | ${M} x ${N} x ${K} | ${
    cell(row.ownGflops, peakGflops)
  } | ${cell(row.blasGflops, peakGflops)} |`;
}

/** The report as a Markdown table, with the peak and the library under it. */
export function gemmTable(report: GemmReport): string {
  return [
    "| Linear | product | M x N x K | own GFLOP/s | own % of peak | OpenBLAS GFLOP/s | OpenBLAS % |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...report.rows.map((r) => gemmRowMarkdown(r, report.peakGflops)),
    "",
    `Peak: ${report.peakGflops.toFixed(1)} GFLOP/s, the best fp32 FMA peak of all threads ` +
    `during the run (chains of the micro-kernel's FMA instruction); each GEMM's best of ` +
    `${report.rounds} interleaved rounds.`,
    `OpenBLAS: ${report.blas ?? "not linked (GPT2_NO_BLAS set, or none found)"}`,
  ].join("\n");
}
