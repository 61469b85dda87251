// lib/train/settings.ts: build-nanogpt's constants as data, nanoGPT's fine-tuning preset; and
// the rows of the table that fine-tuning added (--init-from, --steps 0, a
// constant learning rate kept constant by --max-lr).
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import {
  formatPreset,
  getPreset,
  hyperparameterHelp,
  PRESETS,
  resolveHyperparameters,
} from "../../lib/train/settings.ts";
import { getLr } from "../../lib/train/optim.ts";

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

Deno.test("presets: shakespeare-finetune is nanoGPT's finetune_shakespeare, small: GPT-2 at a constant 3e-5", () => {
  const p = getPreset("shakespeare-finetune");
  assertEquals(
    [p.initFrom, p.data, p.B, p.T, p.maxLr, p.minLr, p.warmupSteps, p.weightDecay, p.evalEvery],
    ["gpt2", "tinyshakespeare", 4, 64, 3e-5, 3e-5, 0, 0.1, 25],
  );
  ok(p.steps >= 200 && p.steps <= 500, `a few hundred steps, found ${p.steps}`);
  // warmup 0 and min = max: every step, the last included, at the peak rate
  const schedule = {
    maxLr: p.maxLr,
    minLr: p.minLr,
    warmupSteps: p.warmupSteps,
    maxSteps: p.steps,
  };
  for (const step of [0, 1, p.steps / 2, p.steps - 1]) assertEquals(getLr(step, schedule), 3e-5);
  const printed = formatPreset("shakespeare-finetune", p);
  ok(printed.includes("  initFrom = gpt2\n") && printed.includes("  minLr = 0.00003\n"), printed);
  ok(formatPreset("shakespeare", getPreset("shakespeare")).includes("  initFrom = none\n"));
});

Deno.test("hyperparameters: --max-lr alone keeps a constant rate constant, else min-lr is a tenth", () => {
  const constant = resolveHyperparameters(
    getPreset("shakespeare-finetune"),
    { "max-lr": "1e-4" },
    1,
  );
  assertEquals([constant.values.maxLr, constant.values.minLr], [1e-4, 1e-4]);
  ok(constant.notes.get("minLr")!.includes("constant"));
  const decaying = resolveHyperparameters(getPreset("shakespeare"), { "max-lr": "1e-3" }, 1);
  assertEquals(decaying.values.minLr, 1e-3 * 0.1);
});

Deno.test("hyperparameters: --init-from none is null (random init); --steps 0 is accepted", () => {
  const p = getPreset("shakespeare-finetune");
  const none = resolveHyperparameters(p, { "init-from": "none", steps: "0" }, 1);
  assertEquals([none.values.initFrom, none.values.steps], [null, 0]);
  assertEquals(none.notes.get("initFrom"), "--init-from; preset: gpt2");
  const dir = resolveHyperparameters(getPreset("shakespeare"), { "init-from": "log/model" }, 1);
  assertEquals(dir.values.initFrom, "log/model");
  throws(
    () => resolveHyperparameters(p, { steps: "-1" }, 1),
    /--steps expects an integer >= 0, found "-1"/,
  );
  ok(hyperparameterHelp(PRESETS).includes("shakespeare-finetune: gpt2]"));
});

Deno.test("presets: the lecture's 40B-token run is the 10B recipe for four epochs", () => {
  const ten = getPreset("gpt2-124M-fineweb"), forty = getPreset("gpt2-124M-fineweb-40B");
  assertEquals(forty.steps, 4 * ten.steps);
  assertEquals(forty.steps * forty.totalBatchSize!, 4 * 19073 * 524288); // about 40e9 tokens
  const { description: _a, steps: _b, ...tenRest } = ten;
  const { description: _c, steps: _d, ...fortyRest } = forty;
  assertEquals(fortyRest, tenRest);
});

Deno.test("presets: GPT-3's T = 2048 is the 10B recipe with 2,048 positions and the same tokens per step", () => {
  const ten = getPreset("gpt2-124M-fineweb"), long = getPreset("gpt2-124M-fineweb-T2048");
  assertEquals([long.T, long.shape], [2048, { block_size: 2048 }]);
  assertEquals(long.B * long.T, ten.B * ten.T); // the micro batch holds the same tokens
  const { description: _a, B: _b, T: _c, ...tenRest } = ten;
  const { description: _d, B: _e, T: _f, shape: _g, ...longRest } = long;
  assertEquals(longRest, tenRest);
  const printed = formatPreset("gpt2-124M-fineweb-T2048", long);
  ok(printed.endsWith("\n  block_size = 2048  (over gpt2's 1024)"), printed);
  ok(printed.includes("\n  T = 2048\n"), printed);
  assertEquals(formatPreset("gpt2-124M-fineweb", ten).includes("block_size"), false);
});

Deno.test("hyperparameters: a warmup longer than the run is noted where the settings print", () => {
  const long = resolveHyperparameters(getPreset("shakespeare"), { "warmup-steps": "1e6" }, 1);
  assertEquals(
    long.notes.get("warmupSteps"),
    "--warmup-steps; preset: 10; above --steps 50: the rate never reaches --max-lr",
  );
  const short = resolveHyperparameters(getPreset("shakespeare"), { steps: "5" }, 1);
  ok(short.notes.get("warmupSteps")!.endsWith("above --steps 5: the rate never reaches --max-lr"));
  // --steps 0 (the model saved as it starts) trains nothing: no note
  const none = resolveHyperparameters(getPreset("shakespeare"), { steps: "0" }, 1);
  assertEquals(none.notes.get("warmupSteps"), undefined);
});

Deno.test("hyperparameters: a weight decay that would zero or flip the weights each step is refused, naming both flags", () => {
  throws(
    () => resolveHyperparameters(getPreset("shakespeare"), { "weight-decay": "1e9" }, 1),
    {
      message:
        "--weight-decay 1000000000 with --max-lr 0.0006: AdamW multiplies the weights by 1 - lr * weight_decay = -599999 each step; expected a --weight-decay below 1666.6666666666667",
    },
  );
  // large but below 1 / max-lr: allowed
  const large = resolveHyperparameters(getPreset("shakespeare"), { "weight-decay": "100" }, 1);
  assertEquals(large.values.weightDecay, 100);
});
