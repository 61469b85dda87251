// `deno task hellaswag` (lib/cli/hellaswag.ts) on the tiny vocab-50257 model's first examples; an
// empty file refused, and weights holding non-finite values evaluated with a warning.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { readSafetensors, toFloat32, writeSafetensors } from "../../lib/io/safetensors.ts";
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

Deno.test("hellaswag task: an empty file is an error naming it, not 0/0 accuracy", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const empty = join(dir, "hellaswag_val.jsonl");
    await Deno.writeTextFile(empty, "");
    const r = await runTask(["lib/cli/hellaswag.ts", "--weights", MODEL, "--data", empty]);
    assertEquals(r.code, 1);
    ok(
      r.stderr.includes(
        `error: Expected HellaSwag examples (one JSON object a line) in ${empty}, found none`,
      ),
      r.stderr,
    );
    ok(!r.stdout.includes("acc"), r.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hellaswag task: a bad --limit or --data is said before the weights are looked for", async () => {
  // the weights do not exist: the flag's error first means no download would have started
  const limit = await runTask([
    "lib/cli/hellaswag.ts",
    "--weights",
    "/nonexistent",
    "--limit",
    "0",
  ]);
  assertEquals(limit.code, 1);
  ok(limit.stderr.includes('error: --limit expects an integer >= 1, found "0"'), limit.stderr);
  const data = await runTask(
    ["lib/cli/hellaswag.ts", "--weights", "/nonexistent", "--data", "/nonexistent.jsonl"],
  );
  assertEquals(data.code, 1);
  ok(data.stderr.includes("/nonexistent.jsonl") && !data.stderr.includes("--weights"), data.stderr);
});

Deno.test("hellaswag task: weights with infinite values are evaluated, with a warning naming the tensors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = await readSafetensors(join(MODEL, "model.safetensors"));
    const tensors = new Map<string, { data: Float32Array; shape: number[] }>();
    for (const [k, t] of src.tensors) {
      tensors.set(k, { data: toFloat32(t).slice(), shape: t.shape });
    }
    tensors.get("ln_f.bias")!.data.fill(Infinity, 0, 2);
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    await Deno.copyFile(join(MODEL, "config.json"), join(dir, "config.json"));
    const r = await runTask(
      ["lib/cli/hellaswag.ts", "--weights", dir, "--data", VAL, "--limit", "1", "--json"],
    );
    assertEquals(r.code, 0, r.stderr);
    ok(
      r.stderr.includes(
        `warning: ${dir}/model.safetensors: 1 tensor holds NaN or infinite values: ` +
          "ln_f.bias (2 of 16); what this model computes will not mean anything",
      ),
      r.stderr,
    );
    assertEquals(JSON.parse(r.stdout).total, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
