/**
 * Where the datasets live. Each resolver takes an explicit path (a command's `--data PATH`),
 * else finds a local copy, else downloads into the repository's `data/` folder.
 *
 * Environment:
 * - `GPT2_SHARED_DATA`: a folder of shared datasets laid out like `data/`
 *   (`tinyshakespeare/input.txt`, ...); `<repo>/../shared/data` by default.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { downloadFile } from "../io/download.ts";
import { displayPath } from "../io/files.ts";

/** Where Tiny Shakespeare is downloaded from (karpathy/char-rnn, 1,115,394 bytes). */
export const TINY_SHAKESPEARE_URL =
  "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

/** The repository root, found from this file's location. */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Options for {@linkcode resolveDataset} and the resolvers built on it. */
export interface ResolveDataOptions {
  /** The folder downloads go to and are looked for in; `<repo>/data` by default. */
  dataDir?: string;
  /** The shared data folder; `GPT2_SHARED_DATA`, else `<repo>/../shared/data`, by default. */
  sharedDataDir?: string;
  /** Where to download from when no local copy exists; the dataset's own URL by default. */
  url?: string;
  /** Download when no local copy exists; true by default. */
  download?: boolean;
  /** Print nothing: neither which file was used nor a download's progress; false by default. */
  quiet?: boolean;
}

/** The repository's data folder, `<repo>/data`. */
export function repoDataDir(): string {
  return join(REPO_ROOT, "data");
}

/** The shared data folder: `GPT2_SHARED_DATA`, else `<repo>/../shared/data`. */
export function sharedDataDir(): string {
  return Deno.env.get("GPT2_SHARED_DATA") || resolve(REPO_ROOT, "..", "shared", "data");
}

/** A dataset file the resolvers find locally or download. */
export interface DatasetFile {
  /** The dataset's name in messages, e.g. "Tiny Shakespeare". */
  name: string;
  /** What an explicit path must name, e.g. "text file". */
  kind: string;
  /** Its path under a data folder, e.g. `tinyshakespeare/input.txt`. */
  relative: string;
  /** Where it is downloaded from by default. */
  url: string;
}

/** Tiny Shakespeare's `input.txt`. */
export const TINY_SHAKESPEARE: DatasetFile = {
  name: "Tiny Shakespeare",
  kind: "text file",
  relative: join("tinyshakespeare", "input.txt"),
  url: TINY_SHAKESPEARE_URL,
};

/**
 * The path of a dataset file: `path` when given (it must exist), else `<relative>` in the
 * repository's data folder, else in the shared data folder, else a fresh download into the
 * repository's data folder. Prints which file it used.
 *
 * @throws {Error} when `path` does not name a file, and when the download fails (the message
 * says to pass `--data PATH`).
 */
export async function resolveDataset(
  file: DatasetFile,
  path?: string,
  options: ResolveDataOptions = {},
): Promise<string> {
  const report = (message: string): void => {
    if (!options.quiet) console.log(message);
  };
  if (path !== undefined) {
    const full = resolve(path);
    if (!(await isFile(full))) {
      throw new Error(`Expected a ${file.name} ${file.kind} at ${full}, found none`);
    }
    report(`${file.name}: using ${displayPath(full)}`);
    return full;
  }
  const local = join(options.dataDir ?? repoDataDir(), file.relative);
  const shared = join(options.sharedDataDir ?? sharedDataDir(), file.relative);
  for (const candidate of [local, shared]) {
    if (await isFile(candidate)) {
      report(`${file.name}: using ${displayPath(candidate)}`);
      return candidate;
    }
  }
  const url = options.url ?? file.url;
  if (options.download === false) {
    throw new Error(
      `Expected ${file.name} at ${local} or ${shared}, found neither; ` +
        `pass --data PATH or download ${url}`,
    );
  }
  report(`${file.name}: downloading ${url} to ${local}`);
  try {
    await downloadFile(url, local, { retries: 2, progress: !options.quiet });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `Could not download ${file.name} from ${url} (${reason}); ` +
        `pass --data PATH to a local copy of ${basename(file.relative)}`,
      { cause: error },
    );
  }
  report(`${file.name}: using ${displayPath(local)}`);
  return local;
}

/** {@linkcode resolveDataset} for Tiny Shakespeare's `input.txt`. */
export function resolveTinyShakespeare(
  path?: string,
  options: ResolveDataOptions = {},
): Promise<string> {
  return resolveDataset(TINY_SHAKESPEARE, path, options);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
