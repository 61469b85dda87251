/**
 * The data of build-nanogpt's results figure, independent of how it is drawn: two panels,
 * train and validation loss against step (log-scale y) with the OpenAI GPT-2 checkpoint's
 * validation loss dashed, and HellaSwag acc_norm against step with GPT-2's and GPT-3's scores
 * dashed, each labelled with its value. Several runs overlay, each with its label. The title
 * says which model trained on which data (from the runs' `run.json`, see `run_meta.ts`), and a
 * note under it says when the baseline loss (FineWeb-EDU's) is on other data than the runs'.
 * `svg.ts` (vega-lite) and `html.ts` (plotly.js) both draw from this, so the static and the
 * interactive figure match: the same lines, markers, loss-axis ticks and notes.
 *
 * @module
 */

import type { RunLog, Series } from "./log.ts";
import { isFineWebEdu, type ModelSize, type RunDescription } from "./run_meta.ts";

export type { ModelSize };

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

/** One run of the figure: its label, its three series and what it trained. */
export interface FigureRun {
  label: string;
  train: Series;
  val: Series;
  hella: Series;
  /** The run's model and data where known (its `run.json`); empty for a bare log. */
  about: RunDescription;
}

/** What the figure draws. */
export interface FigureData {
  runs: FigureRun[];
  baselines: Baselines;
  /** The last step of any series (the baselines span 0 to it); 0 when there is none. */
  maxStep: number;
  title: string;
  /** Lines drawn under the title: what a reader must know to read it (see {@linkcode dataCaveat}). */
  notes: string[];
}

/** A run's headline numbers, as build-nanogpt's notebook prints them. */
export interface RunSummary {
  label: string;
  /** The run's training data, where known ("Tiny Shakespeare"). */
  data?: string;
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
  /**
   * The figure's title; by default the runs' model and data ("tiny (7.3M) on Tiny Shakespeare:
   * loss and HellaSwag"), or, where no run says, the baselines it is drawn against.
   */
  title?: string;
}

/** A log to draw: its legend label and, where known, its model and data. */
export interface FigureInput {
  label: string;
  log: RunLog;
  /** The run's model and data (from its `run.json`, see `describeRun`); unknown by default. */
  about?: RunDescription;
}

/** Puts labelled logs and the baselines of one model size together. */
export function buildFigure(
  runs: ReadonlyArray<FigureInput>,
  options: FigureOptions = {},
): FigureData {
  const baselines = BASELINES[options.size ?? "124M"];
  const figureRuns = runs.map(({ label, log, about }) => ({
    label,
    train: log.train,
    val: log.val,
    hella: log.hella,
    about: { ...about },
  }));
  let maxStep = 0;
  for (const run of figureRuns) {
    for (const s of [run.train, run.val, run.hella]) {
      maxStep = Math.max(maxStep, s.steps.at(-1) ?? 0);
    }
  }
  const caveat = dataCaveat(
    figureRuns.map((r) => ({ label: r.label, data: r.about.data })),
    baselines,
  );
  return {
    runs: figureRuns,
    baselines,
    maxStep,
    title: options.title ?? defaultTitle(figureRuns, baselines),
    notes: caveat === null ? [] : [caveat],
  };
}

/** "model on data", "model" or "trained on data"; null when nothing is known. */
export function describeModelAndData(about: RunDescription): string | null {
  if (about.model && about.data) return `${about.model} on ${about.data}`;
  if (about.model) return about.model;
  if (about.data) return `trained on ${about.data}`;
  return null;
}

/**
 * The runs' models and data ("tiny (7.3M) on Tiny Shakespeare: loss and HellaSwag"; a run
 * with neither known goes by its label), or the baselines where no run says what it trained.
 */
function defaultTitle(runs: FigureRun[], baselines: Baselines): string {
  const described = runs.map((r) => describeModelAndData(r.about));
  if (described.every((d) => d === null)) {
    return `Loss and HellaSwag against the OpenAI GPT-2 and GPT-3 (${baselines.size}) baselines`;
  }
  const names = [...new Set(runs.map((r, i) => described[i] ?? r.label))];
  return `${names.join(" vs ")}: loss and HellaSwag`;
}

/**
 * What a reader must be told when the val-loss baseline (GPT-2's loss on FineWeb-EDU's
 * validation shard) is drawn beside runs whose data is known and is not FineWeb-EDU: the two
 * losses are on different text, so their difference says nothing about the gap to GPT-2. Null
 * when no baseline loss is drawn, or every run's data is FineWeb-EDU or unknown.
 */
export function dataCaveat(
  runs: ReadonlyArray<{ label: string; data?: string }>,
  baselines: Baselines,
): string | null {
  if (baselines.valLoss === null) return null;
  const others = runs.filter((r) => r.data !== undefined && !isFineWebEdu(r.data));
  if (others.length === 0) return null;
  const whose = others.map((r) =>
    runs.length === 1 ? `this run's loss is on ${r.data}` : `"${r.label}" is on ${r.data}`
  ).join(", ");
  return `Different data: the dashed ${formatBaseline(baselines.valLoss)} is OpenAI GPT-2 ` +
    `(${baselines.size})'s val loss on FineWeb-EDU; ${whose}. The baseline is a loss on a ` +
    `different dataset, so the difference is not a measure of the gap to GPT-2`;
}

/** A baseline as the legend shows it: at most 4 decimals, no trailing zeros (0.2945, 0.337). */
export function formatBaseline(value: number): string {
  return String(Number(value.toFixed(4)));
}

/** The minimum train and val loss and the maximum HellaSwag of each run. */
export function summarize(figure: FigureData): RunSummary[] {
  return figure.runs.map((run) => ({
    label: run.label,
    ...(run.about.data === undefined ? {} : { data: run.about.data }),
    steps: run.train.steps.length > 0 ? run.train.steps.at(-1)! + 1 : 0,
    minTrainLoss: extreme(run.train, -1),
    minValLoss: extreme(run.val, -1),
    maxHella: extreme(run.hella, 1),
  }));
}

/**
 * One line per run: `label: min train loss 3.0712 (step 19072), min val loss ..., max HellaSwag
 * ...`, then the baselines, then {@linkcode dataCaveat} where the runs' data is not the
 * baseline's.
 */
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
  const caveat = dataCaveat(summaries, baselines);
  if (caveat !== null) lines.push(caveat);
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
  /**
   * Whether each point gets a marker: val and HellaSwag (a few evaluations), and any run's
   * series of few points, which a line alone would leave invisible (one point draws nothing).
   */
  markers: boolean;
}

/** A train-loss series of at most this many points is drawn with markers too. */
export const FEW_POINTS = 40;

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
        markers: kind !== "train" || s.steps.length <= FEW_POINTS,
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
      markers: false,
    });
  // each label carries its value: the dashed line alone does not say where it is
  const named = (name: string, value: number) => `${name}: ${formatBaseline(value)}`;
  if (b.valLoss !== null) {
    const name = named(`OpenAI GPT-2 (${b.size}) checkpoint val loss`, b.valLoss);
    baseline("loss", name, b.valLoss, GPT2_COLOR);
  }
  baseline(
    "hella",
    named(`OpenAI GPT-2 (${b.size}) HellaSwag`, b.hellaGpt2),
    b.hellaGpt2,
    GPT2_COLOR,
  );
  baseline(
    "hella",
    named(`OpenAI GPT-3 (${b.size}) HellaSwag`, b.hellaGpt3),
    b.hellaGpt3,
    GPT3_COLOR,
  );
  return lines;
}

/** The loss panel's log-scale y axis, as both renderers draw it. */
export interface LossAxis {
  /** The lowest and highest loss shown. */
  domain: [number, number];
  /** Where the axis is labelled, ascending. */
  ticks: number[];
}

/**
 * The loss axis: the data's range (baseline included) with a margin, labelled at 1-9 times a
 * power of ten (fewer where they would crowd). When the baseline is drawn the axis reaches down
 * to the tick below it (3 under GPT-2's 3.29), so the dashed line sits between labels instead of
 * under the lowest one (a log axis over 3.1-11 would otherwise start labelling at 4). Null when
 * the panel has no lines.
 */
export function lossAxis(figure: FigureData): LossAxis | null {
  const values = figureLines(figure).filter((l) => l.panel === "loss").flatMap((l) => l.values)
    .filter((v) => v > 0 && Number.isFinite(v));
  if (values.length === 0) return null;
  let lo = Math.min(...values) * 0.95, hi = Math.max(...values) * 1.05;
  const base = figure.baselines.valLoss;
  const below = base === null ? null : tickBelow(base);
  if (below !== null) lo = Math.min(lo, below * 0.97);
  if (hi / lo < 1.2) [lo, hi] = [lo / 1.1, hi * 1.1]; // a flat run still gets an axis
  let ticks: number[] = [];
  for (const mantissas of [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 5], [1, 2, 5], [1]]) {
    ticks = logCandidates(lo, hi, mantissas);
    if (ticks.length <= 9) break;
  }
  if (below !== null && !ticks.includes(below)) ticks = [...ticks, below].sort((a, b) => a - b);
  return { domain: [lo, hi], ticks };
}

/** The largest m × 10^k (m = 1..9) at or below `value`: 3 for 3.2924, 0.2 for 0.29. */
function tickBelow(value: number): number {
  const power = 10 ** Math.floor(Math.log10(value));
  return tidy(Math.floor(value / power) * power);
}

/** m × 10^k for the given mantissas, within [lo, hi]. */
function logCandidates(lo: number, hi: number, mantissas: number[]): number[] {
  const out: number[] = [];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
    for (const m of mantissas) {
      const v = tidy(m * 10 ** k);
      if (v >= lo && v <= hi) out.push(v);
    }
  }
  return out;
}

/** Rounds away float noise (3 * 0.1 = 0.30000000000000004). */
function tidy(v: number): number {
  return Number(v.toPrecision(12));
}

function extreme(series: Series, sign: 1 | -1): Point | null {
  let best: Point | null = null;
  series.values.forEach((value, i) => {
    if (best === null || sign * value > sign * best.value) best = { step: series.steps[i], value };
  });
  return best;
}

/** The colour of the notes under the title: they are warnings. */
export const NOTE_COLOR = "#a33";

/** Splits text into lines of at most `width` characters at spaces. */
export function wrapText(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}
