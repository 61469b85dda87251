/**
 * Hugging Face folders of either model: the lecture's GPT-2 (lib/model/pretrained.ts) or, where
 * `config.json` records the speedrun's options (lib/speedrun/config.ts), the speedrun's. A
 * config builds its own architecture here (`createGPT`), so a checkpoint, a trained `log/model`
 * and the page of `deno task serve` all reload what was saved.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { readSafetensors, type SafetensorsFile } from "../io/safetensors.ts";
import type { GPT } from "../model/gpt.ts";
import {
  configFields,
  type FromPretrainedOptions,
  loadSafetensors,
  parseHfConfig,
  readConfigJson,
  savePretrained,
} from "../model/pretrained.ts";
import {
  readSpeedrunConfig,
  speedrunConfigFields,
  type SpeedrunGPTConfig,
} from "../speedrun/config.ts";
import { createGPT, SpeedrunGPT } from "../speedrun/model.ts";

/**
 * A parsed `config.json` (`path` names it in errors): GPT-2's sizes and the speedrun's options
 * it records (absent ones are off).
 *
 * @throws {Error} naming `path` and the field, for a config `parseHfConfig` refuses or an
 * option of the wrong kind.
 */
export function parseModelConfig(raw: unknown, path: string): SpeedrunGPTConfig {
  return { ...parseHfConfig(raw, path), ...readSpeedrunConfig(configFields(raw, path), path) };
}

/**
 * Reads a `config.json` with {@linkcode parseModelConfig}.
 *
 * @throws {Error} naming the file when it cannot be read, and as `parseModelConfig`.
 */
export async function readModelConfig(path: string): Promise<SpeedrunGPTConfig> {
  return parseModelConfig(await readConfigJson(path), path);
}

/**
 * The model of `config` (GPT-2's or the speedrun's) holding the tensors of a parsed Hugging
 * Face `model.safetensors`; `file` names it in errors and in the warning about non-finite
 * weights.
 *
 * @throws {Error} for tensors that do not fit the model.
 */
export function modelFromSafetensors(
  backend: Backend,
  config: SpeedrunGPTConfig,
  st: SafetensorsFile,
  file: string,
  options: FromPretrainedOptions = {},
): GPT {
  return loadSafetensors(createGPT(backend, config, { skipInit: true }), st, file, options);
}

/**
 * The model of a Hugging Face folder (`config.json` + `model.safetensors`), its architecture
 * as `config.json` records it. Nothing is resolved or verified: `resolveWeights` does that.
 *
 * @throws {Error} for a bad `config.json` and tensors that do not fit the model.
 */
export async function loadModelFolder(
  backend: Backend,
  dir: string,
  options: FromPretrainedOptions = {},
): Promise<GPT> {
  const config = await readModelConfig(`${dir}/config.json`);
  const file = `${dir}/model.safetensors`;
  return modelFromSafetensors(backend, config, await readSafetensors(file), file, options);
}

/**
 * The model of `config` holding `weights` by our names (`transformer.h.0...`), every name and
 * shape checked (`GPT.loadStateDict`); `source` names them in errors.
 */
export function modelFromStateDict(
  backend: Backend,
  config: SpeedrunGPTConfig,
  weights: Map<string, Float32Array>,
  source: string,
): GPT {
  const model = createGPT(backend, config, { skipInit: true });
  model.loadStateDict(weights, source);
  return model;
}

/**
 * Saves `model` as a Hugging Face folder (`savePretrained`), its `config.json` recording the
 * speedrun's options that are on, so the folder reloads as the same architecture.
 */
export async function saveModelFolder(model: GPT, dir: string): Promise<void> {
  const configFields = model instanceof SpeedrunGPT ? speedrunConfigFields(model.config) : {};
  await savePretrained(model, dir, { configFields: { ...configFields } });
}
