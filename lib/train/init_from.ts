/**
 * Fine-tuning's starting point, `--init-from`: nanoGPT's `init_from='gpt2'`. What it names is
 * resolved by the one loader (lib/weights: `resolveWeights` with the flag `--init-from`), giving
 * the model's shape before anything is built; this module holds what training adds. The run
 * loads the weights ({@linkcode loadInitialModel}), and only the weights: a checkpoint's AdamW
 * moments and data position are what `--resume` continues from, so the two flags exclude each
 * other. Weights holding NaN or infinite values are refused (training would spread them), and
 * the vocabulary is kept as loaded or padded with zero rows (50257 -> 50304) that the model
 * learns never to predict.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import type { GPT, GPTConfig } from "../model/gpt.ts";
import type { SpeedrunGPTConfig } from "../speedrun/config.ts";
import { modelFromStateDict } from "../weights/folder.ts";
import type { WeightsSource } from "../weights/resolve.ts";
import { listNames, nonFiniteBuffers, trainingBuffers } from "./checkpoint.ts";
import type { EvalStats } from "./run_summary.ts";

/**
 * Refuses `--init-from` together with `--resume`: both give the weights to start from.
 *
 * @throws {Error} naming both flags and what each does, when both are given.
 */
export function checkInitFromResume(initFrom: string | null, resume: string | null): void {
  if (initFrom === null || resume === null) return;
  throw new Error(
    `--init-from ${initFrom} and --resume ${resume} both give the weights to start from: --resume continues a run (its weights, AdamW's moments, the data position), --init-from starts a new one from weights alone; pass one of them`,
  );
}

/**
 * The config a run started from `source` trains: its shape, with `vocabSize` rows.
 *
 * @throws {Error} for a `vocabSize` below the stored vocabulary (rows are added, never dropped).
 */
export function initConfig(source: WeightsSource, vocabSize: number): SpeedrunGPTConfig {
  const stored = source.config.vocab_size;
  if (vocabSize < stored) {
    throw new Error(
      `--vocab-size expects at least ${stored}, the vocabulary of --init-from ${source.name}, found ${vocabSize}: rows can be added (zero rows), not dropped`,
    );
  }
  return { ...source.config, vocab_size: vocabSize };
}

/** The shape's fields a run may not change: every field but the vocabulary. */
const SHAPE_FIELDS = ["n_layer", "n_head", "n_embd", "block_size"] as const;

/**
 * Checks that `shape`, as `what` asks for it (`--model gpt2-medium`), is the shape of
 * `source`; the vocabulary is not compared.
 *
 * @throws {Error} naming both and every field that differs.
 */
export function checkInitShape(source: WeightsSource, shape: GPTConfig, what: string): void {
  const differ = SHAPE_FIELDS.filter((k) => shape[k] !== source.config[k]);
  if (differ.length) {
    const list = (c: GPTConfig) => differ.map((k) => `${k} ${c[k]}`).join(", ");
    throw new Error(
      `${what} asks for ${list(shape)}, but --init-from ${source.name} holds ${
        list(source.config)
      }: the shape comes from the loaded weights; leave ${what} out`,
    );
  }
}

/**
 * The model a run starts from: `source`'s weights on `backend`, in `config` (its shape, with
 * at least its vocabulary: rows past it are zero, in wte and so in the tied lm_head, or in
 * both where the head is untied). Says
 * what was loaded and what was done to the vocabulary on `say`.
 *
 * @throws {Error} for a config of another shape, and for weights holding NaN or infinite
 * values (training from them would only spread them), naming the tensors.
 */
export async function loadInitialModel(
  backend: Backend,
  source: WeightsSource,
  config: SpeedrunGPTConfig,
  say: (line: string) => void,
): Promise<GPT> {
  checkInitShape(source, config, "the run's config");
  const loaded = await source.load(backend, { warn: () => {} }); // refused below instead
  const bad = await nonFiniteBuffers(trainingBuffers(loaded, null));
  if (bad.length) {
    throw new Error(
      `--init-from ${source.name} holds NaN or infinite values in ${
        listNames(bad)
      }: training from them would only spread them`,
    );
  }
  const stored = source.config.vocab_size;
  say(
    `init from ${source.name}, ${source.kind}: weights only, AdamW and the data start fresh; ${
      config.vocab_size === stored
        ? `vocabulary kept at ${stored} as loaded`
        : `vocabulary padded ${stored} -> ${config.vocab_size} with zero rows`
    }`,
  );
  if (config.vocab_size === stored) return loaded;
  const weights = new Map<string, Float32Array>();
  for (const [name, t] of await loaded.stateDict()) weights.set(name, t.data);
  // the tables with a row per token: wte, and an untied lm_head (the speedrun's) beside it
  for (const name of ["transformer.wte.weight", "lm_head.weight"]) {
    const rows = weights.get(name);
    if (!rows) continue;
    const padded = new Float32Array(config.vocab_size * config.n_embd); // zero past `stored`
    padded.set(rows);
    weights.set(name, padded);
  }
  return modelFromStateDict(backend, config, weights, source.name);
}

/**
 * The validation loss before fine-tuning (the first evaluation, at step 0: the loaded weights)
 * and after (the last one), as the run prints them at its end; null without evaluations.
 */
export function formatFineTuneLosses(source: string, evals: readonly EvalStats[]): string | null {
  const first = evals[0], last = evals.at(-1);
  if (!first || !last) return null;
  const before = `fine-tuning from ${source}: val loss ${
    first.valLoss.toFixed(4)
  } before (step ${first.step}${first.step === 0 ? ", the loaded weights" : ""})`;
  if (last === first) return `${before}; no later evaluation`;
  const change = last.valLoss - first.valLoss;
  return `${before}, ${last.valLoss.toFixed(4)} after (step ${last.step}, the last evaluation): ${
    change <= 0 ? "" : "+"
  }${change.toFixed(4)}`;
}
