/**
 * A Web Worker that tokenizes batches of documents for `TokenizerPool` (tokenizer_pool.ts), as
 * the pool of processes in build-nanogpt's `fineweb.py` does: each document becomes
 * `[EOT, ...tokens]` with tiktoken's "gpt2" `encode_ordinary`, stored as uint16.
 *
 * In: {@linkcode TokenizeRequest}. Out: {@linkcode TokenizeResponse}, the buffers transferred.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { get_encoding } from "tiktoken";
import { GPT2_EOT } from "../tokenizer.ts";

/** A batch of documents to tokenize. */
export interface TokenizeRequest {
  /** The batch's sequence number; responses carry it back. */
  id: number;
  /** The documents' texts. */
  texts: string[];
}

/** A tokenized batch: every document's tokens, concatenated, and how many each has. */
export type TokenizeResponse =
  | { id: number; tokens: Uint16Array; lengths: Uint32Array }
  | { id: number; error: string };

// tiktoken directly rather than lib/data/tokenizer.ts: its Uint32Array copies straight into the
// shard buffer, without the plain array that `Gpt2Tokenizer.encode` returns
const encoding = get_encoding("gpt2");

self.onmessage = (event: MessageEvent<TokenizeRequest>): void => {
  const { id, texts } = event.data;
  try {
    const docs: Uint32Array[] = [];
    let total = 0;
    for (const text of texts) {
      const ids = encoding.encode_ordinary(text);
      docs.push(ids);
      total += ids.length + 1;
    }
    const tokens = new Uint16Array(total);
    const lengths = new Uint32Array(texts.length);
    let at = 0;
    for (let d = 0; d < docs.length; d++) {
      // the special <|endoftext|> token delimits all documents
      tokens[at++] = GPT2_EOT;
      const ids = docs[d];
      tokens.set(ids, at); // GPT-2's ids are all below 2**16, so uint16 holds them
      at += ids.length;
      lengths[d] = ids.length + 1;
    }
    const response: TokenizeResponse = { id, tokens, lengths };
    self.postMessage(response, [tokens.buffer, lengths.buffer]);
  } catch (error) {
    const response: TokenizeResponse = {
      id,
      error: error instanceof Error ? error.message : String(error),
    };
    self.postMessage(response);
  }
};
