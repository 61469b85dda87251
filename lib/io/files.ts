/**
 * Files with errors that name them:
 * - text read strictly: bytes that are not UTF-8, or a NUL byte (which no text file holds, and
 *   nearly every binary file does), are an error naming the file and the byte, rather than
 *   U+FFFD characters read on as if they were text;
 * - an output folder a flag names, checked before anything is written;
 * - a path printed relative to the working folder where that is shorter.
 *
 * @module
 */

/**
 * The text of `bytes`, decoded strictly as UTF-8 (a leading byte-order mark is dropped, as
 * `Deno.readTextFile` drops it). `name` names the file in errors.
 *
 * @throws {Error} for a NUL byte or bytes that are not UTF-8, naming `name` and the offset.
 */
import { relative, resolve } from "node:path";

export function decodeUtf8Strict(bytes: Uint8Array, name: string): string {
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    throw new Error(
      `Expected a UTF-8 text file at ${name}, found a binary file (a NUL byte at offset ${nul})`,
    );
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    // past V8's string limit decoding fails on valid text too: find a true bad byte, if any
    const bad = bytes.length > MAX_STRING_CHARS ? invalidUtf8OffsetChunked(bytes) : undefined;
    if (bytes.length > MAX_STRING_CHARS && bad === bytes.length) {
      throw new Error(
        `Expected a text file of at most ${MAX_STRING_CHARS} characters at ${name}, found ` +
          `${bytes.length} bytes of UTF-8 text: more than one JavaScript string can hold`,
      );
    }
    throw new Error(
      `Expected a UTF-8 text file at ${name}, found bytes that are not UTF-8 at offset ${
        bad ?? invalidUtf8Offset(bytes)
      }`,
    );
  }
}

/** The most characters one JavaScript string holds in V8 (2^29 - 24). */
export const MAX_STRING_CHARS = 2 ** 29 - 24;

/**
 * {@linkcode invalidUtf8Offset} for bytes of any length: decoded 64 MiB at a time (each piece's
 * text dropped at once), so that no string grows past V8's limit.
 */
export function invalidUtf8OffsetChunked(bytes: Uint8Array, chunk = 64 * 1024 * 1024): number {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for (let start = 0; start < bytes.length; start += chunk) {
    const end = Math.min(start + chunk, bytes.length);
    try {
      decoder.decode(bytes.subarray(start, end), { stream: end < bytes.length });
    } catch {
      // the bad sequence lies in this piece, or began at most 3 bytes before it
      let from = start;
      for (let i = start - 1; i >= Math.max(0, start - 3); i--) {
        if (bytes[i] < 0x80) break;
        if (bytes[i] >= 0xc0) {
          const length = bytes[i] >= 0xf0 ? 4 : bytes[i] >= 0xe0 ? 3 : 2;
          if (i + length > start) from = i; // a character the piece before left open
          break;
        }
      }
      return from + invalidUtf8Offset(bytes.subarray(from, Math.min(end + 3, bytes.length)));
    }
  }
  return bytes.length;
}

/** {@linkcode decodeUtf8Strict} of the file at `path`. */
export async function readTextFileStrict(path: string): Promise<string> {
  return decodeUtf8Strict(await Deno.readFile(path), path);
}

/**
 * The offset where the first sequence that is not UTF-8 starts in `bytes` (`bytes.length`
 * when there is none): the byte that cannot start a character, or the first byte of a
 * character that is cut short. Only called once decoding has failed, so the binary search's
 * log(n) passes cost nothing in the common case.
 */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  const decodes = (n: number, stream: boolean): boolean => {
    try {
      // streaming: a character cut off at the prefix's end is not (yet) an error
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, n), { stream });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0, hi = bytes.length; // the first hi bytes fail to decode, the first lo do not
  if (decodes(hi, true)) {
    if (decodes(hi, false)) return bytes.length;
    lo = hi; // only the last character is cut short
  } else {
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (decodes(mid, true)) lo = mid;
      else hi = mid;
    }
  }
  // the bytes up to lo decode when streaming; a character they end inside is where it broke
  if (decodes(lo, false)) return lo;
  let start = lo - 1;
  while (start > 0 && bytes[start] >= 0x80 && bytes[start] < 0xc0) start--;
  return start;
}

/**
 * Checks that `path`, which the flag `flag` (e.g. `--out`) names, is a folder or nothing yet
 * (it is made later, when there is something to write), so that a file there or a path that
 * cannot be looked at fails before any work, with a message naming the flag.
 *
 * @throws {Error} naming the flag and the path for a file there, or when it cannot be examined.
 */
export async function checkOutputFolder(flag: string, path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new Error(`${flag} ${path}: cannot use it as a folder (${(error as Error).message})`);
  }
  if (!info.isDirectory) throw new Error(`${flag} ${path}: expected a folder, found a file`);
}

/**
 * A path as a person reading a log wants it: relative to the working folder where that is
 * near (a notebook's `../../shared/data/...`, a run's `log/model`), else as given. So printed
 * lines, and the notebooks' committed outputs, do not carry one machine's absolute folders.
 */
export function displayPath(path: string): string {
  const rel = relative(Deno.cwd(), resolve(path));
  // within two folders up (a notebook's ../../shared/data): relative; further: as given
  return rel !== "" && !rel.startsWith("../../../") ? rel : path;
}

/**
 * Whether `e` is an error of the operating system (a missing file, no permission, a full or
 * read-only disk): one of `Deno.errors`, or one Deno reports only by its message's
 * `(os error N)`, as it does for ENOSPC and EROFS.
 */
export function isOsError(e: unknown): boolean {
  return Object.values(Deno.errors).some((OsError) => e instanceof OsError) ||
    (e instanceof Error && /\(os error \d+\)/.test(e.message));
}
