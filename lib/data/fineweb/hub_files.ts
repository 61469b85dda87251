/**
 * FineWeb-EDU from the Hugging Face hub: `HuggingFaceFW/fineweb-edu`'s `sample/10BT` parquet
 * files listed through the hub's tree API, each downloaded into the cache when its turn comes.
 *
 * @module
 */

import { basename, join } from "node:path";
import { DownloadError, downloadFile } from "../../io/download.ts";
import { hubCacheDir, hubEndpoint, hubFileUrl } from "../../io/hub.ts";
import type { DocumentInput } from "./documents.ts";

/** The Hugging Face dataset build-nanogpt uses. */
export const FINEWEB_REPO = "HuggingFaceFW/fineweb-edu";
/** The folder of the 10B-token sample (`name="sample-10BT"` in `load_dataset`). */
export const FINEWEB_SAMPLE_DIR = "sample/10BT";
/** A file in a hub dataset, as the tree API lists it. */
export interface HubFile {
  path: string;
  size: number;
}

/**
 * The files under `dir` of the hub dataset `repo` at `revision`, from the hub's tree API
 * (`/api/datasets/{repo}/tree/{revision}/{dir}`), following its pagination; sorted by path.
 *
 * @throws {Error} when the hub cannot be reached or answers with an error.
 */
export async function listHubDatasetFiles(
  repo: string,
  dir: string,
  revision = "main",
): Promise<HubFile[]> {
  let url: string | undefined = `${hubEndpoint()}/api/datasets/${repo}/tree/${
    encodeURIComponent(revision)
  }/${dir}`;
  const files: HubFile[] = [];
  while (url !== undefined) {
    let response: Response;
    try {
      response = await fetch(url);
    } catch (error) {
      throw new Error(
        `Could not reach the Hugging Face hub at ${hubEndpoint()} to list ${repo}/${dir} ` +
          `(${(error as Error).message}); pass --input FILES to use local parquet or jsonl files`,
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(
        `The Hugging Face hub answered HTTP ${response.status} for ${url}; ` +
          `pass --input FILES to use local parquet or jsonl files`,
      );
    }
    const entries = await response.json() as { type: string; path: string; size?: number }[];
    for (const e of entries) {
      if (e.type === "file") files.push({ path: e.path, size: e.size ?? 0 });
    }
    url = response.headers.get("link")?.match(/<([^>]+)>;\s*rel="next"/)?.[1];
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Options for {@linkcode fetchFinewebFiles}. */
export interface FetchFinewebOptions {
  /** The hub dataset; {@linkcode FINEWEB_REPO} by default. */
  repo?: string;
  /** Its folder; {@linkcode FINEWEB_SAMPLE_DIR} by default. */
  dir?: string;
  /** Only the first `limit` files (for a quick try); all by default. */
  limit?: number;
  /** Show download progress; true by default. */
  progress?: boolean;
}

/**
 * The parquet files of FineWeb-EDU's `sample/10BT` as inputs: listed through the hub's API
 * now, each downloaded into `<cache>/datasets/<repo>/` (resuming, with a progress bar) when
 * its turn comes, and taken from there without a request once it is complete.
 */
export async function fetchFinewebFiles(
  options: FetchFinewebOptions = {},
): Promise<DocumentInput[]> {
  const repo = options.repo ?? FINEWEB_REPO;
  const dir = options.dir ?? FINEWEB_SAMPLE_DIR;
  let files = (await listHubDatasetFiles(repo, dir)).filter((f) => f.path.endsWith(".parquet"));
  if (files.length === 0) {
    throw new Error(`Expected parquet files in ${repo}/${dir} on the hub, found none`);
  }
  if (options.limit !== undefined) files = files.slice(0, options.limit);
  const cache = join(hubCacheDir(), "datasets", repo);
  return files.map((f) => ({
    name: `${repo}/${f.path}`,
    size: f.size || undefined, // the listing's 0 for a size it did not give
    async path(): Promise<string> {
      const dest = join(cache, f.path);
      const url = hubFileUrl(`datasets/${repo}`, f.path);
      try {
        await downloadFile(url, dest, { progress: options.progress, label: basename(f.path) });
      } catch (error) {
        if (!(error instanceof DownloadError)) throw error;
        throw new Error(
          `Could not download ${url} (${error.message}); pass --input FILES to use local files`,
          { cause: error },
        );
      }
      return dest;
    },
  }));
}
