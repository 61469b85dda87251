/**
 * The interactive figure: plotly.js, whose script is inlined (once per page or notebook) so the
 * file opens offline. `npm:plotly.js-dist-min` cannot be imported into Deno (it needs `window`),
 * so its bundle is read as text through Deno's text import and written into a `<script>`.
 *
 * @module
 */

import {
  type FigureData,
  type FigureLine,
  figureLines,
  lossAxis,
  NOTE_COLOR,
  panelTitles,
  wrapText,
} from "./figure.ts";

let plotlyText: Promise<string> | undefined;

/**
 * plotly.js's minified bundle (about 4.8 MB), ready to sit inside a `<script>` element; it sets
 * `window.Plotly`. Read once per process.
 */
export function plotlySource(): Promise<string> {
  plotlyText ??= import("plotly.js-dist-min/plotly.min.js", { with: { type: "text" } }).then(
    (m) => m.default.replace(/<\/script/gi, "<\\/script"),
  );
  return plotlyText;
}

/** A `<script>` element that defines `window.Plotly`. */
export async function plotlyScriptTag(): Promise<string> {
  return `<script type="text/javascript">${await plotlySource()}</script>`;
}

/** The arguments of `Plotly.newPlot` for a figure. */
export interface PlotlySpec {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
  config: Record<string, unknown>;
}

/** Height of the interactive figure in pixels, without notes under its title. */
export const FIGURE_HEIGHT = 600;
/** Characters per line of a note under the plotly title, and the height of such a line. */
const PLOTLY_NOTE_CHARS = 140, NOTE_LINE_PX = 20;

/** The plotly traces and layout of a figure: the same lines, colours and dashes as the SVG. */
export function plotlySpec(figure: FigureData): PlotlySpec {
  const data = figureLines(figure).map((line: FigureLine) => {
    const second = line.panel === "hella";
    return {
      type: "scatter",
      // a line through one point draws nothing: markers make few points visible
      mode: line.markers ? "lines+markers" : "lines",
      name: line.name,
      x: line.steps,
      y: line.values,
      xaxis: second ? "x2" : "x",
      yaxis: second ? "y2" : "y",
      legend: second ? "legend2" : "legend",
      opacity: line.opacity,
      marker: { size: 6 },
      cliponaxis: !line.markers, // a marker on the frame (the last step) stays whole
      line: {
        color: line.color,
        width: line.width,
        dash: line.dash.length > 0 ? line.dash.map((d) => `${d}px`).join(",") : "solid",
      },
    };
  });
  const titles = panelTitles(figure);
  const xRange = [0, Math.max(figure.maxStep, 1)];
  const legend = (x: number) => ({ x, y: -0.16, xanchor: "left", yanchor: "top" });
  const title = (text: string, x: number) => ({
    text: `<b>${escapeHtml(text)}</b>`,
    x,
    y: 1.06,
    xref: "paper",
    yref: "paper",
    xanchor: "center",
    showarrow: false,
  });
  const axis = lossAxis(figure);
  // the same labels as the SVG: one at 3 under GPT-2's 3.29 (plotly's own would start at 4)
  const lossTicks = axis === null ? {} : {
    range: axis.domain.map(Math.log10), // a log axis's range is in powers of ten
    tickmode: "array",
    tickvals: axis.ticks,
    ticktext: axis.ticks.map(String),
  };
  const notes = figure.notes.map((n) =>
    `<br><span style="font-size:12px;color:${NOTE_COLOR}">${
      wrapText(n, PLOTLY_NOTE_CHARS).map(escapeHtml).join("<br>")
    }</span>`
  ).join("");
  const noteLines = figure.notes.flatMap((n) => wrapText(n, PLOTLY_NOTE_CHARS)).length;
  return {
    data,
    layout: {
      // from the top down, so the notes under it push the panels down instead of into them
      title: {
        text: escapeHtml(figure.title) + notes,
        yref: "container",
        y: 1,
        yanchor: "top",
        pad: { t: 24 },
      },
      height: FIGURE_HEIGHT + NOTE_LINE_PX * noteLines,
      margin: { t: 90 + NOTE_LINE_PX * noteLines, b: 190, l: 70, r: 30 },
      font: { family: "DejaVu Sans, Arial, sans-serif" },
      xaxis: { domain: [0, 0.45], anchor: "y", title: { text: "step" }, range: xRange },
      yaxis: { anchor: "x", type: "log", title: { text: "loss (log scale)" }, ...lossTicks },
      xaxis2: { domain: [0.55, 1], anchor: "y2", title: { text: "step" }, range: xRange },
      yaxis2: { anchor: "x2", title: { text: "acc_norm" } },
      legend: legend(0),
      legend2: legend(0.55),
      annotations: [title(titles.loss, 0.225), title(titles.hella, 0.775)],
    },
    config: { responsive: true, displaylogo: false },
  };
}

/** Options for {@linkcode figureDiv}. */
export interface FigureDivOptions {
  /** The element id; a fresh one by default. */
  id?: string;
  /** A PNG of the same figure, shown where plotly.js is not loaded (an untrusted notebook). */
  fallbackPng?: Uint8Array;
}

let divCounter = 0;

/**
 * A `<div>` and a `<script>` that draws the figure into it with `window.Plotly`. The page must
 * load {@linkcode plotlyScriptTag} first; without it the fallback PNG (if any) stays.
 */
export function figureDiv(figure: FigureData, options: FigureDivOptions = {}): string {
  const id = options.id ?? `gpt2-figure-${Date.now().toString(36)}-${divCounter++}`;
  const fallback = options.fallbackPng
    ? `<img alt="${escapeHtml(figure.title)}" style="max-width:100%" src="data:image/png;base64,${
      base64(options.fallbackPng)
    }">`
    : "";
  return `<div id="${id}" class="gpt2-figure" style="width:100%;min-height:${FIGURE_HEIGHT}px">${fallback}</div>
<script type="text/javascript">
(function () {
  var el = document.getElementById(${JSON.stringify(id)});
  if (!el || !window.Plotly) return;
  var spec = ${scriptJson(plotlySpec(figure))};
  el.innerHTML = "";
  window.Plotly.newPlot(el, spec.data, spec.layout, spec.config);
})();
</script>`;
}

/** Options for {@linkcode figurePage}. */
export interface FigurePageOptions {
  /** Text shown under the figure in a `<pre>` (e.g. the runs' minima and maxima). */
  summary?: string;
}

/** A standalone HTML page with plotly.js inlined: it opens offline. */
export async function figurePage(
  figure: FigureData,
  options: FigurePageOptions = {},
): Promise<string> {
  const summary = options.summary ? `<pre>${escapeHtml(options.summary)}</pre>` : "";
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(figure.title)}</title>
${await plotlyScriptTag()}
<style>body{font-family:"DejaVu Sans",Arial,sans-serif;margin:16px}pre{font-size:13px;white-space:pre-wrap}</style>
</head>
<body>
${figureDiv(figure, { id: "figure" })}
${summary}
</body>
</html>
`;
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that is safe inside a `<script>` element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

/** Standard base64 of bytes. */
export function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
