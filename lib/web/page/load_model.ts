/**
 * The page's model: `config.json` and `model.safetensors` fetched from the server, the
 * safetensors parsed in the page (`lib/io/safetensors.ts`) and loaded onto the backend by
 * `modelFromSafetensors` (lib/weights/folder.ts), the same mapping and checks a folder gets.
 *
 * @module
 */

import type { Backend } from "../../backend.ts";
import { parseSafetensors } from "../../io/safetensors.ts";
import type { GPT } from "../../model/gpt.ts";
import { modelFromSafetensors, parseModelConfig } from "../../weights/folder.ts";
import { fetchBytes, fetchJson, type FetchProgress } from "./fetch_progress.ts";

/** Where the server serves the model folder's two files. */
export const MODEL_URLS = {
  config: "model/config.json",
  weights: "model/model.safetensors",
} as const;

/** Options of {@linkcode loadModel}. */
export interface LoadModelOptions {
  /** The page's address, which the file URLs are relative to (default: `location.href`). */
  base?: string | URL;
  /** Progress of the weights' download. */
  onProgress?: (progress: FetchProgress) => void;
  /** Where a warning about non-finite weights goes (default `console.warn`). */
  warn?: (line: string) => void;
}

/**
 * Fetches the served model and loads it onto `backend`.
 *
 * @throws {Error} naming the URL, for a failed download, a bad config or safetensors file,
 * and tensors that do not fit the config.
 */
export async function loadModel(backend: Backend, options: LoadModelOptions = {}): Promise<GPT> {
  const base = options.base ?? globalThis.location?.href;
  const configUrl = new URL(MODEL_URLS.config, base).href;
  const weightsUrl = new URL(MODEL_URLS.weights, base).href;
  const config = parseModelConfig(await fetchJson(configUrl), configUrl);
  const bytes = await fetchBytes(weightsUrl, options.onProgress);
  const st = parseSafetensors(bytes, weightsUrl);
  return modelFromSafetensors(backend, config, st, weightsUrl, { warn: options.warn });
}
