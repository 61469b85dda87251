// Training with `shuffle` (the train task's --shuffle): over a folder of shards with many
// documents, a run that stops at a checkpoint mid-epoch and resumes gives the uninterrupted
// run's losses bit for bit; the same seed gives the same run; shuffling changes the batches
// (so the losses) against the lecture's fixed order; and a checkpoint of a shuffled run does
// not resume into an unshuffled one.
import { deepStrictEqual as assertEquals, notDeepStrictEqual, rejects } from "node:assert/strict";
import { join } from "node:path";
import { writeNpyUint16 } from "../../lib/io/npy.ts";
import { train } from "../../lib/train/train.ts";
import { smallRecipe } from "../support.ts";

const EOT = 50256;

/** Shards of short documents (EOT, then 20-60 tokens each): a val shard and three train ones. */
async function documentShards(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "shuffle_shards_" });
  let state = 12345;
  const next = (): number => (state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const shard = (docs: number): Uint16Array => {
    const tokens: number[] = [];
    for (let d = 0; d < docs; d++) {
      tokens.push(EOT);
      const n = 20 + Math.floor(next() * 40);
      for (let i = 0; i < n; i++) tokens.push(Math.floor(next() * 1000)); // a small vocabulary
    }
    return Uint16Array.from(tokens);
  };
  await writeNpyUint16(join(dir, "docs_val_000000.npy"), shard(10));
  for (let i = 1; i <= 3; i++) {
    await writeNpyUint16(join(dir, `docs_train_00000${i}.npy`), shard(12));
  }
  return dir;
}

async function trainLosses(dataPath: string, extra: Parameters<typeof smallRecipe>[0] = {}) {
  const run = await train(smallRecipe({ dataPath, B: 2, T: 8, totalBatchSize: 32, ...extra }));
  return run.history.map((h) => h.loss);
}

Deno.test("train --shuffle: resume mid-epoch equals the uninterrupted run bit for bit", async () => {
  const data = await documentShards();
  const a = await Deno.makeTempDir(), b = await Deno.makeTempDir();
  // 3 train shards of about 480 tokens, 32 tokens a step: an epoch is about 40 steps
  const full = await trainLosses(data, { steps: 12, shuffle: true, logDir: a, checkpointEvery: 7 });
  // a second run starts from the step-7 checkpoint, mid-epoch, in its own folder
  await copyDir(join(a, "checkpoints", "step_000007"), join(b, "checkpoints", "step_000007"));
  const log = (await Deno.readTextFile(join(a, "log.txt"))).trimEnd().split("\n");
  await Deno.writeTextFile(join(b, "log.txt"), log.slice(0, 7).join("\n") + "\n");
  const rest = await trainLosses(data, { steps: 12, shuffle: true, logDir: b, resume: "latest" });
  assertEquals(rest, full.slice(7));
});

Deno.test("train --shuffle: the same seed gives the same run, and the order differs from the lecture's", async () => {
  const data = await documentShards();
  const shuffled = await trainLosses(data, { steps: 5, shuffle: true });
  assertEquals(await trainLosses(data, { steps: 5, shuffle: true }), shuffled);
  notDeepStrictEqual(await trainLosses(data, { steps: 5 }), shuffled);
});

Deno.test("train --shuffle: a shuffled run's checkpoint does not resume without --shuffle", async () => {
  const data = await documentShards();
  const dir = await Deno.makeTempDir();
  const a = await Deno.makeTempDir();
  await trainLosses(data, { steps: 4, shuffle: true, logDir: a, checkpointEvery: 2 });
  await copyDir(join(a, "checkpoints", "step_000002"), join(dir, "checkpoints", "step_000002"));
  await rejects(
    trainLosses(data, { steps: 4, logDir: dir, resume: "latest" }),
    /shuffl/,
  );
});

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}
