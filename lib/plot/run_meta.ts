/**
 * What a run's `run.json` (beside its `log.txt`) records, read for the figure and the report:
 * which model trained on which data, so a title can say "tiny (7.3M) on Tiny Shakespeare" and a
 * baseline measured on FineWeb-EDU is flagged when the run's data is something else.
 *
 * Every field is optional: build-nanogpt's and llm.c's logs have no `run.json` at all, and one
 * written by hand (notebooks/runs/shakespeare_tiny/) may name its data only through the command.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { GPT_CONFIGS } from "../model/gpt.ts";
import { AFTER_LECTURE_PRESETS, PRESETS } from "../train/settings.ts";

/** The GPT-2 sizes with published baselines (lib/plot/figure.ts draws them). */
export type ModelSize = "124M" | "350M" | "774M" | "1558M";

/** The fields of `run.json` this module reads; any other field is left alone. */
export interface RunMeta {
  /** The command that ran, e.g. `deno task train --steps 200 --log-dir log`. */
  command?: string;
  /** The model's name: gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny. */
  model?: string;
  /** GPTConfig fields (n_layer, n_head, n_embd, block_size, vocab_size). */
  config?: Record<string, number>;
  /** The model's parameter count. */
  parameters?: number;
  /** The preset's name (lib/train/settings.ts). */
  preset?: string;
  /** The training data: a path or a name (`tinyshakespeare`, `data/edu_fineweb10B`). */
  data?: string;
  /** Another name for `data` (a checkpoint's settings call it so). */
  dataPath?: string;
  /** Training tokens per second. */
  tokensPerSec?: number;
  /** Model FLOPs per token. */
  flopsPerToken?: number;
  /** The hardware's peak FLOP/s. */
  peakFlops?: number;
  /** Model FLOPs utilisation, 0-1. */
  mfu?: number;
}

/** A run's model and data as a title names them; either may be unknown. */
export interface RunDescription {
  /** E.g. "GPT-2 124M" or "tiny (7.3M)". */
  model?: string;
  /** E.g. "Tiny Shakespeare" or "FineWeb-EDU 10B". */
  data?: string;
}

/** The `run.json` beside a log file (`log/log.txt` reads `log/run.json`). */
export function runMetaPath(logPath: string): string {
  return join(dirname(logPath), "run.json");
}

/**
 * The `run.json` beside a log file, or null where there is none (build-nanogpt's and llm.c's
 * logs).
 *
 * @throws {Error} naming the file when it is there but is not a JSON object.
 */
export async function readRunMeta(logPath: string): Promise<RunMeta | null> {
  const path = runMetaPath(logPath);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`Cannot read ${path}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`Expected JSON in ${path}, found text that does not parse (${e})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(
      `Expected a JSON object in ${path}, found ${JSON.stringify(text.slice(0, 40))}`,
    );
  }
  return value as RunMeta;
}

/** The preset `deno task train` runs when the command names none (lib/train/settings.ts). */
const DEFAULT_PRESET = "shakespeare";

/** What a `run.json` says about the model and data, as titles name them. */
export function describeRun(meta: RunMeta): RunDescription {
  const description: RunDescription = {};
  if (meta.model) description.model = modelTitle(meta.model, meta.parameters, meta.config);
  const data = runData(meta);
  if (data) description.data = dataTitle(data);
  return description;
}

/**
 * The run's data as recorded: `data` (or `dataPath`), else the preset's data, else the
 * `--data` or `--preset` of a `deno task train` command (no `--preset`: the default preset).
 */
export function runData(meta: RunMeta): string | undefined {
  const direct = meta.data ?? meta.dataPath;
  if (direct) return direct;
  const flag = (name: string): string | undefined =>
    meta.command ? new RegExp(`--${name}[= ](\\S+)`).exec(meta.command)?.[1] : undefined;
  const fromCommand = meta.command?.includes("deno task train") === true;
  if (fromCommand && flag("data")) return flag("data");
  const preset = meta.preset ?? (fromCommand ? flag("preset") ?? DEFAULT_PRESET : undefined);
  return preset === undefined
    ? undefined
    : (PRESETS[preset] ?? AFTER_LECTURE_PRESETS[preset])?.data;
}

const GPT2_SIZES: Record<string, ModelSize> = {
  gpt2: "124M",
  "gpt2-medium": "350M",
  "gpt2-large": "774M",
  "gpt2-xl": "1558M",
};

/**
 * The GPT-2 size a model is, by name and (when given) shape: null for `tiny` or a GPT-2 whose
 * shape was overridden (its baselines would not be its own).
 */
export function gpt2Size(model: string, config?: Record<string, number>): ModelSize | null {
  const size = GPT2_SIZES[model];
  if (size === undefined) return null;
  const shape = GPT_CONFIGS[model];
  const same = config === undefined ||
    (["n_layer", "n_head", "n_embd"] as const).every((k) =>
      config[k] === undefined || config[k] === shape[k]
    );
  return same ? size : null;
}

/** "GPT-2 124M" for GPT-2's sizes, else the name with its parameter count: "tiny (7.3M)". */
export function modelTitle(
  model: string,
  parameters?: number,
  config?: Record<string, number>,
): string {
  const size = gpt2Size(model, config);
  if (size !== null) return `GPT-2 ${size}`;
  return parameters ? `${model} (${formatCount(parameters)})` : model;
}

/** A parameter count the way model names say it: 7.3M, 124M, 1.6B, 850K. */
export function formatCount(n: number): string {
  const [div, unit] = n >= 1e9
    ? [1e9, "B"]
    : n >= 1e6
    ? [1e6, "M"]
    : n >= 1e3
    ? [1e3, "K"]
    : [1, ""];
  const v = n / div;
  return `${v >= 100 || unit === "" ? Math.round(v) : Number(v.toFixed(1))}${unit}`;
}

/**
 * A dataset's name from a path or name: "Tiny Shakespeare", "FineWeb-EDU 10B", "FineWeb", or
 * the file or folder name.
 */
export function dataTitle(data: string): string {
  const tokens = /(\d+[BMT])\b/i.exec(data)?.[1]?.toUpperCase();
  const withTokens = (name: string): string => (tokens ? `${name} ${tokens}` : name);
  if (/shakespeare/i.test(data)) return "Tiny Shakespeare";
  if (isFineWebEdu(data)) return withTokens("FineWeb-EDU");
  if (/fineweb/i.test(data)) return withTokens("FineWeb");
  return data.replace(/\/+$/, "").split("/").pop() || data;
}

/** Whether a dataset's path or name is FineWeb-EDU (build-nanogpt's `edu_fineweb10B`). */
export function isFineWebEdu(data: string): boolean {
  return /fineweb/i.test(data) && /edu/i.test(data);
}
