/**
 * The parts of GPT-2's tokenizer that do not depend on which tiktoken build encodes: the
 * interface, ids checked before decoding, and decoding a padded vocabulary. Shared by the
 * tasks (lib/data/tokenizer.ts, tiktoken's full build) and the browser page
 * (lib/web/page/tokenizer.ts, its lite build), so this module imports neither.
 *
 * @module
 */

/** The `<|endoftext|>` token id of GPT-2. */
export const GPT2_EOT = 50256;

/** GPT-2's vocabulary size: 50,000 merges, 256 bytes and `<|endoftext|>`. */
export const GPT2_N_VOCAB = 50257;

/** GPT-2's tokenizer. */
export interface Gpt2Tokenizer {
  /** Token ids of `text`; special tokens are not parsed (tiktoken's `encode_ordinary`). */
  encode(text: string): number[];
  /**
   * The text of `ids`; bytes that are not valid UTF-8 (a character split between tokens)
   * become U+FFFD, like tiktoken's `decode(errors="replace")`.
   *
   * @throws {RangeError} for an id outside [0, 50257).
   */
  decode(ids: ArrayLike<number>): string;
  /** The `<|endoftext|>` id, 50256. */
  readonly eot: number;
  /** The vocabulary size, 50257. */
  readonly nVocab: number;
}

/** What either tiktoken build's encoding object offers. */
export interface TiktokenEncoding {
  encode_ordinary(text: string): Uint32Array;
  decode(tokens: Uint32Array): Uint8Array;
}

/** A {@linkcode Gpt2Tokenizer} over a tiktoken encoding of `nVocab` ids. */
export function tokenizerFrom(
  encoding: TiktokenEncoding,
  nVocab: number = GPT2_N_VOCAB,
  eot: number = GPT2_EOT,
): Gpt2Tokenizer {
  const decoder = new TextDecoder("utf-8", { fatal: false });
  return {
    encode: (text) => Array.from(encoding.encode_ordinary(text)),
    decode(ids) {
      const tokens = new Uint32Array(ids.length);
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!Number.isInteger(id) || id < 0 || id >= nVocab) {
          throw new RangeError(`Expected token ids in [0, ${nVocab}), found ${id} at index ${i}`);
        }
        tokens[i] = id;
      }
      return decoder.decode(encoding.decode(tokens));
    },
    eot,
    nVocab,
  };
}

/**
 * The text of `ids` from a model whose vocabulary may be padded past 50257 (to 50304): the
 * padding ids, never in the training data, show as `<|pad:ID|>` instead of failing.
 */
export function decodePaddedWith(tokenizer: Gpt2Tokenizer, ids: ArrayLike<number>): string {
  let text = "", run: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i];
    if (t < tokenizer.nVocab) {
      run.push(t);
      continue;
    }
    text += tokenizer.decode(run) + `<|pad:${t}|>`;
    run = [];
  }
  return text + tokenizer.decode(run);
}
