/**
 * Shared helpers of the test suites: where the repository and `../shared` are, the training
 * tests' small recipes, a runner for the `lib/cli/` tasks, and comparisons that say which
 * tensor and which element differ.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { strictEqual } from "node:assert/strict";
import { dirname, join } from "node:path";
import { CpuBackend } from "../lib/backends/cpu/mod.ts";
import { readSafetensors, type SafetensorsFile } from "../lib/io/safetensors.ts";
import { checkpointsDir, listCheckpoints } from "../lib/train/checkpoint.ts";
import type { TrainOptions } from "../lib/train/train.ts";

/** The repository's root folder, the working directory the tasks expect. */
export const repoRoot: string = join(dirname(fileURLToPath(import.meta.url)), "..");

/** `../shared/reference`, or `$GPT2_SHARED_REFERENCE`. */
export const referenceDir: string = Deno.env.get("GPT2_SHARED_REFERENCE") ??
  join(repoRoot, "..", "shared", "reference");

/** `../shared/data`, or `$GPT2_SHARED_DATA`. */
export const sharedDataDir: string = Deno.env.get("GPT2_SHARED_DATA") ??
  join(repoRoot, "..", "shared", "data");

/** Tiny Shakespeare in the shared data folder. */
export const shakespearePath: string = join(sharedDataDir, "tinyshakespeare", "input.txt");

/**
 * The training tests' recipe: a 1-layer GPT-2 (vocab 50304) on Tiny Shakespeare, reference
 * CPU backend, B=2, T=16, two micro-steps, four steps, no logs, evaluation or signals.
 */
export function smallRecipe(extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    backend: new CpuBackend(),
    config: { n_layer: 1, n_head: 2, n_embd: 16, block_size: 32, vocab_size: 50304 },
    dataPath: shakespearePath,
    B: 2,
    T: 16,
    totalBatchSize: 64, // two micro-steps
    steps: 4,
    maxLr: 1e-2,
    minLr: 1e-3,
    warmupSteps: 2,
    weightDecay: 0.1,
    seed: 1337,
    logDir: null,
    evalEvery: 0,
    handleSignals: false,
    ...extra,
  };
}

/**
 * {@linkcode smallRecipe} with the whole recipe on: six steps, evaluation, samples and a
 * checkpoint every three, logs in `logDir`.
 */
export function fullRecipe(logDir: string | null, extra: Partial<TrainOptions> = {}): TrainOptions {
  return smallRecipe({
    steps: 6,
    logDir,
    evalEvery: 3,
    valBatches: 2,
    checkpointEvery: 3,
    sampleLength: 10,
    ...extra,
  });
}

/** `lib/cli/train.ts` flags for {@linkcode smallRecipe}'s model and batch, no evaluation. */
export const smallModelFlags: readonly string[] = [
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
  "--eval-every",
  "0",
];

/** What a finished task printed, and its exit code. */
export interface TaskOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deno run --allow-all ARGS` (e.g. `["lib/cli/train.ts", "--help"]`) with `NO_COLOR=1`,
 * in the repository root unless `cwd` says otherwise, and waits for it to finish.
 */
export async function runTask(
  args: readonly string[],
  { cwd = repoRoot }: { cwd?: string } = {},
): Promise<TaskOutput> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...args],
    cwd,
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A loopback port nothing listens on now (for a rendezvous or a server the test starts). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

let reference: SafetensorsFile | null = null;

/** The PyTorch reference vectors (`reference.safetensors`), read once. */
export async function loadReference(): Promise<SafetensorsFile> {
  reference ??= await readSafetensors(join(referenceDir, "reference.safetensors"));
  return reference;
}

/**
 * Asserts |a - e| <= atol + rtol * |e| elementwise, naming the worst element on failure.
 */
export function assertClose(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { rtol = 1e-5, atol = 1e-6 }: { rtol?: number; atol?: number } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${name}: expected ${expected.length} values, found ${actual.length}`);
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${name}: element ${worst} is ${actual[worst]}, expected ${
        expected[worst]
      } (rtol ${rtol}, atol ${atol})`,
    );
  }
}

/**
 * Asserts two float32 arrays are equal bit for bit (NaN included), naming the first element
 * that differs (node's deepStrictEqual would spend minutes diffing a million elements).
 */
export function assertSameBits(name: string, actual: Float32Array, expected: Float32Array): void {
  strictEqual(actual.length, expected.length, `${name}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      throw new Error(`${name}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** The checkpoints of a run's log folder, oldest first. */
export async function runCheckpoints(logDir: string): Promise<{ step: number; path: string }[]> {
  return await listCheckpoints(checkpointsDir(logDir));
}

/** Whether a C++ compiler is here ($CXX, else c++), for the CUDA emulator's tests. */
export async function hasCxx(): Promise<boolean> {
  try {
    const cxx = Deno.env.get("CXX") ?? "c++";
    return (await new Deno.Command(cxx, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}
