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

import { get_encoding } from "tiktoken";
import { decodePaddedWith, type Gpt2Tokenizer, tokenizerFrom } from "./tokenizer_core.ts";

export { GPT2_EOT, GPT2_N_VOCAB, type Gpt2Tokenizer } from "./tokenizer_core.ts";

let cached: Gpt2Tokenizer | undefined;

/** GPT-2's tokenizer; built once and shared. */
export function getGpt2Tokenizer(): Gpt2Tokenizer {
  cached ??= tokenizerFrom(get_encoding("gpt2"));
  return cached;
}

/**
 * GPT-2 text of ids from a model whose vocabulary may be padded past 50257 (to 50304): the
 * padding ids, never in the training data, show as `<|pad:ID|>` instead of failing.
 */
export function decodePadded(ids: ArrayLike<number>): string {
  return decodePaddedWith(getGpt2Tokenizer(), ids);
}
