/**
 * The CUDA benchmark: GPT-2 124M (vocab 50304) training steps (zero_grad,
 * forward, backward, clip 1.0, AdamW, the loss read back) at the lecture's B=16, T=1024 and
 * build-nanogpt's B=64, T=1024, in fp32, TF32 and bf16: ms per step, tok/s, MFU against the
 * GPU's peak for that precision, and the peak of the memory the backend held (one backend and
 * one model per batch size, the precision switched between rows). With the
 * PyTorch peer (`lib/bench/torch_gpu_peer.ts`), each row runs PyTorch eager right after
 * ours, and `torch.compile` for the precisions asked (bf16 by default: each compile takes
 * about a minute), and prints the ratios.
 *
 * Few iterations (1 warm-up and 4 timed by default), so that the whole table with the
 * peer fits in about 3 minutes on an H100 or H200. The backend is `--backend cuda`'s, reached
 * through lib/backends/mod.ts and its capabilities (`setMatmulPrecision`, `peakFlops`,
 * `peakMemoryBytes`, `deviceInfo`).
 *
 * @module
 */

import process from "node:process";
import type { Backend, DeviceCalls, MatmulPrecision } from "../backend.ts";
import { backendRow, createBackend } from "../backends/mod.ts";
import { type GPTConfig, gptConfig } from "../model/gpt.ts";
import { median, stepRunner, stepTiming, trainFlopsPerToken } from "./step.ts";
import { runTorchGpuPeer, type TorchGpuTiming, torchGpuUnavailable } from "./torch_gpu_peer.ts";

/** The precisions the benchmark times, named as build-nanogpt and the peer name them. */
export type BenchPrecision = "fp32" | "tf32" | "bf16";

/** Every precision, in the lecture's order. */
export const BENCH_PRECISIONS: readonly BenchPrecision[] = ["fp32", "tf32", "bf16"];

/** The backend's name for a precision. */
export function backendPrecision(p: BenchPrecision): MatmulPrecision {
  return p === "fp32" ? "f32" : p;
}

/** The backend's datasheet peak for `p`, TFLOP/s, or null where it knows none. */
function peakTflops(backend: Backend, p: BenchPrecision): number | null {
  const peak = backend.peakFlops?.(backendPrecision(p));
  return peak ? Math.round(peak.flops / 1e9) / 1e3 : null; // 989.4e12 back to 989.4
}

/** One row to time: a step size and a precision. */
export interface CudaBenchConfig {
  B: number;
  T: number;
  precision: BenchPrecision;
}

/** Our side of a row. */
export interface CudaStepResult {
  medianMs: number;
  minMs: number;
  tokensPerSec: number;
  /** Model FLOPs per second over the GPU's peak for the row's precision, or null. */
  mfu: number | null;
  /** The most device memory the backend held at once, bytes. */
  peakMemoryBytes: number;
}

/** A peer's side of a row: its timing, or why it did not run. */
export type PeerCell = TorchGpuTiming | { skipped: string };

/** A timed row. */
export interface CudaBenchRow extends CudaBenchConfig {
  ours: CudaStepResult | { failed: string };
  /** The peak the MFU is taken against, TFLOP/s. */
  peakTflops: number | null;
  eager: PeerCell;
  compiled: PeerCell;
}

/** The whole benchmark, as `--json` writes it. */
export interface CudaBenchReport {
  device: { name: string; computeCapability: [number, number]; totalMemoryBytes: number };
  warmup: number;
  iters: number;
  rows: CudaBenchRow[];
  seconds: number;
}

/** Options of `runCudaBench`. */
export interface CudaBenchOptions {
  configs: CudaBenchConfig[];
  warmup: number;
  iters: number;
  /** Run the PyTorch peer (eager for every row). */
  peer: boolean;
  /** The precisions for which the peer also runs with `torch.compile`. */
  compile: readonly BenchPrecision[];
  /** The one batch size at which `compile` applies (default every one). */
  compileBatch?: number;
  /** Called with each line of progress. */
  log?: (line: string) => void;
  /** Opens the backend for a row; default `--backend cuda`'s (tests pass the emulator's). */
  openBackend?: (quiet: boolean) => Promise<Backend>;
  /** The model; default GPT-2 124M with vocab 50304. */
  config?: GPTConfig;
  /** Called after each row with the report so far (to save it as it grows). */
  onRow?: (partial: CudaBenchReport) => void | Promise<void>;
}

/** The default rows: B=16 and B=64 at T=1024, each in fp32, TF32 and bf16. */
export function defaultCudaConfigs(): CudaBenchConfig[] {
  return [16, 64].flatMap((B) => BENCH_PRECISIONS.map((precision) => ({ B, T: 1024, precision })));
}

/** The GPU's peak for each precision, TFLOP/s (null: in no datasheet known). */
type Peaks = Record<BenchPrecision, number | null>;

/** Our side of the rows of one size: one backend and one model, the precision switched per row. */
async function timeOursAtSize(
  config: GPTConfig,
  rows: CudaBenchConfig[],
  o: CudaBenchOptions,
  quiet: boolean,
): Promise<{
  results: CudaBenchRow["ours"][];
  device: CudaBenchReport["device"];
  peaks: Peaks;
}> {
  const open = o.openBackend ??
    (async (q) => (await createBackend("cuda", { quiet: q })).backend);
  const backend = await open(quiet);
  try {
    if (!backend.setMatmulPrecision) {
      throw new Error(`Expected a backend with matmul precisions, found ${backend.name}`);
    }
    const { B, T } = rows[0];
    const shape = { mode: "train" as const, B, T, warmup: o.warmup, iters: o.iters };
    const step = stepRunner(backend, config, shape);
    const results: CudaBenchRow["ours"][] = [];
    for (const c of rows) {
      o.log?.(`\ntrain B=${c.B} T=${c.T} ${c.precision}: ours (cuda)`);
      try {
        backend.setMatmulPrecision(backendPrecision(c.precision));
        const times: number[] = [];
        for (let i = 0; i < o.warmup + o.iters; i++) {
          const ms = await step();
          o.log?.(`  ${i < o.warmup ? "warmup" : "iter"} ${i}: ${ms.toFixed(1)} ms`);
          if (i >= o.warmup) times.push(ms);
        }
        const t = stepTiming(shape, times);
        const peak = peakTflops(backend, c.precision);
        const flops = trainFlopsPerToken(config, c.T) * t.tokensPerSec;
        results.push({
          medianMs: t.medianMs,
          minMs: t.minMs,
          tokensPerSec: t.tokensPerSec,
          mfu: peak ? flops / (peak * 1e12) : null,
          peakMemoryBytes: backend.peakMemoryBytes?.() ?? 0,
        });
      } catch (e) {
        results.push({ failed: (e as Error).message.split("\n")[0] });
        o.log?.(`  ours failed: ${(e as Error).message.split("\n")[0]}`);
      }
    }
    const info = backend.deviceInfo;
    return {
      results,
      device: {
        name: info?.name ?? backend.describe(),
        computeCapability: info?.computeCapability ?? [0, 0],
        totalMemoryBytes: info?.totalMemoryBytes ?? 0,
      },
      peaks: Object.fromEntries(BENCH_PRECISIONS.map((p) => [p, peakTflops(backend, p)])) as Peaks,
    };
  } finally {
    backend.destroy?.();
  }
}

/** The rows in runs of one size (B and T), in their order. */
function bySize(configs: CudaBenchConfig[]): CudaBenchConfig[][] {
  const groups: CudaBenchConfig[][] = [];
  for (const c of configs) {
    const last = groups.at(-1);
    if (last && last[0].B === c.B && last[0].T === c.T) last.push(c);
    else groups.push([c]);
  }
  return groups;
}

/** One peer run, or why it did not run; a failure is reported, not thrown. */
async function timePeer(
  c: CudaBenchConfig,
  compile: boolean,
  o: CudaBenchOptions,
  unavailable: string | null,
): Promise<PeerCell> {
  if (unavailable) return { skipped: unavailable };
  o.log?.(`  PyTorch ${compile ? "torch.compile" : "eager"}`);
  try {
    return await runTorchGpuPeer({ ...c, compile, warmup: Math.max(o.warmup, 1), iters: o.iters });
  } catch (e) {
    const message = (e as Error).message;
    o.log?.(`  ${message}`);
    return { skipped: message.split("\n")[0].slice(0, 300) };
  }
}

/**
 * Times every row: ours for every precision of a size on one backend and one model (the peak
 * memory of a row is the most held up to it at that size), then, with ours closed, the peer
 * eager and compiled where asked. Fails fast, saying
 * what is missing, where no GPU is usable.
 */
export async function runCudaBench(o: CudaBenchOptions): Promise<CudaBenchReport> {
  const reason = o.openBackend ? null : await backendRow("cuda").unavailable(false);
  if (reason) throw new Error(`--backend cuda needs a usable NVIDIA GPU: ${reason}`);
  const t0 = performance.now();
  const config = o.config ?? gptConfig("gpt2", 50304);
  const peerReason = o.peer ? await torchGpuUnavailable() : "not asked (--peer torch)";
  if (o.peer && peerReason) o.log?.(`PyTorch peer skipped: ${peerReason}`);
  const rows: CudaBenchRow[] = [];
  let device: CudaBenchReport["device"] | null = null, peaks: Peaks | null = null;
  const report = (): CudaBenchReport => ({
    device: device ?? { name: "unknown", computeCapability: [0, 0], totalMemoryBytes: 0 },
    warmup: o.warmup,
    iters: o.iters,
    rows,
    seconds: (performance.now() - t0) / 1000,
  });
  for (const size of bySize(o.configs)) {
    let ours: CudaBenchRow["ours"][];
    try {
      const r = await timeOursAtSize(config, size, o, device !== null);
      ours = r.results;
      device ??= r.device;
      peaks ??= r.peaks;
    } catch (e) {
      const failed = (e as Error).message.split("\n")[0];
      o.log?.(`  ours failed: ${failed}`);
      ours = size.map(() => ({ failed }));
    }
    // the peer after ours is closed: the GPU's memory is all PyTorch's
    for (const [i, c] of size.entries()) {
      const compileReason = !o.compile.includes(c.precision)
        ? `not asked for ${c.precision} (--torch-compile)`
        : o.compileBatch !== undefined && o.compileBatch !== c.B
        ? `not asked at B=${c.B} (--torch-compile-batch ${o.compileBatch})`
        : peerReason;
      rows.push({
        ...c,
        ours: ours[i],
        peakTflops: peaks?.[c.precision] ?? null,
        eager: await timePeer(c, false, o, peerReason),
        compiled: await timePeer(c, true, o, compileReason),
      });
      await o.onRow?.(report());
    }
  }
  return report();
}

function ms(x: number): string {
  return x.toFixed(1);
}

function tokPerSec(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

function gib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(2);
}

/** Our tok/s over the peer's, or "-". */
function ratio(ours: CudaBenchRow["ours"], peer: PeerCell): string {
  if ("failed" in ours || "skipped" in peer) return "-";
  return `${(ours.tokensPerSec / peer.tokensPerSec).toFixed(2)}x`;
}

/** The report as a Markdown table, with a line on what MFU and the ratios mean. */
export function cudaBenchTable(report: CudaBenchReport): string {
  const lines = [
    `GPT-2 124M (vocab 50304) training step on ${report.device.name} (compute capability ${
      report.device.computeCapability.join(".")
    }), median of ${report.iters} steps after ${report.warmup} warm-up`,
    "",
    "| step | precision | ours ms | ours tok/s | MFU | ours peak GiB | eager tok/s | ours / eager " +
    "| compiled tok/s | ours / compiled | PyTorch peak GiB |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of report.rows) {
    const o = r.ours;
    const cells = "failed" in o ? [`failed: ${o.failed}`, "-", "-", "-"] : [
      ms(o.medianMs),
      tokPerSec(o.tokensPerSec),
      o.mfu === null ? "-" : `${(100 * o.mfu).toFixed(1)}% of ${r.peakTflops}`,
      gib(o.peakMemoryBytes),
    ];
    const peerTok = (p: PeerCell) => "skipped" in p ? "-" : tokPerSec(p.tokensPerSec);
    const peerMem = [r.eager, r.compiled].filter((p): p is TorchGpuTiming => !("skipped" in p))
      .map((p) => p.peakMemGib.toFixed(2)).join(" / ") || "-";
    lines.push(
      `| train B=${r.B} T=${r.T} | ${r.precision} | ${cells.join(" | ")} | ${peerTok(r.eager)} | ${
        ratio(o, r.eager)
      } | ${peerTok(r.compiled)} | ${ratio(o, r.compiled)} | ${peerMem} |`,
    );
  }
  const skipped = new Set(
    report.rows.flatMap((r) => [r.eager, r.compiled]).flatMap((p) =>
      "skipped" in p ? [p.skipped] : []
    ),
  );
  lines.push(
    "",
    "MFU: model FLOPs (6N + 12LCT per token) over the GPU's dense peak for the row's precision " +
      "(TFLOP/s, vendor datasheet). Peak memory: ours is the most the backend held allocated; " +
      "PyTorch's is torch.cuda.max_memory_allocated (eager / compiled).",
  );
  for (const s of skipped) lines.push(`PyTorch peer not run: ${s}`);
  return lines.join("\n");
}

// ---- the host side, on the null device --------------------------------------------------

/** What `runCudaHostBench` reports of one row: the host's time and the calls of one step. */
export interface CudaHostRow extends CudaBenchConfig {
  /** Median host milliseconds per step (the device runs nothing), or why the row failed. */
  result: {
    medianMs: number;
    minMs: number;
    /**
     * The process's CPU time per step (user and system, every thread: V8's collector and
     * compiler too), median and least, ms: less sensitive to other processes than wall time.
     */
    cpuMedianMs: number;
    cpuMinMs: number;
    /** Per step, the mean over the timed steps. */
    perStep: DeviceCalls;
    /** The most device memory the backend held during the row, bytes. */
    peakMemoryBytes: number;
    /** Whether that peak is within `fitBytes`. */
    fits: boolean;
  } | { failed: string };
}

/** The host-side benchmark, as `--json` writes it. */
export interface CudaHostReport {
  device: string;
  warmup: number;
  iters: number;
  /** The memory a row must fit in, bytes (80 GiB: an H100's). */
  fitBytes: number;
  rows: CudaHostRow[];
  seconds: number;
}

/** Options of `runCudaHostBench`. */
export interface CudaHostOptions {
  configs: CudaBenchConfig[];
  warmup: number;
  iters: number;
  /** The memory a row must fit in, bytes; default 80 GiB. */
  fitBytes?: number;
  /** The model; default GPT-2 124M with vocab 50304. */
  config?: GPTConfig;
  /** Opens the backend for a size; default `--backend cuda`'s. */
  openBackend?: () => Promise<Backend>;
  /** Called with each line of progress. */
  log?: (line: string) => void;
}

/** An H100's memory: what a row must fit in by default. */
export const H100_MEMORY_BYTES = 80 * 2 ** 30;

function callsBetween(a: DeviceCalls, b: DeviceCalls, steps: number): DeviceCalls {
  const per = (k: keyof DeviceCalls) => (b[k] - a[k]) / steps;
  return {
    launches: per("launches"),
    gemms: per("gemms"),
    copies: per("copies"),
    memsets: per("memsets"),
    collections: per("collections"),
  };
}

/**
 * Times the host's side of training steps (lib/bench/step.ts's, with the logits overwritten
 * as training does) on a backend whose device runs nothing (the CUDA null device:
 * `deno task bench --backend cuda --null-device`): per row the host's ms per step, the
 * launches, GEMMs, copies, memsets and pool collections per step, and the peak device memory
 * against `fitBytes`. One backend and one model per size; each row's peak starts from the
 * memory held before it.
 */
export async function runCudaHostBench(o: CudaHostOptions): Promise<CudaHostReport> {
  const t0 = performance.now();
  const config = o.config ?? gptConfig("gpt2", 50304);
  const fitBytes = o.fitBytes ?? H100_MEMORY_BYTES;
  const open = o.openBackend ??
    (async () => (await createBackend("cuda", { quiet: true })).backend);
  const rows: CudaHostRow[] = [];
  let device = "unknown";
  for (const size of bySize(o.configs)) {
    const backend = await open();
    device = backend.deviceInfo?.name ?? backend.describe();
    try {
      if (!backend.setMatmulPrecision || !backend.deviceCalls) {
        throw new Error(`Expected a backend that counts its device calls, found ${backend.name}`);
      }
      const { B, T } = size[0];
      const shape = { mode: "train" as const, B, T, warmup: o.warmup, iters: o.iters };
      o.log?.(`\nB=${B} T=${T}: building GPT-2 on ${device}`);
      const step = stepRunner(backend, config, shape);
      for (const c of size) {
        try {
          backend.setMatmulPrecision(backendPrecision(c.precision));
          backend.resetPeakMemory?.();
          const times: number[] = [], cpu: number[] = [];
          let before = backend.deviceCalls();
          for (let i = 0; i < o.warmup + o.iters; i++) {
            if (i === o.warmup) before = backend.deviceCalls();
            const c0 = process.cpuUsage();
            times.push(await step());
            const c = process.cpuUsage(c0);
            cpu.push((c.user + c.system) / 1000);
          }
          const cpuTimed = cpu.slice(o.warmup);
          const perStep = callsBetween(before, backend.deviceCalls(), o.iters);
          const t = stepTiming(shape, times.slice(o.warmup));
          const peak = backend.peakMemoryBytes?.() ?? 0;
          rows.push({
            ...c,
            result: {
              medianMs: t.medianMs,
              minMs: t.minMs,
              cpuMedianMs: median(cpuTimed),
              cpuMinMs: Math.min(...cpuTimed),
              perStep,
              peakMemoryBytes: peak,
              fits: peak <= fitBytes,
            },
          });
          o.log?.(`  ${c.precision}: ${t.medianMs.toFixed(1)} ms host per step`);
        } catch (e) {
          const failed = (e as Error).message.split("\n")[0];
          rows.push({ ...c, result: { failed } });
          o.log?.(`  ${c.precision} failed: ${failed}`);
        }
      }
    } finally {
      backend.destroy?.();
    }
  }
  return {
    device,
    warmup: o.warmup,
    iters: o.iters,
    fitBytes,
    rows,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The host-side report as a Markdown table, with a line on what it measures. */
export function cudaHostTable(report: CudaHostReport): string {
  const lines = [
    `GPT-2 124M (vocab 50304) training step, host side on ${report.device}: median of ${report.iters} steps after ${report.warmup} warm-up`,
    "",
    "| step | precision | host ms (min) | CPU ms (min) | launches | GEMMs | copies | memsets " +
    `| collections | peak GiB | fits ${gib(report.fitBytes).replace(/\.00$/, "")} GiB |`,
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  const count = (x: number) => Number.isInteger(x) ? String(x) : x.toFixed(2);
  for (const r of report.rows) {
    const o = r.result;
    const cells = "failed" in o
      ? [`failed: ${o.failed}`, "-", "-", "-", "-", "-", "-", "-", "no"]
      : [
        `${ms(o.medianMs)} (${ms(o.minMs)})`,
        `${ms(o.cpuMedianMs)} (${ms(o.cpuMinMs)})`,
        count(o.perStep.launches),
        count(o.perStep.gemms),
        count(o.perStep.copies),
        count(o.perStep.memsets),
        count(o.perStep.collections),
        gib(o.peakMemoryBytes),
        o.fits ? "yes" : "no",
      ];
    lines.push(`| train B=${r.B} T=${r.T} | ${r.precision} | ${cells.join(" | ")} |`);
  }
  lines.push(
    "",
    "Host ms: a step's wall time where the device runs nothing (what the host costs on a GPU, " +
      "where the kernels would overlap it); CPU ms: the process's CPU time in the step (every " +
      "thread), which other processes on the machine disturb less. Launches, GEMMs, copies, " +
      "memsets and the memory pool's garbage collections are per step; peak: the most device " +
      "memory held in the row.",
  );
  return lines.join("\n");
}

/**
 * Points this process's CUDA backend at the CPU emulator's library in its null mode (nothing
 * runs, allocations accounted against 80 GiB): builds it (tests/cuda_emulator/ffi.ts, in a
 * child process, with the system's C++ compiler) and sets the variables it prints.
 *
 * @throws {Error} when the library could not be built (no C++ compiler, say)
 */
export async function useCudaNullDevice(): Promise<void> {
  const script = new URL("../../tests/cuda_emulator/ffi.ts", import.meta.url).pathname;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, "--null-device"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(r.stdout);
  if (!r.success) {
    throw new Error(
      `Building the CUDA null device (${script}) failed:\n${new TextDecoder().decode(r.stderr)}`,
    );
  }
  const env = JSON.parse(text.trim().split("\n").at(-1)!) as Record<string, string>;
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
}
