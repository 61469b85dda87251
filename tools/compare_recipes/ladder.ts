/**
 * The ladder from the lecture's recipe to the speedrun's: rows that each add one change to the
 * row before, from build-nanogpt's AdamW settings (row 0) to `--preset speedrun-shakespeare`
 * (the last row), and the interleaved order in which `deno task compare-recipes` trains them.
 *
 * Each row is a set of hyperparameters over the `shakespeare` preset (every speedrun option off
 * there), so a row's flags are the table's flags of lib/train/settings.ts for the fields
 * it sets. The order of the rungs: the speedrun's rates first (they go with everything after
 * them: the speedrun's larger rate and no weight decay are what its other changes are tuned
 * for), then the changes inside a block that leave the parameters as they are (ReLU², QK-norm,
 * rotary, zero-initialised projections), then the untied head (a new parameter, which Muon's
 * split gives its own group), and Muon last: the optimizer on the final architecture, so that
 * the row before it says how far the architecture and the rates go without it.
 *
 * @module
 */

import {
  AFTER_LECTURE_PRESETS,
  HYPERPARAMETERS,
  type Hyperparameters,
  PRESETS,
} from "../../lib/train/settings.ts";

/** The fields a ladder row sets; the rest are the run's (model, batch, steps, data...). */
export type RecipeSettings = Pick<
  Hyperparameters,
  | "maxLr"
  | "minLr"
  | "warmupSteps"
  | "weightDecay"
  | "mlp"
  | "qkNorm"
  | "pos"
  | "zeroInitProj"
  | "untieHead"
  | "optimizer"
  | "muonLr"
>;

/** The keys of {@linkcode RecipeSettings}, in the table's order. */
export const RECIPE_KEYS: readonly (keyof RecipeSettings)[] = [
  "maxLr",
  "minLr",
  "warmupSteps",
  "weightDecay",
  "mlp",
  "qkNorm",
  "pos",
  "zeroInitProj",
  "untieHead",
  "optimizer",
  "muonLr",
];

/** One row of the ladder. */
export interface RecipeRow {
  /** A short id for folders and `--rows` (`lecture`, `+relu2`, ...). */
  id: string;
  /** What this row adds to the row before, in words. */
  change: string;
  /** The whole recipe of the row. */
  settings: RecipeSettings;
}

function pickRecipe(h: Hyperparameters): RecipeSettings {
  const out = {} as Record<keyof RecipeSettings, unknown>;
  for (const key of RECIPE_KEYS) out[key] = h[key];
  return out as RecipeSettings;
}

/** The lecture's recipe: build-nanogpt's AdamW, 6e-4 to 6e-5, warmup 10, decay 0.1. */
export const LECTURE_SETTINGS: RecipeSettings = pickRecipe(PRESETS["shakespeare"]);

/** The speedrun's recipe as `--preset speedrun-shakespeare` sets it. */
export const SPEEDRUN_SETTINGS: RecipeSettings = pickRecipe(
  AFTER_LECTURE_PRESETS["speedrun-shakespeare"],
);

/** The rungs after row 0: each its id, its words and the fields it changes. */
const RUNGS: ReadonlyArray<{ id: string; change: string; keys: (keyof RecipeSettings)[] }> = [
  {
    id: "+rates",
    change: "the speedrun's AdamW rates (3e-3 to 3e-4) and no weight decay",
    keys: ["maxLr", "minLr", "warmupSteps", "weightDecay", "muonLr"],
  },
  { id: "+relu2", change: "ReLU² in place of GELU", keys: ["mlp"] },
  { id: "+qk-norm", change: "RMS-normalised queries and keys", keys: ["qkNorm"] },
  { id: "+rotary", change: "rotary positions in place of the learned wpe", keys: ["pos"] },
  { id: "+zero-init", change: "the residual projections start at zero", keys: ["zeroInitProj"] },
  { id: "+untie", change: "a separate lm_head", keys: ["untieHead"] },
  {
    id: "+muon",
    change: "Muon for the blocks' 2-D weights (the speedrun preset)",
    keys: ["optimizer"],
  },
];

/** The ladder: the lecture's recipe, then one change a row, the last the speedrun preset. */
export function recipeLadder(): RecipeRow[] {
  const rows: RecipeRow[] = [{
    id: "lecture",
    change: "build-nanogpt's recipe: AdamW 6e-4 to 6e-5, weight decay 0.1, GPT-2's model",
    settings: { ...LECTURE_SETTINGS },
  }];
  for (const rung of RUNGS) {
    const settings = { ...rows[rows.length - 1].settings } as Record<string, unknown>;
    for (const key of rung.keys) settings[key] = SPEEDRUN_SETTINGS[key];
    rows.push({ id: rung.id, change: rung.change, settings: settings as RecipeSettings });
  }
  return rows;
}

/**
 * The rows named by `ids` (ladder order kept), or all of them; an error naming the unknown
 * ids and the known ones.
 */
export function selectRows(ladder: readonly RecipeRow[], ids?: readonly string[]): RecipeRow[] {
  if (ids === undefined || ids.length === 0) return [...ladder];
  const known = new Set(ladder.map((r) => r.id));
  const unknown = ids.filter((id) => !known.has(id));
  if (unknown.length > 0) {
    throw new Error(
      `Unknown --rows ${unknown.join(", ")}, expected ids among ${[...known].join(", ")}`,
    );
  }
  return ladder.filter((r) => ids.includes(r.id));
}

/**
 * A row's flags for `deno task train` over the `shakespeare` preset: `--flag value` for every
 * setting, a boolean's flag only where it is on (the preset has them all off).
 */
export function recipeFlags(settings: RecipeSettings): string[] {
  const flags: string[] = [];
  for (const key of RECIPE_KEYS) {
    const spec = HYPERPARAMETERS[key], value = settings[key];
    if (spec.kind === "boolean") {
      if (value === true) flags.push(`--${spec.flag}`);
    } else flags.push(`--${spec.flag}`, String(value));
  }
  return flags;
}

/** What every run of a comparison shares. */
export interface LadderRunShape {
  /** The folder of `.npy` shards (or any `--data` the train task takes). */
  data: string;
  steps: number;
  evalEvery: number;
  valBatches: number;
  /** The backend's name; `native` for the measured comparison. */
  backend: string;
}

/** The defaults of the measured comparison: the tiny model, B=8, T=128, 100 steps. */
export const DEFAULT_RUN_SHAPE: Omit<LadderRunShape, "data"> = {
  steps: 100,
  evalEvery: 5,
  valBatches: 5,
  backend: "native",
};

/** One training run of the comparison. */
export interface PlannedRun {
  row: RecipeRow;
  /** The row's index in the selected rows. */
  rowIndex: number;
  seed: number;
  /** The run's folder name under the runs folder: `<row id>_seed<seed>`. */
  name: string;
  /** The arguments after `deno run -A lib/cli/train.ts`, `--log-dir` last but one. */
  args: string[];
}

/**
 * The runs in the order they are trained: seed-major, every row inside each seed, so that a
 * change in the machine's load hits all rows alike.
 */
export function planRuns(
  rows: readonly RecipeRow[],
  seeds: readonly number[],
  shape: LadderRunShape,
  runsDir: string,
): PlannedRun[] {
  const runs: PlannedRun[] = [];
  for (const seed of seeds) {
    rows.forEach((row, rowIndex) => {
      const name = `${row.id.replace(/^\+/, "")}_seed${seed}`;
      const args = [
        "--preset",
        "shakespeare",
        "--backend",
        shape.backend,
        "--model",
        "tiny",
        "-B",
        "8",
        "-T",
        "128",
        "--steps",
        String(shape.steps),
        "--eval-every",
        String(shape.evalEvery),
        "--val-batches",
        String(shape.valBatches),
        "--hellaswag",
        "0",
        "--data",
        shape.data,
        "--seed",
        String(seed),
        ...recipeFlags(row.settings),
        "--overwrite",
        "--log-dir",
        `${runsDir}/${name}`,
      ];
      runs.push({ row, rowIndex, seed, name, args });
    });
  }
  return runs;
}
