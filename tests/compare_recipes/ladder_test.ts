// tools/compare_recipes/ladder.ts: the ladder from the lecture's recipe to the speedrun's, one
// change a row, its flags read back by the train task's own table, and the interleaved order.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { parseArgs } from "node:util";
import { getPreset, HYPERPARAMETERS, resolveHyperparameters } from "../../lib/train/settings.ts";
import {
  planRuns,
  RECIPE_KEYS,
  recipeFlags,
  recipeLadder,
  selectRows,
} from "../../tools/compare_recipes/ladder.ts";

/** What `deno task train` makes of a row's flags over the shakespeare preset. */
function resolved(flags: string[]) {
  const options = Object.fromEntries(
    Object.values(HYPERPARAMETERS).map((spec) => [
      spec.flag,
      { type: spec.kind === "boolean" ? "boolean" as const : "string" as const },
    ]),
  );
  const { values } = parseArgs({ args: flags, options, strict: true });
  return resolveHyperparameters(getPreset("shakespeare"), values, 1).values;
}

Deno.test("recipe ladder: row 0 is the lecture's recipe, the last the speedrun-shakespeare preset", () => {
  const ladder = recipeLadder();
  assertEquals(ladder.map((r) => r.id), [
    "lecture",
    "+rates",
    "+relu2",
    "+qk-norm",
    "+rotary",
    "+zero-init",
    "+untie",
    "+muon",
  ]);
  const lecture = resolved(recipeFlags(ladder[0].settings));
  assertEquals(
    [lecture.maxLr, lecture.minLr, lecture.warmupSteps, lecture.weightDecay, lecture.optimizer],
    [6e-4, 6e-5, 10, 0.1, "adamw"],
  );
  assertEquals(
    [lecture.mlp, lecture.qkNorm, lecture.pos, lecture.zeroInitProj, lecture.untieHead],
    ["gelu", false, "learned", false, false],
  );
  const last = resolved(recipeFlags(ladder[ladder.length - 1].settings));
  const preset = getPreset("speedrun-shakespeare");
  for (const key of RECIPE_KEYS) assertEquals([key, last[key]], [key, preset[key]]);
  assertEquals([last.maxLr, last.weightDecay, last.optimizer, last.muonLr], [
    3e-3,
    0,
    "muon",
    0.02,
  ]);
});

Deno.test("recipe ladder: each row differs from the one before in one change", () => {
  const ladder = recipeLadder();
  for (let i = 1; i < ladder.length; i++) {
    const before = resolved(recipeFlags(ladder[i - 1].settings));
    const after = resolved(recipeFlags(ladder[i].settings));
    const changed = RECIPE_KEYS.filter((k) => before[k] !== after[k]);
    if (i === 1) {
      // the speedrun's rates as one change: the AdamW peak and floor, and no weight decay
      assertEquals(changed, ["maxLr", "minLr", "weightDecay"]);
    } else assertEquals(changed.length, 1, `${ladder[i].id} changes ${changed}`);
  }
});

Deno.test("recipe ladder: a subset by id keeps the ladder's order; unknown ids are named", () => {
  const ladder = recipeLadder();
  assertEquals(selectRows(ladder, ["+muon", "lecture"]).map((r) => r.id), ["lecture", "+muon"]);
  assertEquals(selectRows(ladder).length, 8);
  throws(
    () => selectRows(ladder, ["lecture", "+adam", "x"]),
    /Unknown --rows \+adam, x, expected ids among lecture, \+rates/,
  );
});

Deno.test("recipe ladder: runs are seed-major with every row inside each seed, each in its own folder", () => {
  const rows = selectRows(recipeLadder(), ["lecture", "+relu2"]);
  const shape = { data: "/d", steps: 100, evalEvery: 5, valBatches: 5, backend: "native" };
  const runs = planRuns(rows, [7, 8], shape, "/runs");
  assertEquals(runs.map((r) => [r.row.id, r.seed, r.name]), [
    ["lecture", 7, "lecture_seed7"],
    ["+relu2", 7, "relu2_seed7"],
    ["lecture", 8, "lecture_seed8"],
    ["+relu2", 8, "relu2_seed8"],
  ]);
  const args = runs[3].args;
  const after = (flag: string) => args[args.indexOf(flag) + 1];
  assertEquals(
    [after("--backend"), after("--model"), after("-B"), after("-T"), after("--steps")],
    ["native", "tiny", "8", "128", "100"],
  );
  assertEquals([after("--seed"), after("--data"), after("--mlp"), args.at(-1)], [
    "8",
    "/d",
    "relu2",
    "/runs/relu2_seed8",
  ]);
  ok(args.includes("--overwrite") && !args.includes("--qk-norm"));
});
