// lib/data/shard_loader.ts: rank slicing, rollover across shards, reset, state/restore, text files,
// and bad shards.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { DataLoaderLite } from "../../lib/data/data_loader.ts";
import { encodeNpyUint16, writeNpyUint16 } from "../../lib/io/npy.ts";
import { listShards, openTokenData, ShardedDataLoader } from "../../lib/data/shard_loader.ts";
import { getGpt2Tokenizer } from "../../lib/data/tokenizer.ts";
import { sharedDataDir } from "../support.ts";

/** Shards `val_0` (0..19) and `train_1` (100..129), `train_2` (200..225) in a fresh folder. */
async function makeShards(): Promise<string> {
  const dir = await Deno.makeTempDir();
  const range = (from: number, n: number): Uint16Array =>
    Uint16Array.from({ length: n }, (_, i) => from + i);
  await writeNpyUint16(join(dir, "edufineweb_val_000000.npy"), range(0, 20));
  await writeNpyUint16(join(dir, "edufineweb_train_000001.npy"), range(100, 30));
  await writeNpyUint16(join(dir, "edufineweb_train_000002.npy"), range(200, 26));
  await Deno.writeTextFile(join(dir, "edufineweb_progress.json"), "{}"); // not a shard
  return dir;
}

const xs = (loader: ShardedDataLoader): number[] => Array.from(loader.nextBatch().x);

Deno.test("ShardedDataLoader: ranks interleave, targets shift by one, shards roll over and wrap", async () => {
  const dir = await makeShards();
  const shards = await listShards(dir, "train");
  assertEquals(shards.map((s) => s.length), [30, 26]);
  const opts = (rank: number) => ({ processRank: rank, numProcesses: 2, verbose: false });
  const r0 = new ShardedDataLoader(shards, 2, 3, opts(0));
  const r1 = new ShardedDataLoader(shards, 2, 3, opts(1));
  const b0 = r0.nextBatch();
  assertEquals(Array.from(b0.x), [100, 101, 102, 103, 104, 105]);
  assertEquals(Array.from(b0.y), [101, 102, 103, 104, 105, 106]);
  assertEquals(xs(r1), [106, 107, 108, 109, 110, 111]);
  // the next step starts at 12: 12 + 2*6 + 1 <= 30, so both ranks stay in shard 1
  assertEquals(xs(r0), [112, 113, 114, 115, 116, 117]);
  assertEquals(xs(r1), [118, 119, 120, 121, 122, 123]);
  // the step after would start at 24: 24 + 13 > 30, so both ranks move to shard 2 together
  assertEquals(r0.state(), { shard: 1, position: 0, shardName: "edufineweb_train_000002.npy" });
  assertEquals(r1.state(), { shard: 1, position: 6, shardName: "edufineweb_train_000002.npy" });
  assertEquals(xs(r0), [200, 201, 202, 203, 204, 205]);
  assertEquals(xs(r1), [206, 207, 208, 209, 210, 211]);
  // 12 + 13 <= 26: one more step in shard 2, then wrap to the first shard
  assertEquals(xs(r0), [212, 213, 214, 215, 216, 217]);
  assertEquals(xs(r1), [218, 219, 220, 221, 222, 223]);
  assertEquals(xs(r0), [100, 101, 102, 103, 104, 105]);
  assertEquals(xs(r1), [106, 107, 108, 109, 110, 111]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ShardedDataLoader: reset, and state/restore continue where a checkpoint left off", async () => {
  const dir = await makeShards();
  const shards = await listShards(dir, "train");
  const a = new ShardedDataLoader(shards, 1, 4, { verbose: false });
  for (let i = 0; i < 8; i++) a.nextBatch(); // 7 windows fill shard 1, then one in shard 2
  const saved = JSON.parse(JSON.stringify(a.state()));
  assertEquals(saved, { shard: 1, position: 4, shardName: "edufineweb_train_000002.npy" });
  const expected = [xs(a), xs(a), xs(a)];
  const b = new ShardedDataLoader(shards, 1, 4, { verbose: false });
  b.restore(saved);
  assertEquals([xs(b), xs(b), xs(b)], expected);
  b.reset();
  assertEquals(xs(b), [100, 101, 102, 103]);
  throws(
    () => b.restore({ shard: 1, position: 0, shardName: "other.npy" }),
    /expected shard 1 to be other\.npy, found edufineweb_train_000002\.npy/,
  );
  throws(
    () => b.restore({ shard: 1, position: 40, shardName: "edufineweb_train_000002.npy" }),
    /40 is outside edufineweb_train_000002\.npy \(26 tokens\)/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ShardedDataLoader: one shard on one process gives DataLoaderLite's batches", () => {
  const tokens = Int32Array.from({ length: 50 }, (_, i) => 1000 + i);
  const lite = new DataLoaderLite(tokens, 2, 4);
  const sharded = new ShardedDataLoader([{ name: "mem", length: 50, load: () => tokens }], 2, 4);
  for (let i = 0; i < 7; i++) {
    const a = lite.nextBatch(), b = sharded.nextBatch();
    assertEquals([Array.from(b.x), Array.from(b.y)], [Array.from(a.x), Array.from(a.y)]);
  }
});

Deno.test("openTokenData: a shard folder by split; short shards are skipped", async () => {
  const dir = await makeShards();
  const val = await openTokenData(dir, "val", 2, 3);
  assertEquals(val.shards.length, 1);
  assertEquals(xs(val), [0, 1, 2, 3, 4, 5]);
  // B*T*world+1 = 28: the 26-token shard is left out
  const train = await openTokenData(dir, "train", 3, 3, 0, 3);
  assertEquals(train.shards.map((s) => s.length), [30]);
  await rejects(
    openTokenData(dir, "val", 5, 5),
    /at least 26 tokens.*edufineweb_val_000000\.npy \(20\)/,
  );
  await rejects(openTokenData(dir, "test", 1, 1), /Expected split "train" or "val", found "test"/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openTokenData: a text file splits 90/10 into train and val", async () => {
  const path = join(sharedDataDir, "tinyshakespeare", "input.txt");
  const train = await openTokenData(path, "train", 4, 8);
  const val = await openTokenData(path, "val", 4, 8);
  // 338,025 tokens (REFERENCE.md): 304,222 for train, the last 33,803 for val
  assertEquals(train.tokens.length, 304222);
  assertEquals(val.tokens.length, 33803);
  // the first 24 tokens of the file, from REFERENCE.md
  assertEquals(Array.from(train.nextBatch().x).slice(0, 24), [
    5962,
    22307,
    25,
    198,
    8421,
    356,
    5120,
    597,
    2252,
    11,
    3285,
    502,
    2740,
    13,
    198,
    198,
    3237,
    25,
    198,
    5248,
    461,
    11,
    2740,
    13,
  ]);
  const text = await Deno.readTextFile(path);
  const tail = getGpt2Tokenizer().decode(Array.from(val.tokens));
  ok(text.endsWith(tail), "val is the end of the text");
});

Deno.test("openTokenData: a truncated shard or a wrong dtype fails naming the file", async () => {
  const dir = await makeShards();
  const bad = join(dir, "edufineweb_train_000003.npy");
  const bytes = encodeNpyUint16(new Uint16Array(40));
  await Deno.writeFile(bad, bytes.subarray(0, bytes.length - 1));
  await rejects(openTokenData(dir, "train", 1, 4), (e: Error) => {
    ok(e.message.includes(bad) && e.message.includes("truncated"), e.message);
    return true;
  });
  bytes.set(new TextEncoder().encode("<f2"), bytes.indexOf(0x3c)); // '<u2' -> '<f2'
  await Deno.writeFile(bad, bytes);
  await rejects(openTokenData(dir, "train", 1, 4), (e: Error) => {
    ok(e.message.includes(bad) && e.message.includes("found '<f2'"), e.message);
    return true;
  });
  await rejects(openTokenData(join(dir, "missing"), "train", 1, 4), /found nothing/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openTokenData: a binary file, a non-UTF-8 text file and one .npy shard are refused, naming them", async () => {
  const dir = await makeShards();
  try {
    const binary = join(dir, "weights.bin");
    await Deno.writeFile(binary, Uint8Array.of(8, 0, 0, 0, 0, 0, 0, 0, 123, 125));
    await rejects(openTokenData(binary, "train", 1, 4), {
      message:
        `Expected a UTF-8 text file at ${binary}, found a binary file (a NUL byte at offset 1)`,
    });
    const latin1 = join(dir, "latin1.txt");
    await Deno.writeFile(latin1, Uint8Array.of(0x63, 0x61, 0x66, 0xe9, 0x0a)); // "café\n"
    await rejects(openTokenData(latin1, "train", 1, 4), {
      message:
        `Expected a UTF-8 text file at ${latin1}, found bytes that are not UTF-8 at offset 3`,
    });
    // one shard instead of its folder: recognised by numpy's magic, pointing to the folder
    const shard = join(dir, "edufineweb_train_000001.npy");
    await rejects(openTokenData(shard, "train", 1, 4), {
      message: `Expected a shard folder or a text file at ${shard}, found one .npy shard: ` +
        `pass its folder, --data ${dir}`,
    });
    await rejects(DataLoaderLite.fromTextFile(latin1, 1, 1), /not UTF-8 at offset 3/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openTokenData: a token id outside the model's vocabulary names the shard and position", async () => {
  const dir = await makeShards();
  try {
    // train_1 holds 100..129: id 120 is at position 20
    await rejects(openTokenData(dir, "train", 1, 4, 0, 1, { vocabSize: 120 }), {
      message: `${join(dir, "edufineweb_train_000001.npy")}: expected token ids in [0, 120) ` +
        `(the model's vocabulary), found 120 at position 20`,
    });
    // a later shard is checked when the loader reaches it: train_2 holds 200..225
    const loader = await openTokenData(dir, "train", 1, 4, 0, 1, { vocabSize: 201 });
    for (let i = 0; i < 6; i++) loader.nextBatch(); // 6 windows of shard 1: 24 + 5 <= 30
    throws(() => loader.nextBatch(), {
      message: `${join(dir, "edufineweb_train_000002.npy")}: expected token ids in [0, 201) ` +
        `(the model's vocabulary), found 201 at position 1`,
    });
    assertEquals(
      (await openTokenData(dir, "train", 1, 4, 0, 1, { vocabSize: 226 })).shards.length,
      2,
    );
    // a text file: GPT-2 ids against a smaller vocabulary (the first token is 5962)
    const text = join(dir, "input.txt");
    await Deno.writeTextFile(
      text,
      "First Citizen:\nBefore we proceed any further, hear me speak.\n",
    );
    await rejects(openTokenData(text, "train", 1, 4, 0, 1, { vocabSize: 64 }), {
      message: `${text} (train): expected token ids in [0, 64) (the model's vocabulary), ` +
        `found 5962 at position 0`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openTokenData: a FineWeb progress record that says the run is unfinished warns, once", async () => {
  const dir = await makeShards();
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (line: string) => warnings.push(line);
  try {
    await openTokenData(dir, "train", 1, 4); // makeShards' record "{}" is not a run's
    assertEquals(warnings, []);
    const record = join(dir, "edufineweb_progress.json");
    await Deno.writeTextFile(record, JSON.stringify({ shards: 3, complete: false }));
    await openTokenData(dir, "train", 1, 4);
    await openTokenData(dir, "val", 1, 4); // the validation loader does not repeat it
    await openTokenData(dir, "train", 1, 4, 1, 2); // nor does another rank
    assertEquals(warnings, [
      `warning: ${record} says its FineWeb run is unfinished (3 shards written so far): ` +
      `training on part of the data; rerun the same deno task fineweb command to finish it`,
    ]);
    await Deno.writeTextFile(record, JSON.stringify({ shards: 3, complete: true }));
    await openTokenData(dir, "train", 1, 4);
    assertEquals(warnings.length, 1);
  } finally {
    console.warn = warn;
    await Deno.remove(dir, { recursive: true });
  }
});
