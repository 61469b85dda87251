/**
 * Downloads with a cache, resume, a stall timeout, checks and a progress bar.
 *
 * `downloadFile(url, dest)` streams into `dest + ".part"`, and when that file is already there
 * (an earlier run was cut off) asks only for the rest with an HTTP `Range` header. A server
 * that answers 206 continues the file; one that answers 200 ignores ranges and the file
 * restarts; 416 means the part file already holds everything. A connection that stays open
 * but sends nothing for `GPT2_DOWNLOAD_STALL_S` seconds (60 by default) is dropped and the
 * download resumes on a new one, like any broken connection, up to `retries` times.
 *
 * Nothing enters the cache unchecked: before the part file is renamed to `dest` its length must
 * match `Content-Length` and the size its publisher states (`expected`, e.g. the Hugging Face
 * hub's `X-Linked-Size`), its SHA-256 the stated hash, and its content the caller's `verify`
 * (a safetensors header, say), so an HTML error page never becomes `model.safetensors`. What
 * was checked is recorded beside it (`dest + ".download.json"`); an existing `dest` is a cache
 * hit, no request is made, and it is checked against that record and `verify`, so a damaged
 * cached file is an error naming the file to delete.
 *
 * Processes that download the same file into one cache (the ranks of a DDP job) take turns
 * on a lock file (`dest + ".lock"`, `flock`): the first downloads, the others wait and then
 * find `dest` in the cache.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, dirname } from "node:path";
import { ProgressBar } from "./progress.ts";

/** Seconds without a byte after which an attempt is dropped, unless `GPT2_DOWNLOAD_STALL_S` says. */
export const DEFAULT_STALL_TIMEOUT_S = 60;

/** What a file's publisher states about it, checked before the file enters the cache. */
export interface PublishedFile {
  /** The size in bytes. */
  size?: number;
  /** The SHA-256 of the content, 64 hex digits. */
  sha256?: string;
}

/** Options for {@linkcode downloadFile}. */
export interface DownloadOptions {
  /** Download again even when `dest` exists; false by default. */
  force?: boolean;
  /** Show a progress bar on stderr; true by default. */
  progress?: boolean;
  /** The progress bar's label; the file name of `dest` by default. */
  label?: string;
  /** Extra request headers (e.g. `Authorization`). */
  headers?: Record<string, string>;
  /** How many times to retry after a network error, a stall or an HTTP 5xx/429; 5 by default. */
  retries?: number;
  /** Wait before the first retry in milliseconds, doubled each time up to 10 s; 1000 by default. */
  retryDelayMs?: number;
  /** Cancels the download; the part file stays for a later resume. */
  signal?: AbortSignal;
  /**
   * Seconds without a byte (no answer, or a body that stops) before the attempt is dropped and
   * retried; `GPT2_DOWNLOAD_STALL_S`, else {@linkcode DEFAULT_STALL_TIMEOUT_S}.
   */
  stallTimeoutS?: number;
  /**
   * What the publisher states about the file (its size, its SHA-256), asked for only when a
   * download is needed (a cache hit makes no request).
   */
  expected?: () => Promise<PublishedFile>;
  /**
   * Checks the content of a complete file (the part file before it enters the cache, and a
   * cached file); throws, saying what is wrong, to refuse it.
   */
  verify?: (path: string) => Promise<void>;
}

/** What {@linkcode downloadFile} did. */
export interface DownloadResult {
  /** The downloaded file, `dest`. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** True when `dest` already existed and nothing was fetched. */
  cached: boolean;
  /** The size of the part file the download resumed from (0 when it started afresh). */
  resumedFrom: number;
}

/**
 * A failed download. `status` is the HTTP status when the server answered, and undefined when
 * it could not be reached, the connection broke or stalled, or the content was refused.
 */
export class DownloadError extends Error {
  /** The URL that was requested. */
  readonly url: string;
  /** The HTTP status, if the server answered. */
  readonly status: number | undefined;

  /** Makes an error for `url`; `status` is the HTTP status, if there was one. */
  constructor(message: string, url: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "DownloadError";
    this.url = url;
    this.status = options.status;
  }
}

/** A cached file that fails its checks: the message names it and says to delete it. */
export class CachedFileError extends Error {
  /** The cached file. */
  readonly path: string;

  /** Makes an error for the cached file at `path`; `problem` says what is wrong. */
  constructor(path: string, problem: string) {
    super(
      `The cached file ${path} is damaged (${problem}): delete it (rm ${
        JSON.stringify(path)
      }) and run again to download it anew`,
    );
    this.name = "CachedFileError";
    this.path = path;
  }
}

/** What `dest + ".download.json"` records about a file that entered the cache. */
interface CacheRecord {
  url: string;
  size: number;
  sha256?: string;
}

/** One attempt's outcome: finished, or worth another try (with the reason). */
type Attempt = { done: true } | { done: false; error: DownloadError };

/** An attempt's state: the URL, the part file, and the stall timer's limit. */
interface AttemptContext {
  url: string;
  part: string;
  options: DownloadOptions;
  stallMs: number;
  /** The publisher's size, when known: a shorter file is resumed, a longer one refused. */
  size: number | undefined;
}

/**
 * Downloads `url` to `dest`, resuming from `dest + ".part"` when it exists, and returns what
 * it did. Creates the folder of `dest`. Skips the download when `dest` exists (after checking
 * it against the record of its download and `verify`).
 *
 * @throws {DownloadError} on an HTTP error (naming the URL and the status), on a length, size
 * or hash that does not match, on content `verify` refuses, and when the server stays
 * unreachable or silent after the retries; the message names the URL and `dest`.
 * @throws {CachedFileError} when `dest` exists but fails its checks.
 */
export async function downloadFile(
  url: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  if (!options.force) {
    const hit = await cacheHit(dest, options);
    if (hit) return hit;
  }
  await makeFolder(dirname(dest));
  const lock = await lockFile(`${dest}.lock`);
  try {
    // another process may have finished it while this one waited for the lock
    if (!options.force) {
      const hit = await cacheHit(dest, options);
      if (hit) return hit;
    }
    return await download(url, dest, options);
  } finally {
    lock.close();
  }
}

/** The stall timeout in milliseconds: the option, else `GPT2_DOWNLOAD_STALL_S`, else 60 s. */
export function stallTimeoutMs(optionS?: number): number {
  const raw = optionS ?? Deno.env.get("GPT2_DOWNLOAD_STALL_S");
  if (raw === undefined || raw === "") return DEFAULT_STALL_TIMEOUT_S * 1000;
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0 || s > 86_400) {
    throw new Error(
      `Expected GPT2_DOWNLOAD_STALL_S (seconds without data before a download is retried) ` +
        `in (0, 86400], found "${raw}"`,
    );
  }
  return s * 1000;
}

async function download(
  url: string,
  dest: string,
  options: DownloadOptions,
): Promise<DownloadResult> {
  const part = `${dest}.part`;
  const stallMs = stallTimeoutMs(options.stallTimeoutS);
  const expected = options.expected ? await options.expected() : {};
  const ctx: AttemptContext = { url, part, options, stallMs, size: expected.size };
  const resumedFrom = (await fileSize(part)) ?? 0;
  const retries = options.retries ?? 5;
  let delay = options.retryDelayMs ?? 1000;
  for (let attempt = 0;; attempt++) {
    let result: Attempt;
    try {
      result = await attemptDownload(ctx);
    } catch (e) {
      if (!(e instanceof DownloadError)) throw e;
      throw new DownloadError(`${e.message}; nothing was saved to ${dest}`, url, {
        status: e.status,
        cause: e,
      });
    }
    if (result.done) break;
    if (attempt >= retries || options.signal?.aborted) {
      const kept = (await fileSize(part)) ?? 0;
      const tries = attempt + 1;
      throw new DownloadError(
        `${result.error.message} (after ${tries} ${tries === 1 ? "try" : "tries"}); ` +
          (kept > 0
            ? `the ${kept} bytes so far are kept in ${part}, and the next run resumes from them`
            : `nothing was saved to ${dest}`),
        url,
        { status: result.error.status, cause: result.error },
      );
    }
    await sleep(delay, options.signal);
    delay = Math.min(delay * 2, 10_000);
  }
  const bytes = (await fileSize(part)) ?? 0;
  const refuse = async (problem: string): Promise<never> => {
    await Deno.remove(part).catch(() => {});
    throw new DownloadError(`${problem}; it was not saved to ${dest}`, url);
  };
  if (expected.size !== undefined && bytes !== expected.size) {
    await refuse(`Expected ${expected.size} bytes from ${url} (its stated size), found ${bytes}`);
  }
  const sha256 = expected.sha256?.toLowerCase();
  if (sha256 !== undefined) {
    const found = await sha256File(part);
    if (found !== sha256) {
      await refuse(`Expected SHA-256 ${sha256} for ${url} (its stated hash), found ${found}`);
    }
  }
  if (options.verify) {
    try {
      await options.verify(part);
    } catch (e) {
      await refuse(`${url} did not send the file expected: ${(e as Error).message}`);
    }
  }
  const record: CacheRecord = { url, size: bytes, ...(sha256 ? { sha256 } : {}) };
  await Deno.writeTextFile(`${dest}.download.json`, JSON.stringify(record) + "\n");
  await Deno.rename(part, dest);
  return { path: dest, bytes, cached: false, resumedFrom };
}

/** `dest` as a cache hit once it passes its checks, or undefined when it is not there. */
async function cacheHit(
  dest: string,
  options: DownloadOptions,
): Promise<DownloadResult | undefined> {
  const size = await fileSize(dest);
  if (size === undefined) return undefined;
  const record = await readRecord(dest);
  if (record !== undefined && record.size !== size) {
    throw new CachedFileError(dest, `${size} bytes, its download recorded ${record.size}`);
  }
  if (options.verify) {
    try {
      await options.verify(dest);
    } catch (e) {
      throw new CachedFileError(dest, (e as Error).message);
    }
  }
  return { path: dest, bytes: size, cached: true, resumedFrom: 0 };
}

async function readRecord(dest: string): Promise<CacheRecord | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dest}.download.json`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    const record = JSON.parse(text) as CacheRecord;
    return typeof record.size === "number" ? record : undefined;
  } catch {
    return undefined; // a record cut short says nothing; the file's own checks still run
  }
}

/**
 * Fetches what `part` lacks; throws on errors that another try would not fix. The stall timer
 * starts with the request and restarts with every chunk; when it fires the request is aborted
 * and the attempt is worth another try.
 */
async function attemptDownload(ctx: AttemptContext): Promise<Attempt> {
  const { url, part, options, stallMs } = ctx;
  const offset = (await fileSize(part)) ?? 0;
  if (ctx.size !== undefined && offset === ctx.size) return { done: true };
  // Ask for the bytes as stored: a compressed body's Content-Length is not the file's length.
  const headers: Record<string, string> = { "Accept-Encoding": "identity", ...options.headers };
  if (offset > 0) headers["Range"] = `bytes=${offset}-`;
  const stall = new StallTimer(stallMs, options.signal);
  try {
    let response: Response;
    try {
      response = await fetch(url, { headers, redirect: "follow", signal: stall.signal });
    } catch (cause) {
      if (options.signal?.aborted) throw new DownloadError(`Download of ${url} was cancelled`, url);
      const why = stall.fired ? stall.message(url) : errorMessage(cause);
      return { done: false, error: new DownloadError(`Could not reach ${url}: ${why}`, url) };
    }
    return await receive(ctx, response, offset, stall);
  } finally {
    stall.stop();
  }
}

/** Handles the answer to one request: status, then the body into the part file. */
async function receive(
  ctx: AttemptContext,
  response: Response,
  offset: number,
  stall: StallTimer,
): Promise<Attempt> {
  const { url, part, options } = ctx;
  let start: number;
  let total: number | undefined;
  if (response.status === 416 && offset > 0) {
    // Nothing left to send: complete if the server's length is what we have, else start over.
    await response.body?.cancel();
    const range = parseContentRange(response.headers.get("content-range"));
    if (range?.total === offset) return { done: true };
    await Deno.remove(part);
    return { done: false, error: new DownloadError(`${url} refused the range request`, url) };
  } else if (response.status === 206) {
    const range = parseContentRange(response.headers.get("content-range"));
    if (range === undefined || range.start !== offset) {
      await response.body?.cancel();
      throw new DownloadError(
        `Expected ${url} to answer the range request from byte ${offset}, ` +
          `found Content-Range ${JSON.stringify(response.headers.get("content-range"))}`,
        url,
        { status: 206 },
      );
    }
    start = offset;
    total = range.total;
  } else if (response.ok) {
    // 200: the whole file, either because we asked for it or because ranges are not supported.
    start = 0;
    total = contentLength(response);
  } else {
    await response.body?.cancel();
    const error = new DownloadError(
      `Download of ${url} failed: HTTP ${response.status} ${response.statusText}`.trimEnd(),
      url,
      { status: response.status },
    );
    if (response.status >= 500 || response.status === 429) return { done: false, error };
    throw error;
  }
  if (response.body === null) {
    throw new DownloadError(`Expected a body from ${url}, found none`, url, {
      status: response.status,
    });
  }
  if (total !== undefined && ctx.size !== undefined && total !== ctx.size) {
    await response.body.cancel();
    throw new DownloadError(
      `Expected ${ctx.size} bytes from ${url} (its stated size), found a Content-Length of ` +
        `${total}${
          response.headers.get("content-type")?.includes("html") ? " (an HTML page)" : ""
        }`,
      url,
      { status: response.status },
    );
  }

  const file = await Deno.open(part, { write: true, create: true, truncate: start === 0 });
  let written = start;
  const bar = new ProgressBar(options.label ?? basename(part, ".part"), {
    total: total ?? ctx.size,
    initial: start,
    unit: "B",
    enabled: options.progress ?? true,
  });
  try {
    await file.seek(start, Deno.SeekMode.Start);
    for await (const chunk of response.body) {
      stall.kick();
      await writeAll(file, chunk);
      written += chunk.length;
      bar.update(written);
      if (ctx.size !== undefined && written > ctx.size) break;
    }
  } catch (cause) {
    if (options.signal?.aborted) throw new DownloadError(`Download of ${url} was cancelled`, url);
    const why = stall.fired ? stall.message(url) : errorMessage(cause);
    const error = new DownloadError(
      `Connection to ${url} broke after ${written} bytes: ${why}`,
      url,
      { cause },
    );
    return { done: false, error };
  } finally {
    file.close();
    bar.done();
  }

  const want = total ?? ctx.size;
  if (want !== undefined && written !== want) {
    const message = `Expected ${want} bytes from ${url} (${
      total !== undefined ? "Content-Length" : "its stated size"
    }), found ${written}`;
    if (written < want) return { done: false, error: new DownloadError(message, url) };
    await Deno.remove(part);
    throw new DownloadError(`${message}; it was not saved`, url, { status: response.status });
  }
  return { done: true };
}

/**
 * Aborts a request when no byte has come for `ms`: started with the request, restarted by
 * {@linkcode StallTimer.kick} on every chunk. Also aborts when the caller's signal does.
 */
class StallTimer {
  readonly #controller = new AbortController();
  readonly #ms: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #fired = false;
  readonly #onAbort = (): void => this.#controller.abort();
  readonly #outer: AbortSignal | undefined;

  constructor(ms: number, outer: AbortSignal | undefined) {
    this.#ms = ms;
    this.#outer = outer;
    outer?.addEventListener("abort", this.#onAbort, { once: true });
    if (outer?.aborted) this.#controller.abort();
    this.kick();
  }

  /** The signal a request is made with. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether the timer aborted the request. */
  get fired(): boolean {
    return this.#fired;
  }

  /** Restarts the timer: a byte came. */
  kick(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#fired = true;
      this.#controller.abort(new Error("stalled"));
    }, this.#ms);
  }

  /** Stops the timer. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#outer?.removeEventListener("abort", this.#onAbort);
  }

  /** Why the request was dropped. */
  message(url: string): string {
    return `no data from ${url} for ${this.#ms / 1000} s (GPT2_DOWNLOAD_STALL_S)`;
  }
}

/** Takes an exclusive `flock` on `path` (made if missing), waiting while another holds it. */
async function lockFile(path: string): Promise<Deno.FsFile> {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    await file.lock(true);
  } catch (e) {
    file.close();
    throw e;
  }
  return file;
}

async function makeFolder(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    // keeps the OS error's class, so that callers can say which setting names the folder
    const OsError = (e as Error).constructor as new (message: string) => Error;
    throw new OsError(`Cannot make the download folder ${dir}: ${(e as Error).message}`);
  }
}

/** The SHA-256 of the file at `path`, hex, read in chunks (the file may be gigabytes). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk); // closes the file at the end
  return hash.digest("hex");
}

/** Parses `bytes 100-199/1000` or `bytes *\/1000`; `total` is undefined for `/*`. */
function parseContentRange(
  header: string | null,
): { start: number | undefined; total: number | undefined } | undefined {
  const match = header?.match(/^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/);
  if (!match) return undefined;
  return {
    start: match[1] === undefined ? undefined : Number(match[1]),
    total: match[2] === "*" ? undefined : Number(match[2]),
  };
}

function contentLength(response: Response): number | undefined {
  const encoding = response.headers.get("content-encoding");
  if (encoding !== null && encoding !== "identity") return undefined;
  const header = response.headers.get("content-length");
  return header !== null && /^\d+$/.test(header) ? Number(header) : undefined;
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const info = await Deno.stat(path);
    return info.isFile ? info.size : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const id = setTimeout(done, ms);
    function done(): void {
      clearTimeout(id);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
