/**
 * GPT-2's tokenizer in the page: tiktoken's "lite" WASM build with the "gpt2" ranks, both
 * fetched from the server (`tiktoken/encoders/gpt2.json` and `tiktoken/lite/tiktoken_bg.wasm`
 * of the same npm package `lib/data/tokenizer.ts` uses, whose full build embeds those very
 * ranks), so the page works offline and encodes as the tasks do. The full build is not
 * bundled: it imports its 5.6 MB WASM as a module, which a browser cannot.
 *
 * @module
 */

import { init, Tiktoken } from "tiktoken/lite/init";
// not lib/data/tokenizer.ts: its value imports would bundle tiktoken's full build
import { type Gpt2Tokenizer, tokenizerFrom } from "../../data/tokenizer_core.ts";
import { fetchBytes, fetchJson } from "./fetch_progress.ts";

/** The text of ids from a padded vocabulary, padding ids as `<|pad:ID|>`. */
export { decodePaddedWith as decodePadded } from "../../data/tokenizer_core.ts";

/** Where the server serves the tokenizer's two files. */
export const TOKENIZER_URLS = {
  ranks: "tiktoken/gpt2.json",
  wasm: "tiktoken/tiktoken_bg.wasm",
} as const;

/** tiktoken's encoder file: the BPE ranks, special tokens, the pre-tokenising regex. */
interface EncoderFile {
  bpe_ranks: string;
  special_tokens: Record<string, number>;
  pat_str: string;
  /** The vocabulary size, special tokens included (50257 for GPT-2). */
  explicit_n_vocab: number;
}

/** GPT-2's one special token. */
const EOT_TEXT = "<|endoftext|>";

/**
 * GPT-2's tokenizer, from the files served next to the page at `base` (default:
 * `location.href`).
 *
 * @throws {Error} naming the URL, when a file cannot be fetched or is not what tiktoken reads.
 */
export async function loadTokenizer(base?: string | URL): Promise<Gpt2Tokenizer> {
  base ??= globalThis.location?.href;
  const wasmUrl = new URL(TOKENIZER_URLS.wasm, base).href;
  const ranksUrl = new URL(TOKENIZER_URLS.ranks, base).href;
  const [wasm, ranks] = await Promise.all([fetchBytes(wasmUrl), fetchJson(ranksUrl)]);
  await init((imports) => WebAssembly.instantiate(wasm, imports));
  const file = ranks as Partial<EncoderFile>;
  const eot = file.special_tokens?.[EOT_TEXT];
  if (
    typeof file.bpe_ranks !== "string" || typeof file.pat_str !== "string" ||
    typeof file.explicit_n_vocab !== "number" || typeof eot !== "number"
  ) {
    throw new Error(
      `${ranksUrl}: expected tiktoken's GPT-2 encoder (bpe_ranks, pat_str, explicit_n_vocab, ` +
        `${EOT_TEXT}), found keys ${Object.keys(file).join(", ")}`,
    );
  }
  const encoding = new Tiktoken(file.bpe_ranks, file.special_tokens!, file.pat_str);
  return tokenizerFrom(encoding, file.explicit_n_vocab, eot);
}
