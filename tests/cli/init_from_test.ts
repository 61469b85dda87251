// `deno task train --init-from` and `--preset shakespeare-finetune` (lib/cli/train.ts), offline
// on the tiny reference model in the Hugging Face layout: the preset's settings and --help;
// a couple of steps whose first loss and first val loss are the loaded (padded) model's, with
// the losses before and after printed; --steps 0 saving the loaded weights; a fine-tuning run
// resumed (its shape from the checkpoint, the preset's gpt2 not fetched); and the bad values,
// refused naming the flag and the path before anything is written.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { openTokenData } from "../../lib/data/shard_loader.ts";
import { readSafetensors, toFloat32 } from "../../lib/io/safetensors.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { noGrad, Tensor } from "../../lib/model/tensor.ts";
import {
  assertSameBits,
  referenceDir,
  repoRoot,
  runTask,
  shakespearePath,
  type TaskOutput,
} from "../support.ts";

/** 2 layers, 2 heads, 16 channels, block 128, GPT-2's 50257 tokens; random weights. */
const TINY = join(referenceDir, "tiny-gpt2-vocab50257");

/** The first 20,000 characters of Tiny Shakespeare, as `--data` (90% train, 10% val). */
async function smallText(): Promise<string> {
  const path = join(await Deno.makeTempDir(), "shakespeare_head.txt");
  await Deno.writeTextFile(path, (await Deno.readTextFile(shakespearePath)).slice(0, 20_000));
  return path;
}

/** `deno task train` on the reference backend with `args`. */
function train(args: string[]): Promise<TaskOutput> {
  return runTask(["lib/cli/train.ts", "--backend", "cpu", ...args]);
}

/** {@linkcode train} with the Hugging Face hub unreachable: a download would fail at once. */
async function trainOffline(args: string[]): Promise<TaskOutput> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "lib/cli/train.ts", "--backend", "cpu", ...args],
    cwd: repoRoot,
    env: { NO_COLOR: "1", HF_ENDPOINT: "http://127.0.0.1:9" }, // nothing listens there
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * The tiny model's mean cross-entropy on the first (2, 16) batch of `split`, its vocabulary
 * padded to 50304 with zero rows: 47 more logits of value 0 per position (lm_head has no bias).
 */
async function paddedLoss(data: string, split: "train" | "val"): Promise<number> {
  const backend = new CpuBackend();
  const model = await fromPretrained(backend, TINY);
  const { x, y } = (await openTokenData(data, split, 2, 16)).nextBatch();
  const logits = await noGrad(async () =>
    (await model.forward(Tensor.from(backend, x, [2, 16])).logits.toArray()) as Float32Array
  );
  let sum = 0;
  for (let n = 0; n < y.length; n++) {
    const row = logits.subarray(n * 50257, (n + 1) * 50257);
    const max = Math.max(0, ...row);
    let z = 47 * Math.exp(-max);
    for (const l of row) z += Math.exp(l - max);
    sum += max + Math.log(z) - row[y[n]];
  }
  return sum / y.length;
}

/** The number after `label` in `text` (the first such line). */
function numberAfter(text: string, label: RegExp): number {
  const m = new RegExp(`${label.source}\\s*(-?[\\d.]+)`).exec(text);
  if (!m) throw new Error(`Expected ${label} in the output, found none:\n${text}`);
  return Number(m[1]);
}

Deno.test("train --help: the shakespeare-finetune preset and --init-from with their defaults", async () => {
  const r = await train(["--help"]);
  assertEquals(r.code, 0, r.stderr);
  ok(
    r.stdout.includes(
      "shakespeare, gpt2-124M-fineweb, gpt2-124M-fineweb-40B,\n" + " ".repeat(26) +
        "gpt2-124M-fineweb-T2048, shakespeare-finetune",
    ),
    r.stdout,
  );
  ok(/--init-from SRC\s+fine-tune: start from/.test(r.stdout), r.stdout);
  ok(r.stdout.includes("shakespeare-finetune: gpt2]"), r.stdout);
  ok(r.stdout.includes("shakespeare-finetune: 0.00003]"), r.stdout);
});

Deno.test("train --preset shakespeare-finetune --init-from DIR: offline, its settings, the loaded model's losses first, before and after printed", async () => {
  const data = await smallText();
  const logDir = await Deno.makeTempDir();
  const r = await train([
    "--preset",
    "shakespeare-finetune",
    "--init-from",
    TINY,
    "--data",
    data,
    "-B",
    "2",
    "-T",
    "16",
    "--steps",
    "2",
    "--eval-every",
    "1",
    "--val-batches",
    "1",
    "--log-dir",
    logDir,
  ]);
  assertEquals(r.code, 0, r.stderr);
  const out = r.stdout;
  for (
    const line of [
      "preset shakespeare-finetune: nanoGPT's finetune_shakespeare",
      "  model = custom  (the shape --init-from loads; preset: gpt2)",
      `  initFrom = ${TINY}  (--init-from; preset: gpt2)`,
      "  vocabSize = 50304\n",
      "  maxLr = 0.00003\n",
      "  minLr = 0.00003\n",
      "  warmupSteps = 0\n",
      "  weightDecay = 0.1\n",
      `init from ${TINY}, a Hugging Face folder: weights only`,
      "vocabulary padded 50257 -> 50304 with zero rows",
    ]
  ) ok(out.includes(line), `${JSON.stringify(line)} in\n${out}`);
  // a constant rate: both steps at 3e-5
  assertEquals(out.match(/\| lr 3\.0000e-5 \|/g)?.length, 2, out);
  const step0 = numberAfter(out, /step {5}0 \| loss:/);
  const expectedTrain = await paddedLoss(data, "train");
  // printed to 6 decimals; float32 sums
  ok(Math.abs(step0 - expectedTrain) <= 2e-5, `step 0 loss ${step0}, expected ${expectedTrain}`);
  const before = numberAfter(out, /validation loss:/); // 4 decimals
  const expectedVal = await paddedLoss(data, "val");
  ok(Math.abs(before - expectedVal) <= 1e-4, `val loss before ${before}, expected ${expectedVal}`);
  const vals = [...out.matchAll(/^validation loss: ([\d.]+)$/gm)].map((m) => m[1]);
  assertEquals(vals.length, 2, out);
  ok(
    out.includes(
      `fine-tuning from ${TINY}: val loss ${vals[0]} before (step 0, the loaded weights), ${
        vals[1]
      } after (step 1, the last evaluation)`,
    ),
    out,
  );
});

Deno.test("train --init-from DIR --steps 0: the saved model is the loaded one, kept or padded with zero rows", async () => {
  const data = await smallText();
  const original = (await readSafetensors(join(TINY, "model.safetensors"))).tensors;
  for (const vocab of ["50257", "50304"]) {
    const logDir = await Deno.makeTempDir();
    const r = await train([
      "--init-from",
      TINY,
      "--vocab-size",
      vocab,
      "--steps",
      "0",
      "--data",
      data,
      "--log-dir",
      logDir,
    ]);
    assertEquals(r.code, 0, r.stderr);
    const saved = (await readSafetensors(join(logDir, "model", "model.safetensors"))).tensors;
    for (const [name, t] of original) {
      if (name.endsWith(".attn.bias")) continue; // the causal mask, not a weight
      const a = toFloat32(saved.get(name)!, name), e = toFloat32(t, name);
      if (name !== "wte.weight") {
        assertSameBits(name, a, e);
        continue;
      }
      assertEquals(a.length, Number(vocab) * 16);
      assertSameBits("wte.weight's first 50257 rows", a.subarray(0, e.length), e);
      ok(a.subarray(e.length).every((v) => v === 0), "the padding rows are zero");
    }
  }
});

Deno.test("train --resume of a fine-tuning run: the shape from its checkpoint, the preset's gpt2 never fetched", async () => {
  const data = await smallText();
  const logDir = await Deno.makeTempDir();
  const common = ["--data", data, "-B", "2", "-T", "16", "--eval-every", "0", "--log-dir", logDir];
  const first = await trainOffline([
    "--init-from",
    TINY,
    "--steps",
    "2",
    "--checkpoint-every",
    "1",
    ...common,
  ]);
  assertEquals(first.code, 0, first.stderr);
  // the default preset has no --init-from: the checkpoint's settings say it was a fine-tuning run
  const second = await trainOffline(["--resume", "latest", "--steps", "3", ...common]);
  assertEquals(second.code, 0, second.stderr);
  ok(second.stdout.includes("resuming a fine-tuning run"), second.stdout);
  ok(second.stdout.includes("  model = custom  (the shape resumed; preset: auto)"), second.stdout);
  ok(second.stdout.includes(`at step 2`) && second.stdout.includes("step     2 |"), second.stdout);
  // the fine-tuning preset's --init-from gpt2 is not loaded on resume: the hub is not asked
  const third = await trainOffline([
    "--preset",
    "shakespeare-finetune",
    "--resume",
    "latest",
    "--steps",
    "4",
    ...common,
  ]);
  assertEquals(third.code, 0, third.stderr);
  ok(third.stdout.includes("step     3 |") && !third.stdout.includes("init from"), third.stdout);
});

Deno.test("train --init-from: a missing path, a folder without model.safetensors, and --resume too are errors naming the flag and the path; nothing is written", async () => {
  const dir = await Deno.makeTempDir();
  const logDir = join(dir, "log");
  const configOnly = join(dir, "config_only");
  await Deno.mkdir(configOnly);
  await Deno.copyFile(join(TINY, "config.json"), join(configOnly, "config.json"));
  const cases: [string[], string][] = [
    [["--init-from", "/nonexistent"], "--init-from /nonexistent: expected a Hugging Face folder"],
    [
      ["--init-from", configOnly],
      `--init-from ${configOnly}: expected a Hugging Face folder (config.json and model.safetensors), a checkpoint folder, an llm.c .bin model file or a GPT-2 model type (gpt2, gpt2-medium, gpt2-large, gpt2-xl), found a folder without model.safetensors`,
    ],
    [
      ["--init-from", TINY, "--resume", "latest"],
      `--init-from ${TINY} and --resume latest both give the weights to start from`,
    ],
    [
      ["--init-from", TINY, "--n-layer", "4"],
      `--n-layer 4 asks for n_layer 4, but --init-from ${TINY} holds n_layer 2`,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await train([...args, "--log-dir", logDir]);
    assertEquals(r.code, 1, r.stdout);
    ok(r.stderr.includes(`error: ${message}`), r.stderr);
  }
  ok(!(await Deno.stat(logDir).catch(() => null)), "the log folder was not made");
});
