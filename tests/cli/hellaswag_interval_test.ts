// `deno task hellaswag` (lib/cli/hellaswag.ts): acc and acc_norm printed with their 95% Wilson
// intervals, on the terminal and in --json, for the tiny vocab-50257 model's first 4 examples.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { referenceDir, runTask, sharedDataDir } from "../support.ts";

const VAL = join(sharedDataDir, "hellaswag", "hellaswag_val.jsonl");
const MODEL = join(referenceDir, "tiny-gpt2-vocab50257");
const ARGS = ["lib/cli/hellaswag.ts", "--weights", MODEL, "--data", VAL, "--limit", "4"]
  .concat(["--backend", "cpu"]);

// The reference's first 4 examples: acc 1/4, acc_norm 0/4 (tests/cli/hellaswag_test.ts).
// Wilson, z = 1.96, n = 4, z^2/n = 0.9604, denominator 1.9604:
//   1/4: centre = (0.25 + 0.4802) / 1.9604 = 0.372475,
//        half = 1.96 * sqrt(0.1875/4 + 3.8416/64) / 1.9604 = 1.96 * 0.326956 / 1.9604 = 0.326893
//        -> 0.0456-0.6994
//   0/4: centre = half = 0.4802 / 1.9604 = 0.244950 -> 0-0.4899
Deno.test("hellaswag task: acc and acc_norm with their 95% intervals", async () => {
  const r = await runTask(ARGS);
  assertEquals(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  ok(lines.includes("HellaSwag acc: 1/4 = 0.2500 (95% CI 0.046-0.699, n=4)"), r.stdout);
  ok(lines.includes("HellaSwag acc_norm: 0/4 = 0.0000 (95% CI 0.000-0.490, n=4)"), r.stdout);
  // the progress bar, on stderr
  ok(/^hellaswag: 100%, 4\/4 examples, .* in \d+:\d\d$/m.test(r.stderr), r.stderr);
});

Deno.test("hellaswag task: --json carries the intervals as [low, high]", async () => {
  const r = await runTask([...ARGS, "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const { accCi95, accNormCi95 } = JSON.parse(r.stdout);
  const near = (a: number[], e: number[]) =>
    ok(a.length === 2 && a.every((x, i) => Math.abs(x - e[i]) < 1e-4), `${a} against ${e}`);
  near(accCi95, [0.0456, 0.6994]);
  near(accNormCi95, [0, 0.4899]);
});
