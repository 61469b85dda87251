/**
 * The data of build-nanogpt's results figure, independent of how it is drawn: two panels,
 * train and validation loss against step (log-scale y) with the OpenAI GPT-2 checkpoint's
 * validation loss dashed, and HellaSwag acc_norm against step with GPT-2's and GPT-3's scores
 * dashed. Several runs overlay, each with its label. `svg.ts` (vega-lite) and `html.ts`
 * (plotly.js) both draw from this, so the static and the interactive figure match.
 *
 * @module
 */

import type { RunLog, Series } from "./log.ts";

/** The GPT-2 sizes with published baselines. */
export type ModelSize = "124M" | "350M" | "774M" | "1558M";

/** The baselines drawn for one model size. */
export interface Baselines {
  size: ModelSize;
  /**
   * The OpenAI GPT-2 checkpoint's loss on build-nanogpt's FineWeb-EDU validation shard
   * (`loss_baseline` in its play.ipynb); null where it publishes none (every size but 124M).
   */
  valLoss: number | null;
  /** GPT-2's HellaSwag acc_norm (`hella2_baseline` in build-nanogpt's play.ipynb). */
  hellaGpt2: number;
  /** GPT-3's HellaSwag score from the GPT-3 paper (`hella3_baseline` in play.ipynb). */
  hellaGpt3: number;
}

/**
 * The baselines of build-nanogpt's play.ipynb plotting cell, per size. GPT-2's 124M HellaSwag
 * there is 0.294463; build-nanogpt's hellaswag.py docstring prints 0.2955 (and 0.4893 for
 * 1558M) for the same evaluation. We draw the notebook's values, one consistent set for all
 * four sizes; the difference (0.001) does not show at the figure's scale.
 */
export const BASELINES: Readonly<Record<ModelSize, Baselines>> = {
  "124M": { size: "124M", valLoss: 3.2924, hellaGpt2: 0.294463, hellaGpt3: 0.337 },
  "350M": { size: "350M", valLoss: null, hellaGpt2: 0.375224, hellaGpt3: 0.436 },
  "774M": { size: "774M", valLoss: null, hellaGpt2: 0.431986, hellaGpt3: 0.510 },
  "1558M": { size: "1558M", valLoss: null, hellaGpt2: 0.488946, hellaGpt3: 0.547 },
};

const SIZE_ALIASES: Record<string, ModelSize> = {
  "124m": "124M",
  gpt2: "124M",
  "350m": "350M",
  "gpt2-medium": "350M",
  "774m": "774M",
  "gpt2-large": "774M",
  "1558m": "1558M",
  "1.5b": "1558M",
  "gpt2-xl": "1558M",
};

/** A model size from `124M`/`350M`/`774M`/`1558M` or `gpt2`/`gpt2-medium`/`gpt2-large`/`gpt2-xl`. */
export function parseModelSize(name: string): ModelSize {
  const size = SIZE_ALIASES[name.toLowerCase()];
  if (size === undefined) {
    throw new Error(
      `Unknown model size "${name}": expected 124M, 350M, 774M, 1558M, gpt2, gpt2-medium, ` +
        `gpt2-large or gpt2-xl`,
    );
  }
  return size;
}

/** One run of the figure: its label and its three series. */
export interface FigureRun {
  label: string;
  train: Series;
  val: Series;
  hella: Series;
}

/** What the figure draws. */
export interface FigureData {
  runs: FigureRun[];
  baselines: Baselines;
  /** The last step of any series (the baselines span 0 to it); 0 when there is none. */
  maxStep: number;
  title: string;
}

/** A run's headline numbers, as build-nanogpt's notebook prints them. */
export interface RunSummary {
  label: string;
  /** Steps logged (the last train step + 1), or 0. */
  steps: number;
  minTrainLoss: Point | null;
  minValLoss: Point | null;
  maxHella: Point | null;
}

/** A value and the step it was logged at. */
export interface Point {
  step: number;
  value: number;
}

/** Options for {@linkcode buildFigure}. */
export interface FigureOptions {
  /** The model size whose baselines are drawn; 124M by default. */
  size?: ModelSize;
  /** The figure's title; by default it names the size. */
  title?: string;
}

/** Puts labelled logs and the baselines of one model size together. */
export function buildFigure(
  runs: ReadonlyArray<{ label: string; log: RunLog }>,
  options: FigureOptions = {},
): FigureData {
  const baselines = BASELINES[options.size ?? "124M"];
  const figureRuns = runs.map(({ label, log }) => ({
    label,
    train: log.train,
    val: log.val,
    hella: log.hella,
  }));
  let maxStep = 0;
  for (const run of figureRuns) {
    for (const s of [run.train, run.val, run.hella]) {
      maxStep = Math.max(maxStep, s.steps.at(-1) ?? 0);
    }
  }
  return {
    runs: figureRuns,
    baselines,
    maxStep,
    title: options.title ?? `GPT-2 (${baselines.size}) reproduction: loss and HellaSwag`,
  };
}

/** The minimum train and val loss and the maximum HellaSwag of each run. */
export function summarize(figure: FigureData): RunSummary[] {
  return figure.runs.map((run) => ({
    label: run.label,
    steps: run.train.steps.length > 0 ? run.train.steps.at(-1)! + 1 : 0,
    minTrainLoss: extreme(run.train, -1),
    minValLoss: extreme(run.val, -1),
    maxHella: extreme(run.hella, 1),
  }));
}

/** One line per run: `label: min train loss 3.0712 (step 19072), min val loss ..., max HellaSwag ...`. */
export function formatSummary(summaries: RunSummary[], baselines: Baselines): string {
  const show = (p: Point | null): string =>
    p === null ? "none logged" : `${p.value.toFixed(4)} (step ${p.step})`;
  const lines = summaries.map((s) =>
    `${s.label}: min train loss ${show(s.minTrainLoss)}, min val loss ${
      show(s.minValLoss)
    }, max HellaSwag ${show(s.maxHella)}`
  );
  const loss = baselines.valLoss === null ? "none published" : baselines.valLoss.toFixed(4);
  lines.push(
    `baselines (${baselines.size}): OpenAI GPT-2 val loss ${loss}, HellaSwag GPT-2 ${baselines.hellaGpt2}, GPT-3 ${baselines.hellaGpt3}`,
  );
  return lines.join("\n");
}

/** The two panels' titles; each says when its data is missing. */
export function panelTitles(figure: FigureData): { loss: string; hella: string } {
  const b = figure.baselines;
  const anyHella = figure.runs.some((r) => r.hella.steps.length > 0);
  return {
    loss: b.valLoss === null
      ? `Loss (no published GPT-2 ${b.size} val loss to compare)`
      : "Loss: train and validation",
    hella: anyHella ? "HellaSwag eval" : "HellaSwag eval (none in these logs: baselines only)",
  };
}

/** A line of the figure, as both renderers draw it. */
export interface FigureLine {
  panel: "loss" | "hella";
  /** The legend entry. */
  name: string;
  steps: number[];
  values: number[];
  /** A CSS colour. */
  color: string;
  /** Dash and gap lengths in pixels; empty for a solid line. */
  dash: number[];
  width: number;
  opacity: number;
  kind: "train" | "val" | "hella" | "baseline";
}

/** Per run: a light colour for its noisy train loss, a dark one for val loss and HellaSwag. */
const RUN_COLORS: ReadonlyArray<readonly [string, string]> = [
  ["#6baed6", "#08519c"], // blues
  ["#fdae6b", "#d94801"], // oranges
  ["#bcbddc", "#54278f"], // purples
  ["#c7a17a", "#6b3d16"], // browns
  ["#f7a8d0", "#ae017e"], // pinks
  ["#9ecae1", "#08306b"], // navy
];
/** build-nanogpt's notebook draws GPT-2's baselines red and GPT-3's green, dashed. */
const GPT2_COLOR = "#d62728";
const GPT3_COLOR = "#2ca02c";
const BASELINE_DASH = [6, 4];

/**
 * The lines of the figure in drawing order: per run train, val and HellaSwag (series with no
 * points are left out), then the baselines as dashed lines from step 0 to the last step.
 */
export function figureLines(figure: FigureData): FigureLine[] {
  const lines: FigureLine[] = [];
  figure.runs.forEach((run, i) => {
    const [light, dark] = RUN_COLORS[i % RUN_COLORS.length];
    const add = (panel: FigureLine["panel"], kind: FigureLine["kind"], s: Series, name: string) => {
      if (s.steps.length === 0) return;
      // a run with no val loss draws its train loss dark: it is then the only line of the run
      const train = kind === "train" && run.val.steps.length > 0;
      lines.push({
        panel,
        kind,
        name: `${run.label} ${name}`,
        steps: s.steps,
        values: s.values,
        color: train ? light : dark,
        dash: [],
        width: train ? 1.2 : 2,
        opacity: train ? 0.85 : 1,
      });
    };
    add("loss", "train", run.train, "train loss");
    add("loss", "val", run.val, "val loss");
    add("hella", "hella", run.hella, "HellaSwag");
  });
  const b = figure.baselines;
  const span = [0, Math.max(figure.maxStep, 1)];
  const baseline = (panel: FigureLine["panel"], name: string, value: number, color: string) =>
    lines.push({
      panel,
      kind: "baseline",
      name,
      steps: span,
      values: [value, value],
      color,
      dash: BASELINE_DASH,
      width: 1.5,
      opacity: 1,
    });
  if (b.valLoss !== null) {
    baseline("loss", `OpenAI GPT-2 (${b.size}) checkpoint val loss`, b.valLoss, GPT2_COLOR);
  }
  baseline("hella", `OpenAI GPT-2 (${b.size}) HellaSwag`, b.hellaGpt2, GPT2_COLOR);
  baseline("hella", `OpenAI GPT-3 (${b.size}) HellaSwag`, b.hellaGpt3, GPT3_COLOR);
  return lines;
}

function extreme(series: Series, sign: 1 | -1): Point | null {
  let best: Point | null = null;
  series.values.forEach((value, i) => {
    if (best === null || sign * value > sign * best.value) best = { step: series.steps[i], value };
  });
  return best;
}
