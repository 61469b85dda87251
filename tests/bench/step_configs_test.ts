// lib/bench/step_configs.ts: the bench's --configs items and its defaults with and without
// the PyTorch peer.
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { defaultStepConfigs, parseStepConfigs } from "../../lib/bench/step_configs.ts";

Deno.test("step configs: beside the PyTorch peer the defaults are training steps up to T=1024", () => {
  assertEquals(parseStepConfigs(defaultStepConfigs(true)), [
    { mode: "train", B: 4, T: 64 },
    { mode: "train", B: 8, T: 128 },
    { mode: "train", B: 2, T: 1024 },
  ]);
  assertEquals(parseStepConfigs(defaultStepConfigs(false)), [
    { mode: "train", B: 4, T: 64 },
    { mode: "train", B: 8, T: 128 },
    { mode: "fwd", B: 1, T: 1024 },
  ]);
});

Deno.test("step configs: items are train|fwd:BxT within GPT-2's block size", () => {
  assertEquals(parseStepConfigs("train:2x1024, fwd:1x16"), [
    { mode: "train", B: 2, T: 1024 },
    { mode: "fwd", B: 1, T: 16 },
  ]);
  throws(() => parseStepConfigs("train:4"), /--configs expects items like train:4x64/);
  throws(
    () => parseStepConfigs("train:2x2048"),
    /--configs expects B from 1 to 1024 and T from 1 to 1024 \(GPT-2's block size\), found "train:2x2048"/,
  );
});
