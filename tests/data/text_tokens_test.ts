// lib/data/text_tokens.ts: a text file tokenized in chunks gives the tokens of the whole text,
// errors name the file and the byte offset across chunk boundaries, and a file larger than a
// JavaScript string can hold is read at all (not refused as "not UTF-8").
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { safeCut, tokenizeTextFile } from "../../lib/data/text_tokens.ts";
import { getGpt2Tokenizer } from "../../lib/data/tokenizer.ts";
import { shakespearePath } from "../support.ts";

async function withFile(bytes: Uint8Array, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "text_tokens_" });
  try {
    const path = join(dir, "input.txt");
    await Deno.writeFile(path, bytes);
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("text tokens: chunks cut where the pre-tokenizer splits give the whole text's tokens", async () => {
  const enc = getGpt2Tokenizer();
  const shakespeare = (await Deno.readTextFile(shakespearePath)).slice(0, 200_000);
  const mixed = Array.from(
    { length: 400 },
    (_, i) => `Ünïcödé ${i} 日本語の テキスト  two  spaces,\n\nblank lines\t tabs 'll it's 😀 x\n`,
  ).join("");
  for (const text of [shakespeare, mixed, "\uFEFFa byte-order mark first\n"]) {
    const whole = Int32Array.from(enc.encode(text.replace(/^\uFEFF/, "")));
    await withFile(new TextEncoder().encode(text), async (path) => {
      for (const chunkBytes of [4096, 997, 64]) {
        assertEquals(
          await tokenizeTextFile(path, { chunkBytes }),
          whole,
          `chunks of ${chunkBytes}`,
        );
      }
    });
  }
  assertEquals(safeCut("ab cd"), 2); // before the space: " cd" is a piece
  assertEquals(safeCut("ab\ncd"), 3); // after the newline: "\n" is a piece
  assertEquals(safeCut("ab  cd\n\nef"), 0); // runs of whitespace are not cut
});

Deno.test("text tokens: a byte that is not UTF-8, or a NUL, is named with its offset in the file", async () => {
  const ascii = (n: number) => new TextEncoder().encode("word ".repeat(n / 5));
  const cases: [Uint8Array, RegExp][] = [
    [Uint8Array.from([...ascii(10_000), 0xff, 0x41]), /not UTF-8 at offset 10000$/],
    // a character cut at a chunk boundary (4095) by a byte that cannot continue it
    [Uint8Array.from([...ascii(4095), 0xc3, 0x41]), /not UTF-8 at offset 4095$/],
    // a whole character across the boundary, then a bad byte
    [Uint8Array.from([...ascii(4095), 0xc3, 0xa9, 0xff]), /not UTF-8 at offset 4097$/],
    [Uint8Array.from([...ascii(5000), 0x00]), /a binary file \(a NUL byte at offset 5000\)$/],
    [Uint8Array.from([...ascii(100), 0xe6, 0x97]), /not UTF-8 at offset 100$/], // cut at the end
  ];
  for (const [bytes, message] of cases) {
    await withFile(bytes, async (path) => {
      await rejects(tokenizeTextFile(path, { chunkBytes: 4096 }), (e: Error) => {
        ok(e.message.startsWith(`Expected a UTF-8 text file at ${path}, found`), e.message);
        ok(message.test(e.message), `${e.message} ~ ${message}`);
        return true;
      });
    });
  }
  await rejects(
    tokenizeTextFile("/nonexistent/input.txt"),
    /Cannot read the text file \/nonexistent\/input\.txt: /,
  );
});

Deno.test("text tokens: a file of more characters than a JavaScript string holds is read", async () => {
  // 600 MiB of text: past V8's string limit (2^29 - 24 characters), which decoding the file
  // into one string fails at ("not UTF-8 at offset 536870888"). A trivial tokenizer (a token
  // per chunk) keeps the test to reading and decoding.
  const dir = await Deno.makeTempDir({ prefix: "text_tokens_" });
  try {
    const path = join(dir, "big.txt");
    const block = new TextEncoder().encode(
      "the quick brown fox jumps over the lazy dog\n".repeat(23_831),
    ); // ~1 MiB
    const file = await Deno.open(path, { write: true, create: true });
    for (let i = 0; i < 600; i++) {
      let off = 0;
      while (off < block.length) off += await file.write(block.subarray(off));
    }
    file.close();
    const size = (await Deno.stat(path)).size;
    ok(size > 2 ** 29, `${size} bytes`);
    let characters = 0;
    const tokens = await tokenizeTextFile(path, {
      encode: (text) => {
        characters += text.length;
        return [1];
      },
    });
    assertEquals(characters, size); // every character seen once, in pieces
    ok(tokens.length >= 10, `${tokens.length} pieces`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
