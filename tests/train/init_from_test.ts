// lib/train/init_from.ts, with the one loader (lib/weights) resolving --init-from, through
// train(): a run started from the tiny reference model (full
// GPT-2 vocabulary) takes its first step on that model's loss for the first batch and its
// first evaluation on that model's validation loss, the vocabulary kept or padded with zero
// rows (the padded loss worked out here from the unpadded logits); 0 steps save the loaded
// weights exactly; a checkpoint gives its weights only; llm.c .bin files and hub names (from
// the cache, offline) load; and what cannot be a starting point is refused, naming the flag.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { openTokenData } from "../../lib/data/shard_loader.ts";
import { writeLlmcModel } from "../../lib/io/llmc.ts";
import { readSafetensors, toFloat32 } from "../../lib/io/safetensors.ts";
import { fromPretrained, savePretrained } from "../../lib/model/pretrained.ts";
import { SpeedrunGPT } from "../../lib/speedrun/model.ts";
import { resolveWeights, type WeightsSource } from "../../lib/weights/resolve.ts";
import { saveModelFolder } from "../../lib/weights/folder.ts";
import { noGrad, Tensor } from "../../lib/model/tensor.ts";
import { readCheckpointState } from "../../lib/train/checkpoint.ts";
import { formatFineTuneLosses, initConfig, loadInitialModel } from "../../lib/train/init_from.ts";
import { train, type TrainOptions } from "../../lib/train/train.ts";
import {
  assertSameBits,
  referenceDir,
  runCheckpoints,
  shakespearePath,
  smallRecipe,
} from "../support.ts";

/** 2 layers, 2 heads, 16 channels, block 128, GPT-2's 50257 tokens; random weights. */
const TINY = join(referenceDir, "tiny-gpt2-vocab50257");
const B = 2, T = 16;

/** `--init-from source`, resolved by the one loader. */
function resolveInitFrom(source: string, options: { progress?: boolean } = {}) {
  return resolveWeights(source, { flag: "--init-from", ...options });
}

/** The first 20,000 characters of Tiny Shakespeare: 90% train, 10% val, quick to tokenize. */
async function smallText(): Promise<string> {
  const path = join(await Deno.makeTempDir(), "shakespeare_head.txt");
  await Deno.writeTextFile(path, (await Deno.readTextFile(shakespearePath)).slice(0, 20_000));
  return path;
}

/** A one-micro-step run of `source` on `data`, nothing written, no evaluation. */
function recipe(source: WeightsSource, data: string, extra: Partial<TrainOptions>): TrainOptions {
  return {
    backend: new CpuBackend(),
    config: extra.config ?? initConfig(source, 50257),
    dataPath: data,
    B,
    T,
    totalBatchSize: B * T,
    steps: 1,
    maxLr: 3e-5,
    minLr: 3e-5,
    warmupSteps: 0,
    weightDecay: 0.1,
    seed: 1337,
    logDir: null,
    evalEvery: 0,
    handleSignals: false,
    initFrom: source,
    ...extra,
  };
}

/**
 * The mean cross-entropy of `logits` ([N, V] flat) against `targets`, with `extra` more logits
 * of value 0 per row (what zero rows of a tied wte give: lm_head has no bias), in float64.
 */
function crossEntropy(logits: Float32Array, targets: Int32Array, V: number, extra = 0): number {
  let sum = 0;
  for (let n = 0; n < targets.length; n++) {
    const row = logits.subarray(n * V, (n + 1) * V);
    let max = extra > 0 ? 0 : -Infinity;
    for (const l of row) max = Math.max(max, l);
    let z = extra * Math.exp(-max);
    for (const l of row) z += Math.exp(l - max);
    sum += max + Math.log(z) - row[targets[n]];
  }
  return sum / targets.length;
}

/** The tiny model's logits and targets on the first batch of `split`, on the host. */
async function firstBatchLogits(
  data: string,
  split: "train" | "val",
): Promise<{ logits: Float32Array; targets: Int32Array }> {
  const backend = new CpuBackend();
  const model = await fromPretrained(backend, TINY);
  const { x, y } = (await openTokenData(data, split, B, T)).nextBatch();
  const logits = await noGrad(async () => {
    const out = model.forward(Tensor.from(backend, x, [B, T]));
    return (await out.logits.toArray()) as Float32Array;
  });
  return { logits, targets: Int32Array.from(y) };
}

/** Asserts `actual` is within float32 rounding of `expected`. */
function assertLoss(name: string, actual: number, expected: number): void {
  ok(
    Math.abs(actual - expected) <= 2e-6 * Math.abs(expected),
    `${name}: ${actual}, expected ${expected}`,
  );
}

/** The tensors of a Hugging Face folder by name, the causal-mask buffers left out. */
async function folderTensors(dir: string): Promise<Map<string, Float32Array>> {
  const st = await readSafetensors(join(dir, "model.safetensors"));
  const out = new Map<string, Float32Array>();
  for (const [key, t] of st.tensors) {
    if (key.endsWith(".attn.bias") || key.endsWith(".attn.masked_bias")) continue;
    out.set(key, toFloat32(t, key));
  }
  return out;
}

Deno.test("init from: the first step's loss and the first val loss are the loaded model's, vocabulary kept", async () => {
  const data = await smallText();
  const source = await resolveInitFrom(TINY);
  assertEquals(source.config, {
    n_layer: 2,
    n_head: 2,
    n_embd: 16,
    block_size: 128,
    vocab_size: 50257,
  });
  const r = await train(recipe(source, data, { evalEvery: 1, valBatches: 1, sampleLength: 10 }));
  const trainBatch = await firstBatchLogits(data, "train");
  assertLoss(
    "step 0 loss",
    r.history[0].loss,
    crossEntropy(trainBatch.logits, trainBatch.targets, 50257),
  );
  const valBatch = await firstBatchLogits(data, "val");
  assertLoss(
    "val loss at step 0",
    r.evals[0].valLoss,
    crossEntropy(valBatch.logits, valBatch.targets, 50257),
  );
  assertEquals(r.model.config.vocab_size, 50257);
});

Deno.test("init from: padded 50257 -> 50304 with zero rows, the first loss is the loaded logits' with 47 zero logits more", async () => {
  const data = await smallText();
  const source = await resolveInitFrom(TINY);
  const lines: string[] = [];
  const log = console.log;
  console.log = (line: string) => lines.push(line);
  let r;
  try {
    r = await train(recipe(source, data, { config: initConfig(source, 50304) }));
  } finally {
    console.log = log;
  }
  ok(
    lines.some((l) => l.includes("vocabulary padded 50257 -> 50304 with zero rows")),
    lines.join("\n"),
  );
  const { logits, targets } = await firstBatchLogits(data, "train");
  const padded = crossEntropy(logits, targets, 50257, 47);
  assertLoss("step 0 loss", r.history[0].loss, padded);
  ok(padded > crossEntropy(logits, targets, 50257), "47 more logits raise the loss");
});

Deno.test("init from: 0 steps save the loaded weights exactly; padded, the first rows equal and the rest zero", async () => {
  const data = await smallText();
  const source = await resolveInitFrom(TINY);
  const original = await folderTensors(TINY);
  for (const vocab of [50257, 50304]) {
    const logDir = await Deno.makeTempDir();
    const r = await train(
      recipe(source, data, { steps: 0, logDir, config: initConfig(source, vocab) }),
    );
    assertEquals(r.history, []);
    const saved = await folderTensors(r.modelDir!);
    assertEquals([...saved.keys()].sort(), [...original.keys()].sort());
    for (const [name, data] of original) {
      if (name !== "wte.weight") assertSameBits(name, saved.get(name)!, data);
    }
    const wte = saved.get("wte.weight")!;
    assertEquals(wte.length, vocab * 16);
    assertSameBits(
      "wte.weight's first 50257 rows",
      wte.subarray(0, 50257 * 16),
      original.get("wte.weight")!,
    );
    ok(wte.subarray(50257 * 16).every((v) => v === 0), "the padding rows are zero");
  }
});

Deno.test("init from: a checkpoint gives its weights only: the data from its start, AdamW from step 0", async () => {
  const data = await smallText();
  const first = await Deno.makeTempDir();
  await train(smallRecipe({ dataPath: data, totalBatchSize: B * T, steps: 3, logDir: first }));
  const [ckpt] = await runCheckpoints(first);
  assertEquals(ckpt.step, 3);
  const source = await resolveInitFrom(ckpt.path);
  ok(source.kind.includes("checkpoint folder (step 3"), source.kind);

  const second = await Deno.makeTempDir();
  const r = await train(
    recipe(source, data, { config: initConfig(source, 50304), logDir: second }),
  );
  // the first batch of the data, not the checkpoint's position, on the checkpoint's weights
  const backend = new CpuBackend();
  const model = await fromPretrained(backend, ckpt.path);
  const { x, y } = (await openTokenData(data, "train", B, T)).nextBatch();
  const { loss } = model.forward(Tensor.from(backend, x, [B, T]), Tensor.from(backend, y, [B, T]));
  assertLoss("step 0 loss", r.history[0].loss, await loss!.item());
  const [after] = await runCheckpoints(second);
  const state = await readCheckpointState(after.path);
  assertEquals([state.step, state.optimizer.stepCount], [1, 1]); // AdamW started fresh
});

Deno.test("init from: an llm.c .bin model file, and a hub name from the cache with the hub unreachable", async () => {
  const data = await smallText();
  const dir = await Deno.makeTempDir();
  const bin = join(dir, "tiny.bin");
  await writeLlmcModel(bin, await fromPretrained(new CpuBackend(), TINY));
  const fromBin = await resolveInitFrom(bin);
  ok(fromBin.kind.includes("llm.c model file"), fromBin.kind);
  const r = await train(recipe(fromBin, data, { steps: 0, logDir: join(dir, "log") }));
  const saved = await folderTensors(r.modelDir!);
  for (const [name, t] of await folderTensors(TINY)) assertSameBits(name, saved.get(name)!, t);

  // the hub's cache folder holding "gpt2" already: no request is made
  const cache = await Deno.makeTempDir();
  const cached = join(cache, "openai-community", "gpt2");
  await Deno.mkdir(cached, { recursive: true });
  for (const file of ["config.json", "model.safetensors"]) {
    await Deno.copyFile(join(TINY, file), join(cached, file));
  }
  const env = {
    GPT2_CACHE_DIR: Deno.env.get("GPT2_CACHE_DIR"),
    HF_ENDPOINT: Deno.env.get("HF_ENDPOINT"),
  };
  Deno.env.set("GPT2_CACHE_DIR", cache);
  Deno.env.set("HF_ENDPOINT", "http://127.0.0.1:9"); // nothing listens there
  try {
    const hub = await resolveInitFrom("gpt2", { progress: false });
    assertEquals(hub.name, "gpt2");
    ok(hub.kind.includes(cached), hub.kind);
    assertEquals(hub.config.n_embd, 16);
  } finally {
    for (const [k, v] of Object.entries(env)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
  }
});

Deno.test("init from: what cannot be a starting point is refused, naming --init-from and the path", async () => {
  const empty = await Deno.makeTempDir();
  await rejects(
    resolveInitFrom(join(empty, "nope")),
    new RegExp(
      `^Error: --init-from ${empty}/nope: expected a Hugging Face folder .* found no such file or folder$`,
    ),
  );
  await Deno.copyFile(join(TINY, "config.json"), join(empty, "config.json"));
  await rejects(resolveInitFrom(empty), {
    message: new RegExp(
      `^--init-from ${empty}: expected .*, found a folder without model\\.safetensors$`,
    ),
  });
  await rejects(
    resolveInitFrom(join(TINY, "config.json")),
    /found a file that is not a \.bin model file/,
  );
  await rejects(resolveInitFrom(""), /--init-from "": expected .* found an empty name/);
  await Deno.writeTextFile(join(empty, "bad.bin"), "not a model");
  await rejects(
    resolveInitFrom(join(empty, "bad.bin")),
    new RegExp(`^Error: --init-from ${empty}/bad.bin: `),
  );

  const source = await resolveInitFrom(TINY);
  throws(
    () => initConfig(source, 50000),
    /--vocab-size expects at least 50257, the vocabulary of --init-from .*, found 50000/,
  );
  await rejects(
    loadInitialModel(new CpuBackend(), source, { ...source.config, n_layer: 3 }, () => {}),
    /the run's config asks for n_layer 3, but --init-from .* holds n_layer 2/,
  );
  // weights holding a NaN: training would only spread it
  const model = await fromPretrained(new CpuBackend(), TINY);
  const ln = model.transformer.ln_f.weight;
  const values = (await ln.toArray()) as Float32Array;
  values[3] = NaN;
  model.backend.write(ln.buffer, values);
  const nan = join(empty, "nan");
  await savePretrained(model, nan);
  await rejects(
    loadInitialModel(new CpuBackend(), await resolveInitFrom(nan), source.config, () => {}),
    new RegExp(`--init-from ${nan} holds NaN or infinite values in transformer\\.ln_f\\.weight`),
  );
});

Deno.test("init from: the losses before and after, as the run prints them", () => {
  const e = (step: number, valLoss: number) => ({ step, valLoss, hellaAcc: null, samples: [] });
  assertEquals(formatFineTuneLosses("gpt2", []), null);
  assertEquals(
    formatFineTuneLosses("gpt2", [e(0, 4.25), e(25, 3.5), e(299, 3.125)]),
    "fine-tuning from gpt2: val loss 4.2500 before (step 0, the loaded weights), 3.1250 after (step 299, the last evaluation): -1.1250",
  );
  assertEquals(
    formatFineTuneLosses("gpt2", [e(0, 4.25)]),
    "fine-tuning from gpt2: val loss 4.2500 before (step 0, the loaded weights); no later evaluation",
  );
});

Deno.test("init from: an untied head is padded with zero rows beside wte", async () => {
  const backend = new CpuBackend();
  const config = { n_layer: 1, n_head: 2, n_embd: 8, block_size: 16, vocab_size: 50257 };
  const dir = await Deno.makeTempDir();
  const untied = new SpeedrunGPT(backend, { ...config, untie_head: true }, { seed: 3 });
  await saveModelFolder(untied, dir);
  const source = await resolveInitFrom(dir);
  assertEquals(source.config.untie_head, true);
  const lines: string[] = [];
  const model = await loadInitialModel(
    backend,
    source,
    { ...source.config, vocab_size: 50304 },
    (l) => lines.push(l),
  );
  ok(model instanceof SpeedrunGPT, "padded, the untied head's model stays the speedrun's");
  ok(
    lines.some((l) => l.includes("vocabulary padded 50257 -> 50304 with zero rows")),
    lines.join("\n"),
  );
  const before = await untied.stateDict(), after = await model.stateDict();
  for (const name of ["transformer.wte.weight", "lm_head.weight"]) {
    const rows = after.get(name)!.data;
    assertEquals(rows.length, 50304 * 8, name);
    assertSameBits(name, rows.subarray(0, 50257 * 8), before.get(name)!.data);
    ok(rows.subarray(50257 * 8).every((v) => v === 0), `${name}: the padding rows are zero`);
  }
});
