/**
 * FineWeb-EDU from the Hugging Face hub: `HuggingFaceFW/fineweb-edu`'s `sample/10BT` parquet
 * files listed through the hub's tree API, each downloaded into the cache when its turn comes.
 * The listing states each file's size and SHA-256 (its LFS object id): a download must match
 * both, and read as parquet, before it enters the cache.
 *
 * @module
 */

import { basename, join } from "node:path";
import { DownloadError, downloadFile, stallTimeoutMs } from "../../io/download.ts";
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
  /** The SHA-256 of a file in LFS (its `lfs.oid`), 64 hex digits. */
  sha256?: string;
}

/** One entry of the tree API's answer. */
interface TreeEntry {
  type: string;
  path: string;
  size?: number;
  lfs?: { oid?: string; size?: number };
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
    let entries: TreeEntry[];
    // a page is small: the whole request gets the stall timeout, so a silent hub is an error
    const stallMs = stallTimeoutMs();
    const signal = AbortSignal.timeout(stallMs);
    try {
      response = await fetch(url, { signal });
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(
          `The Hugging Face hub answered HTTP ${response.status} for ${url}; ` +
            `pass --input FILES to use local parquet or jsonl files`,
        );
      }
      entries = await response.json() as TreeEntry[];
    } catch (error) {
      if ((error as Error).message.startsWith("The Hugging Face hub answered")) throw error;
      const why = signal.aborted
        ? `no answer for ${stallMs / 1000} s (GPT2_DOWNLOAD_STALL_S)`
        : (error as Error).message;
      throw new Error(
        `Could not reach the Hugging Face hub at ${hubEndpoint()} to list ${repo}/${dir} ` +
          `(${why}); pass --input FILES to use local parquet or jsonl files`,
      );
    }
    if (!Array.isArray(entries)) {
      throw new Error(`Expected a list of files from ${url}, found ${typeof entries}`);
    }
    for (const e of entries) {
      if (e.type !== "file") continue;
      const oid = e.lfs?.oid?.toLowerCase();
      files.push({
        path: e.path,
        size: e.size ?? 0,
        ...(oid !== undefined && /^[0-9a-f]{64}$/.test(oid) ? { sha256: oid } : {}),
      });
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
        await downloadFile(url, dest, {
          progress: options.progress,
          label: basename(f.path),
          // the listing's 0 is a size it did not give
          expected: () => Promise.resolve({ size: f.size || undefined, sha256: f.sha256 }),
          verify: checkParquetFile,
        });
      } catch (error) {
        if (Object.values(Deno.errors).some((OsError) => error instanceof OsError)) {
          throw new Error(
            `Cannot write ${f.path} into the cache folder ${cache} (GPT2_CACHE_DIR): ${
              (error as Error).message
            }`,
            { cause: error },
          );
        }
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

/** Checks that the file at `path` starts and ends with parquet's magic bytes, `PAR1`. */
async function checkParquetFile(path: string): Promise<void> {
  const file = await Deno.open(path);
  try {
    const size = (await file.stat()).size;
    const head = new Uint8Array(4), tail = new Uint8Array(4);
    if (size >= 12) {
      await file.read(head);
      await file.seek(size - 4, Deno.SeekMode.Start);
      await file.read(tail);
    }
    const magic = (b: Uint8Array): boolean => new TextDecoder().decode(b) === "PAR1";
    if (!magic(head) || !magic(tail)) {
      throw new Error(
        `${path}: expected a parquet file (PAR1 at its start and end), found other bytes`,
      );
    }
  } finally {
    file.close();
  }
}
