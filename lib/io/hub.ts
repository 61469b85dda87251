/**
 * Hugging Face hub access: the URL of a file in a model repository, a local cache, and
 * `snapshotGpt2` that fetches the GPT-2 checkpoints (`config.json` and `model.safetensors`)
 * the way `GPT2LMHeadModel.from_pretrained("gpt2")` does in the lecture.
 *
 * Before a file is downloaded its metadata is asked for (a `HEAD` request, as huggingface_hub's
 * `get_hf_file_metadata`): the hub states an LFS file's size and SHA-256 in `X-Linked-Size`
 * and `X-Linked-ETag`, and any file's size in `Content-Length`. The download must match them,
 * and its content must read (a safetensors header, a JSON config) before it enters the cache.
 *
 * Environment:
 * - `HF_ENDPOINT`: the hub's address, https://huggingface.co by default (as in huggingface_hub).
 * - `GPT2_CACHE_DIR`: where downloads go; else `$XDG_CACHE_HOME/gpt2-deno`, else
 *   `~/.cache/gpt2-deno`.
 * - `GPT2_DOWNLOAD_STALL_S`: seconds without data before a request is dropped and retried (60).
 *
 * @module
 */

import { join } from "node:path";
import { cacheDir } from "./cache.ts";
import { DownloadError, downloadFile, type PublishedFile, stallTimeoutMs } from "./download.ts";
import { checkSafetensorsFile } from "./safetensors.ts";

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
  /** Retries per file after a network error, a stall or HTTP 5xx; 5 by default. */
  retries?: number;
  /** Wait before the first retry in milliseconds (doubled each time); 1000 by default. */
  retryDelayMs?: number;
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
 * What the hub states about the file at `url` (a `/resolve/` URL): its size and, for a file
 * in LFS (safetensors, parquet), its SHA-256. The hub answers a `HEAD` with a redirect to its
 * CDN that carries `X-Linked-Size` and `X-Linked-ETag` (the SHA-256); a file in git itself
 * answers 200 with `Content-Length`. Redirects within the hub (a renamed repository) are
 * followed. An answer without them, or none at all, states nothing: the download then makes
 * its own checks, and reports a hub that cannot be reached.
 */
export async function hubFileMetadata(
  url: string,
  options: { stallTimeoutS?: number } = {},
): Promise<PublishedFile> {
  const signal = AbortSignal.timeout(stallTimeoutMs(options.stallTimeoutS));
  let at = url;
  for (let hop = 0; hop < 5; hop++) {
    let response: Response;
    try {
      response = await fetch(at, {
        method: "HEAD",
        redirect: "manual",
        headers: { "Accept-Encoding": "identity" },
        signal,
      });
    } catch {
      return {};
    }
    await response.body?.cancel();
    const linkedSize = response.headers.get("x-linked-size");
    if (linkedSize !== null && /^\d+$/.test(linkedSize)) {
      const etag = (response.headers.get("x-linked-etag") ?? "").replace(/^W\//, "")
        .replaceAll('"', "").toLowerCase();
      return { size: Number(linkedSize), ...(/^[0-9a-f]{64}$/.test(etag) ? { sha256: etag } : {}) };
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location !== null) {
      at = new URL(location, at).href;
      continue;
    }
    const length = response.headers.get("content-length");
    if (response.ok && length !== null && /^\d+$/.test(length)) return { size: Number(length) };
    return {};
  }
  return {};
}

/** Checks that the file at `path` reads as JSON, as `config.json` must. */
async function checkJsonFile(path: string): Promise<void> {
  try {
    JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`${path}: expected JSON, ${(e as Error).message}`);
  }
}

/** The content check of a snapshot's file, by its name. */
function checkerOf(file: string): ((path: string) => Promise<void>) | undefined {
  if (file.endsWith(".safetensors")) return checkSafetensorsFile;
  if (file.endsWith(".json")) return checkJsonFile;
  return undefined;
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
        retryDelayMs: options.retryDelayMs,
        label: `${repo}/${file}`,
        expected: () => hubFileMetadata(url),
        verify: checkerOf(file),
      });
    } catch (error) {
      if (isOsError(error)) {
        throw new Error(
          `Cannot write ${file} into the cache folder ${folder} (GPT2_CACHE_DIR): ${
            (error as Error).message
          }`,
          { cause: error },
        );
      }
      if (!(error instanceof DownloadError)) throw error;
      const what = error.status !== undefined
        ? `The Hugging Face hub answered HTTP ${error.status} for ${url}`
        : error.message.startsWith("Could not reach")
        ? `Could not reach the Hugging Face hub at ${hubEndpoint()} to download ${url}`
        : `Could not download ${url} from the Hugging Face hub`;
      throw new Error(`${what} (${error.message}); ${localHint}`, { cause: error });
    }
  }
  return folder;
}

/** Whether `error` is one of Deno's OS errors (NotFound, PermissionDenied, ...). */
function isOsError(error: unknown): boolean {
  return Object.values(Deno.errors).some((OsError) => error instanceof OsError);
}
