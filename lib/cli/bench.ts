/**
 * `deno task bench`: GEMM throughput on GPT-2's shapes and GPT-2 124M training steps on the
 * native backend, with `--peer torch` running PyTorch's CPU step interleaved in the same
 * run, in the same precision (fp32 beside fp32, bf16 matmuls beside bf16 autocast) and under
 * jemalloc or tcmalloc, so the two are compared as ratios like with like (these machines are
 * shared and noisy).
 * `--backend webgpu` runs the WebGPU benchmark instead (lib/bench/kernels.ts), `--backend
 * cuda` the CUDA one (lib/bench/cuda.ts, with PyTorch on the same GPU as the peer). Each
 * backend comes from lib/backends/mod.ts; what is particular to one (its GEMM kernels, its
 * measured peak) it declares as a capability of lib/backend.ts.
 *
 * @module
 */

import { existsSync } from "node:fs";
import type { Backend } from "../backend.ts";
import { createBackend } from "../backends/mod.ts";
import {
  BENCH_PRECISIONS,
  type BenchPrecision,
  type CudaBenchConfig,
  type CudaBenchReport,
  cudaBenchTable,
  cudaHostTable,
  defaultCudaConfigs,
  runCudaBench,
  runCudaHostBench,
  useCudaNullDevice,
} from "../bench/cuda.ts";
import { benchGeneration, generationTable } from "../bench/generation.ts";
import { timeMedian, timeSteps, trainFlopsPerToken } from "../bench/step.ts";
import { formatStepProfile, measureBandwidth, profileTrainingStep } from "../bench/op_profile.ts";
import {
  findTorchPython,
  peerStepArgs,
  runTorchPeer,
  torchPeerUnavailable,
} from "../bench/torch_peer.ts";
import {
  allocatorEnv,
  describeAllocator,
  findPeerAllocator,
  type PeerAllocator,
} from "../bench/peer_allocator.ts";
import {
  CPU_BENCH_PRECISIONS,
  type CpuBenchPrecision,
  type CpuPeaks,
  type CpuStepRow,
  likeForLikeLines,
  peakLines,
  stepLabel,
  stepTable,
  stepTableHeader,
  stepTableRow,
} from "../bench/cpu_step_table.ts";
import { setMatmulPrecision } from "../train/precision.ts";
import { defaultStepConfigs, parseStepConfigs, type StepConfig } from "../bench/step_configs.ts";
import { gptConfig } from "../model/gpt.ts";
import { Generator } from "../model/random.ts";
import { type FlagValues, numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task bench [flags]

  --peer torch        also time ../shared/bench/torch_gpt2_step.py (PyTorch: pip's or Debian's)
                      in the same precision, interleaved with ours, under jemalloc or tcmalloc
                      where found, and print the ratios like with like
  --configs LIST      which steps to time (default train:4x64,train:8x128,fwd:1x1024; with
                      --peer torch train:4x64,train:8x128,train:2x1024)
  --warmup N          untimed iterations per config (default 2)
  --iters N           timed iterations per config; the median is reported (default 5)
  --no-gemm           skip the GEMM table
  --no-profile        skip the op-by-op profile of the first training step's size
  --generation        also time 256 greedy tokens from GPT-2 124M with and without the KV
                      cache (the uncached half takes minutes here)
  --webgpu            also run the WebGPU benchmark (each kernel, then 124M steps at B=4, T=64,
                      and B=16, T=1024 on a real GPU) on the adapter at hand (lib/bench/kernels.ts)
  --backend NAME      native (default); webgpu: only the WebGPU benchmark; with --configs
                      train:BxT it times that size, with --iters that many steps; cuda: GPT-2
                      124M steps at B=16 and B=64, T=1024, in fp32, tf32 and bf16 on the GPU
                      (tok/s, MFU, peak memory), --configs train:BxT,... for other sizes
  --null-device       cuda: the host side only, on the CPU emulator's library in its null mode
                      (tests/cuda_emulator/, built with the system's C++ compiler; nothing runs,
                      memory accounted against 80 GiB): host ms, launches, GEMMs, copies,
                      memsets and collections per step, peak memory and whether it fits 80 GiB,
                      at B=16 and B=64, T=1024, in fp32 and bf16 (warm-up 2, 5 timed steps)
  --precisions LIST   native: which of fp32,bf16 to time (default fp32; with --peer torch both,
                      PyTorch's bf16 being autocast); cuda: which of fp32,tf32,bf16 (default all)
  --torch-compile L   cuda with --peer torch: the precisions the peer also runs compiled
                      (default bf16: each compile takes about a minute; none: eager only)
  --torch-compile-batch B
                      cuda with --peer torch: compile only at batch size B (default every one)
  --json PATH         cuda: also write the table's numbers as JSON
  -h, --help          this text

With --backend cuda, --peer torch runs ../shared/bench/torch_gpt2_gpu.py (PyTorch on the same
GPU) after each of our rows; --warmup defaults to 1 and --iters to 4 there, so the whole table
with the peer takes about 3 minutes on an H100 or H200.`;

const GEMM_SHAPES: [string, number, number, number][] = [
  // M (tokens), N (out features), K (in features), as matmul_forward calls them at B*T = 512
  ["c_attn", 512, 2304, 768],
  ["attn c_proj", 512, 768, 768],
  ["c_fc", 512, 3072, 768],
  ["mlp c_proj", 512, 768, 3072],
  ["lm_head", 512, 50304, 768],
  ["1024^3", 1024, 1024, 1024],
];

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    peer: { type: "string" },
    configs: { type: "string" },
    warmup: { type: "string" },
    iters: { type: "string" },
    "no-gemm": { type: "boolean" },
    "no-profile": { type: "boolean" },
    generation: { type: "boolean" },
    webgpu: { type: "boolean" },
    "null-device": { type: "boolean" },
    backend: { type: "string" },
    precisions: { type: "string" },
    "torch-compile": { type: "string" },
    "torch-compile-batch": { type: "string" },
    json: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) return console.log(HELP);
  const peer = stringFlag(f, "peer");
  if (peer !== undefined && peer !== "torch") {
    throw new Error(`--peer expects "torch", found "${peer}"`);
  }
  const warmup = numberFlag(f, "warmup", 2, { integer: true, min: 0 });
  const iters = numberFlag(f, "iters", 5, { integer: true, min: 1 });
  const configs = parseStepConfigs(stringFlag(f, "configs", defaultStepConfigs(peer === "torch")));

  const only = stringFlag(f, "backend", "native");
  if (only !== "native" && only !== "webgpu" && only !== "cuda") {
    throw new Error(`--backend expects native, webgpu or cuda, found "${only}"`);
  }
  if (f["null-device"] && only !== "cuda") {
    throw new Error(`--null-device is --backend cuda's, found --backend ${only}`);
  }
  if (only === "cuda") {
    if (f.configs !== undefined && configs.some((c) => c.mode !== "train")) {
      throw new Error("--backend cuda times training steps: pass --configs train:BxT,...");
    }
    if (f["null-device"]) {
      return await benchCudaHost(f, f.configs === undefined ? null : configs, { warmup, iters });
    }
    return await benchCuda(f, f.configs === undefined ? null : configs, {
      warmup: f.warmup === undefined ? 1 : warmup,
      iters: f.iters === undefined ? 4 : iters,
      peer: peer === "torch",
    });
  }
  if (only === "webgpu") {
    const size = f.configs === undefined ? [] : configs.filter((c) => c.mode === "train");
    if (f.configs !== undefined && size.length !== 1) {
      throw new Error("--backend webgpu times one training size: pass --configs train:BxT");
    }
    const args = size.length ? [`--B=${size[0].B}`, `--T=${size[0].T}`] : [];
    if (f.iters !== undefined) args.push(`--steps=${iters}`);
    return await runWebGpuBench(args);
  }

  const started = performance.now();
  const precisions = nativePrecisions(stringFlag(f, "precisions"), peer === "torch");
  const allocator = peer ? findPeerAllocator((n) => Deno.env.get(n), existsSync) : null;
  const { backend } = await createBackend("native");
  console.log(`backend: ${backend.describe()}`);
  const peaks = measurePeaks(backend);
  console.log(`measured fp32 FMA peak: ${peaks.fp32.toFixed(1)} GFLOP/s (all threads)`);
  for (const line of peakLines(peaks)) console.log(line);
  const torchReason = peer ? await torchPeerUnavailable() : "not asked (--peer torch)";
  if (peer && torchReason) console.log(`PyTorch peer skipped: ${torchReason}`);
  const torch = peer && !torchReason ? await findTorchPython() : null;
  const peerEnv = allocator ? allocatorEnv(allocator, (n) => Deno.env.get(n)) : {};
  if (torch && typeof torch !== "string" && allocator) {
    console.log(`PyTorch peer: torch ${torch.version} under ${torch.python}`);
    console.log(describeAllocator(allocator, peerEnv));
  }

  if (!f["no-gemm"]) benchGemms(backend, peaks.fp32);
  const heading =
    `GPT-2 124M (vocab 50304), median of ${iters} timed iterations after ${warmup} warm-up`;
  const rows = await benchSteps(backend, configs, precisions, {
    warmup,
    iters,
    torchReason,
    peerEnv,
    onRow: (row, done) => {
      // each row as it finishes (a run at T=1024 takes minutes), the whole table again below
      console.log(`\n${heading}, the rows so far:`);
      for (const line of stepTableHeader(peerAllocatorLabel(allocator))) console.log(line);
      for (const r of [...done, row]) console.log(stepTableRow(r, peaks));
    },
  });
  console.log(`\n${heading}`);
  for (const line of stepTable(rows, peaks, peerAllocatorLabel(allocator))) console.log(line);
  const ratios = likeForLikeLines(rows);
  if (ratios.length) console.log(`\nLike with like (tok/s):\n${ratios.join("\n")}`);
  const profiled = configs.find((c) => c.mode === "train");
  if (profiled && !f["no-profile"]) await benchProfile(backend, profiled);
  console.log(
    "\nMFU: model FLOPs (6N + 12LCT per token for a training step, a third of it forward-only) " +
      "over the measured peak of the row's precision:",
  );
  for (const line of peakLines(peaks)) console.log(line);
  if (f.generation) {
    console.log(`\n${generationTable(await benchGeneration(backend, { tokens: 256 }))}`);
  }
  if (f.webgpu) await runWebGpuBench([]);
  console.log(`\n(${((performance.now() - started) / 1000).toFixed(0)} s in all)`);
});

/** The peer rows' allocator for the table's heading: "glibc malloc" where none is preloaded. */
function peerAllocatorLabel(allocator: PeerAllocator | null): string {
  return allocator?.name ?? "glibc malloc";
}

/**
 * The native backend's precisions to time: `--precisions` (fp32 and bf16 only), else both
 * beside the peer and fp32 alone without it.
 */
function nativePrecisions(value: string | undefined, peer: boolean): CpuBenchPrecision[] {
  const fallback: readonly BenchPrecision[] = peer ? CPU_BENCH_PRECISIONS : ["fp32"];
  const list = precisionList(value, "--precisions", fallback);
  if (list.length === 0) throw new Error("--precisions expects at least one precision");
  for (const p of list) {
    if (!(CPU_BENCH_PRECISIONS as readonly string[]).includes(p)) {
      throw new Error(
        `--precisions on the native backend expects fp32 or bf16, found "${p}" (tf32 is --backend cuda's)`,
      );
    }
  }
  return list as CpuBenchPrecision[];
}

/**
 * The peaks of both precisions, measured (`peakFlops`): the fp32 FMA peak, and bf16's:
 * vdpbf16ps's where the CPU has it, else the fp32 peak again, marked as such.
 */
function measurePeaks(backend: Backend): CpuPeaks {
  const f32 = backend.peakFlops?.("f32"), bf16 = backend.peakFlops?.("bf16");
  if (!f32 || !bf16) {
    throw new Error(
      `Expected a backend that measures its fp32 and bf16 peaks, found ${backend.name}`,
    );
  }
  return { fp32: f32.flops / 1e9, bf16: bf16.flops / 1e9, bf16AtFp32Rate: bf16.rateOf === "f32" };
}

/**
 * A comma-separated list of precisions (fp32, tf32, bf16); "none" is the empty list, and
 * undefined is `fallback`.
 */
function precisionList(
  value: string | undefined,
  flag: string,
  fallback: readonly BenchPrecision[],
): BenchPrecision[] {
  if (value === undefined) return [...fallback];
  const text = value.trim();
  if (text === "none") return [];
  return text.split(",").map((p) => {
    const name = p.trim();
    if (!(BENCH_PRECISIONS as readonly string[]).includes(name)) {
      throw new Error(
        `${flag} expects a list of ${BENCH_PRECISIONS.join(", ")} or none, found "${name}"`,
      );
    }
    return name as BenchPrecision;
  });
}

/**
 * The CUDA benchmark (lib/bench/cuda.ts) at `sizes` (null: B=16 and B=64 at T=1024) in the
 * precisions of `--precisions`: its progress, then the table, and the JSON of `--json`.
 */
async function benchCuda(
  f: FlagValues,
  sizes: { B: number; T: number }[] | null,
  o: { warmup: number; iters: number; peer: boolean },
): Promise<void> {
  const precisions = precisionList(stringFlag(f, "precisions"), "--precisions", BENCH_PRECISIONS);
  if (precisions.length === 0) throw new Error("--precisions expects at least one precision");
  const configs: CudaBenchConfig[] = sizes === null
    ? defaultCudaConfigs().filter((c) => precisions.includes(c.precision))
    : sizes.flatMap((c) => precisions.map((precision) => ({ B: c.B, T: c.T, precision })));
  const json = stringFlag(f, "json");
  const save = async (r: CudaBenchReport) => {
    if (json) await Deno.writeTextFile(json, JSON.stringify(r, null, 2) + "\n");
  };
  const report = await runCudaBench({
    ...o,
    configs,
    compile: precisionList(stringFlag(f, "torch-compile", "bf16"), "--torch-compile", []),
    compileBatch: f["torch-compile-batch"] === undefined
      ? undefined
      : numberFlag(f, "torch-compile-batch", 0, { integer: true, min: 1 }),
    log: (line) => console.log(line),
    onRow: save, // the rows so far survive a run stopped early
  });
  console.log(`\n${cudaBenchTable(report)}`);
  console.log(`\n(${report.seconds.toFixed(0)} s in all)`);
  await save(report);
}

/**
 * The host side of the CUDA benchmark on the null device (lib/bench/cuda.ts's
 * `runCudaHostBench`) at `sizes` (null: B=16 and B=64 at T=1024) in `--precisions` (default
 * fp32 and bf16): its progress, then the table, and the JSON of `--json`.
 */
async function benchCudaHost(
  f: FlagValues,
  sizes: { B: number; T: number }[] | null,
  o: { warmup: number; iters: number },
): Promise<void> {
  const precisions = precisionList(stringFlag(f, "precisions"), "--precisions", [
    "fp32",
    "bf16",
  ]);
  if (precisions.length === 0) throw new Error("--precisions expects at least one precision");
  const configs: CudaBenchConfig[] = (sizes ?? [{ B: 16, T: 1024 }, { B: 64, T: 1024 }])
    .flatMap((c) => precisions.map((precision) => ({ B: c.B, T: c.T, precision })));
  await useCudaNullDevice();
  const report = await runCudaHostBench({ ...o, configs, log: (line) => console.log(line) });
  console.log(`\n${cudaHostTable(report)}`);
  console.log(`\n(${report.seconds.toFixed(0)} s in all)`);
  const json = stringFlag(f, "json");
  if (json) await Deno.writeTextFile(json, JSON.stringify(report, null, 2) + "\n");
}

/** One training step of `c`'s size op by op: GEMMs, the rest, and the rest's bandwidth floor. */
async function benchProfile(backend: Backend, c: StepConfig): Promise<void> {
  console.log(
    `\nOne training step at B=${c.B}, T=${c.T} op by op (mean of 3 after 2 warm-up, lib/bench/op_profile.ts):`,
  );
  const profile = await profileTrainingStep(backend, gptConfig("gpt2", 50304), c);
  console.log(formatStepProfile(profile, measureBandwidth(backend)));
}

/** Runs lib/bench/kernels.ts on WebGPU in its own process (its device and memory go with it). */
async function runWebGpuBench(args: string[]): Promise<void> {
  console.log("\nWebGPU (lib/bench/kernels.ts):");
  const script = new URL("../bench/kernels.ts", import.meta.url).pathname;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, ...args],
  }).spawn().status;
  if (!r.success) throw new Error(`The WebGPU benchmark failed with exit code ${r.code}`);
}

/**
 * The GEMM table: each of GPT-2's shapes through each matmul kernel of the backend (on the
 * native backend OpenBLAS, then its own blocked GEMM), as matmulForward runs it.
 */
function benchGemms(backend: Backend, peak: number): void {
  console.log(
    "\nGEMM out (M, N) = A (M, K) @ B (N, K)^T, GFLOP/s (percent of the measured peak)",
  );
  const variants = backend.kernelVariants?.().filter((v) => v.kernel === "matmul") ?? [];
  console.log(
    `| shape | M x N x K | ${variants.map((v) => v.name).join(" | ")} |\n| --- | --- | ${
      variants.map(() => "---").join(" | ")
    } |`,
  );
  const rng = new Generator(0);
  for (const [name, M, N, K] of GEMM_SHAPES) {
    const a = backend.upload(rng.fillNormal(new Float32Array(M * K), 0, 1)),
      b = backend.upload(rng.fillNormal(new Float32Array(N * K), 0, 1));
    const c = backend.alloc(M * N, "f32");
    const cells: string[] = [];
    for (const variant of variants) {
      if (variant.unavailable) {
        cells.push("n/a");
        continue;
      }
      const restore = variant.use();
      const ms = timeMedian(
        () => backend.matmulForward(c, a, b, null, { N: M, C: K, OC: N }),
        1,
        5,
      );
      restore();
      const gflops = (2 * M * N * K) / (ms / 1000) / 1e9;
      cells.push(`${gflops.toFixed(1)} (${((100 * gflops) / peak).toFixed(0)}%)`);
    }
    console.log(`| ${name} | ${M} x ${N} x ${K} | ${cells.join(" | ")} |`);
  }
}

/**
 * Times GPT-2 124M's steps at each size in each precision, PyTorch's in the same precision
 * right after ours (fp32, then bf16 autocast) unless `torchReason` says why not, the peer's
 * process given `peerEnv` (its allocator); returns the table's rows.
 */
async function benchSteps(
  backend: Backend,
  configs: StepConfig[],
  precisions: readonly CpuBenchPrecision[],
  opts: {
    warmup: number;
    iters: number;
    torchReason: string | null;
    peerEnv: Record<string, string>;
    /** Called with each row as it finishes and the rows finished before it. */
    onRow?: (row: CpuStepRow, done: readonly CpuStepRow[]) => void;
  },
): Promise<CpuStepRow[]> {
  const { warmup, iters } = opts;
  let torchReason = opts.torchReason;
  const config = gptConfig("gpt2", 50304);
  const rows: CpuStepRow[] = [];
  for (const c of configs) {
    for (const precision of precisions) {
      const label = `${stepLabel(c)} ${precision}`;
      console.log(`\n${label}: ours (native)`);
      const restore = setMatmulPrecision(backend, precision === "bf16" ? "bf16" : "f32");
      let ours;
      try {
        ours = await timeSteps(backend, config, {
          ...c,
          warmup,
          iters,
          onIter: (i, ms, w) => console.log(`  ${w ? "warmup" : "iter"} ${i}: ${ms.toFixed(0)} ms`),
        });
      } finally {
        restore();
      }
      let torchTokensPerSec: number | null = null;
      if (!torchReason) {
        console.log(`${label}: PyTorch${precision === "bf16" ? " (bf16 autocast)" : ""}`);
        try {
          const args = peerStepArgs({ ...c, warmup, iters }, precision);
          torchTokensPerSec = (await runTorchPeer(args, { env: opts.peerEnv })).tok_s_at_median;
          console.log(`  PyTorch: ${torchTokensPerSec.toFixed(1)} tok/s at the median step`);
        } catch (e) {
          torchReason = (e as Error).message;
          console.log(`PyTorch peer failed: ${torchReason}`);
        }
      }
      const flopsPerToken = c.mode === "train"
        ? trainFlopsPerToken(config, c.T)
        : trainFlopsPerToken(config, c.T) / 3;
      const row: CpuStepRow = { ...c, precision, flopsPerToken, ours, torchTokensPerSec };
      opts.onRow?.(row, rows);
      rows.push(row);
    }
  }
  return rows;
}
