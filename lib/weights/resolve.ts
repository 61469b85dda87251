/**
 * The one loader of weights, behind every flag that takes them (`--weights` of sample, export,
 * hellaswag and serve; `--init-from` of train) and the notebooks. What the flag names is
 * resolved first ({@linkcode resolveWeights}): a GPT-2 model type from the Hugging Face hub or
 * its cache (`gpt2`, `gpt2-medium`, ...), a Hugging Face folder (a trained `log/model`), a
 * training checkpoint's folder (its model files verified against its `state.json`), or an llm.c
 * `.bin` model file. That gives the model's shape and architecture before anything is built;
 * `load` then builds it on a backend. Every refusal names the flag and the path, and says what
 * was expected and what was found.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { GPT2_HUB_REPOS, snapshotGpt2 } from "../io/hub.ts";
import { readLlmcModel } from "../io/llmc.ts";
import type { GPT } from "../model/gpt.ts";
import {
  countNonFinite,
  type FromPretrainedOptions,
  type NonFiniteTensor,
  nonFiniteWarning,
} from "../model/pretrained.ts";
import type { SpeedrunGPTConfig } from "../speedrun/config.ts";
import { MODEL_FILES, verifyCheckpointModel } from "./checkpoint_files.ts";
import { loadModelFolder, modelFromStateDict, readModelConfig } from "./folder.ts";

/** What the flags that take weights accept, as their refusals say it. */
export const WEIGHTS_EXPECTED: string =
  "a Hugging Face folder (config.json and model.safetensors), a checkpoint folder, an llm.c " +
  `.bin model file or a GPT-2 model type (${Object.keys(GPT2_HUB_REPOS).join(", ")})`;

/** Weights a flag names, resolved: what they are, their shape, and how to load them. */
export interface WeightsSource {
  /** As the flag gave it (`gpt2`, `log/model`). */
  name: string;
  /** What it is, for messages: `a Hugging Face folder`, `a checkpoint folder (step 20, ...)`. */
  kind: string;
  /** The Hugging Face folder holding them (a hub name's cache folder); null for a `.bin` file. */
  dir: string | null;
  /** The step of a checkpoint folder (its model files verified); null for anything else. */
  checkpointStep: number | null;
  /** The shape and architecture as stored, its own vocabulary included. */
  config: SpeedrunGPTConfig;
  /**
   * The model of `config` with the stored weights, on `backend`. Weights holding NaN or
   * infinite values load, with a warning naming them on `options.warn` (stderr by default).
   */
  load(backend: Backend, options?: FromPretrainedOptions): Promise<GPT>;
}

/** Options of {@linkcode resolveWeights}. */
export interface ResolveWeightsOptions {
  /** The flag that named the weights, for messages; default `--weights`. */
  flag?: string;
  /** Show a hub download's progress bar (default true). */
  progress?: boolean;
  /** Said after "found no such file or folder" (how to make the missing folder). */
  missingHint?: string;
}

/**
 * Resolves `source`: a local folder or `.bin` file as it is; else a GPT-2 model type,
 * downloaded into the hub cache (lib/io/hub.ts) unless already there. A checkpoint's model
 * files are checked against its `state.json` here, before anything is loaded.
 *
 * @throws {Error} naming the flag and the path, saying what was expected and what was found.
 */
export async function resolveWeights(
  source: string,
  options: ResolveWeightsOptions = {},
): Promise<WeightsSource> {
  const flag = options.flag ?? "--weights";
  const fail = (found: string): Error =>
    new Error(`${flag} ${source || '""'}: expected ${WEIGHTS_EXPECTED}, found ${found}`);
  if (source === "") throw fail("an empty name");
  const info = await Deno.stat(source).catch(() => null);
  try {
    if (info?.isDirectory) return await folderSource(source, source, fail);
    if (info?.isFile) {
      if (!source.endsWith(".bin")) throw fail("a file that is not a .bin model file");
      return await llmcSource(source);
    }
    if (!Object.hasOwn(GPT2_HUB_REPOS, source)) {
      throw fail(`no such file or folder${options.missingHint ?? ""}`);
    }
    const dir = await snapshotGpt2(source, { progress: options.progress });
    return { ...(await folderSource(source, dir, fail)), kind: `${source} from the hub (${dir})` };
  } catch (e) {
    const message = (e as Error).message;
    if (message.startsWith(`${flag} `)) throw e;
    throw new Error(`${flag} ${source}: ${message}`, { cause: e });
  }
}

/**
 * Resolves and loads what `--weights` names onto `backend`, saying on `log` what it verified
 * and loaded.
 *
 * @throws {Error} as {@linkcode resolveWeights}, and for weights that do not fit their config.
 */
export async function loadWeights(
  backend: Backend,
  weights: string,
  log: (message: string) => void,
): Promise<GPT> {
  const source = await resolveWeights(weights);
  if (source.checkpointStep !== null) {
    log(
      `verified ${weights}: ${
        MODEL_FILES.join(" and ")
      } match its state.json (checkpoint of step ${source.checkpointStep})`,
    );
  }
  const model = await source.load(backend);
  log(
    `loaded ${weights}, ${source.kind}: ${
      model.numParameters().toLocaleString("en-US")
    } parameters, ${JSON.stringify(model.config)}`,
  );
  return model;
}

/** A Hugging Face folder, or a checkpoint folder (its model files verified). */
async function folderSource(
  name: string,
  dir: string,
  fail: (found: string) => Error,
): Promise<WeightsSource> {
  const missing: string[] = [];
  for (const file of ["config.json", "model.safetensors"]) {
    const info = await Deno.stat(`${dir}/${file}`).catch(() => null);
    if (!info?.isFile) missing.push(file);
  }
  if (missing.length) throw fail(`a folder without ${missing.join(" and ")}`);
  const checkpoint = await verifyCheckpointModel(dir);
  return {
    name,
    kind: checkpoint
      ? `a checkpoint folder (step ${checkpoint.step}, its model verified against its state.json)`
      : "a Hugging Face folder",
    dir,
    checkpointStep: checkpoint?.step ?? null,
    config: await readModelConfig(`${dir}/config.json`),
    load: (backend, options) => loadModelFolder(backend, dir, options),
  };
}

/**
 * An llm.c model file (fp32 or bf16), read once: its header gives the shape, its weights are
 * kept (wte's padding rows dropped, lm_head tied to it).
 */
async function llmcSource(path: string): Promise<WeightsSource> {
  const { config, weights, dtype } = await readLlmcModel(path);
  return {
    name: path,
    kind: `an llm.c model file (${dtype})`,
    dir: null,
    checkpointStep: null,
    config: { ...config },
    load: (backend, options = {}) => {
      const model = modelFromStateDict(backend, config, weights, path);
      const nonFinite: NonFiniteTensor[] = [];
      for (const [name, data] of weights) {
        const count = countNonFinite(data);
        if (count > 0) nonFinite.push({ name, count, size: data.length });
      }
      if (nonFinite.length > 0) (options.warn ?? console.warn)(nonFiniteWarning(path, nonFinite));
      return Promise.resolve(model);
    },
  };
}
