/**
 * Flag parsing for the tasks, on `node:util`'s `parseArgs` (JSR's @std/cli cannot be
 * fetched from these machines), with numbers checked and errors that name the flag.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { BACKEND_NAMES, createBackend } from "../backends/mod.ts";
import type { Backend } from "../backend.ts";
import { countNonFinite, GPT, type NonFiniteTensor, nonFiniteWarning } from "../model/gpt.ts";
import { readLlmcModel } from "../io/llmc.ts";
import { MODEL_FILES, verifyCheckpointModel } from "../train/checkpoint.ts";

/** What `--backend` takes, for the tasks' help texts. */
export const BACKEND_HELP: string = `${
  BACKEND_NAMES.join(", ")
} (default auto: the fastest one present)`;

/** Parsed flag values by name (a list for a flag declared `multiple`). */
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Parses `args` strictly: an unknown flag or a missing value is an error naming it. */
export function parseFlags(args: string[], options: ParseArgsConfig["options"]): FlagValues {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as FlagValues;
  } catch (e) {
    throw new Error(`${(e as Error).message} (see --help)`);
  }
}

/**
 * A numeric flag: a finite number, or an integer with `integer`, within [`min`, `max`]. Out of
 * range (or not a number) is an error naming the flag and the range.
 */
export function numberFlag(
  values: FlagValues,
  name: string,
  fallback: number,
  { integer = false, min = -Infinity, max = Infinity }: {
    integer?: boolean;
    min?: number;
    max?: number;
  } = {},
): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (
    typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(n) ||
    (integer && !Number.isInteger(n)) || n < min || n > max
  ) {
    const kind = integer ? "an integer" : "a number";
    const range = max < Infinity ? ` in [${min}, ${max}]` : min > -Infinity ? ` >= ${min}` : "";
    throw new Error(`--${name} expects ${kind}${range}, found "${raw}"`);
  }
  return n;
}

/** A string flag with a default. */
export function stringFlag(values: FlagValues, name: string, fallback: string): string;
export function stringFlag(values: FlagValues, name: string): string | undefined;
export function stringFlag(
  values: FlagValues,
  name: string,
  fallback?: string,
): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : fallback;
}

/** A flag declared `multiple: true`: every value given, in order, or undefined. */
export function listFlag(values: FlagValues, name: string): string[] | undefined {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : undefined;
}

/** Runs a task's main, printing an error without a stack trace and exiting 1. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    if (Deno.env.get("GPT2_DEBUG")) console.error((e as Error).stack);
    Deno.exit(1);
  }
}

/**
 * The `--backend` and `--weights` flags of the tasks that run a trained model: makes the
 * backend and loads the weights with {@linkcode loadWeights}, saying both on `log`.
 */
export async function loadModelFromFlags(
  values: FlagValues,
  log: (message: string) => void,
): Promise<{ model: GPT; weights: string }> {
  const { backend, reason } = await createBackend(stringFlag(values, "backend", "auto"));
  log(`backend: ${backend.name} (${reason})`);
  const weights = stringFlag(values, "weights", "gpt2");
  return { model: await loadWeights(backend, weights, log), weights };
}

/**
 * Loads what `--weights` names onto `backend`: an llm.c model file (`gpt2_124M.bin`), a
 * Hugging Face folder, a training checkpoint's folder (whose model files are first checked
 * against its state.json) or a hub name; says what it loaded on `log`.
 */
export async function loadWeights(
  backend: Backend,
  weights: string,
  log: (message: string) => void,
): Promise<GPT> {
  let model: GPT, what = "";
  if (await isLlmcModelPath(weights)) {
    model = await loadLlmcModel(backend, weights);
    what = " (llm.c model file)";
  } else {
    // a training checkpoint's folder records its files' hashes: a damaged one is refused
    const checkpoint = await verifyCheckpointModel(weights);
    if (checkpoint) {
      log(
        `verified ${weights}: ${
          MODEL_FILES.join(" and ")
        } match its state.json (checkpoint of step ${checkpoint.step})`,
      );
    }
    model = await GPT.fromPretrained(backend, weights);
  }
  log(
    `loaded ${weights}${what}: ${model.numParameters().toLocaleString("en-US")} parameters, ${
      JSON.stringify(model.config)
    }`,
  );
  return model;
}

/**
 * Whether `--weights` names an llm.c model file: a path ending in `.bin` that is not a folder
 * (a missing one too, so that the error is about that file rather than about folders).
 */
async function isLlmcModelPath(path: string): Promise<boolean> {
  if (!path.endsWith(".bin")) return false;
  const info = await Deno.stat(path).catch(() => null);
  return !info?.isDirectory;
}

/**
 * A GPT-2 from an llm.c model file (fp32 or bf16, `readLlmcModel` of `lib/io/llmc.ts`): wte's
 * padding rows dropped, lm_head tied to it. Weights holding NaN or infinite values load with
 * the warning `GPT.fromPretrained` gives, on `warn` (stderr by default).
 *
 * @throws {Error} naming the file, for a file that is not an llm.c GPT-2 model file.
 */
export async function loadLlmcModel(
  backend: Backend,
  path: string,
  warn: (line: string) => void = console.warn,
): Promise<GPT> {
  const { config, weights } = await readLlmcModel(path);
  const model = GPT.fromStateDict(backend, config, weights, path);
  const nonFinite: NonFiniteTensor[] = [];
  for (const [name, data] of weights) {
    const count = countNonFinite(data);
    if (count > 0) nonFinite.push({ name, count, size: data.length });
  }
  if (nonFinite.length > 0) warn(nonFiniteWarning(path, nonFinite));
  return model;
}
