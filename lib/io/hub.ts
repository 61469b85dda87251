/**
 * Hugging Face hub access: the URL of a file in a model repository, a local cache, and
 * `snapshotGpt2` that fetches the GPT-2 checkpoints (`config.json` and `model.safetensors`)
 * the way `GPT2LMHeadModel.from_pretrained("gpt2")` does in the lecture.
 *
 * Environment:
 * - `HF_ENDPOINT`: the hub's address, https://huggingface.co by default (as in huggingface_hub).
 * - `GPT2_CACHE_DIR`: where downloads go; else `$XDG_CACHE_HOME/gpt2-deno`, else
 *   `~/.cache/gpt2-deno`.
 *
 * @module
 */

import { join } from "node:path";
import { cacheDir } from "./cache.ts";
import { DownloadError, downloadFile } from "./download.ts";

/** The default hub address. */
export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";

/** The GPT-2 model types and their hub repositories (124M, 350M, 774M, 1558M parameters). */
export const GPT2_HUB_REPOS: Readonly<Record<string, string>> = {
  "gpt2": "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
};

/** The files a GPT-2 snapshot holds. */
export const GPT2_SNAPSHOT_FILES: readonly string[] = ["config.json", "model.safetensors"];

/** Options for {@linkcode snapshotGpt2}. */
export interface SnapshotOptions {
  /** A branch, tag or commit of the hub repository; `main` by default. */
  revision?: string;
  /** Show progress bars; true by default. */
  progress?: boolean;
  /** Retries per file after a network error or HTTP 5xx; 5 by default. */
  retries?: number;
}

/** The hub's address from `HF_ENDPOINT` (without a trailing slash), https://huggingface.co by default. */
export function hubEndpoint(): string {
  const endpoint = Deno.env.get("HF_ENDPOINT") || DEFAULT_HF_ENDPOINT;
  return endpoint.replace(/\/+$/, "");
}

/**
 * The download URL of `file` in the hub repository `repo` at `revision`, as huggingface_hub
 * builds it: `${endpoint}/${repo}/resolve/${revision}/${file}`.
 */
export function hubFileUrl(repo: string, file: string, revision = "main"): string {
  return `${hubEndpoint()}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`;
}

/** The download cache: the project's cache folder ({@linkcode cacheDir}). */
export function hubCacheDir(): string {
  return cacheDir();
}

/**
 * The hub repository of a GPT-2 model type: `"gpt2"` and `"openai-community/gpt2"` both give
 * `"openai-community/gpt2"`.
 *
 * @throws {Error} for anything but gpt2, gpt2-medium, gpt2-large, gpt2-xl (short or full).
 */
export function gpt2HubRepo(modelType: string): string {
  const short = modelType.startsWith("openai-community/")
    ? modelType.slice("openai-community/".length)
    : modelType;
  const repo = Object.hasOwn(GPT2_HUB_REPOS, short) ? GPT2_HUB_REPOS[short] : undefined;
  if (repo === undefined) {
    const valid = Object.keys(GPT2_HUB_REPOS).join(", ");
    throw new Error(`Expected a GPT-2 model type (${valid}), found ${JSON.stringify(modelType)}`);
  }
  return repo;
}

/**
 * Downloads `config.json` and `model.safetensors` of a GPT-2 model type ("gpt2",
 * "gpt2-medium", "gpt2-large", "gpt2-xl", or the same with "openai-community/") into
 * `<cache>/<repo>/` and returns that folder. Files already there are not fetched again, and a
 * cut-off download resumes.
 *
 * @throws {Error} for an unknown model type, and when the hub cannot be reached or answers
 * with an error; the message says a local folder with both files can be used instead.
 */
export async function snapshotGpt2(
  modelType: string,
  options: SnapshotOptions = {},
): Promise<string> {
  const repo = gpt2HubRepo(modelType);
  const revision = options.revision ?? "main";
  const folder = revision === "main"
    ? join(hubCacheDir(), repo)
    : join(hubCacheDir(), `${repo}@${revision.replaceAll("/", "_")}`);
  const localHint = "pass a local folder holding model.safetensors and config.json instead";
  for (const file of GPT2_SNAPSHOT_FILES) {
    const url = hubFileUrl(repo, file, revision);
    try {
      await downloadFile(url, join(folder, file), {
        progress: options.progress,
        retries: options.retries,
        label: `${repo}/${file}`,
      });
    } catch (error) {
      if (!(error instanceof DownloadError)) throw error;
      const what = error.status === undefined
        ? `Could not reach the Hugging Face hub at ${hubEndpoint()} to download ${url}`
        : `The Hugging Face hub answered HTTP ${error.status} for ${url}`;
      throw new Error(`${what} (${error.message}); ${localHint}`, { cause: error });
    }
  }
  return folder;
}
