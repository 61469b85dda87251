/**
 * Fine-tuning's starting point, `--init-from`: nanoGPT's `init_from='gpt2'`. What it names is
 * resolved first ({@linkcode resolveInitFrom}: a GPT-2 model type from the Hugging Face hub or
 * its cache, a Hugging Face folder such as a trained `log/model`, a checkpoint folder, an
 * llm.c `.bin` model file), giving the model's shape before anything is built; the run then
 * loads its weights ({@linkcode loadInitialModel}), and only its weights: a checkpoint's
 * AdamW moments and data position are what `--resume` continues from. The vocabulary is kept
 * as loaded or padded with zero rows (50257 -> 50304) that the model learns never to predict.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { GPT2_HUB_REPOS, snapshotGpt2 } from "../io/hub.ts";
import { readLlmcModel } from "../io/llmc.ts";
import { GPT, type GPTConfig, readHfConfig } from "../model/gpt.ts";
import { verifyCheckpointModel } from "./checkpoint.ts";
import { listNames, nonFiniteBuffers, trainingBuffers } from "./checkpoint.ts";
import type { EvalStats } from "./run_summary.ts";

/** The weights `--init-from` names, resolved: what they are, their shape, how to load them. */
export interface InitSource {
  /** As `--init-from` gave it (`gpt2`, `log/model`). */
  name: string;
  /** What it is, for messages: `a Hugging Face folder`, `a checkpoint folder (step 20)`. */
  kind: string;
  /** The shape as stored, its own vocabulary included. */
  config: GPTConfig;
  /** The model of `config` with the stored weights, on `backend`. */
  load(backend: Backend): Promise<GPT>;
}

const EXPECTED = "a Hugging Face folder (config.json and model.safetensors), a checkpoint " +
  `folder, an llm.c .bin model file or a GPT-2 model type (${
    Object.keys(GPT2_HUB_REPOS).join(", ")
  })`;

/**
 * Resolves `--init-from source`: a local folder or `.bin` file as it is; else a GPT-2 model
 * type, downloaded into the hub cache (lib/io/hub.ts) unless already there. A checkpoint's
 * model files are checked against its `state.json` here, before the run starts.
 *
 * @throws {Error} naming `--init-from` and the path, saying what was expected and found.
 */
export async function resolveInitFrom(
  source: string,
  options: { progress?: boolean } = {},
): Promise<InitSource> {
  const fail = (found: string): Error =>
    new Error(`--init-from ${source || '""'}: expected ${EXPECTED}, found ${found}`);
  if (source === "") throw fail("an empty name");
  const info = await Deno.stat(source).catch(() => null);
  try {
    if (info?.isDirectory) return await folderSource(source);
    if (info?.isFile) {
      if (!source.endsWith(".bin")) throw fail("a file that is not a .bin model file");
      return await llmcSource(source);
    }
    if (!Object.hasOwn(GPT2_HUB_REPOS, source)) throw fail("no such file or folder");
    const dir = await snapshotGpt2(source, { progress: options.progress });
    return { ...(await folderSource(dir)), name: source, kind: `${source} from the hub (${dir})` };
  } catch (e) {
    const message = (e as Error).message;
    if (message.startsWith("--init-from")) throw e;
    throw new Error(`--init-from ${source}: ${message}`, { cause: e });
  }
}

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

/** A Hugging Face folder, or a checkpoint folder (its model files verified). */
async function folderSource(dir: string): Promise<InitSource> {
  const missing: string[] = [];
  for (const file of ["config.json", "model.safetensors"]) {
    const info = await Deno.stat(`${dir}/${file}`).catch(() => null);
    if (!info?.isFile) missing.push(file);
  }
  if (missing.length) {
    throw new Error(
      `--init-from ${dir}: expected ${EXPECTED}, found a folder without ${missing.join(" and ")}`,
    );
  }
  const checkpoint = await verifyCheckpointModel(dir);
  return {
    name: dir,
    kind: checkpoint
      ? `a checkpoint folder (step ${checkpoint.step}, its model verified against its state.json)`
      : "a Hugging Face folder",
    config: await readHfConfig(`${dir}/config.json`),
    load: (backend) => GPT.fromPretrained(backend, dir, { warn: () => {} }),
  };
}

/** An llm.c model file, read once: its header gives the shape, its weights are kept. */
async function llmcSource(path: string): Promise<InitSource> {
  const { config, weights, dtype } = await readLlmcModel(path);
  return {
    name: path,
    kind: `an llm.c model file (${dtype})`,
    config: { ...config },
    load: (backend) => Promise.resolve(GPT.fromStateDict(backend, config, weights, path)),
  };
}

/**
 * The config a run started from `source` trains: its shape, with `vocabSize` rows.
 *
 * @throws {Error} for a `vocabSize` below the stored vocabulary (rows are added, never dropped).
 */
export function initConfig(source: InitSource, vocabSize: number): GPTConfig {
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
export function checkInitShape(source: InitSource, shape: GPTConfig, what: string): void {
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
  source: InitSource,
  config: GPTConfig,
  say: (line: string) => void,
): Promise<GPT> {
  checkInitShape(source, config, "the run's config");
  const loaded = await source.load(backend);
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
  return GPT.fromStateDict(backend, config, weights, source.name);
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
