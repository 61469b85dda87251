// `deno task sample` (lib/cli/sample.ts): PyTorch's greedy continuation on the tiny reference model,
// and top-k text reproducible by seed.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { referenceDir, runTask } from "../support.ts";

Deno.test("sample task: --greedy --json on the tiny reference model prints PyTorch's continuation", async () => {
  const r = await runTask([
    "lib/cli/sample.ts",
    "--weights",
    join(referenceDir, "tiny-gpt2"),
    "--prompt-ids",
    "5,40,8,43",
    "--greedy",
    "--max-length",
    "16",
    "--json",
    "--num-return-sequences",
    "2",
  ]);
  assertEquals(r.code, 0, r.stderr);
  const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(rows.length, 2);
  for (const row of rows) {
    assertEquals(row.tokens, [5, 40, 8, 43, 11, 46, 14, 49, 17, 52, 20, 55, 23, 58, 26, 61]);
  }
});

Deno.test("sample task: top-k text is reproducible by seed and changes with it", async () => {
  const run = (seed: string) =>
    runTask([
      "lib/cli/sample.ts",
      "--weights",
      join(referenceDir, "tiny-gpt2-vocab50257"),
      "--max-length",
      "14",
      "--num-return-sequences",
      "2",
      "--seed",
      seed,
      "--json",
    ]);
  const [a, b, c] = await Promise.all([run("1"), run("1"), run("2")]);
  assertEquals(a.code, 0, a.stderr);
  assertEquals(a.stdout, b.stdout);
  ok(a.stdout !== c.stdout);
  const row = JSON.parse(a.stdout.split("\n")[0]);
  assertEquals(row.tokens.slice(0, 8), [15496, 11, 314, 1101, 257, 3303, 2746, 11]);
  ok(row.text.startsWith("Hello, I'm a language model,"), row.text);
  assertEquals(row.tokens.length, 14);
});
