/**
 * The GPT-2 tokens of a text file of any size. A JavaScript string holds at most about 2^29
 * characters (V8's limit), so a text file of gigabytes cannot be decoded into one: the file is
 * read in chunks, each decoded strictly as UTF-8 (an error names the file and the byte offset
 * in it) and tokenized on its own. A chunk ends where GPT-2's pre-tokenizer would split anyway,
 * just before a single space or just after a single newline between two characters that are not
 * whitespace, so the tokens are those of the whole text at once.
 *
 * @module
 */

import { invalidUtf8Offset } from "../io/files.ts";
import { getGpt2Tokenizer } from "./tokenizer.ts";

/** Bytes read at a time; 64 MiB by default. */
export const TEXT_CHUNK_BYTES = 64 * 1024 * 1024;

/** Options for {@linkcode tokenizeTextFile}. */
export interface TextTokensOptions {
  /** Bytes read at a time ({@linkcode TEXT_CHUNK_BYTES}); small values are for tests. */
  chunkBytes?: number;
  /** How the file is named in errors; its path by default. */
  name?: string;
  /** The tokenizer; GPT-2's by default. */
  encode?: (text: string) => ArrayLike<number>;
}

/**
 * The tokens of the UTF-8 text file at `path` (a leading byte-order mark dropped), as
 * `encode(readTextFile(path))` would give them, for files of any size.
 *
 * @throws {Error} naming the file and the offset for a NUL byte (a binary file) or bytes that
 * are not UTF-8, and for a file that cannot be read.
 */
export async function tokenizeTextFile(
  path: string,
  options: TextTokensOptions = {},
): Promise<Int32Array> {
  const name = options.name ?? path;
  const chunkBytes = options.chunkBytes ?? TEXT_CHUNK_BYTES;
  const encode = options.encode ?? ((text: string) => getGpt2Tokenizer().encode(text));
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (error) {
    throw new Error(`Cannot read the text file ${name}: ${(error as Error).message}`);
  }
  const parts: Uint16Array[] = [];
  let total = 0;
  const push = (text: string): void => {
    if (text === "") return;
    const ids = encode(text);
    parts.push(Uint16Array.from(ids)); // GPT-2's 50257 ids fit in 16 bits: half the memory
    total += ids.length;
  };
  try {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    const buffer = new Uint8Array(chunkBytes);
    let offset = 0; // bytes of the file before `buffer`
    let carry = ""; // decoded text not yet tokenized: the part after the last safe cut
    for (;;) {
      const n = await readChunk(file, buffer);
      const bytes = buffer.subarray(0, n);
      const nul = bytes.indexOf(0);
      if (nul >= 0) {
        throw new Error(
          `Expected a UTF-8 text file at ${name}, found a binary file (a NUL byte at offset ${
            offset + nul
          })`,
        );
      }
      let text: string;
      try {
        text = decoder.decode(bytes, { stream: n > 0 });
      } catch {
        throw new Error(
          `Expected a UTF-8 text file at ${name}, found bytes that are not UTF-8 at offset ${await invalidOffset(
            path,
            offset,
            n,
          )}`,
        );
      }
      if (offset === 0 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      carry += text;
      if (n === 0) break;
      offset += n;
      const cut = safeCut(carry);
      if (cut > 0) {
        push(carry.slice(0, cut));
        carry = carry.slice(cut);
      } else if (carry.length > 4 * chunkBytes) {
        throw new Error(
          `Expected whitespace between words in the text file ${name}, found ${carry.length} ` +
            `characters without a space or a newline around offset ${offset}: it cannot be ` +
            "tokenized in pieces",
        );
      }
    }
    push(carry);
  } finally {
    file.close();
  }
  const tokens = new Int32Array(total);
  let at = 0;
  for (const part of parts) {
    tokens.set(part, at);
    at += part.length;
  }
  return tokens;
}

/**
 * The last place in `text` where it may be cut without changing its tokens: before a space,
 * or after a newline, that stands alone between two characters that are not whitespace
 * (GPT-2's pre-tokenizer ends a piece there: ` word` pieces start with their space, and a lone
 * newline is a piece of its own); 0 when there is none.
 */
export function safeCut(text: string): number {
  for (let i = text.length - 2; i > 0; i--) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a) continue;
    if (isSpace(text.charCodeAt(i - 1)) || isSpace(text.charCodeAt(i + 1))) continue;
    return c === 0x20 ? i : i + 1;
  }
  return 0;
}

/** Whether a UTF-16 code unit is whitespace as the pre-tokenizer's `\s` sees it. */
function isSpace(code: number): boolean {
  return /\s/.test(String.fromCharCode(code));
}

/** Reads until `buffer` is full or the file ends; the bytes read. */
async function readChunk(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let have = 0;
  while (have < buffer.length) {
    const n = await file.read(buffer.subarray(have));
    if (n === null) break;
    have += n;
  }
  return have;
}

/**
 * The file offset of the first byte that is not UTF-8, in the chunk at `offset` of `n` bytes
 * (a character may have begun in the chunk before: that chunk's last bytes are read again).
 */
async function invalidOffset(path: string, offset: number, n: number): Promise<number> {
  const back = Math.min(offset, 3);
  const file = await Deno.open(path);
  try {
    await file.seek(offset - back, Deno.SeekMode.Start);
    const bytes = new Uint8Array(back + n);
    await readChunk(file, bytes);
    // the bytes before the chunk decoded: at most a character cut at its end is pending there
    let start = back;
    for (let i = back - 1; i >= 0; i--) {
      if (bytes[i] < 0x80) break;
      if (bytes[i] >= 0xc0) {
        const length = bytes[i] >= 0xf0 ? 4 : bytes[i] >= 0xe0 ? 3 : 2;
        if (i + length > back) start = i; // it continues into the chunk
        break;
      }
    }
    return offset - back + start + invalidUtf8Offset(bytes.subarray(start));
  } finally {
    file.close();
  }
}
