// DataLoaderLite, the training loop and the train / sample tasks end to end.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../lib/backends/native/mod.ts";
import { DataLoaderLite } from "../lib/data/data_loader.ts";
import { GPT } from "../lib/model/gpt.ts";
import { loadCheckpoint } from "../lib/train/checkpoint.ts";
import * as ops from "../lib/model/ops.ts";
import { formatPreset, getPreset } from "../lib/train/presets.ts";
import { Tensor } from "../lib/model/tensor.ts";
import { runCheckpoints, train, type TrainOptions } from "../lib/train/train.ts";
import {
  assertClose,
  referenceDir,
  shakespearePath,
  smallModelFlags,
  smallRecipe,
} from "./support.ts";

const shakespeare = shakespearePath;

Deno.test("DataLoaderLite: windows march by B*T, targets shift by one, wrap at the end", () => {
  const tokens = Int32Array.from({ length: 23 }, (_, i) => i);
  const loader = new DataLoaderLite(tokens, 2, 3);
  const a = loader.nextBatch();
  assertEquals([...a.x], [0, 1, 2, 3, 4, 5]);
  assertEquals([...a.y], [1, 2, 3, 4, 5, 6]);
  assertEquals([...loader.nextBatch().x], [6, 7, 8, 9, 10, 11]);
  assertEquals([...loader.nextBatch().x], [12, 13, 14, 15, 16, 17]);
  // 18 + 7 > 23: wrapped
  assertEquals([...loader.nextBatch().x], [0, 1, 2, 3, 4, 5]);
});

Deno.test("DataLoaderLite: each rank reads its own slice", () => {
  const tokens = Int32Array.from({ length: 40 }, (_, i) => i);
  const r0 = new DataLoaderLite(tokens, 1, 4, { processRank: 0, numProcesses: 2 });
  const r1 = new DataLoaderLite(tokens, 1, 4, { processRank: 1, numProcesses: 2 });
  assertEquals([...r0.nextBatch().x], [0, 1, 2, 3]);
  assertEquals([...r1.nextBatch().x], [4, 5, 6, 7]);
  assertEquals([...r0.nextBatch().x], [8, 9, 10, 11]);
  assertEquals([...r1.nextBatch().x], [12, 13, 14, 15]);
});

Deno.test("DataLoaderLite: too little data is an error", () => {
  let message = "";
  try {
    new DataLoaderLite(new Int32Array(10), 2, 8);
  } catch (e) {
    message = (e as Error).message;
  }
  ok(message.includes("at least 17 tokens"), message);
});

Deno.test("train: loss starts near ln(vocab), falls, log.txt in build-nanogpt's format, model saved", async () => {
  const logDir = await Deno.makeTempDir();
  const config = { n_layer: 1, n_head: 2, n_embd: 16, block_size: 32, vocab_size: 50304 };
  const { history, modelDir } = await train({
    backend: new CpuBackend(),
    config,
    dataPath: shakespeare,
    B: 2,
    T: 16,
    totalBatchSize: 64, // two micro-steps
    steps: 8,
    maxLr: 1e-2,
    minLr: 1e-3,
    warmupSteps: 2,
    weightDecay: 0.1,
    seed: 1337,
    logDir,
  });
  ok(Math.abs(history[0].loss - Math.log(50304)) < 0.3, `first loss ${history[0].loss}`);
  ok(history[7].loss < history[0].loss - 0.3, `loss ${history[0].loss} -> ${history[7].loss}`);
  const lines = (await Deno.readTextFile(join(logDir, "log.txt"))).trimEnd().split("\n");
  assertEquals(lines.length, 8);
  lines.forEach((line, i) => ok(new RegExp(`^${i} train \\d+\\.\\d{6}$`).test(line), line));
  assertEquals(lines[3], `3 train ${history[3].loss.toFixed(6)}`);
  const reloaded = await GPT.fromPretrained(new CpuBackend(), modelDir!);
  assertEquals(reloaded.config, config);
});

Deno.test("train: a total batch size that B*T does not divide is an error", async () => {
  await rejects(
    train({
      backend: new CpuBackend(),
      config: { n_layer: 1, n_head: 1, n_embd: 8, block_size: 8, vocab_size: 50257 },
      dataPath: shakespeare,
      B: 2,
      T: 8,
      totalBatchSize: 24,
      steps: 1,
      maxLr: 1e-3,
      minLr: 1e-4,
      warmupSteps: 0,
      weightDecay: 0.1,
      seed: 1,
      logDir: null,
    }),
    /--total-batch-size 24 must be divisible by B \* T = 16/,
  );
});

async function task(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...args],
    cwd: join(import.meta.dirname!, ".."),
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("sample task: --greedy --json on the tiny reference model prints PyTorch's continuation", async () => {
  const r = await task([
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
    task([
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

Deno.test("tasks: bad flags and a missing data file fail with a message naming them", async () => {
  const bad = await task(["lib/cli/train.ts", "--steps", "ten"]);
  assertEquals(bad.code, 1);
  ok(bad.stderr.includes('--steps expects an integer >= 1, found "ten"'), bad.stderr);
  const missing = await task(["lib/cli/train.ts", "--data", "/nonexistent/input.txt"]);
  assertEquals(missing.code, 1);
  ok(missing.stderr.includes("/nonexistent/input.txt"), missing.stderr);
  const prompt = await task(["lib/cli/sample.ts", "--weights", join(referenceDir, "tiny-gpt2")]);
  assertEquals(prompt.code, 1);
  ok(prompt.stderr.includes("outside this model's vocabulary of 64"), prompt.stderr);
});

// ---------------------------------------------------------------------------------------
// The full recipe: gradient accumulation, evaluation, checkpoints, exact resume, faults.

function recipe(logDir: string | null, extra: Partial<TrainOptions> = {}): TrainOptions {
  return smallRecipe({
    steps: 6,
    logDir,
    evalEvery: 3,
    valBatches: 2,
    checkpointEvery: 3,
    sampleLength: 10,
    ...extra,
  });
}

Deno.test("gradient accumulation: two micro-batches with the loss halved equal one big batch", async () => {
  const be = new CpuBackend();
  const config = { n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, vocab_size: 512 };
  const B = 4, T = 16;
  const x = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % 512);
  const y = Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 3) % 512);
  const big = new GPT(be, config, { seed: 7 });
  big.forward(Tensor.from(be, x, [B, T]), Tensor.from(be, y, [B, T])).loss!.backward();
  const grads = (m: GPT) => Promise.all(m.parameters().map((p) => p.grad!.toArray()));

  const accumulate = async (scaleLoss: boolean) => {
    const m = new GPT(be, config, { seed: 7 });
    for (let k = 0; k < 2; k++) {
      const rows = (a: Int32Array) => a.slice(k * 2 * T, (k + 1) * 2 * T);
      const { loss } = m.forward(
        Tensor.from(be, rows(x), [2, T]),
        Tensor.from(be, rows(y), [2, T]),
      );
      (scaleLoss ? ops.scale(loss!, 1 / 2) : loss!).backward();
    }
    return await grads(m);
  };
  const expected = await grads(big);
  const names = big.namedParameters().map(([n]) => n);
  const right = await accumulate(true);
  right.forEach((g, i) => assertClose(names[i], g, expected[i], { rtol: 1e-4, atol: 1e-6 }));
  // the lecture's pitfall: without dividing by the steps, the gradient is a sum (2x)
  const wrong = await accumulate(false);
  throws(() => assertClose(names[0], wrong[0], expected[0], { rtol: 1e-4, atol: 1e-6 }));
});

Deno.test("train: evaluates, samples, checkpoints, and a resumed run equals the uninterrupted one bit for bit", async () => {
  const a = await Deno.makeTempDir();
  const full = await train(recipe(a));
  const log = (await Deno.readTextFile(join(a, "log.txt"))).trimEnd().split("\n");
  ok(log.includes(`0 val ${full.evals[0].valLoss.toFixed(4)}`), log.join("\n"));
  ok(/^3 val \d+\.\d{4}$/.test(log[4]), log[4]);
  ok(/^5 train \d+\.\d{6}$/.test(log[log.length - 1]), log[log.length - 1]);
  assertEquals(full.evals.map((e) => e.step), [0, 3, 5]);
  assertEquals(full.evals[0].samples.length, 0); // step 0 is noise: no samples
  assertEquals(full.evals[1].samples.length, 4);
  ok(full.evals[1].samples[0].startsWith("Hello, I'm a language model,"));
  assertEquals((await runCheckpoints(a)).map((c) => c.step), [3, 6]);

  // a second run starts from the step-3 checkpoint in its own folder
  const b = await Deno.makeTempDir();
  await Deno.mkdir(join(b, "checkpoints"));
  await copyDir(join(a, "checkpoints", "step_000003"), join(b, "checkpoints", "step_000003"));
  await Deno.writeTextFile(join(b, "log.txt"), log.slice(0, 5).join("\n") + "\n");
  const resumed = await train(recipe(b, { resume: "latest" }));
  assertEquals(resumed.history.map((s) => s.step), [3, 4, 5]);
  assertEquals(resumed.history.map((s) => s.loss), full.history.slice(3).map((s) => s.loss));
  assertEquals(resumed.history.map((s) => s.norm), full.history.slice(3).map((s) => s.norm));
  assertEquals(resumed.evals.map((e) => e.valLoss), full.evals.slice(1).map((e) => e.valLoss));
  assertEquals(resumed.evals[1].samples, full.evals[2].samples);
  assertEquals(
    await Deno.readTextFile(join(b, "log.txt")),
    await Deno.readTextFile(join(a, "log.txt")),
  );
  const wa = await full.model.stateDict(), wb = await resumed.model.stateDict();
  for (const [name, t] of wa) assertEquals(wb.get(name)!.data, t.data, name);
});

const native = await NativeBackend.create().catch(() => null);

Deno.test({
  name: "train: resume equals uninterrupted bit for bit on the native backend too",
  ignore: native === null,
  async fn() {
    const opts = { backend: native!, evalEvery: 0, steps: 4, checkpointEvery: 2 };
    const a = await Deno.makeTempDir(), b = await Deno.makeTempDir();
    const full = await train(recipe(a, opts));
    const resumed = await train(
      recipe(b, { ...opts, resume: join(a, "checkpoints", "step_000002") }),
    );
    assertEquals(resumed.history.map((s) => s.loss), full.history.slice(2).map((s) => s.loss));
    const wa = await full.model.stateDict(), wb = await resumed.model.stateDict();
    for (const [name, t] of wa) assertEquals(wb.get(name)!.data, t.data, name);
  },
});

Deno.test("checkpoints: a corrupt or partial one is refused naming the file; the previous one still loads", async () => {
  const dir = await Deno.makeTempDir();
  await train(recipe(dir, { evalEvery: 0, steps: 4, checkpointEvery: 2 }));
  const [older, newest] = (await runCheckpoints(dir)).map((c) => c.path);
  const model = join(newest, "model.safetensors");
  const bytes = await Deno.readFile(model);
  await Deno.writeFile(model, bytes.subarray(0, bytes.length - 100)); // truncated
  await rejects(
    loadCheckpoint(new CpuBackend(), newest),
    /Checkpoint .*step_000004 is corrupt: model\.safetensors has \d+ bytes, expected \d+ \(truncated\?\)/,
  );
  await rejects(train(recipe(dir, { resume: "latest" })), /step_000004 is corrupt/);
  bytes[bytes.length - 1] ^= 1; // same size, one bit flipped
  await Deno.writeFile(model, bytes);
  await rejects(
    loadCheckpoint(new CpuBackend(), newest),
    /model\.safetensors has SHA-256 \w+, expected/,
  );
  await Deno.remove(join(newest, "state.json"));
  await rejects(
    loadCheckpoint(new CpuBackend(), newest),
    /is incomplete or not a checkpoint: expected state\.json/,
  );
  // an interrupted write leaves only a temporary folder, never listed
  await Deno.mkdir(join(dir, "checkpoints", "step_000008.tmp-1"));
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [2, 4]);
  const ok2 = await loadCheckpoint(new CpuBackend(), older);
  assertEquals(ok2.state.step, 2);
  assertEquals(ok2.state.optimizer.stepCount, 2);
  const resumed = await train(recipe(dir, { evalEvery: 0, steps: 4, resume: older }));
  assertEquals(resumed.history.map((s) => s.step), [2, 3]);
});

Deno.test("train: a loss that blows up stops the run naming the step and the last good checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  await rejects(
    train(
      recipe(dir, {
        evalEvery: 0,
        steps: 40,
        warmupSteps: 0,
        maxLr: 1e12,
        minLr: 1e12,
        checkpointEvery: 1,
      }),
    ),
    (e: Error) => {
      ok(/^Loss became (NaN|Infinity|-Infinity) at step \d+: stopping/.test(e.message), e.message);
      ok(/the last good checkpoint is .*step_\d+/.test(e.message), e.message);
      return true;
    },
  );
  const last = (await runCheckpoints(dir)).at(-1)!;
  const state = (await loadCheckpoint(new CpuBackend(), last.path)).state;
  ok(Number.isFinite(state.loss), `checkpointed loss ${state.loss}`);
});

Deno.test("train task: SIGINT writes a checkpoint and exits 0; --resume latest continues", async () => {
  const dir = await Deno.makeTempDir();
  const args = [
    "run",
    "--allow-all",
    "lib/cli/train.ts",
    ...smallModelFlags,
    "--steps",
    "1000",
    "--checkpoint-every",
    "0",
    "--log-dir",
    dir,
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: join(import.meta.dirname!, ".."),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = await readUntil(child.stdout, /step {5}1 \|/);
  child.kill("SIGINT");
  const status = await child.status;
  const rest = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  assertEquals(status.code, 0, rest);
  const ckpts = await runCheckpoints(dir);
  assertEquals(ckpts.length, 1, stdout);
  ok(ckpts[0].step >= 2, `checkpoint at ${ckpts[0].step}`);
  const r = await task([
    ...args.slice(2, -6),
    "--steps",
    String(ckpts[0].step + 1),
    "--eval-every",
    "0",
    "--log-dir",
    dir,
    "--resume",
    "latest",
  ]);
  assertEquals(r.code, 0, r.stderr);
  ok(r.stdout.includes(`resuming from ${ckpts[0].path} at step ${ckpts[0].step}`), r.stdout);
  ok(r.stdout.includes(`step ${String(ckpts[0].step).padStart(5)} |`), r.stdout);
  // a run that ends normally leaves its report beside the log; the interrupted one did not
  const report = await Deno.readTextFile(join(dir, "report.html"));
  ok(report.includes("<html") && report.includes("3.2924"), "report.html with the GPT-2 baseline");
  ok(r.stdout.includes(`wrote the run report ${join(dir, "report.html")}`), r.stdout);
});

Deno.test("presets: build-nanogpt's constants as data, printed, unknown names refused", () => {
  const p = getPreset("gpt2-124M-fineweb");
  assertEquals([
    p.B,
    p.T,
    p.totalBatchSize,
    p.maxLr,
    p.minLr,
    p.warmupSteps,
    p.steps,
    p.seed,
    p.vocabSize,
  ], [64, 1024, 524288, 6e-4, 6e-5, 715, 19073, 1337, 50304]);
  throws(
    () => getPreset("nope"),
    /Unknown --preset "nope", expected one of shakespeare, gpt2-124M-fineweb/,
  );
  ok(formatPreset("gpt2-124M-fineweb", p).includes("  warmupSteps = 715"));
});

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

/** Reads a stream until `pattern` shows up in it; returns what was read. */
async function readUntil(stream: ReadableStream<Uint8Array>, pattern: RegExp): Promise<string> {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Stream ended before ${pattern}: ${text}`);
    text += dec.decode(value);
  }
  // keep draining so the child never blocks on a full pipe
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return text;
}

Deno.test("train: the HellaSwag hook runs at each evaluation and its acc_norm is logged", async () => {
  const dir = await Deno.makeTempDir();
  const calls: string[] = [];
  const { evals } = await train(recipe(dir, {
    steps: 2,
    evalEvery: 1,
    checkpointEvery: 0,
    sampleLength: 9,
    hellaswag: (model, ctx) => {
      calls.push(`${ctx.rank}/${ctx.world}@${ctx.step}:${model.config.n_layer}`);
      return Promise.resolve({ total: 8, correctNorm: 3 });
    },
  }));
  assertEquals(calls, ["0/1@0:1", "0/1@1:1"]);
  assertEquals(evals.map((e) => e.hellaAcc), [0.375, 0.375]);
  const log = await Deno.readTextFile(join(dir, "log.txt"));
  ok(/^0 val \d+\.\d{4}\n0 hella 0\.3750\n0 train /.test(log), log);
  ok(log.includes("\n1 hella 0.3750\n1 train "), log);
});
