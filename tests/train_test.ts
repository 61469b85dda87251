// DataLoaderLite, the training loop and the train / sample tasks end to end.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../lib/backends/cpu.ts";
import { DataLoaderLite } from "../lib/data_loader.ts";
import { GPT } from "../lib/gpt.ts";
import { train } from "../lib/train.ts";
import { referenceDir, sharedDataDir } from "./support.ts";

const shakespeare = join(sharedDataDir, "tinyshakespeare", "input.txt");

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
