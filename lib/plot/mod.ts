/**
 * Plots of training runs against the GPT-2 and GPT-3 baselines: build-nanogpt's two-panel
 * figure (loss, HellaSwag) from our logs, build-nanogpt's and llm.c's, as interactive HTML
 * (plotly.js inlined), SVG (vega-lite) and PNG (resvg). `deno task plot` is a thin shell over
 * {@linkcode plotLogs}; the training loop calls {@linkcode writeRunFigure} at each evaluation
 * (`deno task train --plot`), notebooks use `notebook.ts`, run reports `report.ts`.
 *
 * @example
 * ```ts
 * import { writeRunFigure } from "./lib/plot/mod.ts";
 * const { png, summary } = await writeRunFigure("log/log.txt", "log");
 * console.log(summary); // ours: min train loss ..., and the baselines
 * ```
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import {
  buildFigure,
  type FigureData,
  formatSummary,
  type ModelSize,
  summarize,
} from "./figure.ts";
import { figurePage } from "./html.ts";
import { type LogFormat, readLog, type RunLog } from "./log.ts";
import {
  describeRun,
  gpt2Size,
  readRunMeta,
  type RunDescription,
  type RunMeta,
} from "./run_meta.ts";
import { renderSvg, svgToPng } from "./svg.ts";

export * from "./figure.ts";
export * from "./log.ts";
export { figureDiv, figurePage, plotlyScriptTag, plotlySource, plotlySpec } from "./html.ts";
export { PNG_SCALE_MAX, PNG_SCALE_MIN, renderSvg, svgSize, svgToPng, vegaLiteSpec } from "./svg.ts";
export * from "./report.ts";
export * from "./run_meta.ts";
export * from "./notebook.ts";

/** A log with the label it is drawn under, and what its `run.json` says. */
export interface LabelledLog {
  label: string;
  log: RunLog;
  path: string;
  /** The `run.json` beside the log; null where there is none (build-nanogpt's, llm.c's). */
  meta: RunMeta | null;
  /** The run's model and data from `meta`; empty without one. */
  about: RunDescription;
}

/**
 * Reads logs and labels them: with `labels` (one per path) or, by default, the log's folder name
 * (`log/log.txt` is "log"), made unique with a number where two coincide. Each log's `run.json`
 * (written beside it by `deno task train`), if any, says its model and data.
 */
export async function loadRuns(
  paths: string[],
  options: { labels?: string[]; format?: LogFormat } = {},
): Promise<LabelledLog[]> {
  const { labels } = options;
  if (labels !== undefined && labels.length > 0 && labels.length !== paths.length) {
    throw new Error(
      `Expected one --label per log (${paths.length}), found ${labels.length}`,
    );
  }
  const seen = new Map<string, number>();
  const runs: LabelledLog[] = [];
  for (const [i, path] of paths.entries()) {
    const log = await readLog(path, { format: options.format });
    let label = labels?.[i] ?? (basename(dirname(path)) || basename(path));
    if (labels?.[i] === undefined) {
      const n = (seen.get(label) ?? 0) + 1;
      seen.set(label, n);
      if (n > 1) label = `${label} (${n})`;
    }
    const meta = await readRunMeta(path);
    runs.push({ label, log, path, meta, about: meta === null ? {} : describeRun(meta) });
  }
  return runs;
}

/** The files {@linkcode writeFigure} wrote, and the runs' numbers as text. */
export interface WrittenFigure {
  html: string;
  svg: string;
  png: string;
  /** The minimum losses and maximum HellaSwag of each run, and the baselines. */
  summary: string;
  figure: FigureData;
}

/** Options for {@linkcode writeFigure}. */
export interface WriteFigureOptions {
  /** File name without extension; `figure` by default (figure.html, figure.svg, figure.png). */
  name?: string;
  /** Pixels per SVG unit of the PNG; 2 by default. */
  pngScale?: number;
}

/**
 * Writes a figure as `figure.html` (plotly.js inlined), `figure.svg` and `figure.png` into
 * `outDir`. Each file is written whole and then renamed into place, so a page being reloaded
 * during training never sees half a file.
 */
export async function writeFigure(
  figure: FigureData,
  outDir: string,
  options: WriteFigureOptions = {},
): Promise<WrittenFigure> {
  const name = options.name ?? "figure";
  await Deno.mkdir(outDir, { recursive: true });
  const summary = formatSummary(summarize(figure), figure.baselines);
  const svgText = await renderSvg(figure);
  const paths = {
    html: join(outDir, `${name}.html`),
    svg: join(outDir, `${name}.svg`),
    png: join(outDir, `${name}.png`),
  };
  await writeAtomic(paths.svg, new TextEncoder().encode(svgText));
  await writeAtomic(paths.png, svgToPng(svgText, { scale: options.pngScale }));
  await writeAtomic(paths.html, new TextEncoder().encode(await figurePage(figure, { summary })));
  return { ...paths, summary, figure };
}

/** Options for {@linkcode plotLogs}. */
export interface PlotLogsOptions extends WriteFigureOptions {
  /** One label per log; by default each log's folder name. */
  labels?: string[];
  /**
   * The model size whose baselines are drawn; by default the GPT-2 size the logs' `run.json`
   * files name (when they agree), else 124M.
   */
  size?: ModelSize;
  /** The figure's title; by default from the runs' model and data (see `buildFigure`). */
  title?: string;
}

/** The one GPT-2 size the runs' `run.json` files name, or undefined (none, or several). */
export function runsSize(runs: ReadonlyArray<{ meta: RunMeta | null }>): ModelSize | undefined {
  const sizes = new Set(
    runs.map((r) => r.meta?.model ? gpt2Size(r.meta.model, r.meta.config) : null)
      .filter((s) => s !== null),
  );
  return sizes.size === 1 ? [...sizes][0] : undefined;
}

/** Reads logs, overlays them with the baselines and writes HTML, SVG and PNG into `outDir`. */
export async function plotLogs(
  paths: string[],
  outDir: string,
  options: PlotLogsOptions = {},
): Promise<WrittenFigure & { runs: LabelledLog[] }> {
  if (paths.length === 0) throw new Error("Expected at least one log file, found none");
  const runs = await loadRuns(paths, { labels: options.labels });
  const figure = buildFigure(runs, { size: options.size ?? runsSize(runs), title: options.title });
  return { ...(await writeFigure(figure, outDir, options)), runs };
}

/** Options for {@linkcode writeRunFigure}. */
export interface RunFigureOptions extends WriteFigureOptions {
  /** The run's label in the legend; `ours` by default. */
  label?: string;
  /** The model size whose baselines are drawn; by default the one `run.json` names, or 124M. */
  size?: ModelSize;
  /** The run's model and data; by default from the `run.json` beside the log, if any. */
  about?: RunDescription;
}

/**
 * Redraws one run's figure from its log: `figure.html`, `figure.svg`, `figure.png` in `outDir`.
 * The training loop calls it after each evaluation for `deno task train --plot`, e.g.
 * `await writeRunFigure(join(logDir, "log.txt"), logDir, { size: "124M" })`. It takes about
 * half a second (vega and resvg) and returns the summary it wrote. The title and the notes
 * come from the `run.json` beside the log, when there is one.
 */
export async function writeRunFigure(
  logPath: string,
  outDir: string,
  options: RunFigureOptions = {},
): Promise<WrittenFigure> {
  const log = await readLog(logPath);
  const meta = await readRunMeta(logPath);
  const about = options.about ?? (meta === null ? {} : describeRun(meta));
  const figure = buildFigure([{ label: options.label ?? "ours", log, about }], {
    size: options.size ?? runsSize([{ meta }]),
  });
  return await writeFigure(figure, outDir, options);
}

async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(path, bytes);
}
