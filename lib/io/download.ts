/**
 * Downloads with a cache, resume and a progress bar.
 *
 * `downloadFile(url, dest)` streams into `dest + ".part"`, and when that file is already there
 * (an earlier run was cut off) asks only for the rest with an HTTP `Range` header. A server
 * that answers 206 continues the file; one that answers 200 ignores ranges and the file
 * restarts; 416 means the part file already holds everything. Once the length checks out
 * the part file is renamed to `dest`, so `dest` is only ever complete. An existing `dest` is
 * a cache hit: no request is made.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { ProgressBar } from "./progress.ts";

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
  /** How many times to retry after a network error or an HTTP 5xx/429; 5 by default. */
  retries?: number;
  /** Wait before the first retry in milliseconds, doubled each time up to 10 s; 1000 by default. */
  retryDelayMs?: number;
  /** Cancels the download; the part file stays for a later resume. */
  signal?: AbortSignal;
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
 * it could not be reached or the connection broke.
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

/** One attempt's outcome: finished, or worth another try (with the reason). */
type Attempt = { done: true } | { done: false; error: DownloadError };

/**
 * Downloads `url` to `dest`, resuming from `dest + ".part"` when it exists, and returns what
 * it did. Creates the folder of `dest`. Skips the download when `dest` exists.
 *
 * @throws {DownloadError} on an HTTP error (naming the URL and the status), on a length that
 * does not match `Content-Length`, and when the server stays unreachable after the retries.
 */
export async function downloadFile(
  url: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const existing = await fileSize(dest);
  if (existing !== undefined && !options.force) {
    return { path: dest, bytes: existing, cached: true, resumedFrom: 0 };
  }
  await Deno.mkdir(dirname(dest), { recursive: true });
  const part = `${dest}.part`;
  const resumedFrom = (await fileSize(part)) ?? 0;
  const retries = options.retries ?? 5;
  let delay = options.retryDelayMs ?? 1000;
  for (let attempt = 0;; attempt++) {
    const result = await attemptDownload(url, part, options);
    if (result.done) break;
    if (attempt >= retries || options.signal?.aborted) throw result.error;
    await sleep(delay, options.signal);
    delay = Math.min(delay * 2, 10_000);
  }
  await Deno.rename(part, dest);
  const bytes = (await fileSize(dest)) ?? 0;
  return { path: dest, bytes, cached: false, resumedFrom };
}

/** Fetches what `part` lacks; throws on errors that another try would not fix. */
async function attemptDownload(
  url: string,
  part: string,
  options: DownloadOptions,
): Promise<Attempt> {
  const offset = (await fileSize(part)) ?? 0;
  // Ask for the bytes as stored: a compressed body's Content-Length is not the file's length.
  const headers: Record<string, string> = { "Accept-Encoding": "identity", ...options.headers };
  if (offset > 0) headers["Range"] = `bytes=${offset}-`;
  let response: Response;
  try {
    response = await fetch(url, { headers, redirect: "follow", signal: options.signal });
  } catch (cause) {
    const error = new DownloadError(
      `Could not reach ${url}: ${errorMessage(cause)}`,
      url,
      { cause },
    );
    if (options.signal?.aborted) throw error;
    return { done: false, error };
  }

  let start: number;
  let total: number | undefined;
  if (response.status === 416 && offset > 0) {
    // Nothing left to send: complete if the server's length is what we have, else start over.
    await response.body?.cancel();
    const range = parseContentRange(response.headers.get("content-range"));
    if (range?.total === offset) return { done: true };
    await Deno.remove(part);
    return attemptDownload(url, part, options);
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

  const file = await Deno.open(part, { write: true, create: true, truncate: start === 0 });
  let written = start;
  const bar = new ProgressBar(options.label ?? basename(part, ".part"), {
    total,
    initial: start,
    unit: "B",
    enabled: options.progress ?? true,
  });
  try {
    await file.seek(start, Deno.SeekMode.Start);
    for await (const chunk of response.body) {
      await writeAll(file, chunk);
      written += chunk.length;
      bar.update(written);
    }
  } catch (cause) {
    const error = new DownloadError(
      `Connection to ${url} broke after ${written} bytes: ${errorMessage(cause)}`,
      url,
      { cause },
    );
    if (options.signal?.aborted) throw error;
    return { done: false, error };
  } finally {
    file.close();
    bar.done();
  }

  if (total !== undefined && written !== total) {
    const message = `Expected ${total} bytes from ${url} (Content-Length), found ${written}`;
    if (written < total) return { done: false, error: new DownloadError(message, url) };
    await Deno.remove(part);
    throw new DownloadError(message, url, { status: response.status });
  }
  return { done: true };
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
