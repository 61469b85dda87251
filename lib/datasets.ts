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

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { downloadFile } from "./download.ts";

/** Where Tiny Shakespeare is downloaded from (karpathy/char-rnn, 1,115,394 bytes). */
export const TINY_SHAKESPEARE_URL =
  "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

/** The repository root, found from this file's location. */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Options for {@linkcode resolveTinyShakespeare}. */
export interface ResolveDataOptions {
  /** The folder downloads go to and are looked for in; `<repo>/data` by default. */
  dataDir?: string;
  /** The shared data folder; `GPT2_SHARED_DATA`, else `<repo>/../shared/data`, by default. */
  sharedDataDir?: string;
  /** Where to download from when no local copy exists; {@linkcode TINY_SHAKESPEARE_URL}. */
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

/**
 * The path of Tiny Shakespeare's `input.txt`: `path` when given (it must exist), else
 * `data/tinyshakespeare/input.txt`, else `tinyshakespeare/input.txt` in the shared data
 * folder, else a fresh download into `data/tinyshakespeare/input.txt`. Prints which file it
 * used.
 *
 * @throws {Error} when `path` does not name a file, and when the download fails (the message
 * says to pass `--data PATH`).
 */
export async function resolveTinyShakespeare(
  path?: string,
  options: ResolveDataOptions = {},
): Promise<string> {
  const report = (message: string): void => {
    if (!options.quiet) console.log(message);
  };
  if (path !== undefined) {
    const full = resolve(path);
    if (!(await isFile(full))) {
      throw new Error(`Expected a Tiny Shakespeare text file at ${full}, found none`);
    }
    report(`Tiny Shakespeare: using ${full}`);
    return full;
  }
  const relative = join("tinyshakespeare", "input.txt");
  const local = join(options.dataDir ?? repoDataDir(), relative);
  const shared = join(options.sharedDataDir ?? sharedDataDir(), relative);
  for (const candidate of [local, shared]) {
    if (await isFile(candidate)) {
      report(`Tiny Shakespeare: using ${candidate}`);
      return candidate;
    }
  }
  const url = options.url ?? TINY_SHAKESPEARE_URL;
  if (options.download === false) {
    throw new Error(
      `Expected Tiny Shakespeare at ${local} or ${shared}, found neither; ` +
        `pass --data PATH or download ${url}`,
    );
  }
  report(`Tiny Shakespeare: downloading ${url} to ${local}`);
  try {
    await downloadFile(url, local, { retries: 2, progress: !options.quiet });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `Could not download Tiny Shakespeare from ${url} (${reason}); ` +
        `pass --data PATH to a local copy of input.txt`,
      { cause: error },
    );
  }
  report(`Tiny Shakespeare: using ${local}`);
  return local;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
