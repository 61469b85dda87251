// The sharded loader over llm.c's `.bin` token shards (lib/data/shard_loader.ts, lib/io/llmc.ts):
// shards written here from llm.c's published layout (data_common.py's write_datafile: 256 int32,
// magic 20240520, version 1, token count, then uint16 tokens) give the batches that the same
// tokens in .npy shards give; llm.c's names are picked by split; bad shards fail naming the file.
import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { join } from "node:path";
import { writeNpyUint16 } from "../../lib/io/npy.ts";
import { listShards, openTokenData } from "../../lib/data/shard_loader.ts";

/** Header fields to write instead of llm.c's, to make bad shards. */
interface ShardHeader {
  magic?: number;
  version?: number;
  count?: number;
}

/** The bytes of an llm.c token shard, written field by field as write_datafile lays them out. */
function llmcShardBytes(tokens: readonly number[], header: ShardHeader = {}): Uint8Array {
  const bytes = new Uint8Array(256 * 4 + tokens.length * 2);
  const view = new DataView(bytes.buffer);
  view.setInt32(0, header.magic ?? 20240520, true);
  view.setInt32(4, header.version ?? 1, true);
  view.setInt32(8, header.count ?? tokens.length, true);
  tokens.forEach((t, i) => view.setUint16(1024 + 2 * i, t, true));
  return bytes;
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

/** The same three shards (val 0..19, train 100..129 and 60000..60025) as .bin and as .npy. */
const SHARDS: [string, number[]][] = [
  ["fineweb_val_000000", range(0, 20)],
  ["fineweb_train_000001", range(100, 30)],
  ["fineweb_train_000002", range(60000, 26)], // above 2^15: read as unsigned
];

async function shardFolders(): Promise<{ bin: string; npy: string }> {
  const bin = await Deno.makeTempDir(), npy = await Deno.makeTempDir();
  for (const [name, tokens] of SHARDS) {
    await Deno.writeFile(join(bin, `${name}.bin`), llmcShardBytes(tokens));
    await writeNpyUint16(join(npy, `${name}.npy`), Uint16Array.from(tokens));
  }
  return { bin, npy };
}

Deno.test("llm.c shards: a .bin folder gives the batches of the same tokens in .npy, on two ranks", async () => {
  const { bin, npy } = await shardFolders();
  for (const split of ["train", "val"]) {
    for (const rank of [0, 1]) {
      const a = await openTokenData(bin, split, 2, 3, rank, 2);
      const b = await openTokenData(npy, split, 2, 3, rank, 2);
      assertEquals(a.shards.map((s) => s.length), b.shards.map((s) => s.length));
      for (let i = 0; i < 8; i++) assertEquals(a.nextBatch(), b.nextBatch(), `${split} ${i}`);
    }
  }
  // and the values themselves, against the tokens written: rank 0, B=2, T=3
  const loader = await openTokenData(bin, "train", 2, 3);
  assertEquals(Array.from(loader.nextBatch().x), range(100, 6));
  for (let i = 0; i < 3; i++) loader.nextBatch(); // 4 windows of 6: 24 + 7 > 30, next shard
  const batch = loader.nextBatch();
  assertEquals(Array.from(batch.x), range(60000, 6));
  assertEquals(Array.from(batch.y), range(60001, 6));
  assertEquals(loader.state().shardName, "fineweb_train_000002.bin");
  await Deno.remove(bin, { recursive: true });
  await Deno.remove(npy, { recursive: true });
});

Deno.test("llm.c shards: picked by split name, as tiny_shakespeare_val.bin is", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(join(dir, "tiny_shakespeare_val.bin"), llmcShardBytes(range(0, 10)));
  await Deno.writeFile(join(dir, "tiny_shakespeare_train.bin"), llmcShardBytes(range(10, 40)));
  await Deno.writeTextFile(join(dir, "notes_train.txt"), "not a shard");
  const train = await listShards(dir, "train");
  assertEquals(train.map((s) => [s.name, s.length]), [[
    join(dir, "tiny_shakespeare_train.bin"),
    40,
  ]]);
  assertEquals(Array.from(train[0].load()), range(10, 40));
  const val = await listShards(dir, "val");
  assertEquals(val.map((s) => s.length), [10]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("llm.c shards: bad magic, version or size fail naming the file, expected and found", async () => {
  const dir = await Deno.makeTempDir();
  const cases: [string, Uint8Array, string][] = [
    [
      "magic",
      llmcShardBytes(range(0, 20), { magic: 20240326 }),
      "expected the llm.c token shard magic 20240520, found 20240326 (an llm.c GPT-2 model file)",
    ],
    [
      "version",
      llmcShardBytes(range(0, 20), { version: 7 }),
      "expected llm.c token shard version 1 (uint16 tokens), found 7",
    ],
    [
      "short",
      llmcShardBytes(range(0, 20), { count: 21 }),
      "the shard is truncated: expected 1066 bytes for 21 tokens, found 1064",
    ],
    [
      "long",
      llmcShardBytes(range(0, 20), { count: 19 }),
      "the shard is longer than its header says: expected 1062 bytes for 19 tokens, found 1064",
    ],
    [
      "header",
      new Uint8Array(100),
      "expected an llm.c token shard of at least 1024 bytes (its header), found 100",
    ],
  ];
  for (const [label, bytes, message] of cases) {
    const sub = join(dir, label);
    await Deno.mkdir(sub);
    const path = join(sub, `fineweb_train_000001.bin`);
    await Deno.writeFile(path, bytes);
    await rejects(openTokenData(sub, "train", 1, 4), { message: `${path}: ${message}` }, label);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("llm.c shards: a folder with both .npy and .bin shards of a split is an error", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(join(dir, "fineweb_train_000001.bin"), llmcShardBytes(range(0, 20)));
  await writeNpyUint16(join(dir, "edufineweb_train_000001.npy"), Uint16Array.from(range(0, 20)));
  await rejects(openTokenData(dir, "train", 1, 4), {
    message: `Expected one kind of "train" shard in ${dir}, .npy or llm.c's .bin, found both: ` +
      `1 .npy (edufineweb_train_000001.npy, ...) and 1 .bin (fineweb_train_000001.bin, ...); ` +
      `move one kind to a folder of its own`,
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("llm.c shards: one .bin shard passed as the data is an error pointing to its folder", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "tiny_shakespeare_val.bin");
  await Deno.writeFile(path, llmcShardBytes(range(0, 20)));
  await rejects(openTokenData(path, "train", 1, 4), {
    message: `Expected a shard folder or a text file at ${path}, found one llm.c .bin shard: ` +
      `pass its folder, --data ${dir}`,
  });
  await Deno.remove(dir, { recursive: true });
});
