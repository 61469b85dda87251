/**
 * Tests for lib/data/tokenizer.ts: GPT-2's BPE through tiktoken, checked against the token ids
 * the lecture shows and the token count of Tiny Shakespeare.
 */

import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import {
  decodePadded,
  getGpt2Tokenizer,
  GPT2_EOT,
  GPT2_N_VOCAB,
} from "../../lib/data/tokenizer.ts";
import { shakespearePath } from "../support.ts";

Deno.test("encode gives the lecture's ids for its prompt", () => {
  const enc = getGpt2Tokenizer();
  assertEquals(
    enc.encode("Hello, I'm a language model,"),
    [15496, 11, 314, 1101, 257, 3303, 2746, 11],
  );
});

Deno.test("decode inverts encode", () => {
  const enc = getGpt2Tokenizer();
  for (
    const text of [
      "Hello, I'm a language model,",
      "First Citizen:\nBefore we proceed any further, hear me speak.\n\n",
      "  leading spaces, tabs\tand UTF-8: café, 日本語, 🙂",
      "",
    ]
  ) {
    assertEquals(enc.decode(enc.encode(text)), text);
  }
  assertEquals(enc.decode(new Int32Array([15496, 11])), "Hello,");
});

Deno.test("the tokenizer is built once and knows GPT-2's sizes", () => {
  const enc = getGpt2Tokenizer();
  assert(getGpt2Tokenizer() === enc);
  assertEquals(enc.eot, 50256);
  assertEquals(enc.nVocab, 50257);
  assertEquals([GPT2_EOT, GPT2_N_VOCAB], [50256, 50257]);
  assertEquals(enc.decode([enc.eot]), "<|endoftext|>");
});

Deno.test("encode does not parse <|endoftext|> in text as the special token", () => {
  const enc = getGpt2Tokenizer();
  const ids = enc.encode("a<|endoftext|>b");
  assert(!ids.includes(GPT2_EOT), `found ${GPT2_EOT} in ${ids}`);
  assertEquals(enc.decode(ids), "a<|endoftext|>b");
});

Deno.test("decode rejects ids outside the vocabulary", () => {
  const enc = getGpt2Tokenizer();
  throws(() => enc.decode([11, 50257]), {
    name: "RangeError",
    message: "Expected token ids in [0, 50257), found 50257 at index 1",
  });
  throws(() => enc.decode([-1]), RangeError);
  throws(() => enc.decode([1.5]), RangeError);
});

Deno.test("decode replaces a UTF-8 character split between tokens", () => {
  const enc = getGpt2Tokenizer();
  const ids = enc.encode("🙂");
  assert(ids.length > 1, `expected the emoji to take several byte tokens, found ${ids}`);
  assert(enc.decode(ids.slice(0, 1)).includes("\uFFFD"));
});

Deno.test("Tiny Shakespeare is 338,025 tokens", async () => {
  const text = await Deno.readTextFile(shakespearePath);
  const ids = getGpt2Tokenizer().encode(text);
  assertEquals(ids.length, 338_025);
  assertEquals(ids.slice(0, 8), [5962, 22307, 25, 198, 8421, 356, 5120, 597]);
});

Deno.test("decodePadded shows the padding ids of a 50304 vocabulary instead of failing", () => {
  const ids = getGpt2Tokenizer().encode("Hello, world");
  assertEquals(decodePadded([...ids, 50300, ...ids]), "Hello, world<|pad:50300|>Hello, world");
  assertEquals(decodePadded(ids), "Hello, world");
});
