/**
 * The device check's command lines, each built in one place: the test files of the suites
 * step, the two training runs, the benchmark and the WebGPU suites, the steps' time budgets,
 * and the same command lines scaled down for a machine without a GPU (`rehearsalArgv`), which
 * `deno task device-check --rehearse` and tests/device_check/ run here so that a flag the
 * trainer or the bench rejects is caught before a GPU machine is spent on it.
 *
 * @module
 */

import { join } from "node:path";

/** The child Deno's flags: no type check (CI does it) and node_modules as carried. */
export const DENO_RUN: readonly string[] = [
  "run",
  "--allow-all",
  "--no-check",
  "--node-modules-dir=manual",
];
/** `deno test`'s flags, as DENO_RUN's. */
export const DENO_TEST: readonly string[] = [
  "test",
  "--allow-all",
  "--no-check",
  "--node-modules-dir=manual",
];

/** The steps, in the order they run. */
export const STEP_NAMES = ["env", "suites", "train", "bench", "webgpu"] as const;
/** A step's name, as `--only` takes it. */
export type StepName = (typeof STEP_NAMES)[number];

/**
 * Each step's most seconds. The check runs in two calls of the remote GPU runner, each at most 10
 * minutes including a machine's start (a few minutes) and Deno's unpacking: `--only
 * suites,train` and `--only bench` (env runs in both), each within `DEFAULT_MINUTES`. WebGPU
 * is a third call (`--only webgpu`).
 */
export const STEP_BUDGET_S: Readonly<Record<StepName, number>> = {
  env: 20,
  suites: 230,
  train: 130,
  bench: 300,
  webgpu: 150,
};

/**
 * The most files of OUTDIR the remote GPU runner brings back from a call (each at most 16 MiB, at
 * most two folders down, named in letters, digits, `.`, `_` and `-`): the check writes
 * `results.json`, `results.md`, one log per step and `bench.json` there, nothing else.
 */
export const OUT_FILE_LIMIT = 8;

/** The whole check's default time limit, minutes (one call of the remote GPU runner). */
export const DEFAULT_MINUTES = 6.5;

/** The calls the README documents: the steps of each (env always runs). */
export const DEVICE_CALLS: readonly (readonly StepName[])[] = [
  ["suites", "train"],
  ["bench"],
  ["webgpu"],
];

/**
 * The suites step's test files, each run in a process of its own (a sticky CUDA error ends a
 * process's context, and must not fail every file after it): those that need a GPU first,
 * then the nvcc build, which does not.
 */
export const SUITE_FILES: readonly string[] = [
  "tests/backends/cuda_test.ts",
  "tests/backends/cuda_kernels_test.ts",
  "tests/backends/cuda_attention_bf16_test.ts",
  "tests/backends/cuda_nccl_test.ts",
  "tests/backends/cuda_build_test.ts",
];

/** The WebGPU step's test files. */
export const WEBGPU_FILES: readonly string[] = [
  "tests/backends/webgpu_test.ts",
  "tests/backends/webgpu_reference_test.ts",
];

/** The training comparison's steps: GPT-2 124M on Tiny Shakespeare, B=4, T=256. */
export const TRAIN_STEPS = 20;

/** `deno test FILE` as the suites and WebGPU steps run it. */
export function testArgv(file: string): string[] {
  return [...DENO_TEST, file];
}

/** The log folder of the comparison's `precision` run, under `dir` (a scratch folder). */
export function trainLogDir(precision: "f32" | "bf16", dir: string): string {
  return join(dir, `train_${precision}`);
}

/**
 * One training run of the comparison: `precision` into its own log folder under `dir`,
 * replacing an earlier run there (`--overwrite`: a run again into the same folder trains
 * again instead of stopping at the trainer's guard).
 */
export function trainArgv(precision: "f32" | "bf16", dir: string): string[] {
  return [
    ...DENO_RUN,
    "lib/cli/train.ts",
    "--backend=cuda",
    "--model=gpt2",
    "-B",
    "4",
    "-T",
    "256",
    "--total-batch-size=1024",
    `--steps=${TRAIN_STEPS}`,
    "--eval-every=0",
    "--hellaswag=0",
    "--seed=1337",
    `--log-dir=${trainLogDir(precision, dir)}`,
    "--overwrite",
    `--precision=${precision}`,
  ];
}

/**
 * The benchmark: GPT-2 124M at B=16 and B=64, T=1024, in fp32, TF32 and bf16 (one model per
 * batch size), PyTorch eager beside every row and `torch.compile` at one row only (bf16 at
 * B=64: a compile takes about a minute), its numbers into `json`.
 */
export function benchArgv(json: string): string[] {
  return [
    ...DENO_RUN,
    "lib/cli/bench.ts",
    "--backend=cuda",
    "--peer=torch",
    "--torch-compile=bf16",
    "--torch-compile-batch=64",
    `--json=${json}`,
  ];
}

/** The training flags that name the model's size, with how many values each takes. */
const MODEL_FLAGS: Readonly<Record<string, number>> = {
  "--model": 1,
  "-B": 1,
  "-T": 1,
  "--total-batch-size": 1,
  "--steps": 1,
};

/** A one-layer GPT-2 with a 16-token context, as the tests train it (tests/support.ts). */
const TINY_MODEL = [
  "--n-layer",
  "1",
  "--n-embd",
  "16",
  "--n-head",
  "2",
  "--block-size",
  "32",
  "-B",
  "2",
  "-T",
  "16",
  "--total-batch-size=32",
];

/** Steps a rehearsal's training run takes (two: the loss must fall). */
export const REHEARSAL_TRAIN_STEPS = 2;

/**
 * `argv` scaled down for a machine without a GPU: a training run's model, batch and steps
 * replaced by a tiny model's two steps, and its `--backend=cuda` by `native` (kept with `cuda`:
 * the CUDA emulator's library runs it); every other
 * flag kept as it is, so that each one still meets the trainer's parser. The bench and the
 * test files keep their command line whole: without a GPU the bench must stop at the GPU
 * (after its flags were read), and the GPU suites skip themselves saying why.
 */
export function rehearsalArgv(
  argv: readonly string[],
  { cuda = false }: { cuda?: boolean } = {},
): string[] {
  if (!argv.includes("lib/cli/train.ts")) return [...argv];
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], name = a.split("=")[0];
    if (name in MODEL_FLAGS) {
      if (!a.includes("=")) i += MODEL_FLAGS[name];
      continue;
    }
    out.push(a === "--backend=cuda" && !cuda ? "--backend=native" : a);
    if (a === "lib/cli/train.ts") out.push(...TINY_MODEL, `--steps=${REHEARSAL_TRAIN_STEPS}`);
  }
  return out;
}

/**
 * The variables that point a rehearsal's CUDA commands at the CPU emulator's library
 * (tests/cuda_emulator/ffi.ts's, as JSON): the training runs at `REHEARSAL_CUDA_ENV`, the
 * bench on its null device at `REHEARSAL_CUDA_NULL_ENV`. Set by `--rehearse`, which builds the
 * library; absent, a rehearsal trains on native and stops the bench at the GPU.
 */
export const REHEARSAL_CUDA_ENV = "GPT2_REHEARSAL_CUDA_ENV";
/** See `REHEARSAL_CUDA_ENV`. */
export const REHEARSAL_CUDA_NULL_ENV = "GPT2_REHEARSAL_CUDA_NULL_ENV";

/**
 * The suites a rehearsal runs on the CUDA emulator's libraries (`REHEARSAL_CUDA_ENV`: the
 * driver, cuBLASLt and NCCL through the real FFI), as they run on a GPU: the one-rank NCCL
 * communicator and the CUDA fence. The other GPU suites skip themselves there (emulated, the
 * reference suite and the 124M check take far longer than the step; CI runs them on the
 * emulator).
 */
export const REHEARSAL_EMULATED_SUITES: readonly string[] = ["tests/backends/cuda_nccl_test.ts"];

/**
 * The variables a rehearsal runs suite `file` with: the emulator's (`emulator`, the JSON of
 * `REHEARSAL_CUDA_ENV`) for `REHEARSAL_EMULATED_SUITES`, none for the others.
 */
export function rehearsalSuiteEnv(
  file: string,
  emulator: Record<string, string> | null,
): Record<string, string> | undefined {
  return emulator && REHEARSAL_EMULATED_SUITES.includes(file) ? emulator : undefined;
}

/** What the bench prints, as its error, where no GPU is usable (its flags were read first). */
export const BENCH_NO_GPU = /--backend cuda needs a usable NVIDIA GPU/;
