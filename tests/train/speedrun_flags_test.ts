// lib/train/settings.ts: the table's rows of the speedrun's options and the preset
// speedrun-shakespeare: flags on and off, values checked, printed only where on.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import {
  formatHyperparameters,
  formatPreset,
  getPreset,
  hyperparameterHelp,
  PRESETS,
  resolveHyperparameters,
} from "../../lib/train/settings.ts";

const OPTION_KEYS = ["mlp", "qkNorm", "pos", "zeroInitProj", "untieHead", "optimizer"] as const;

Deno.test("speedrun options: off in the lecture's presets, and not printed there", () => {
  for (const name of ["shakespeare", "gpt2-124M-fineweb", "shakespeare-finetune"]) {
    const p = getPreset(name);
    assertEquals(
      OPTION_KEYS.map((k) => p[k]),
      ["gelu", false, "learned", false, false, "adamw"],
    );
    const printed = formatPreset(name, p);
    for (const k of [...OPTION_KEYS, "muonLr"]) {
      ok(!printed.includes(`  ${k} = `), `${name} prints ${k}:\n${printed}`);
    }
  }
});

Deno.test("speedrun options: the flags turn each on, values outside the choices are refused", () => {
  const { values, notes } = resolveHyperparameters(getPreset("shakespeare"), {
    mlp: "relu2",
    "qk-norm": true,
    pos: "rotary",
    "zero-init-proj": true,
    "untie-head": true,
    optimizer: "muon",
    "muon-lr": "0.05",
  }, 1);
  assertEquals(
    [...OPTION_KEYS.map((k) => values[k]), values.muonLr],
    ["relu2", true, "rotary", true, true, "muon", 0.05],
  );
  assertEquals(notes.get("qkNorm"), "--qk-norm; preset: false");
  const printed = formatHyperparameters(values, notes);
  ok(printed.includes("  qkNorm = true  (--qk-norm; preset: false)\n"), printed);
  ok(printed.includes("  muonLr = 0.05  (--muon-lr; preset: 0.02)"), printed);
  throws(
    () => resolveHyperparameters(getPreset("shakespeare"), { pos: "alibi" }, 1),
    /--pos expects one of learned, rotary, found "alibi"/,
  );
  throws(
    () => resolveHyperparameters(getPreset("shakespeare"), { optimizer: "sgd" }, 1),
    /--optimizer expects one of adamw, muon, found "sgd"/,
  );
  const help = hyperparameterHelp(PRESETS);
  ok(/\n {2}--qk-norm +RMS-normalise/.test(help), help);
});

Deno.test("speedrun-shakespeare: every option on, the tiny model, Tiny Shakespeare", () => {
  const p = getPreset("speedrun-shakespeare");
  assertEquals(
    [...OPTION_KEYS.map((k) => p[k]), p.model, p.data],
    ["relu2", true, "rotary", true, true, "muon", "tiny", "tinyshakespeare"],
  );
  const printed = formatPreset("speedrun-shakespeare", p);
  ok(printed.includes("  pos = rotary\n") && printed.includes("  muonLr = 0.02"), printed);
});
