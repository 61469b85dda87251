// lib/cli/flags.ts through the tasks that use it: a bad flag value, a missing data file and a prompt
// the model cannot read fail with exit code 1 and a message naming them.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { referenceDir, runTask } from "../support.ts";

Deno.test("tasks: bad flags and a missing data file fail with a message naming them", async () => {
  const bad = await runTask(["lib/cli/train.ts", "--steps", "ten"]);
  assertEquals(bad.code, 1);
  ok(bad.stderr.includes('--steps expects an integer >= 0, found "ten"'), bad.stderr);
  const missing = await runTask(["lib/cli/train.ts", "--data", "/nonexistent/input.txt"]);
  assertEquals(missing.code, 1);
  ok(missing.stderr.includes("/nonexistent/input.txt"), missing.stderr);
  const prompt = await runTask(["lib/cli/sample.ts", "--weights", join(referenceDir, "tiny-gpt2")]);
  assertEquals(prompt.code, 1);
  ok(prompt.stderr.includes("outside this model's vocabulary of 64"), prompt.stderr);
});
