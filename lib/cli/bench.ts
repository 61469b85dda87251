/**
 * `deno task bench`: GEMM throughput on GPT-2's shapes and GPT-2 124M training steps on the
 * native backend, with `--peer torch` running PyTorch's CPU step interleaved in the same
 * run so the two are compared as ratios (these machines are shared and noisy).
 * `--backend webgpu` runs the WebGPU benchmark instead (lib/bench/kernels.ts), `--backend
 * cuda` the CUDA one (lib/bench/cuda.ts, with PyTorch on the same GPU as the peer). Each
 * backend comes from lib/backends/mod.ts; what is particular to one (its GEMM kernels, its
 * measured peak) it declares as a capability of lib/backend.ts.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { createBackend } from "../backends/mod.ts";
import {
  BENCH_PRECISIONS,
  type BenchPrecision,
  type CudaBenchConfig,
  type CudaBenchReport,
  cudaBenchTable,
  defaultCudaConfigs,
  runCudaBench,
} from "../bench/cuda.ts";
import { benchGeneration, generationTable } from "../bench/generation.ts";
import { timeMedian, timeSteps, trainFlopsPerToken } from "../bench/step.ts";
import { formatStepProfile, measureBandwidth, profileTrainingStep } from "../bench/op_profile.ts";
import { findTorchPython, runTorchPeer, torchPeerUnavailable } from "../bench/torch_peer.ts";
import { gptConfig } from "../model/gpt.ts";
import { Generator } from "../model/random.ts";
import { type FlagValues, numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task bench [flags]

  --peer torch        also time ../shared/bench/torch_gpt2_step.py (PyTorch: pip's or Debian's),
                      interleaved with ours, and print the ratios
  --configs LIST      which steps to time (default train:4x64,train:8x128,fwd:1x1024)
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
  --precisions LIST   cuda: which of fp32,tf32,bf16 to time (default all three)
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

/** The largest --configs batch: B*T*vocab logits beyond this exhaust a machine's memory. */
const MAX_BENCH_B = 1024;
/** GPT-2 124M's block size: the longest --configs sequence. */
const BENCH_BLOCK_SIZE = 1024;

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
  const configs = stringFlag(f, "configs", "train:4x64,train:8x128,fwd:1x1024").split(",").map(
    (s) => {
      const m = s.trim().match(/^(train|fwd):(\d+)x(\d+)$/);
      if (!m) {
        throw new Error(`--configs expects items like train:4x64 or fwd:1x1024, found "${s}"`);
      }
      const B = Number(m[2]), T = Number(m[3]);
      // a zero size divides by zero in the timing; GPT-2's context is its block size
      if (B < 1 || B > MAX_BENCH_B || T < 1 || T > BENCH_BLOCK_SIZE) {
        throw new Error(
          `--configs expects B from 1 to ${MAX_BENCH_B} and T from 1 to ${BENCH_BLOCK_SIZE} (GPT-2's block size), found "${s}"`,
        );
      }
      return { mode: m[1] as StepConfig["mode"], B, T };
    },
  );

  const only = stringFlag(f, "backend", "native");
  if (only !== "native" && only !== "webgpu" && only !== "cuda") {
    throw new Error(`--backend expects native, webgpu or cuda, found "${only}"`);
  }
  if (only === "cuda") {
    if (f.configs !== undefined && configs.some((c) => c.mode !== "train")) {
      throw new Error("--backend cuda times training steps: pass --configs train:BxT,...");
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

  const { backend } = await createBackend("native");
  console.log(`backend: ${backend.describe()}`);
  if (!backend.measurePeakGflops) {
    throw new Error(`Expected a backend that measures its peak, found ${backend.name}`);
  }
  const peak = backend.measurePeakGflops();
  console.log(`measured fp32 FMA peak: ${peak.toFixed(1)} GFLOP/s (all threads)`);
  const torchReason = peer ? await torchPeerUnavailable() : "not asked (--peer torch)";
  if (peer && torchReason) console.log(`PyTorch peer skipped: ${torchReason}`);
  const torch = peer && !torchReason ? await findTorchPython() : null;
  if (torch && typeof torch !== "string") {
    console.log(`PyTorch peer: torch ${torch.version} under ${torch.python}`);
  }

  if (!f["no-gemm"]) benchGemms(backend, peak);
  const rows = await benchSteps(backend, peak, configs, { warmup, iters, torchReason });
  console.log("\nGPT-2 124M (vocab 50304), median of the timed iterations");
  console.log(
    "| step | ours ms (min-max) | slowest / median | ours tok/s | PyTorch tok/s | ours / PyTorch | MFU | RSS GiB |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
  const profiled = configs.find((c) => c.mode === "train");
  if (profiled && !f["no-profile"]) await benchProfile(backend, profiled);
  console.log(
    `\nMFU: model FLOPs (6N + 12LCT per token for a training step, a third of it forward-only) over the measured peak ${
      peak.toFixed(1)
    } GFLOP/s`,
  );
  if (f.generation) {
    console.log(`\n${generationTable(await benchGeneration(backend, { tokens: 256 }))}`);
  }
  if (f.webgpu) await runWebGpuBench([]);
});

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

/** A step size to time: a training step or a forward pass at B x T. */
interface StepConfig {
  mode: "train" | "fwd";
  B: number;
  T: number;
}

/**
 * Times GPT-2 124M's steps at each size, PyTorch's interleaved unless `torchReason` says why
 * not; returns the table's rows.
 */
async function benchSteps(
  backend: Backend,
  peak: number,
  configs: StepConfig[],
  opts: { warmup: number; iters: number; torchReason: string | null },
): Promise<string[]> {
  const { warmup, iters } = opts;
  let torchReason = opts.torchReason;
  const config = gptConfig("gpt2", 50304);
  const rows: string[] = [];
  for (const c of configs) {
    const label = `${c.mode} B=${c.B} T=${c.T}`;
    console.log(`\n${label}: ours (native)`);
    const ours = await timeSteps(backend, config, {
      ...c,
      warmup,
      iters,
      onIter: (i, ms, w) => console.log(`  ${w ? "warmup" : "iter"} ${i}: ${ms.toFixed(0)} ms`),
    });
    const flops = c.mode === "train"
      ? trainFlopsPerToken(config, c.T)
      : trainFlopsPerToken(config, c.T) / 3;
    const mfu = (ours.tokensPerSec * flops) / 1e9 / peak;
    let torchCell = "-", ratio = "-";
    if (!torchReason) {
      console.log(`${label}: PyTorch`);
      try {
        const t = await runTorchPeer([
          c.mode,
          String(c.B),
          String(c.T),
          String(warmup),
          String(iters),
        ]);
        torchCell = t.tok_s_at_median.toFixed(1);
        ratio = `${(ours.tokensPerSec / t.tok_s_at_median).toFixed(2)}x`;
      } catch (e) {
        torchReason = (e as Error).message;
        console.log(`PyTorch peer failed: ${torchReason}`);
      }
    }
    const spread = `${ours.medianMs.toFixed(0)} (${ours.minMs.toFixed(0)}-${
      ours.maxMs.toFixed(0)
    })`;
    rows.push(
      `| ${label} | ${spread} | ${(ours.maxMs / ours.medianMs).toFixed(2)}x | ${
        ours.tokensPerSec.toFixed(1)
      } | ${torchCell} | ${ratio} | ${(100 * mfu).toFixed(0)}% | ${
        (ours.rss / 2 ** 30).toFixed(2)
      } |`,
    );
  }
  return rows;
}
