/**
 * Flag parsing for the tasks, on `node:util`'s `parseArgs` (JSR's @std/cli cannot be
 * fetched from these machines), with numbers checked and errors that name the flag.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { BACKEND_NAMES, createBackend } from "../backends/mod.ts";
import type { GPT } from "../model/gpt.ts";
import { loadWeights } from "../weights/resolve.ts";

/** What `--backend` takes, for the tasks' help texts. */
export const BACKEND_HELP: string = `${
  BACKEND_NAMES.join(", ")
} (default auto: the fastest one present)`;

/** Parsed flag values by name (a list for a flag declared `multiple`). */
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `args` strictly: an unknown flag or a missing value is an error naming it. A negative
 * number after a flag that takes a value (`--steps -1`) is that flag's value, so that its range
 * check names it, rather than `parseArgs`' "argument is ambiguous".
 */
export function parseFlags(args: string[], options: ParseArgsConfig["options"]): FlagValues {
  try {
    return parseArgs({
      args: joinNegativeValues(args, options ?? {}),
      options,
      strict: true,
      allowPositionals: false,
    }).values as FlagValues;
  } catch (e) {
    throw new Error(`${(e as Error).message} (see --help)`);
  }
}

/** `--name -1` as `--name=-1` (`-x -1` as `-x=-1`) where the flag takes a string. */
function joinNegativeValues(
  args: string[],
  options: NonNullable<ParseArgsConfig["options"]>,
): string[] {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== "string") continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(`-${o.short}`);
  }
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") return out.concat(args.slice(i));
    if (takesValue.has(args[i]) && /^-(\d|\.\d|Infinity\b)/.test(args[i + 1] ?? "")) {
      const long = args[i].startsWith("--") ? args[i] : `--${shortToLong(args[i], options)}`;
      out.push(`${long}=${args[++i]}`);
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

function shortToLong(short: string, options: NonNullable<ParseArgsConfig["options"]>): string {
  return Object.entries(options).find(([, o]) => `-${o.short}` === short)![0];
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
 * backend and loads the weights with the one loader (lib/weights), saying both on `log`.
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
