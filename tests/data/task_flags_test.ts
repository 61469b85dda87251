// The data tasks' numeric flags are bounded: `deno task fineweb` and `deno task
// prepare-shakespeare` fail before any work with a message naming the flag and the range,
// and the shard writer and tokenizer pool refuse sizes that would exhaust the memory.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import { ShardWriter, TokenizerPool } from "../../lib/data/fineweb/mod.ts";
import { runTask } from "../support.ts";

Deno.test("data tasks: numbers out of range name the flag and the range, and write nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "task_flags_" });
  try {
    const out = join(dir, "out");
    const cases: [string, string[], string][] = [
      [
        "fineweb",
        ["--shard-size", "1e12"],
        '--shard-size expects an integer in [1000, 1000000000], found "1e12"',
      ],
      [
        "fineweb",
        ["--shard-size", "10"],
        '--shard-size expects an integer in [1000, 1000000000], found "10"',
      ],
      [
        "fineweb",
        ["--workers", "100000"],
        '--workers expects an integer in [1, 256], found "100000"',
      ],
      [
        "fineweb",
        ["--limit-files", "1e9"],
        '--limit-files expects an integer in [1, 100000], found "1e9"',
      ],
      [
        "fineweb",
        ["--bench", "--bench-repeat", "1e9"],
        '--bench-repeat expects an integer in [1, 1000], found "1e9"',
      ],
      [
        "prepare_shakespeare",
        ["--shard-size", "1e12"],
        '--shard-size expects an integer in [1000, 1000000000], found "1e12"',
      ],
    ];
    for (const [task, args, message] of cases) {
      // --limit-files counts the hub's files: checked before the hub is asked
      const local = task === "fineweb" && !args.includes("--limit-files");
      const input = local ? ["--input", join(dir, "none.jsonl")] : [];
      await Deno.writeTextFile(join(dir, "none.jsonl"), '{"text": "a"}\n');
      const r = await runTask([`lib/cli/${task}.ts`, ...input, "--out", out, ...args]);
      assertEquals(r.code, 1, r.stderr);
      ok(r.stderr.includes(`error: ${message}`), r.stderr);
    }
    await Deno.stat(out).then(() => ok(false, `${out} was made`), () => {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("data tasks: the shard writer and the tokenizer pool refuse sizes beyond their bounds", () => {
  throws(
    () => new ShardWriter("/nonexistent", { shardSize: 2e9, prefix: "x" }),
    /1 to 1000000000 tokens, found 2000000000/,
  );
  throws(() => new TokenizerPool(100_000), /Expected 1 to 256 tokenizing workers, found 100000/);
});
