// lib/train/train.ts: the training loop's losses and log.txt, evaluation, samples, checkpoints and
// a resume equal to the uninterrupted run bit for bit (reference and native backends), a loss
// that blows up, the HellaSwag hook. With loss scaling: train_loss_scaling_test.ts.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { loadCheckpoint } from "../../lib/train/checkpoint.ts";
import { train } from "../../lib/train/train.ts";
import { fullRecipe, runCheckpoints, shakespearePath, smallRecipe } from "../support.ts";

Deno.test("train: loss starts near ln(vocab), falls, log.txt in build-nanogpt's format, model saved", async () => {
  const logDir = await Deno.makeTempDir();
  const config = { n_layer: 1, n_head: 2, n_embd: 16, block_size: 32, vocab_size: 50304 };
  const { history, modelDir } = await train({
    backend: new CpuBackend(),
    config,
    dataPath: shakespearePath,
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
  const reloaded = await fromPretrained(new CpuBackend(), modelDir!);
  assertEquals(reloaded.config, config);
});

Deno.test("train: a total batch size that B*T does not divide is an error", async () => {
  await rejects(
    train({
      backend: new CpuBackend(),
      config: { n_layer: 1, n_head: 1, n_embd: 8, block_size: 8, vocab_size: 50257 },
      dataPath: shakespearePath,
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

Deno.test("train: evaluates, samples, checkpoints, and a resumed run equals the uninterrupted one bit for bit", async () => {
  const a = await Deno.makeTempDir();
  const full = await train(fullRecipe(a));
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
  const resumed = await train(fullRecipe(b, { resume: "latest" }));
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
    const full = await train(fullRecipe(a, opts));
    const resumed = await train(
      fullRecipe(b, { ...opts, resume: join(a, "checkpoints", "step_000002") }),
    );
    assertEquals(resumed.history.map((s) => s.loss), full.history.slice(2).map((s) => s.loss));
    const wa = await full.model.stateDict(), wb = await resumed.model.stateDict();
    for (const [name, t] of wa) assertEquals(wb.get(name)!.data, t.data, name);
  },
});

Deno.test("train: a loss that blows up stops the run naming the step and the last good checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  await rejects(
    train(
      fullRecipe(dir, {
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

Deno.test("train: the HellaSwag hook runs at each evaluation and its acc_norm is logged", async () => {
  const dir = await Deno.makeTempDir();
  const calls: string[] = [];
  const { evals } = await train(fullRecipe(dir, {
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

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

Deno.test("train: a token id outside the model's vocabulary stops the run, naming the data and position", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Tiny Shakespeare's first token, "First", is GPT-2 id 5962: outside a 64-token vocabulary
    const logDir = join(dir, "log");
    await rejects(
      train(smallRecipe({
        config: { n_layer: 1, n_head: 2, n_embd: 16, block_size: 32, vocab_size: 64 },
        logDir,
      })),
      {
        message: `${shakespearePath} (train): expected token ids in [0, 64) ` +
          "(the model's vocabulary), found 5962 at position 0",
      },
    );
    // nothing was trained or written: no checkpoint, no model
    assertEquals(await runCheckpoints(logDir), []);
    await rejects(Deno.stat(join(logDir, "model")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
