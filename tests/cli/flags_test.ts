// lib/cli/flags.ts through the tasks that use it: a bad flag value and a prompt the model cannot
// read fail with exit code 1 and a message naming them (a missing data file, in-process:
// tests/train/settings_test.ts).
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import { numberFlag, parseFlags } from "../../lib/cli/flags.ts";
import { referenceDir, runTask } from "../support.ts";

Deno.test("tasks: a bad flag and an unreadable prompt fail with a message naming them", async () => {
  const bad = await runTask(["lib/cli/train.ts", "--steps", "ten"]);
  assertEquals(bad.code, 1);
  ok(bad.stderr.includes('--steps expects an integer >= 0, found "ten"'), bad.stderr);
  const prompt = await runTask(["lib/cli/sample.ts", "--weights", join(referenceDir, "tiny-gpt2")]);
  assertEquals(prompt.code, 1);
  ok(prompt.stderr.includes("outside this model's vocabulary of 64"), prompt.stderr);
});

Deno.test("parseFlags: a negative number after a flag is its value, checked against the flag's range", () => {
  const options = { steps: { type: "string" }, batch: { type: "string", short: "B" } } as const;
  const f = parseFlags(["--steps", "-1", "-B", "-2.5"], options);
  assertEquals({ ...f }, { steps: "-1", batch: "-2.5" });
  throws(() => numberFlag(f, "steps", 0, { integer: true, min: 0 }), {
    message: '--steps expects an integer >= 0, found "-1"',
  });
  // a flag after a flag is still a missing value
  throws(() => parseFlags(["--steps", "--batch", "3"], options), /argument is ambiguous/);
});
