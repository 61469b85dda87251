/**
 * The figure in a Jupyter notebook (Deno kernel): a display with the interactive plotly.js chart
 * (`text/html`), the same figure as a PNG (`image/png`: nbconvert's HTML export strips SVG, and
 * an untrusted notebook does not run scripts) and the runs' numbers (`text/plain`).
 *
 * plotly.js (4.8 MB) goes into the notebook once: the first figure of a kernel session displays
 * it in an output of its own, which later figures and updates leave in place.
 *
 * A live chart ({@linkcode LiveFigure}) keeps one display id and replaces its output at every
 * update (`Deno.jupyter.display(bundle, { raw: true, display_id, update: true })`), so a
 * training run shows one chart that redraws at each evaluation.
 *
 * @example
 * ```ts
 * import { LiveFigure } from "../lib/plot/notebook.ts";
 * const live = new LiveFigure({ label: "ours" });
 * // ... after each evaluation of the training loop:
 * await live.update("log/log.txt");
 * ```
 *
 * @module
 */

import {
  buildFigure,
  type FigureData,
  type FigureOptions,
  formatSummary,
  summarize,
} from "./figure.ts";
import { base64, figureDiv, plotlyScriptTag } from "./html.ts";
import { readLog, type RunLog } from "./log.ts";
import { describeRun, readRunMeta, type RunDescription } from "./run_meta.ts";
import { renderSvg, svgToPng } from "./svg.ts";

/** A Jupyter MIME bundle as `Deno.jupyter.display(..., { raw: true })` sends it. */
export interface MimeBundle {
  "text/plain": string;
  "text/html"?: string;
  /** Base64 PNG bytes. */
  "image/png"?: string;
}

/** The options this module passes to `Deno.jupyter.display`. */
export interface DisplayCallOptions {
  raw: true;
  display_id?: string;
  update?: boolean;
}

/** Sends a bundle to the notebook; `Deno.jupyter.display` by default, a stand-in in tests. */
export type DisplayFunction = (bundle: MimeBundle, options: DisplayCallOptions) => Promise<void>;

/** `Deno.jupyter.display`, with an error that says what is wrong outside a kernel. */
export const jupyterDisplay: DisplayFunction = async (bundle, options) => {
  let display: DisplayFunction;
  try {
    display = Deno.jupyter.display as DisplayFunction;
  } catch {
    display = () => {
      throw new Error(
        "Deno.jupyter is not available: expected to run in a Jupyter notebook with the Deno kernel",
      );
    };
  }
  await display(bundle, options);
};

let plotlyShown = false;

/**
 * Displays plotly.js's script once per kernel session (later calls do nothing); the figures
 * after it draw with `window.Plotly`.
 */
export async function showPlotly(display: DisplayFunction = jupyterDisplay): Promise<void> {
  if (plotlyShown) return;
  await display({
    "text/plain": "plotly.js loaded (inlined once in this notebook, so it opens offline)",
    "text/html": await plotlyScriptTag(),
  }, { raw: true });
  plotlyShown = true;
}

/** The bundle of one figure: plotly chart (with the PNG inside as fallback), PNG and numbers. */
export async function figureBundle(figure: FigureData, id?: string): Promise<MimeBundle> {
  const png = svgToPng(await renderSvg(figure), { scale: 1.5 });
  return {
    "text/plain": formatSummary(summarize(figure), figure.baselines),
    "text/html": figureDiv(figure, { id, fallbackPng: png }),
    "image/png": base64(png),
  };
}

/** Options for {@linkcode displayFigure}. */
export interface DisplayFigureOptions {
  display?: DisplayFunction;
}

/** Displays a figure in the notebook (plotly.js first, if this session has not yet). */
export async function displayFigure(
  figure: FigureData,
  options: DisplayFigureOptions = {},
): Promise<void> {
  const display = options.display ?? jupyterDisplay;
  await showPlotly(display);
  await display(await figureBundle(figure), { raw: true });
}

/** Options for {@linkcode LiveFigure}. */
export interface LiveFigureOptions extends FigureOptions {
  /** The run's label; `ours` by default. */
  label?: string;
  /** The display id that updates replace; a fresh one by default. */
  displayId?: string;
  display?: DisplayFunction;
  /**
   * The run's model and data (title, notes); by default from the `run.json` beside a log read
   * by path, else unknown.
   */
  about?: RunDescription;
}

let liveCounter = 0;

/**
 * One chart in the notebook that redraws in place: the first {@linkcode LiveFigure.update}
 * displays it, every later one replaces that output.
 */
export class LiveFigure {
  /** The Jupyter display id of the chart. */
  readonly displayId: string;
  /** How many times the chart was drawn. */
  updates = 0;
  readonly #options: LiveFigureOptions;
  readonly #display: DisplayFunction;

  /** Makes a live chart; it shows nothing until the first update. */
  constructor(options: LiveFigureOptions = {}) {
    this.#options = options;
    this.#display = options.display ?? jupyterDisplay;
    this.displayId = options.displayId ??
      `gpt2-live-${Date.now().toString(36)}-${liveCounter++}`;
  }

  /**
   * Redraws the chart from a log file's path or a parsed log, and returns the runs' numbers as
   * text. Call it after each evaluation.
   */
  async update(source: string | RunLog): Promise<string> {
    const log = typeof source === "string" ? await readLog(source) : source;
    let about = this.#options.about;
    if (about === undefined && typeof source === "string") {
      const meta = await readRunMeta(source);
      if (meta !== null) about = describeRun(meta);
    }
    const label = this.#options.label ?? "ours";
    const figure = buildFigure([{ label, log, about }], this.#options);
    const bundle = await figureBundle(figure, `${this.displayId}-div`);
    if (this.updates === 0) await showPlotly(this.#display);
    await this.#display(bundle, {
      raw: true,
      display_id: this.displayId,
      update: this.updates > 0,
    });
    this.updates++;
    return bundle["text/plain"];
  }
}
