/**
 * Files with errors that name them:
 * - text read strictly: bytes that are not UTF-8, or a NUL byte (which no text file holds, and
 *   nearly every binary file does), are an error naming the file and the byte, rather than
 *   U+FFFD characters read on as if they were text;
 * - an output folder a flag names, checked before anything is written.
 *
 * @module
 */

/**
 * The text of `bytes`, decoded strictly as UTF-8 (a leading byte-order mark is dropped, as
 * `Deno.readTextFile` drops it). `name` names the file in errors.
 *
 * @throws {Error} for a NUL byte or bytes that are not UTF-8, naming `name` and the offset.
 */
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
    throw new Error(
      `Expected a UTF-8 text file at ${name}, found bytes that are not UTF-8 at offset ${
        invalidUtf8Offset(bytes)
      }`,
    );
  }
}

/** {@linkcode decodeUtf8Strict} of the file at `path`. */
export async function readTextFileStrict(path: string): Promise<string> {
  return decodeUtf8Strict(await Deno.readFile(path), path);
}

/**
 * The offset of the byte where strict UTF-8 decoding of `bytes` fails (`bytes.length` when it
 * does not): the shortest prefix that fails to decode, streaming, ends there. Only called once
 * decoding has failed, so the binary search's log(n) passes cost nothing in the common case.
 */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  const fails = (n: number): boolean => {
    try {
      // streaming: a sequence cut off at the prefix's end is not an error, a wrong byte is
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, n), { stream: true });
      return false;
    } catch {
      return true;
    }
  };
  if (!fails(bytes.length)) {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      return bytes.length;
    } catch {
      // the file ends inside a character: the error is at its last byte
      return Math.max(bytes.length - 1, 0);
    }
  }
  let lo = 0, hi = bytes.length; // fails(hi), and not fails(lo)
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (fails(mid)) hi = mid;
    else lo = mid;
  }
  return hi - 1;
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
