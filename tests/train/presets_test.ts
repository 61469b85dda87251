// lib/train/presets.ts: build-nanogpt's constants as data.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { formatPreset, getPreset } from "../../lib/train/presets.ts";

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
