// The data tasks own their output folder: a folder of files no run wrote is refused (its files
// named and left alone), starting over deletes only the shards the progress record lists, the
// record lists its shards with sizes and hashes and a resume checks them, and a lock refuses
// a second run into the folder while the first lives (a dead run's lock is taken over).
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  progressFileName,
  type ShardProgress,
  tokenizeToShards,
} from "../../lib/data/fineweb/mod.ts";
import { sha256File } from "../../lib/io/download.ts";
import { processStart } from "../../lib/io/folder_lock.ts";
import { runTask, shakespearePath, sharedDataDir } from "../support.ts";

const SAMPLE = join(sharedDataDir, "fineweb-edu-sample", "test_labels.jsonl");
const inputs = () => [{ name: SAMPLE, path: () => Promise.resolve(SAMPLE) }];
const quiet = { progress: false, shardSize: 3000 };

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fineweb_out_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function record(out: string): Promise<ShardProgress> {
  return JSON.parse(await Deno.readTextFile(join(out, progressFileName("edufineweb"))));
}

Deno.test("fineweb out: a folder of files no run wrote is refused, its files named and kept", async () => {
  await withDir(async (out) => {
    await Deno.writeTextFile(join(out, "notes.txt"), "mine");
    await Deno.writeTextFile(join(out, "edufineweb_train_000001.npy"), "not a shard of a run");
    for (const restart of [false, true]) {
      await rejects(tokenizeToShards(inputs(), { outDir: out, ...quiet, restart }), {
        message: `--out ${out} holds files no shard run wrote (no edufineweb_progress.json): ` +
          "edufineweb_train_000001.npy, notes.txt; nothing there is deleted or overwritten: " +
          "pass an empty or new --out",
      });
    }
    assertEquals(await Deno.readTextFile(join(out, "notes.txt")), "mine");
    assertEquals(
      await Deno.readTextFile(join(out, "edufineweb_train_000001.npy")),
      "not a shard of a run",
    );
    assertEquals([...Deno.readDirSync(out)].map((e) => e.name).sort(), [
      "edufineweb_train_000001.npy",
      "notes.txt",
    ]);
  });
});

Deno.test("fineweb out: the record lists each shard with its size and hash; a restart deletes only those", async () => {
  await withDir(async (out) => {
    const first = await tokenizeToShards(inputs(), { outDir: out, ...quiet, shardSize: 2000 });
    const listed = await record(out);
    assertEquals(listed.complete, true);
    assertEquals(listed.files!.length, first.shards.length);
    for (const [i, f] of listed.files!.entries()) {
      const path = join(out, f.name);
      assertEquals(path, first.shards[i]);
      assertEquals(f.bytes, (await Deno.stat(path)).size);
      assertEquals(f.sha256, await sha256File(path));
      assertEquals(f.bytes, 128 + 2 * f.tokens); // numpy's 128-byte header, then uint16s
    }
    assertSeveral(first.shards.length);
    // files the run did not write, beside its shards
    await Deno.writeTextFile(join(out, "notes.txt"), "mine");
    const foreignShard = join(out, "edufineweb_train_000099.npy");
    await Deno.writeTextFile(foreignShard, "not listed");
    const again = await tokenizeToShards(inputs(), { outDir: out, ...quiet, restart: true });
    ok(again.shards.length < first.shards.length, "fewer, larger shards");
    for (const path of first.shards.slice(again.shards.length)) ok(!existsSync(path), path);
    assertEquals(await Deno.readTextFile(join(out, "notes.txt")), "mine");
    assertEquals(await Deno.readTextFile(foreignShard), "not listed");
    assertEquals((await record(out)).files!.map((f) => join(out, f.name)), again.shards);
  });
});

function assertSeveral(n: number): void {
  ok(n >= 3, `expected several shards, found ${n}`);
}

Deno.test("fineweb out: a run resumes or says it is complete only over the shards its record lists", async () => {
  await withDir(async (out) => {
    const first = await tokenizeToShards(inputs(), { outDir: out, ...quiet });
    // the same run again: complete, nothing written
    assertEquals((await tokenizeToShards(inputs(), { outDir: out, ...quiet })).written, 0);
    const victim = first.shards[1];
    const bytes = await Deno.readFile(victim);
    await Deno.writeFile(victim, bytes.subarray(0, 200));
    await rejects(tokenizeToShards(inputs(), { outDir: out, ...quiet }), {
      message: `${
        join(out, "edufineweb_progress.json")
      } lists edufineweb_train_000001.npy of ${bytes.length} bytes, found 200: pass --restart to write the shards anew`,
    });
    await Deno.remove(victim);
    await rejects(
      tokenizeToShards(inputs(), { outDir: out, ...quiet }),
      /lists edufineweb_train_000001\.npy, found no such file: pass --restart/,
    );
    await tokenizeToShards(inputs(), { outDir: out, ...quiet, restart: true });
    assertEquals(await Deno.readFile(victim), bytes);
  });
});

Deno.test("fineweb out: a second run into the folder is refused while the first lives; a dead run's lock is taken over", async () => {
  await withDir(async (out) => {
    const lock = join(out, "edufineweb.lock");
    const holder = (pid: number, start: number | null) =>
      JSON.stringify({
        pid,
        start,
        host: Deno.hostname(),
        since: "2026-01-01T00:00:00.000Z",
        what: "a edufineweb shard run",
      });
    // a live holder: this very process, as a run in progress in it would hold the lock
    await Deno.writeTextFile(lock, holder(Deno.pid, processStart(Deno.pid)));
    await rejects(tokenizeToShards(inputs(), { outDir: out, ...quiet }), {
      message:
        `--out ${out} is in use: a edufineweb shard run (pid ${Deno.pid}) has held ${lock} ` +
        `since 2026-01-01T00:00:00.000Z; wait for it to end, or pass another --out`,
    });
    ok(existsSync(lock), "a live run's lock is left alone");
    assertEquals([...Deno.readDirSync(out)].map((e) => e.name), ["edufineweb.lock"]);
    // two runs at once in this process: one of them is refused
    await Deno.remove(lock);
    const both = await Promise.allSettled([
      tokenizeToShards(inputs(), { outDir: out, ...quiet }),
      tokenizeToShards(inputs(), { outDir: out, ...quiet }),
    ]);
    assertEquals(both.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
    const refused = both.find((r) => r.status === "rejected") as PromiseRejectedResult;
    ok(/is in use: a edufineweb shard run \(pid \d+\)/.test(refused.reason.message));
    ok(!existsSync(lock), "released when the run ends");
    // a dead holder: a process that has exited
    const child = new Deno.Command("true").spawn();
    await child.status;
    await Deno.writeTextFile(lock, holder(child.pid, 12345));
    await tokenizeToShards(inputs(), { outDir: out, ...quiet, restart: true });
    ok(!existsSync(lock));
    // a live pid whose start time is another's: the pid was reused, the lock is stale
    await Deno.writeTextFile(lock, holder(Deno.pid, -1));
    await tokenizeToShards(inputs(), { outDir: out, ...quiet });
  });
});

Deno.test("prepare-shakespeare task: an --out of files it did not write is refused and left alone", async () => {
  await withDir(async (out) => {
    await Deno.writeTextFile(join(out, "tinyshakespeare_val_000000.npy"), "someone else's");
    const r = await runTask([
      "lib/cli/prepare_shakespeare.ts",
      "--data",
      shakespearePath,
      "--out",
      out,
    ]);
    assertEquals(r.code, 1, r.stderr);
    ok(
      r.stderr.includes(
        `error: --out ${out} holds files no shard run wrote (no tinyshakespeare_progress.json): ` +
          "tinyshakespeare_val_000000.npy;",
      ),
      r.stderr,
    );
    assertEquals(
      await Deno.readTextFile(join(out, "tinyshakespeare_val_000000.npy")),
      "someone else's",
    );
  });
});

Deno.test("fineweb inputs: an input that cannot be read is named, not only the OS's words", async () => {
  await withDir(async (out) => {
    const missing = join(out, "gone.jsonl");
    await rejects(
      tokenizeToShards([{ name: missing, path: () => Promise.resolve(missing) }], {
        outDir: join(out, "shards"),
        ...quiet,
      }),
      (e: Error) => e.message.startsWith(`Cannot read the input ${missing}: `),
    );
  });
});
