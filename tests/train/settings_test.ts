// lib/train/settings.ts's resolution of `deno task train`'s flags, in-process: the values
// checked once (a bad value, --min-lr above --max-lr, --init-from with --resume, an empty
// --log-dir, --precision), the environment's DDP settings, the model's config on a backend
// (model auto, the shape flags, a preset's shape, the speedrun's options, -T against the block
// size) and the data's path.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { parseFlags } from "../../lib/cli/flags.ts";
import { GPT, gptConfig } from "../../lib/model/gpt.ts";
import { checkPrecision } from "../../lib/train/precision.ts";
import {
  resolveData,
  resolveSettings,
  runModel,
  type RunSettings,
  startingShape,
  trainFlagOptions,
} from "../../lib/train/settings.ts";
import { referenceDir, shakespearePath } from "../support.ts";

/** The settings `deno task train args` resolves to, alone on one process, no environment. */
function settings(args: string[], env: Record<string, string> = {}): RunSettings {
  return resolveSettings(parseFlags(args, trainFlagOptions()), 1, (name) => env[name]);
}

const NO_START = { init: null, resumedShape: null };

Deno.test("settings: --min-lr above --max-lr is an error naming both and where they came from", () => {
  throws(() => settings(["--min-lr", "0.01"]), {
    message:
      "--min-lr 0.01 is above --max-lr 0.0006 (the preset's): the learning rate decays from --max-lr to --min-lr, so pass a --min-lr at most 0.0006",
  });
  throws(() => settings(["--min-lr", "0.1", "--max-lr", "0.01"]), {
    message:
      "--min-lr 0.1 is above --max-lr 0.01: the learning rate decays from --max-lr to --min-lr, so pass a --min-lr at most 0.01",
  });
  throws(() => settings(["--max-lr", "1e-3", "--min-lr", "1e-2"]), {
    message:
      "--min-lr 0.01 is above --max-lr 0.001: the learning rate decays from --max-lr to --min-lr, so pass a --min-lr at most 0.001",
  });
});

Deno.test("settings: a flag's --init-from with --resume is refused; the preset's is not", () => {
  const tiny = join(referenceDir, "tiny-gpt2-vocab50257");
  throws(
    () => settings(["--init-from", tiny, "--resume", "latest"]),
    new RegExp(`--init-from ${tiny} and --resume latest both give the weights to start from`),
  );
  const resumed = settings(["--preset", "shakespeare-finetune", "--resume", "latest"]);
  assertEquals([resumed.values.initFrom, resumed.resume], ["gpt2", "latest"]);
});

Deno.test("settings: bad values are errors naming the flag; defaults and the environment", () => {
  throws(() => settings(["--steps", "ten"]), {
    message: '--steps expects an integer >= 0, found "ten"',
  });
  throws(() => settings(["--log-dir", ""]), { message: '--log-dir expects a folder, found ""' });
  throws(() => settings(["--precision", "fp8"]), {
    message: '--precision expects one of f32, f16, tf32, bf16, found "fp8"',
  });
  throws(() => settings(["--n-head", "0"]), {
    message: '--n-head expects an integer >= 1, found "0"',
  });
  throws(() => settings(["--timeout", "0"]), {
    message: '--timeout expects a number >= 0.1, found "0"',
  });
  const d = settings([]);
  assertEquals(
    [d.presetName, d.logDir, d.backend, d.precision, d.resume, d.timeoutS, d.transport, d.shape],
    ["shakespeare", "log", "auto", null, null, 300, "shm", {}],
  );
  assertEquals(d.values.totalBatchSize, 4 * 64);
  const e = settings(["--precision", "fp32", "--n-layer", "1"], {
    GPT2_DDP_TIMEOUT: "30",
    GPT2_DDP_TRANSPORT: "tcp",
  });
  assertEquals([e.precision, e.timeoutS, e.transport, e.shape], ["f32", 30, "tcp", { n_layer: 1 }]);
  assertEquals(settings(["--timeout", "2"], { GPT2_DDP_TIMEOUT: "30" }).timeoutS, 2);
});

Deno.test("settings: --precision is checked against the backend", () => {
  const cpu = new CpuBackend();
  throws(() => checkPrecision(cpu, "bf16"), /--precision bf16 needs --backend cuda/);
  throws(
    () => checkPrecision(cpu, "f16"),
    /--precision f16 needs --backend webgpu on an adapter with shader-f16/,
  );
  assertEquals(checkPrecision(cpu, "fp32"), "f32");
});

Deno.test("settings: the model on a backend: auto, the shape flags, the speedrun's options, -T", () => {
  const cpu = new CpuBackend();
  const said: string[] = [];
  const say = (line: string) => said.push(line);
  // the reference backend does not train GPT-2 124M in minutes: auto is tiny
  const auto = runModel(settings([]), NO_START, cpu, say);
  assertEquals(auto.name, "tiny");
  ok(said[0].startsWith("model: tiny ("), said[0]);
  const small = runModel(
    settings(["--model", "tiny", "--n-layer", "1", "--n-embd", "16", "--n-head", "2"]),
    NO_START,
    cpu,
    say,
  );
  assertEquals(
    [small.config.n_layer, small.config.n_embd, small.config.n_head],
    [1, 16, 2],
  );
  ok(said.at(-1)!.startsWith("model shape overridden: "), said.at(-1));
  throws(
    () =>
      runModel(
        settings(["--model", "tiny", "--n-embd", "10", "--n-head", "4"]),
        NO_START,
        cpu,
        say,
      ),
    { message: "--n-embd 10 must be divisible by --n-head 4" },
  );
  throws(
    () =>
      runModel(settings(["--model", "tiny", "--block-size", "32", "-T", "64"]), NO_START, cpu, say),
    { message: "-T 64 exceeds the model's block size 32" },
  );
  const speedrun = runModel(settings(["--preset", "speedrun-shakespeare"]), NO_START, cpu, say);
  assertEquals(speedrun.name, "tiny");
  const options = speedrun.config as unknown as Record<string, unknown>;
  assertEquals(
    [options.mlp, options.qk_norm, options.pos, options.zero_init_proj, options.untie_head],
    ["relu2", true, "rotary", true, true],
  );
  // GPT-2's config stays as it was: no speedrun field where every option is off
  ok(!("mlp" in auto.config) && !("pos" in auto.config), JSON.stringify(auto.config));
});

Deno.test("settings: the T = 2048 preset gives GPT-2 124M a block of 2,048 (wpe 2,048 rows); the shape flags override it", () => {
  const cpu = new CpuBackend();
  const said: string[] = [];
  const say = (line: string) => said.push(line);
  const run = settings(["--preset", "gpt2-124M-fineweb-T2048"]);
  assertEquals([run.values.B, run.values.T, run.values.totalBatchSize], [32, 2048, 524288]);
  assertEquals(run.shape, { block_size: 2048 });
  const { name, config } = runModel(run, NO_START, cpu, say);
  assertEquals(name, "gpt2");
  assertEquals(config, { ...gptConfig("gpt2", 50304), block_size: 2048 });
  // the model it builds has a position embedding of 2,048 rows (a small one, to build quickly)
  const small = new GPT(cpu, { ...config, n_layer: 1, n_head: 2, n_embd: 16 }, { skipInit: true });
  assertEquals(small.transformer.wpe!.weight.shape, [2048, 16]);
  // the shape flags override the preset's, and -T is checked against the result
  const back = settings(["--preset", "gpt2-124M-fineweb-T2048", "--block-size", "1024"]);
  assertEquals(back.shape, { block_size: 1024 });
  throws(() => runModel(back, NO_START, cpu, say), {
    message: "-T 2048 exceeds the model's block size 1024",
  });
  const t1024 = settings([
    "--preset",
    "gpt2-124M-fineweb-T2048",
    "--block-size",
    "1024",
    "-T",
    "1024",
  ]);
  assertEquals(runModel(t1024, NO_START, cpu, say).config.block_size, 1024);
  // the other presets set no shape: their model's block size stands
  assertEquals(settings(["--preset", "gpt2-124M-fineweb"]).shape, {});
  assertEquals(
    runModel(settings(["--preset", "gpt2-124M-fineweb"]), NO_START, cpu, say).config.block_size,
    1024,
  );
});

Deno.test("settings: --init-from gives the shape, which the shape flags and --model must match", async () => {
  const tiny = join(referenceDir, "tiny-gpt2-vocab50257");
  const run = settings(["--init-from", tiny]);
  const start = await startingShape(run, { progress: false });
  assertEquals(start.init?.name, tiny);
  const model = runModel(run, start, new CpuBackend(), () => {});
  assertEquals(model.name, run.values.model);
  assertEquals(model.config.vocab_size, 50304);
  const flagged = settings(["--init-from", tiny, "--n-layer", "7"]);
  throws(
    () => runModel(flagged, start, new CpuBackend(), () => {}),
    /--n-layer 7 asks for n_layer 7, but --init-from .* holds n_layer 2/,
  );
  await rejects(
    startingShape(settings(["--init-from", tiny, "--model", "gpt2"]), { progress: false }),
    /--model gpt2 asks for .*, but --init-from .* holds/,
  );
});

Deno.test("settings: the data: a text file, Tiny Shakespeare, and a missing path named", async () => {
  assertEquals(await resolveData(settings(["--data", shakespearePath]), false), shakespearePath);
  await rejects(
    resolveData(settings(["--data", "/nonexistent/input.txt"]), false),
    /\/nonexistent\/input\.txt/,
  );
  await rejects(
    resolveData(
      settings(["--preset", "gpt2-124M-fineweb", "--data", "/nonexistent/shards"]),
      false,
    ),
    {
      message:
        "Expected FineWeb-EDU shards in /nonexistent/shards (--data DIR), found none: make them with deno task fineweb",
    },
  );
});
