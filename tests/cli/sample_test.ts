// `deno task sample` (lib/cli/sample.ts): PyTorch's greedy continuation on the tiny reference model,
// top-k text reproducible by seed, and strict flags: --prompt-ids, --max-length and
// --num-return-sequences bounds, --weights that names no folder, and weights holding NaN.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { readSafetensors, toFloat32, writeSafetensors } from "../../lib/io/safetensors.ts";
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

/** `deno task sample` on the tiny reference model (vocab 64, block size 16) with `args`. */
function sampleTiny(...args: string[]) {
  return runTask(["lib/cli/sample.ts", "--weights", join(referenceDir, "tiny-gpt2"), ...args]);
}

Deno.test("sample task: empty --prompt-ids items are errors naming the flag, not token 0", async () => {
  const V = "--prompt-ids expects comma-separated integers in [0, 64)";
  for (
    const [ids, found] of [
      ["", "an empty list"],
      ["5,40,", 'an empty item (number 3) in "5,40,"'],
      ["5,,40", 'an empty item (number 2) in "5,,40"'],
      ["5,1e1", '"1e1"'],
      ["5,64", '"64"'],
    ]
  ) {
    const r = await sampleTiny("--prompt-ids", ids, "--json");
    assertEquals(r.code, 1, ids);
    ok(r.stderr.includes(`error: ${V}, found ${found}\n`), r.stderr);
    assertEquals(r.stdout, "", "no sequence printed");
  }
});

Deno.test("sample task: --max-length and --num-return-sequences are bounded by the block size and memory, at once", async () => {
  const long = await sampleTiny("--prompt-ids", "5,40", "--max-length", "257");
  assertEquals(long.code, 1);
  ok(
    long.stderr.includes(
      'error: --max-length expects an integer in [2, 256] (at most 16 x the model\'s block size 16), found "257"',
    ),
    long.stderr,
  );
  const start = performance.now();
  const many = await sampleTiny("--prompt-ids", "5,40", "--num-return-sequences", "1e9");
  const seconds = (performance.now() - start) / 1000;
  assertEquals(many.code, 1);
  ok(
    /error: --num-return-sequences expects an integer in \[1, \d+\] for --max-length 30, found "1e9": each sequence needs about [\d.]+ KiB per step \(16 x 64 logits and activations\), and half of this machine's [\d.]+ GiB of memory holds \d+/
      .test(many.stderr),
    many.stderr,
  );
  ok(seconds < 5, `refused after ${seconds.toFixed(1)} s`);
  // within the bounds, past the block size: cropped with a note, as before
  const cropped = await sampleTiny("--prompt-ids", "5,40", "--max-length", "20", "--greedy");
  assertEquals(cropped.code, 0, cropped.stderr);
  ok(cropped.stdout.includes("the context is cropped to 16"), cropped.stdout);
});

Deno.test("sample task: --weights naming nothing says what the flag takes", async () => {
  const r = await runTask(["lib/cli/sample.ts", "--weights", "/nonexistent/run/model"]);
  assertEquals(r.code, 1);
  ok(
    r.stderr.includes(
      "error: --weights /nonexistent/run/model: expected a Hugging Face folder (config.json and " +
        "model.safetensors), a checkpoint folder, an llm.c .bin model file or a GPT-2 model type " +
        "(gpt2, gpt2-medium, gpt2-large, gpt2-xl), found no such file or folder",
    ),
    r.stderr,
  );
});

Deno.test("sample task: flags that need no model are checked before the weights are looked for", async () => {
  // the weights do not exist: a flag error first means no download would have started
  for (
    const [flag, value] of [["--top-k", "0"], ["--seed", "1.5"], ["--num-return-sequences", "0"], [
      "--max-length",
      "x",
    ]]
  ) {
    const r = await runTask(["lib/cli/sample.ts", "--weights", "/nonexistent", flag, value]);
    assertEquals(r.code, 1);
    ok(new RegExp(`error: ${flag} expects an integer`).test(r.stderr), r.stderr);
    ok(!r.stderr.includes("/nonexistent"), r.stderr);
  }
});

Deno.test("sample task: weights with NaN values still sample, with a warning on stderr naming the tensors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = await readSafetensors(join(referenceDir, "tiny-gpt2", "model.safetensors"));
    const tensors = new Map<string, { data: Float32Array; shape: number[] }>();
    for (const [k, t] of src.tensors) {
      tensors.set(k, { data: toFloat32(t).slice(), shape: t.shape });
    }
    tensors.get("h.1.mlp.c_fc.weight")!.data[3] = NaN;
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    await Deno.copyFile(join(referenceDir, "tiny-gpt2", "config.json"), join(dir, "config.json"));
    const r = await runTask([
      "lib/cli/sample.ts",
      "--weights",
      dir,
      "--prompt-ids",
      "5,40",
      "--max-length",
      "4",
      "--num-return-sequences",
      "1",
      "--json",
    ]);
    assertEquals(r.code, 0, r.stderr);
    ok(
      r.stderr.includes(
        `warning: ${dir}/model.safetensors: 1 tensor holds NaN or infinite values: ` +
          "h.1.mlp.c_fc.weight (1 of 4096); what this model computes will not mean anything",
      ),
      r.stderr,
    );
    assertEquals(JSON.parse(r.stdout).tokens.length, 4); // stdout stays pure JSON
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
