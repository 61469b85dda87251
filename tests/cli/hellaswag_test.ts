// `deno task hellaswag` (lib/cli/hellaswag.ts) on the tiny vocab-50257 model's first examples.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { referenceDir, runTask, sharedDataDir } from "../support.ts";

const VAL = join(sharedDataDir, "hellaswag", "hellaswag_val.jsonl");
const MODEL = join(referenceDir, "tiny-gpt2-vocab50257");

Deno.test("hellaswag task: --limit --json prints the counts and the rate", async () => {
  const { code, stdout, stderr } = await runTask(
    ["lib/cli/hellaswag.ts", "--weights", MODEL, "--data", VAL]
      .concat(["--limit", "4", "--backend", "cpu", "--json"]),
  );
  assertEquals(code, 0, stderr);
  const result = JSON.parse(stdout);
  // the reference's first 4 predictions: 1, 1, 2, 0 against labels 3, 3, 2, 2 (pred_norm 1, 1, 1, 0)
  assertEquals([result.total, result.correct, result.correctNorm], [4, 1, 0]);
  ok(result.examplesPerSecond > 0 && stderr.includes("hellaswag"), stderr);
});
