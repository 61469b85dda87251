// lib/data/fineweb/: how far through its inputs a run is, and the progress line's estimated
// total, ETA, documents and shards.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { localInputs, readDocuments, tokenizeToShards } from "../../lib/data/fineweb/mod.ts";
import { inputFraction } from "../../lib/data/fineweb/progress.ts";
import { formatCount, type ProgressWriter } from "../../lib/io/progress.ts";
import { sharedDataDir } from "../support.ts";

const SAMPLE = join(sharedDataDir, "fineweb-edu-sample", "test_labels.jsonl");

Deno.test("inputFraction: inputs weigh their size; unknown sizes weigh the known mean", () => {
  // 100 and 300 bytes: half of the first is 50/400; all of it and half the second, 250/400
  assertEquals(inputFraction([100, 300], 0, 0.5), 0.125);
  assertEquals(inputFraction([100, 300], 1, 0.5), 0.625);
  assertEquals(inputFraction([100, 300], 1, 1), 1);
  // the unknown second weighs 100, as the first: the first read is half the run
  assertEquals(inputFraction([100, undefined], 0, 1), 0.5);
  // none known: alike, a quarter each
  assertEquals(inputFraction([undefined, undefined, undefined, undefined], 2, 0), 0.5);
  // a reader's fraction outside [0, 1] is held inside it
  assertEquals(inputFraction([100, 300], 0, 2), 0.25);
});

Deno.test("readDocuments: each batch says how far through its file it ends", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // jsonl: batches of 2 of 5 lines end after lines 2 and 4 (bytes read / size), then at 1
    const lines = ["a", "bb", "ccc", "dddd", "eeeee"].map((text) => JSON.stringify({ text }));
    const jsonl = join(dir, "docs.jsonl");
    await Deno.writeTextFile(jsonl, lines.join("\n"));
    const size = lines.join("\n").length; // ASCII: characters are bytes
    const upTo = (n: number) => lines.slice(0, n).reduce((a, l) => a + l.length + 1, 0);
    const fromJsonl = [];
    for await (const b of readDocuments(localInputs([jsonl]), undefined, 2)) {
      fromJsonl.push([b.texts.length, b.through]);
    }
    assertEquals(fromJsonl, [[2, upTo(2) / size], [2, upTo(4) / size], [1, 1]]);
    // parquet: row groups of 3, 3 and 2 rows end at 3/8, 6/8 and 8/8
    const parquet = join(dir, "docs.parquet");
    const texts = ["1", "2", "3", "4", "5", "6", "7", "8"];
    await Deno.writeFile(
      parquet,
      new Uint8Array(parquetWriteBuffer({
        columnData: [{ name: "text", data: texts, type: "STRING" }],
        rowGroupSize: 3,
      })),
    );
    const fromParquet = [];
    for await (const b of readDocuments(localInputs([parquet]))) fromParquet.push(b.through);
    assertEquals(fromParquet, [3 / 8, 6 / 8, 1]);
    // local inputs carry their sizes, which weigh them
    assertEquals(localInputs([jsonl, join(dir, "missing.jsonl")]).map((i) => i.size), [
      size,
      undefined,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizeToShards: the line shows an estimated total and an ETA, then the true total", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // two inputs of the same 5 documents: after the first, half the bytes and half the tokens
    const second = join(dir, "again.jsonl");
    await Deno.copyFile(SAMPLE, second);
    const chunks: string[] = [];
    const writer: ProgressWriter = {
      writeSync(p: Uint8Array): number {
        chunks.push(new TextDecoder().decode(p));
        return p.length;
      },
    };
    const out = join(dir, "shards");
    const result = await tokenizeToShards(localInputs([SAMPLE, second]), {
      outDir: out,
      shardSize: 2000,
      workers: 1,
      progressWriter: writer,
      progressEverySeconds: 0, // a line at every batch
    });
    const lines = chunks.join("").trimEnd().split("\n");
    // the two files alike: after the first, half the bytes read, and its tokens (4 full shards
    // of 2000) estimated to be half of the total, which is what the whole run finds
    const total = formatCount(result.tokens);
    assertEquals(result.shards.length, Math.ceil(result.tokens / 2000));
    const half = lines.find((l) => l.includes("total estimated: 50%"));
    ok(half, lines.join("\n"));
    const shown = half.match(
      /^tokenizing 5 docs, 4 shards, total estimated: 50%, ([\d.k]+)\/([\d.k]+) tokens, .*, ETA \d+:\d\d$/,
    );
    ok(shown, half);
    assertEquals([shown[1], shown[2]], [formatCount(result.tokens / 2), total]);
    assertEquals(
      lines.at(-1)!.replace(/, [\d.k]+ tokens\/s, in \d+:\d\d$/, ""),
      `tokenizing 10 docs, ${result.shards.length} shards: 100%, ${total}/${total} tokens`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
