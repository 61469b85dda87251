/**
 * GPT-2's tokenizer: the "gpt2" byte-pair encoding of OpenAI's tiktoken, through the
 * `tiktoken` npm package (WASM; its rank table ships inside the package, so it works offline).
 *
 * `encode` has the semantics of tiktoken's `encode_ordinary`, which build-nanogpt uses: text
 * that looks like a special token, such as `<|endoftext|>`, is encoded as ordinary text. The
 * end-of-text token 50256 that separates documents is added by the caller (`tokenizer.eot`).
 *
 * Loading this module reads `node_modules/tiktoken/tiktoken_bg.wasm`, so it needs read
 * permission (`--allow-read`); without it, tiktoken fails with "Missing tiktoken_bg.wasm".
 *
 * @module
 */

import { get_encoding, type Tiktoken } from "tiktoken";

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

let cached: Gpt2Tokenizer | undefined;

/** GPT-2's tokenizer; built once and shared. */
export function getGpt2Tokenizer(): Gpt2Tokenizer {
  cached ??= makeTokenizer(get_encoding("gpt2"));
  return cached;
}

function makeTokenizer(encoding: Tiktoken): Gpt2Tokenizer {
  const decoder = new TextDecoder("utf-8", { fatal: false });
  return {
    encode(text: string): number[] {
      return Array.from(encoding.encode_ordinary(text));
    },
    decode(ids: ArrayLike<number>): string {
      const tokens = new Uint32Array(ids.length);
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!Number.isInteger(id) || id < 0 || id >= GPT2_N_VOCAB) {
          throw new RangeError(
            `Expected token ids in [0, ${GPT2_N_VOCAB}), found ${id} at index ${i}`,
          );
        }
        tokens[i] = id;
      }
      return decoder.decode(encoding.decode(tokens));
    },
    eot: GPT2_EOT,
    nVocab: GPT2_N_VOCAB,
  };
}

/**
 * GPT-2 text of ids from a model whose vocabulary may be padded past 50257 (to 50304): the
 * padding ids, never in the training data, show as `<|pad:ID|>` instead of failing.
 */
export function decodePadded(ids: ArrayLike<number>): string {
  const tokenizer = getGpt2Tokenizer();
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
