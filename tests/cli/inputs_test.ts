// Strict inputs through the tasks: data that is not what it claims to be (a binary or non-UTF-8
// --data file, one .npy shard, an unfinished FineWeb folder), empty FineWeb input, output
// folders that are files, and train flags given to ddp without `--`. Each failure exits 1 with
// a message naming the flag or file, and writes nothing.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeNpyUint16 } from "../../lib/io/npy.ts";
import { runTask, shakespearePath, smallModelFlags } from "../support.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "inputs_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The names in `dir`, none when it is not there. */
async function entries(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
}

/** `deno task train` on the small model for `steps` steps with `data`, logging in `logDir`. */
function train(data: string, logDir: string, steps = 1) {
  return runTask([
    "lib/cli/train.ts",
    ...smallModelFlags,
    "--steps",
    String(steps),
    "--data",
    data,
    "--log-dir",
    logDir,
  ]);
}

Deno.test("train task: a binary, a non-UTF-8 or a .npy --data file is refused, naming it; nothing is trained", async () => {
  await withTempDir(async (dir) => {
    const logDir = join(dir, "log");
    const binary = join(dir, "model.safetensors");
    await Deno.writeFile(binary, Uint8Array.of(8, 0, 0, 0, 0, 0, 0, 0, 123, 125));
    const latin1 = join(dir, "latin1.txt");
    await Deno.writeFile(latin1, Uint8Array.of(0x63, 0x61, 0x66, 0xe9, 0x0a));
    const shards = join(dir, "shards");
    await Deno.mkdir(shards);
    const shard = join(shards, "edufineweb_train_000001.npy");
    await writeNpyUint16(shard, new Uint16Array(100));
    const expected = [
      [
        binary,
        `Expected a UTF-8 text file at ${binary}, found a binary file (a NUL byte at offset 1)`,
      ],
      [
        latin1,
        `Expected a UTF-8 text file at ${latin1}, found bytes that are not UTF-8 at offset 3`,
      ],
      [
        shard,
        `Expected a shard folder or a text file at ${shard}, found one .npy shard: ` +
        `pass its folder, --data ${shards}`,
      ],
    ];
    for (const [data, message] of expected) {
      const r = await train(data, logDir);
      assertEquals(r.code, 1, r.stdout);
      ok(r.stderr.includes(`error: ${message}`), r.stderr);
      ok(!r.stdout.includes("step "), r.stdout);
      assertEquals(await entries(logDir), [], "no log, no checkpoint");
    }
  });
});

Deno.test("train task: a shard folder whose FineWeb run is unfinished trains with a warning", async () => {
  await withTempDir(async (dir) => {
    const shards = join(dir, "shards");
    await Deno.mkdir(shards);
    const tokens = (n: number) => Uint16Array.from({ length: n }, (_, i) => (i * 7) % 500);
    await writeNpyUint16(join(shards, "edufineweb_val_000000.npy"), tokens(200));
    await writeNpyUint16(join(shards, "edufineweb_train_000001.npy"), tokens(200));
    const record = join(shards, "edufineweb_progress.json");
    await Deno.writeTextFile(record, JSON.stringify({ shards: 2, complete: false }));
    const r = await train(shards, join(dir, "log"));
    assertEquals(r.code, 0, r.stderr);
    ok(
      r.stderr.includes(
        `warning: ${record} says its FineWeb run is unfinished (2 shards written so far): ` +
          "training on part of the data; rerun the same deno task fineweb command to finish it",
      ),
      r.stderr,
    );
    ok(r.stdout.includes("step "), r.stdout);
  });
});

Deno.test("fineweb task: empty input is an error and writes nothing; --out that is a file is named", async () => {
  await withTempDir(async (dir) => {
    const empty = join(dir, "empty.jsonl");
    await Deno.writeTextFile(empty, "");
    const out = join(dir, "shards");
    const r = await runTask(["lib/cli/fineweb.ts", "--input", empty, "--out", out]);
    assertEquals(r.code, 1, r.stdout);
    ok(
      r.stderr.includes(
        `error: Expected documents in the input (${empty}), found none: nothing was written`,
      ),
      r.stderr,
    );
    ok(!r.stdout.includes("shards ("), r.stdout);
    assertEquals(existsSync(out), false);

    const file = join(dir, "out.txt");
    await Deno.writeTextFile(file, "keep me");
    for (const task of ["lib/cli/fineweb.ts", "lib/cli/prepare_shakespeare.ts"]) {
      const input = task.includes("fineweb") ? ["--input", empty] : ["--data", shakespearePath];
      const f = await runTask([task, ...input, "--out", file]);
      assertEquals(f.code, 1, task);
      ok(f.stderr.includes(`error: --out ${file}: expected a folder, found a file`), f.stderr);
      assertEquals(await Deno.readTextFile(file), "keep me");
    }
  });
});

Deno.test("fineweb task: input that fills only the validation shard warns that training needs more", async () => {
  await withTempDir(async (dir) => {
    const input = join(dir, "docs.jsonl");
    await Deno.writeTextFile(input, JSON.stringify({ text: "Hello world" }) + "\n");
    const r = await runTask(["lib/cli/fineweb.ts", "--input", input, "--out", join(dir, "o")]);
    assertEquals(r.code, 0, r.stderr);
    ok(r.stdout.includes("1 shards (1 val, 0 train)"), r.stdout);
    ok(
      r.stderr.includes(
        "warning: only the validation shard was written (3 tokens, fewer than --shard-size " +
          "100000000): training needs a train shard too; pass a smaller --shard-size",
      ),
      r.stderr,
    );
  });
});

Deno.test("ddp task: train flags given without -- get a message saying where they go", async () => {
  const r = await runTask(["lib/cli/ddp.ts", "--nproc-per-node", "2", "--steps", "10"]);
  assertEquals(r.code, 1);
  ok(
    r.stderr.includes(
      "error: Unknown launcher option '--steps': train flags go after --, as in " +
        "deno task ddp --nproc-per-node 2 -- --steps ... (see --help)",
    ),
    r.stderr,
  );
  ok(!r.stdout.includes("[rank"), "no rank started");
});
