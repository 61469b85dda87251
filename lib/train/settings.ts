/**
 * A training run's settings in one place: the hyperparameter table, the presets, and their
 * resolution with the flags into the values a run uses. Each row of the table says, once, a
 * setting's flag, its help text and how its value is read; the presets fill every row;
 * `deno task train` builds its flags, its `--help` (with each preset's default) and the
 * settings it prints at start from this table, and checkpoints record the same values.
 *
 * After the lecture, the speedrun's options (Muon, rotary, QK-norm, ReLU², zero-initialised
 * projections, an untied head) are rows too, each off in the lecture's presets and printed only
 * where on.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import type { Backend } from "../backend.ts";
import { trainsGpt2InMinutes } from "../backends/mod.ts";
import { REPO_ROOT, resolveTinyShakespeare } from "../data/datasets.ts";
import { GPT_CONFIGS, type GPTConfig, gptConfig } from "../model/gpt.ts";
import {
  MLP_ACTIVATIONS,
  type MlpActivation,
  POSITION_ENCODINGS,
  type PositionEncoding,
  speedrunConfigFields,
  type SpeedrunGPTConfig,
} from "../speedrun/config.ts";
import { resolveWeights, type WeightsSource } from "../weights/resolve.ts";
import { readCheckpointState, resolveResume } from "./checkpoint.ts";
import { checkInitFromResume, checkInitShape, initConfig } from "./init_from.ts";
import { type OptimizerName, OPTIMIZERS } from "./optim.ts";
import { parsePrecision, type Precision } from "./precision.ts";

/** The constants of a run, as a preset sets them and the flags override them. */
export interface Hyperparameters {
  /** A `GPT_CONFIGS` name, or "auto" (gpt2 where the backend trains it in minutes, else tiny). */
  model: string;
  /**
   * The weights to start from (lib/weights/resolve.ts: a GPT-2 model type from the hub, a
   * Hugging Face folder, a checkpoint's weights, an llm.c model file), which also give the
   * model's shape; null: GPT-2's random init.
   */
  initFrom: string | null;
  /** 50304: 50257 padded to a multiple of 128, "a nice number". */
  vocabSize: number;
  /** micro batch size */
  B: number;
  /** sequence length */
  T: number;
  /** Tokens per optimizer step; null means B * T * world size (no accumulation). */
  totalBatchSize: number | null;
  /** optimizer steps (build-nanogpt's max_steps, also the end of the cosine) */
  steps: number;
  maxLr: number;
  /**
   * build-nanogpt's max_lr * 0.1; equal to maxLr (with no warmup): a constant rate, nanoGPT's
   * decay_lr = False. `--max-lr` alone moves it to a tenth of the new peak, or with it where
   * the preset's rate is constant.
   */
  minLr: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  /** Evaluate (val loss, samples, HellaSwag) every this many steps and at the last (0: never). */
  evalEvery: number;
  /** Validation batches per evaluation (build-nanogpt's val_loss_steps). */
  valBatches: number;
  /** HellaSwag examples per evaluation: a count (0: off) or "all". */
  hellaswag: number | "all";
  /**
   * A text file (split 90% train / 10% val), a folder of `.npy` token shards, or
   * {@linkcode TINY_SHAKESPEARE}: the lecture's file, found in data/, the shared folder, or
   * downloaded.
   */
  data: string;
  /**
   * Shuffle the training data each epoch: the shards' order and the documents within each
   * shard, drawn from (seed, epoch) alike on every rank (lib/data/shuffle.ts). Off in the
   * lecture: build-nanogpt reads the same order every epoch, which a multi-epoch run shows as
   * a loss that repeats with the epoch.
   */
  shuffle: boolean;
  /** Checkpoint every this many steps (0: only at the end). */
  checkpointEvery: number;
  /** How many checkpoints to keep. */
  keepCheckpoints: number;
  /** The MLP's activation: GPT-2's GELU, or the speedrun's ReLU². */
  mlp: MlpActivation;
  /** RMS-normalise each head's queries and keys (the speedrun's QK-norm). */
  qkNorm: boolean;
  /** Position information: GPT-2's learned `wpe`, or rotary embeddings. */
  pos: PositionEncoding;
  /** The residual projections (`c_proj`) start at zero. */
  zeroInitProj: boolean;
  /** A separate `lm_head` weight, not tied to `wte`. */
  untieHead: boolean;
  /** The lecture's AdamW, or Muon for the blocks' 2-D weights with AdamW for the rest. */
  optimizer: OptimizerName;
  /** Muon's peak learning rate (with `optimizer` muon; the schedule's shape as maxLr's). */
  muonLr: number;
}

/** The settings a run uses: every row of the table concrete (the total batch size a number). */
export type Settings = Hyperparameters & { totalBatchSize: number };

/** The `data` value that names Tiny Shakespeare wherever it is found (lib/data/datasets.ts). */
export const TINY_SHAKESPEARE = "tinyshakespeare";

/** How a flag's text becomes a value. */
type ValueKind = "string" | "int" | "number" | "count-or-all" | "boolean";

/** One row of the table. */
export interface HyperparameterSpec {
  /** The flag, without its dashes. */
  flag: string;
  /** A one-letter alias (`-B`). */
  short?: string;
  /** The value's placeholder in the help text (`N`, `X`, `NAME`). */
  arg: string;
  /** What it is, for `--help`. */
  help: string;
  kind: ValueKind;
  /** The smallest value accepted. */
  min?: number;
  /**
   * What a null value means, in the help text and the printed settings; the flag given this
   * word gives null (`--init-from none`).
   */
  nullMeans?: string;
  /** The values accepted (a `string` row); any where absent. */
  choices?: readonly string[];
  /** The value that means "off": the settings print the row only where it differs. */
  off?: string | number | boolean;
  /** The row of which this one is a setting: printed only where that row is not off. */
  settingOf?: keyof Hyperparameters;
}

/** The table: a row for every field of {@linkcode Hyperparameters}, in printing order. */
export const HYPERPARAMETERS: Readonly<Record<keyof Hyperparameters, HyperparameterSpec>> = {
  model: {
    flag: "model",
    arg: "NAME",
    kind: "string",
    help: "gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny, or auto: gpt2 (124M) where the " +
      "backend trains it in minutes, tiny otherwise (with --init-from: its shape, which this " +
      "must match)",
  },
  initFrom: {
    flag: "init-from",
    arg: "SRC",
    kind: "string",
    nullMeans: "none",
    help: "fine-tune: start from the weights, and so the shape, of gpt2, gpt2-medium, " +
      "gpt2-large or gpt2-xl (the Hugging Face hub), a Hugging Face folder (a trained " +
      "log/model), a checkpoint folder (its weights only; --resume continues its AdamW and " +
      "data) or an llm.c .bin model file; none: GPT-2's random init",
  },
  vocabSize: {
    flag: "vocab-size",
    arg: "N",
    kind: "int",
    min: 50257,
    help: "50304 (50257 padded to a multiple of 128) or 50257; with --init-from, at least " +
      "the loaded vocabulary: equal keeps it, more pads wte (tied to lm_head) with zero rows",
  },
  B: { flag: "batch-size", short: "B", arg: "N", kind: "int", min: 1, help: "micro batch size" },
  T: { flag: "seq-len", short: "T", arg: "N", kind: "int", min: 1, help: "sequence length" },
  totalBatchSize: {
    flag: "total-batch-size",
    arg: "N",
    kind: "int",
    min: 1,
    nullMeans: "B*T*world",
    help: "tokens per step, a multiple of B*T*world (the rest: accumulation)",
  },
  steps: {
    flag: "steps",
    arg: "N",
    kind: "int",
    min: 0,
    help: "optimizer steps (max_steps, the end of the cosine); 0 saves the model as " +
      "initialized or loaded",
  },
  maxLr: { flag: "max-lr", arg: "X", kind: "number", min: 0, help: "peak learning rate" },
  minLr: {
    flag: "min-lr",
    arg: "X",
    kind: "number",
    min: 0,
    help: "final learning rate (with --max-lr alone: a tenth of it, or equal to it where " +
      "the preset's rate is constant); equal to --max-lr with --warmup-steps 0: a constant rate",
  },
  warmupSteps: { flag: "warmup-steps", arg: "N", kind: "int", min: 0, help: "linear warmup steps" },
  weightDecay: {
    flag: "weight-decay",
    arg: "X",
    kind: "number",
    min: 0,
    help: "AdamW weight decay on 2-D parameters",
  },
  seed: { flag: "seed", arg: "N", kind: "int", help: "init seed" },
  evalEvery: {
    flag: "eval-every",
    arg: "N",
    kind: "int",
    min: 0,
    help: "val loss, HellaSwag and samples every N steps and at the last (0: never)",
  },
  valBatches: {
    flag: "val-batches",
    arg: "N",
    kind: "int",
    min: 1,
    help: "batches per validation loss",
  },
  hellaswag: {
    flag: "hellaswag",
    arg: "N|all",
    kind: "count-or-all",
    help: "HellaSwag examples per evaluation (0: off)",
  },
  data: {
    flag: "data",
    arg: "PATH",
    kind: "string",
    help: `a text file (90% train, 10% val), a folder of .npy shards, or ${TINY_SHAKESPEARE}`,
  },
  shuffle: {
    flag: "shuffle",
    arg: "",
    kind: "boolean",
    off: false,
    help: "shuffle the training shards and the documents in each shard every epoch (seeded by " +
      "--seed; the lecture reads one order every epoch)",
  },
  checkpointEvery: {
    flag: "checkpoint-every",
    arg: "N",
    kind: "int",
    min: 0,
    help: "checkpoint every N steps and at the end (0: only at the end)",
  },
  keepCheckpoints: {
    flag: "keep-checkpoints",
    arg: "K",
    kind: "int",
    min: 1,
    help: "keep the newest K checkpoints",
  },
  mlp: {
    flag: "mlp",
    arg: "NAME",
    kind: "string",
    choices: MLP_ACTIVATIONS,
    off: "gelu",
    help: "the MLP's activation: gelu (GPT-2's) or relu2 (the speedrun's ReLU²)",
  },
  qkNorm: {
    flag: "qk-norm",
    arg: "",
    kind: "boolean",
    off: false,
    help: "RMS-normalise each head's queries and keys (the speedrun's QK-norm)",
  },
  pos: {
    flag: "pos",
    arg: "NAME",
    kind: "string",
    choices: POSITION_ENCODINGS,
    off: "learned",
    help: "position information: learned (GPT-2's wpe) or rotary (base 10000, on q and k)",
  },
  zeroInitProj: {
    flag: "zero-init-proj",
    arg: "",
    kind: "boolean",
    off: false,
    help: "the projections into the residual stream (c_proj) start at zero",
  },
  untieHead: {
    flag: "untie-head",
    arg: "",
    kind: "boolean",
    off: false,
    help: "a separate lm_head weight, not tied to wte",
  },
  optimizer: {
    flag: "optimizer",
    arg: "NAME",
    kind: "string",
    choices: OPTIMIZERS,
    off: "adamw",
    help: "adamw, or muon: Muon (Newton-Schulz, momentum 0.95 Nesterov) for the blocks' 2-D " +
      "weights, AdamW at --max-lr for the rest",
  },
  muonLr: {
    flag: "muon-lr",
    arg: "X",
    kind: "number",
    min: 0,
    settingOf: "optimizer",
    help: "Muon's peak learning rate (with --optimizer muon; warmup and cosine as --max-lr's)",
  },
};

/** The fields of {@linkcode Hyperparameters} in the table's order. */
export const HYPERPARAMETER_KEYS = Object.keys(HYPERPARAMETERS) as (keyof Hyperparameters)[];

/**
 * The value of `--flag raw` for the row `spec` (null for the row's `nullMeans` word), or an
 * error naming the flag and what it expects.
 */
export function parseHyperparameter(
  spec: HyperparameterSpec,
  raw: string,
): Hyperparameters[keyof Hyperparameters] {
  if (spec.nullMeans !== undefined && raw === spec.nullMeans) return null;
  if (spec.kind === "boolean") {
    throw new Error(`--${spec.flag} takes no value, found "${raw}"`);
  }
  if (spec.choices && !spec.choices.includes(raw)) {
    throw new Error(`--${spec.flag} expects one of ${spec.choices.join(", ")}, found "${raw}"`);
  }
  if (spec.kind === "string") return raw;
  if (spec.kind === "count-or-all" && raw === "all") return "all";
  const integer = spec.kind !== "number";
  const min = spec.min ?? (spec.kind === "count-or-all" ? 0 : -Infinity);
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) {
    throw new Error(
      `--${spec.flag} expects ${integer ? "an integer" : "a number"}${
        min > -Infinity ? ` >= ${min}` : ""
      }, found "${raw}"`,
    );
  }
  return n;
}

/** A value as the settings print it: null as what it means (`B*T*world`). */
export function formatHyperparameter(
  spec: HyperparameterSpec,
  value: Hyperparameters[keyof Hyperparameters],
): string {
  return value === null ? spec.nullMeans ?? "null" : String(value);
}

/** The settings a run uses, and why each that is not its preset's differs. */
export interface ResolvedHyperparameters {
  /** Every value concrete: no null left. */
  values: Settings;
  /** The fields that differ from the preset's, with why: `--steps; preset: 50`. */
  notes: Map<keyof Hyperparameters, string>;
}

/**
 * The preset's values with every flag of the table that `flags` holds applied (each checked by
 * {@linkcode parseHyperparameter}); a null totalBatchSize made B*T*world (no accumulation);
 * with `--max-lr` alone, minLr a tenth of it, as build-nanogpt sets min_lr, or equal to it
 * where the preset's minLr equals its maxLr (a constant rate stays constant).
 *
 * @throws {Error} for a flag's bad value, or a minLr above maxLr (naming where each came from).
 */
export function resolveHyperparameters(
  preset: Hyperparameters,
  flags: Readonly<Record<string, unknown>>,
  world: number,
): ResolvedHyperparameters {
  const values = { ...preset } as Settings;
  const writable = values as Record<keyof Hyperparameters, unknown>;
  const notes: ResolvedHyperparameters["notes"] = new Map();
  for (const key of HYPERPARAMETER_KEYS) {
    const spec = HYPERPARAMETERS[key], raw = flags[spec.flag];
    if (spec.kind === "boolean" && raw === true) writable[key] = true;
    else if (typeof raw === "string") writable[key] = parseHyperparameter(spec, raw);
    else continue;
    notes.set(key, `--${spec.flag}; preset: ${formatHyperparameter(spec, preset[key])}`);
  }
  if ((values.totalBatchSize as number | null) === null) {
    values.totalBatchSize = values.B * values.T * world;
    notes.set("totalBatchSize", `B*T*world = ${values.B}*${values.T}*${world}`);
  }
  if (notes.has("maxLr") && !notes.has("minLr")) {
    const constant = preset.minLr === preset.maxLr;
    values.minLr = constant ? values.maxLr : values.maxLr * 0.1;
    notes.set("minLr", constant ? "= max-lr: the preset's rate is constant" : "max-lr/10");
  }
  if (values.minLr > values.maxLr) {
    const from = (key: "minLr" | "maxLr") => notes.has(key) ? "" : " (the preset's)";
    throw new Error(
      `--min-lr ${values.minLr}${from("minLr")} is above --max-lr ${values.maxLr}${
        from("maxLr")
      }: the learning rate decays from --max-lr to --min-lr, so pass a --min-lr at most ${values.maxLr}`,
    );
  }
  // AdamW's decay multiplies each 2-D weight by 1 - lr * weight_decay every step: at 1 or
  // more the weights are zeroed or flipped in sign, and the loss becomes NaN a few steps on
  // (checked where --weight-decay is given: a huge --max-lr alone meets its own NaN stop)
  if (notes.has("weightDecay") && values.maxLr * values.weightDecay >= 1) {
    throw new Error(
      `--weight-decay ${values.weightDecay} with --max-lr ${values.maxLr}: AdamW multiplies the ` +
        `weights by 1 - lr * weight_decay = ${
          1 - values.maxLr * values.weightDecay
        } each step; expected a --weight-decay below ${1 / values.maxLr}`,
    );
  }
  if (values.steps > 0 && values.warmupSteps > values.steps) {
    // legal (a run to be resumed with more steps), but never what a finished run wants
    const why = `above --steps ${values.steps}: the rate never reaches --max-lr`;
    const note = notes.get("warmupSteps");
    notes.set("warmupSteps", note ? `${note}; ${why}` : why);
  }
  return { values, notes };
}

/**
 * The help lines of the table's flags, each with its default in every preset:
 * `--warmup-steps N  linear warmup steps [shakespeare: 10, gpt2-124M-fineweb: 715]`.
 */
export function hyperparameterHelp(presets: Readonly<Record<string, Hyperparameters>>): string {
  const lines: string[] = [];
  for (const key of HYPERPARAMETER_KEYS) {
    const spec = HYPERPARAMETERS[key];
    const name = `${spec.short ? `-${spec.short}, ` : ""}--${spec.flag}${
      spec.arg ? ` ${spec.arg}` : ""
    }`;
    const defaults = Object.entries(presets)
      .map(([preset, p]) => `${preset}: ${formatHyperparameter(spec, p[key])}`)
      .join(", ");
    lines.push(
      ...wrap(`${spec.help} [${defaults}]`, 74).map((text, i) =>
        `  ${(i === 0 ? name : "").padEnd(24)}${text}`
      ),
    );
  }
  return lines.join("\n");
}

/** `text` in lines of at most `width` characters, broken at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return [...lines, line];
}

/**
 * Hyperparameters one `key = value` a line, as a run prints them at start; a value that
 * differs from the preset's says why: `  steps = 30  (--steps; preset: 50)`.
 */
export function formatHyperparameters(
  values: Hyperparameters,
  notes: ReadonlyMap<keyof Hyperparameters, string> = new Map(),
): string {
  const isOn = (key: keyof Hyperparameters): boolean => {
    const { off, settingOf } = HYPERPARAMETERS[key];
    if (settingOf && !isOn(settingOf)) return false;
    return off === undefined || values[key] !== off;
  };
  const shown = HYPERPARAMETER_KEYS.filter(isOn);
  return shown.map((key) => {
    const line = `  ${key} = ${formatHyperparameter(HYPERPARAMETERS[key], values[key])}`;
    const note = notes.get(key);
    return note ? `${line}  (${note})` : line;
  }).join("\n");
}

// ---- the presets ----
//
// Training presets: the constants of a run as data, printed at start; every flag of
// `deno task train` overrides them.
//
// - `shakespeare` (the default): the lecture's section-1 run, quick on any backend.
// - `gpt2-124M-fineweb`: build-nanogpt's `train_gpt2.py` constants for GPT-2 (124M) on
//   FineWeb-EDU 10B (B=64, T=1024, 2**19 tokens per step, 19,073 steps).
// - `speedrun-shakespeare`: after the lecture, Keller Jordan's modded-nanogpt recipe (Muon,
//   rotary, QK-norm, ReLU², zero-initialised projections, an untied head) on the tiny model.
// - `shakespeare-finetune`: nanoGPT's `config/finetune_shakespeare.py` made small enough for a
//   CPU: OpenAI's GPT-2 (124M) fine-tuned on Tiny Shakespeare at a constant 3e-5.
//
// Every field but `description` is a row of the table above, which gives its flag, its help
// text and its printing.

/** The lecture's recipe: the speedrun's options all off (GPT-2 as OpenAI made it, AdamW). */
const LECTURE_RECIPE = {
  mlp: "gelu",
  qkNorm: false,
  pos: "learned",
  zeroInitProj: false,
  untieHead: false,
  optimizer: "adamw",
  muonLr: 0.02,
} as const satisfies Partial<Hyperparameters>;

/** The fields of the model's shape that a preset may set over its model's (`--block-size` ...). */
export type PresetShape = Partial<Pick<GPTConfig, "n_layer" | "n_head" | "n_embd" | "block_size">>;

/** A preset: what it reproduces, and a value for every hyperparameter of the table. */
export interface TrainPreset extends Hyperparameters {
  /** What the preset reproduces. */
  description: string;
  /**
   * The shape the preset sets over its model's, as the shape flags would (which override it):
   * GPT-3's 2,048 positions on GPT-2 124M's layers.
   */
  shape?: PresetShape;
}

/** The lecture's presets by name. */
export const PRESETS: Record<string, TrainPreset> = {
  "shakespeare": {
    description: "the lecture's section-1 run: from scratch on Tiny Shakespeare",
    model: "auto",
    initFrom: null, // GPT-2's random init
    vocabSize: 50304,
    B: 4,
    T: 64,
    totalBatchSize: null, // B * T * world: no accumulation
    steps: 50,
    maxLr: 6e-4,
    minLr: 6e-5, // max_lr * 0.1
    warmupSteps: 10,
    weightDecay: 0.1,
    seed: 1337,
    evalEvery: 25,
    valBatches: 5,
    hellaswag: 0,
    data: TINY_SHAKESPEARE,
    shuffle: false,
    checkpointEvery: 0, // at the end only: a 124M checkpoint with AdamW's moments is 1.5 GB
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
  "gpt2-124M-fineweb": {
    description: "build-nanogpt's GPT-2 (124M) run on FineWeb-EDU 10B",
    model: "gpt2",
    initFrom: null,
    vocabSize: 50304,
    B: 64, // micro batch size
    T: 1024, // sequence length
    totalBatchSize: 524288, // 2**19, ~0.5M, in number of tokens
    steps: 19073, // 10e9 tokens / 2**19 tokens per step
    maxLr: 6e-4,
    minLr: 6e-5, // max_lr * 0.1
    warmupSteps: 715, // 375e6 warmup tokens (GPT-3 paper) / 2**19
    weightDecay: 0.1,
    seed: 1337,
    evalEvery: 250,
    valBatches: 20,
    hellaswag: "all",
    data: "data/edu_fineweb10B", // made by deno task fineweb; relative to the repository
    shuffle: false, // build-nanogpt reads one order every epoch
    checkpointEvery: 5000,
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
  // The lecture's overnight run: the same recipe for four epochs of the 10B shards (40B
  // tokens), the cosine stretched to the end. The lecture saw the 10B run pass GPT-2 124M's
  // HellaSwag and this one come near GPT-3 124M's, and its training loss repeat with the
  // period of an epoch: the loader reads one order every epoch (--shuffle permutes it).
  "gpt2-124M-fineweb-40B": {
    description: "the lecture's overnight run: GPT-2 (124M) for four epochs of FineWeb-EDU 10B",
    model: "gpt2",
    initFrom: null,
    vocabSize: 50304,
    B: 64,
    T: 1024,
    totalBatchSize: 524288, // 2**19
    steps: 76292, // 4 * 19073: four passes over the 10B tokens
    maxLr: 6e-4,
    minLr: 6e-5,
    warmupSteps: 715,
    weightDecay: 0.1,
    seed: 1337,
    evalEvery: 250,
    valBatches: 20,
    hellaswag: "all",
    data: "data/edu_fineweb10B",
    shuffle: false, // as the lecture ran it; --shuffle removes the epoch-periodic loss
    checkpointEvery: 5000,
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
  // GPT-2 124M at GPT-3's context, the lecture's "T = 2048 to mimic GPT-3": wpe grows to 2,048
  // rows (a fresh init: OpenAI's checkpoint has 1,024), B halves so a step keeps 2**19 tokens,
  // and everything else is the 10B run's. That is GPT-3 Small's row of the GPT-3 paper (12
  // layers, 768 channels, 12 heads, 2,048 context, 0.5M-token batches, 6e-4), less its
  // batch-size ramp (notebook 03) and its alternating locally banded sparse attention.
  "gpt2-124M-fineweb-T2048": {
    description: "GPT-2 (124M) at GPT-3's sequence length, T = 2048 (wpe of 2,048 rows), on " +
      "FineWeb-EDU 10B",
    model: "gpt2",
    shape: { block_size: 2048 },
    initFrom: null,
    vocabSize: 50304,
    B: 32, // 32 * 2048 = 64 * 1024 tokens per micro batch
    T: 2048, // GPT-3's n_ctx
    totalBatchSize: 524288, // 2**19
    steps: 19073, // the same 10B tokens
    maxLr: 6e-4,
    minLr: 6e-5,
    warmupSteps: 715,
    weightDecay: 0.1,
    seed: 1337,
    evalEvery: 250,
    valBatches: 20, // 20 * 32 * 2048: the 10B run's validation tokens
    hellaswag: "all",
    data: "data/edu_fineweb10B",
    shuffle: false,
    checkpointEvery: 5000,
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
  // nanoGPT: init_from 'gpt2-xl', batch 1 x 32 accumulation x 1024 tokens, 20 iterations at a
  // constant 3e-5 (decay_lr False): 655,360 tokens, about two epochs. Here GPT-2 124M at the
  // shakespeare preset's CPU batch of 4 x 64: 300 steps are 76,800 tokens, a quarter epoch.
  "shakespeare-finetune": {
    description: "nanoGPT's finetune_shakespeare: OpenAI's GPT-2 (124M) fine-tuned on Tiny " +
      "Shakespeare at a constant learning rate",
    model: "gpt2", // the shape --init-from loads
    initFrom: "gpt2",
    vocabSize: 50304, // GPT-2's 50257 rows padded with zero rows
    B: 4,
    T: 64,
    totalBatchSize: null, // B * T * world: no accumulation
    steps: 300,
    maxLr: 3e-5,
    minLr: 3e-5, // = max_lr with no warmup: constant, nanoGPT's decay_lr = False
    warmupSteps: 0,
    weightDecay: 0.1, // nanoGPT's default
    seed: 1337,
    evalEvery: 25,
    valBatches: 10,
    hellaswag: 0,
    data: TINY_SHAKESPEARE,
    shuffle: false,
    checkpointEvery: 0, // at the end only: 1.5 GB with AdamW's moments
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
};

/**
 * The presets past the lecture, the speedrun's options on; kept apart from
 * {@linkcode PRESETS} so the lecture's help and tables stay the lecture's.
 */
export const AFTER_LECTURE_PRESETS: Record<string, TrainPreset> = {
  // After the lecture: modded-nanogpt's recipe (Muon, rotary, QK-norm, ReLU², zero-initialised
  // projections, an untied head) on the tiny model, small enough for a CPU
  "speedrun-shakespeare": {
    description: "after the lecture: the speedrun's recipe (Muon, rotary, QK-norm, ReLU²) " +
      "on the tiny model and Tiny Shakespeare",
    model: "tiny",
    initFrom: null,
    vocabSize: 50304,
    B: 8,
    T: 128,
    totalBatchSize: null, // B * T * world: no accumulation
    steps: 200,
    maxLr: 3e-3, // AdamW's: embeddings, the head, gains and biases
    minLr: 3e-4,
    warmupSteps: 10,
    weightDecay: 0, // the speedrun decays nothing
    seed: 1337,
    evalEvery: 50,
    valBatches: 5,
    hellaswag: 0,
    data: TINY_SHAKESPEARE,
    shuffle: false,
    checkpointEvery: 0,
    keepCheckpoints: 3,
    mlp: "relu2",
    qkNorm: true,
    pos: "rotary",
    zeroInitProj: true,
    untieHead: true,
    optimizer: "muon",
    muonLr: 0.02, // the speedrun's Muon rate
  },
};

/** The preset called `name`, or an error listing the names. */
export function getPreset(name: string): TrainPreset {
  const preset = PRESETS[name] ?? AFTER_LECTURE_PRESETS[name];
  if (!preset) {
    const names = [...Object.keys(PRESETS), ...Object.keys(AFTER_LECTURE_PRESETS)];
    throw new Error(`Unknown --preset "${name}", expected one of ${names.join(", ")}`);
  }
  return { ...preset };
}

/**
 * The preset as printed: its name and description, then one `key = value` a line, the shape it
 * sets over its model's last (`  block_size = 2048  (over gpt2's 1024)`).
 */
export function formatPreset(name: string, preset: TrainPreset): string {
  return `preset ${name}: ${preset.description}\n${formatHyperparameters(preset)}${
    formatPresetShape(preset)
  }`;
}

/** The lines of the shape a preset sets over its model's; empty where it sets none. */
export function formatPresetShape(preset: TrainPreset): string {
  const base = GPT_CONFIGS[preset.model] as GPTConfig | undefined;
  return Object.entries(preset.shape ?? {}).map(([key, value]) => {
    const over = base ? `  (over ${preset.model}'s ${base[key as keyof GPTConfig]})` : "";
    return `\n  ${key} = ${value}${over}`;
  }).join("");
}

// ---- resolution: the preset, the flags and the environment into the run's settings ----
//
// `deno task train` parses its flags and hands them here: the settings are resolved and
// checked once, in three steps that follow what each needs: the values (before anything
// loads), the weights that give the shape (`--init-from`, or a resumed fine-tuning run's
// checkpoint), and, once the backend is known, the model's config; then the data's path.

/** The flags of `deno task train` that are not rows of the table: what runs, where, how. */
export const RUN_FLAGS = {
  preset: { type: "string" },
  "n-layer": { type: "string" },
  "n-head": { type: "string" },
  "n-embd": { type: "string" },
  "block-size": { type: "string" },
  backend: { type: "string" },
  precision: { type: "string" },
  "hellaswag-data": { type: "string" },
  resume: { type: "string" },
  overwrite: { type: "boolean" },
  "log-dir": { type: "string" },
  timeout: { type: "string" },
  plot: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** A flag as `node:util`'s parseArgs declares it. */
export interface FlagOption {
  type: "string" | "boolean";
  short?: string;
}

/** parseArgs options of every flag of `deno task train`: the run's, then the table's rows. */
export function trainFlagOptions(): Record<string, FlagOption> {
  const rows = Object.values(HYPERPARAMETERS).map((spec): [string, FlagOption] => {
    const type = spec.kind === "boolean" ? "boolean" : "string";
    return [spec.flag, spec.short ? { type, short: spec.short } : { type }];
  });
  return { ...RUN_FLAGS, ...Object.fromEntries(rows) };
}

/** The flags as parsed: a value by flag name, without dashes. */
export type FlagValues = Readonly<Record<string, string | boolean | string[] | undefined>>;

/** The shape flags and the config fields they set. */
const SHAPE_FLAGS = [
  ["n-layer", "n_layer"],
  ["n-head", "n_head"],
  ["n-embd", "n_embd"],
  ["block-size", "block_size"],
] as const;

/** A config field that a shape flag sets. */
type ShapeField = (typeof SHAPE_FLAGS)[number][1];

/** The run as its flags, its preset and the environment decide it, before anything loads. */
export interface RunSettings {
  presetName: string;
  preset: TrainPreset;
  /** Every row of the table, concrete. */
  values: Settings;
  /** Why each value that is not its preset's differs (`--steps; preset: 50`). */
  notes: Map<keyof Hyperparameters, string>;
  /** `--n-layer`, `--n-head`, `--n-embd`, `--block-size` where given, over the preset's shape. */
  shape: Partial<Record<ShapeField, number>>;
  /** `--resume`: a checkpoint folder or "latest"; null for a fresh run. */
  resume: string | null;
  logDir: string;
  overwrite: boolean;
  /** `--backend`. */
  backend: string;
  /** `--precision` where given (checked); else the backend's default. */
  precision: Precision | null;
  /** `--hellaswag-data`. */
  hellaswagData: string | undefined;
  /** DDP: seconds a rendezvous or collective may wait (`--timeout`, `GPT2_DDP_TIMEOUT`). */
  timeoutS: number;
  /** DDP: how ranks exchange data (`GPT2_DDP_TRANSPORT`: tcp; else shared memory). */
  transport: "tcp" | "shm";
  /** `--plot`. */
  plot: boolean;
}

/**
 * The run's settings from its flags, the preset they name (shakespeare by default) and the
 * environment (`env`: `GPT2_DDP_TIMEOUT`, `GPT2_DDP_TRANSPORT`), for a group of `world`
 * processes; every value checked here, once.
 *
 * @throws {Error} naming the flag, for a bad value; a `--min-lr` above `--max-lr`; an
 * `--init-from` flag with `--resume`; an empty `--log-dir`.
 */
export function resolveSettings(
  flags: FlagValues,
  world: number,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): RunSettings {
  const text = (name: string): string | undefined => {
    const v = flags[name];
    return typeof v === "string" ? v : undefined;
  };
  const presetName = text("preset") ?? "shakespeare";
  const preset = getPreset(presetName);
  const { values, notes } = resolveHyperparameters(preset, flags, world);
  const resume = text("resume") ?? null;
  // a flag's --init-from with --resume is refused; a preset's is not loaded on resume
  if (notes.has("initFrom")) checkInitFromResume(values.initFrom, resume);
  const logDir = text("log-dir") ?? "log";
  if (logDir === "") throw new Error('--log-dir expects a folder, found ""');
  const precision = text("precision");
  const shape: RunSettings["shape"] = { ...preset.shape };
  for (const [flag, key] of SHAPE_FLAGS) {
    const raw = text(flag);
    if (raw !== undefined) shape[key] = number({ flag, kind: "int", min: 1 }, raw);
  }
  return {
    presetName,
    preset,
    values,
    notes,
    shape,
    resume,
    logDir,
    overwrite: flags.overwrite === true,
    backend: text("backend") ?? "auto",
    precision: precision === undefined ? null : parsePrecision(precision),
    hellaswagData: text("hellaswag-data"),
    timeoutS: text("timeout") === undefined
      ? Number(env("GPT2_DDP_TIMEOUT") ?? 300)
      : number({ flag: "timeout", kind: "number", min: 0.1 }, text("timeout")!),
    transport: env("GPT2_DDP_TRANSPORT") === "tcp" ? "tcp" : "shm",
    plot: flags.plot === true,
  };
}

/** `raw` read as a number flag that is not a row of the table. */
function number(spec: Pick<HyperparameterSpec, "flag" | "kind" | "min">, raw: string): number {
  return parseHyperparameter({ ...spec, arg: "N", help: "" }, raw) as number;
}

/** Where a run's shape comes from when not from `--model`; both null when it does. */
export interface StartingShape {
  /** What `--init-from` (the flag's or the preset's) loads, on a fresh run. */
  init: WeightsSource | null;
  /** A resumed fine-tuning run's config, from its checkpoint. */
  resumedShape: GPTConfig | null;
}

/**
 * The run's shape when weights give it: `--init-from`'s on a fresh run, or the checkpoint's
 * when `--resume` continues a fine-tuning run (the preset's `--init-from` is not loaded then).
 * The settings' model becomes that shape's name (`gpt2`, or `custom`); a `--model` that names
 * another shape than `--init-from`'s is an error, and on resume it is the shape asked for (a
 * checkpoint that does not match refuses the run).
 */
export async function startingShape(
  run: RunSettings,
  options: { progress: boolean },
): Promise<StartingShape> {
  const { values: h, notes, resume } = run;
  const init = resume === null && h.initFrom !== null
    ? await resolveWeights(h.initFrom, { flag: "--init-from", progress: options.progress })
    : null;
  let resumedShape = resume === null ? null : await fineTunedShape(resume, run.logDir, h.initFrom);
  const namedModel = notes.has("model") && h.model !== "auto"; // --model gpt2, say
  if (namedModel) {
    if (init) checkInitShape(init, gptConfig(h.model), `--model ${h.model}`);
    if (resumedShape) resumedShape = gptConfig(h.model, resumedShape.vocab_size);
    return { init, resumedShape };
  }
  const shape = init?.config ?? resumedShape;
  if (shape) {
    const name = shapeName(shape);
    if (name !== h.model) {
      notes.set("model", `the shape ${init ? "--init-from loads" : "resumed"}; preset: ${h.model}`);
    }
    h.model = name;
  }
  return { init, resumedShape };
}

/** The name of the GPT-2 size (or `tiny`) of `shape`'s layers, or `custom`. */
function shapeName(shape: GPTConfig): string {
  const same = (c: GPTConfig) => SHAPE_FLAGS.every(([, k]) => c[k] === shape[k]);
  return Object.keys(GPT_CONFIGS).find((n) => same(GPT_CONFIGS[n])) ?? "custom";
}

/**
 * When `--resume` continues a fine-tuning run (the preset has an `initFrom`, or the
 * checkpoint's settings record one), the checkpoint's config; else null (the run's shape
 * comes from `--model` as for any run).
 */
async function fineTunedShape(
  resume: string,
  logDir: string,
  initFrom: string | null,
): Promise<GPTConfig | null> {
  const state = await readCheckpointState(await resolveResume(resume, logDir), { files: [] });
  const fineTuned = initFrom !== null || typeof state.run.initFrom === "string";
  return fineTuned ? { ...state.config } : null;
}

/** The model a run trains: its name as reported, and its config. */
export interface RunModel {
  /** A `GPT_CONFIGS` name, `custom`, or the shape of the weights loaded. */
  name: string;
  config: GPTConfig;
}

/**
 * The run's model on `backend`: `model auto` made gpt2 where the backend trains it in minutes,
 * else tiny (saying which on `say`); the config from the weights being loaded, a resumed
 * fine-tuning run's checkpoint, or the named model, with the shape flags applied and the
 * speedrun's options of the settings.
 *
 * @throws {Error} for shape flags that disagree with the weights being loaded, an `--n-embd`
 * that `--n-head` does not divide, speedrun options that differ from the loaded weights', or
 * a `-T` above the block size.
 */
export function runModel(
  run: RunSettings,
  start: StartingShape,
  backend: Backend,
  say: (line: string) => void,
): RunModel {
  const { values: h, notes } = run;
  const { init, resumedShape } = start;
  let name = h.model;
  if (name === "auto" && !init && !resumedShape) {
    name = trainsGpt2InMinutes(backend) ? "gpt2" : "tiny";
    say(
      name === "gpt2"
        ? "model: gpt2 (124M)"
        : `model: tiny (${
          JSON.stringify(GPT_CONFIGS.tiny)
        }): GPT-2 124M takes over a minute per step on the ${backend.name} backend; --model gpt2 forces it`,
    );
  }
  const config = init ? initRunConfig(run, init) : resumedShape
    ? {
      ...resumedShape,
      ...run.shape,
      ...(notes.has("vocabSize") ? { vocab_size: h.vocabSize } : {}),
    }
    : namedConfig(run, name, say);
  withSpeedrunOptions(config, run, init !== null || resumedShape !== null);
  if (h.T > config.block_size) {
    throw new Error(`-T ${h.T} exceeds the model's block size ${config.block_size}`);
  }
  return { name, config };
}

/**
 * The config of a run from `init`: its shape with `--vocab-size` rows; `--n-layer`,
 * `--n-head`, `--n-embd`, `--block-size`, where given, must be that shape.
 */
function initRunConfig(run: RunSettings, init: WeightsSource): GPTConfig {
  const shape = { ...init.config, ...run.shape };
  // only the flags that disagree are named
  const differ = SHAPE_FLAGS.filter(([, key]) => shape[key] !== init.config[key]);
  if (differ.length) {
    checkInitShape(init, shape, differ.map(([flag, key]) => `--${flag} ${shape[key]}`).join(" "));
  }
  return initConfig(init, run.values.vocabSize);
}

/** The named model's config with `--n-layer`, `--n-head`, `--n-embd`, `--block-size` applied. */
function namedConfig(run: RunSettings, name: string, say: (line: string) => void): GPTConfig {
  const config = { ...gptConfig(name, run.values.vocabSize), ...run.shape };
  if (config.n_embd % config.n_head !== 0) {
    throw new Error(`--n-embd ${config.n_embd} must be divisible by --n-head ${config.n_head}`);
  }
  if (Object.keys(run.shape).length) say(`model shape overridden: ${JSON.stringify(config)}`);
  return config;
}

/**
 * The speedrun's architecture options of the settings put into `config` (only those on, so a
 * GPT-2's config stays as it was). Where weights give the shape (`fromWeights`: fine-tuning or
 * resuming one), the weights' options stand, and a flag asking for others is refused.
 */
function withSpeedrunOptions(
  config: SpeedrunGPTConfig,
  run: RunSettings,
  fromWeights: boolean,
): void {
  const h = run.values;
  const asked = speedrunConfigFields({
    mlp: h.mlp,
    qk_norm: h.qkNorm,
    pos: h.pos,
    zero_init_proj: h.zeroInitProj,
    untie_head: h.untieHead,
  });
  if (fromWeights) {
    const flagged = (["mlp", "qkNorm", "pos", "zeroInitProj", "untieHead"] as const)
      .filter((k) => run.notes.has(k));
    const have = JSON.stringify(speedrunConfigFields(config));
    if (flagged.length && JSON.stringify(asked) !== have) {
      throw new Error(
        `--${HYPERPARAMETERS[flagged[0]].flag} asks for ${JSON.stringify(asked)}, the weights ` +
          `being loaded have ${have}: their architecture options stand`,
      );
    }
    return;
  }
  Object.assign(config, asked);
}

/**
 * The run's data: a folder of shards as it is; Tiny Shakespeare found (data/, the shared
 * folder, or downloaded); a text file. A missing path is an error naming it, in the words of
 * the preset's kind of data (a text file, or FineWeb-EDU shards to make).
 */
export async function resolveData(run: RunSettings, master: boolean): Promise<string> {
  const data = run.values.data, presetData = run.preset.data;
  // the preset's relative folder is the repository's; a flag's is the working directory's
  const path = data === presetData && data !== TINY_SHAKESPEARE && !isAbsolute(data)
    ? join(REPO_ROOT, data)
    : data;
  const info = await Deno.stat(path).catch(() => null);
  if (info?.isDirectory) return path;
  if (data === TINY_SHAKESPEARE && !info?.isFile) {
    return await resolveTinyShakespeare(undefined, { quiet: !master });
  }
  if (presetData === TINY_SHAKESPEARE || info?.isFile) {
    return await resolveTinyShakespeare(path, { quiet: !master });
  }
  throw new Error(
    `Expected FineWeb-EDU shards in ${path} (--data DIR), found none: make them with deno task fineweb`,
  );
}
