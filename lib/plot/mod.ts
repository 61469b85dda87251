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
import {
  buildFigure,
  type FigureData,
  formatSummary,
  type ModelSize,
  summarize,
} from "./figure.ts";
import { figurePage } from "./html.ts";
import { type LogFormat, readLog, type RunLog } from "./log.ts";
import { renderSvg, svgToPng } from "./svg.ts";

export * from "./figure.ts";
export * from "./log.ts";
export { figureDiv, figurePage, plotlyScriptTag, plotlySource, plotlySpec } from "./html.ts";
export { renderSvg, svgSize, svgToPng, vegaLiteSpec } from "./svg.ts";
export * from "./report.ts";
export * from "./notebook.ts";

/** A log with the label it is drawn under. */
export interface LabelledLog {
  label: string;
  log: RunLog;
  path: string;
}

/**
 * Reads logs and labels them: with `labels` (one per path) or, by default, the log's folder name
 * (`log/log.txt` is "log"), made unique with a number where two coincide.
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
    runs.push({ label, log, path });
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
  /** The model size whose baselines are drawn; 124M by default. */
  size?: ModelSize;
  title?: string;
}

/** Reads logs, overlays them with the baselines and writes HTML, SVG and PNG into `outDir`. */
export async function plotLogs(
  paths: string[],
  outDir: string,
  options: PlotLogsOptions = {},
): Promise<WrittenFigure & { runs: LabelledLog[] }> {
  if (paths.length === 0) throw new Error("Expected at least one log file, found none");
  const runs = await loadRuns(paths, { labels: options.labels });
  const figure = buildFigure(runs, { size: options.size, title: options.title });
  return { ...(await writeFigure(figure, outDir, options)), runs };
}

/** Options for {@linkcode writeRunFigure}. */
export interface RunFigureOptions extends WriteFigureOptions {
  /** The run's label in the legend; `ours` by default. */
  label?: string;
  /** The model size whose baselines are drawn; 124M by default. */
  size?: ModelSize;
}

/**
 * Redraws one run's figure from its log: `figure.html`, `figure.svg`, `figure.png` in `outDir`.
 * The training loop calls it after each evaluation for `deno task train --plot`, e.g.
 * `await writeRunFigure(join(logDir, "log.txt"), logDir, { size: "124M" })`. It takes about
 * half a second (vega and resvg) and returns the summary it wrote.
 */
export async function writeRunFigure(
  logPath: string,
  outDir: string,
  options: RunFigureOptions = {},
): Promise<WrittenFigure> {
  const log = await readLog(logPath);
  const figure = buildFigure([{ label: options.label ?? "ours", log }], { size: options.size });
  return await writeFigure(figure, outDir, options);
}

async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}
