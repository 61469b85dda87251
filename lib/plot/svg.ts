/**
 * The static figure without a browser: a vega-lite spec compiled to vega, rendered to an SVG
 * string by vega's headless `View.toSVG()` (no DOM needed), then rasterised to PNG by
 * `@resvg/resvg-js` (Rust's resvg through Node-API, with the system's fonts).
 *
 * @module
 */

import { Resvg } from "@resvg/resvg-js";
import { logger as vegaLogger, None, parse as parseVega, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import {
  type FigureData,
  type FigureLine,
  figureLines,
  lossAxis,
  NOTE_COLOR,
  panelTitles,
  wrapText,
} from "./figure.ts";

/** The font the static figure asks for; Debian's fonts-dejavu-core provides it. */
export const FIGURE_FONT = "DejaVu Sans";
const PANEL_WIDTH = 480;
const PANEL_HEIGHT = 320;

/** The vega-lite spec of the figure: two panels side by side, a legend under each. */
export function vegaLiteSpec(figure: FigureData): TopLevelSpec {
  const lines = figureLines(figure);
  const axis = lossAxis(figure);
  const panel = (which: FigureLine["panel"], title: string, yTitle: string, log: boolean) => {
    const mine = lines.filter((l) => l.panel === which);
    const names = mine.map((l) => l.name);
    const legendless = { legend: null };
    const byName = (pick: (l: FigureLine) => unknown) => ({
      field: "series",
      type: "nominal" as const,
      sort: names,
      scale: { domain: names, range: mine.map(pick) },
    });
    // A log scale's "nice" domain runs from a power of ten to the next (1 to 100 for a GPT-2
    // run) and flattens the curve: fit the data, labelled where lossAxis says.
    const y = log && axis !== null
      ? {
        scale: { type: "log" as const, domain: axis.domain, nice: false },
        axis: { values: axis.ticks, format: "~g" },
      }
      : { scale: { zero: false, padding: 6 } };
    const legend = { orient: "bottom" as const, direction: "vertical" as const, labelLimit: 440 };
    return {
      title,
      width: PANEL_WIDTH,
      height: PANEL_HEIGHT,
      data: {
        values: mine.flatMap((l) =>
          l.steps.map((step, i) => ({ series: l.name, step, value: l.values[i] }))
        ),
      },
      encoding: {
        x: {
          field: "step",
          type: "quantitative" as const,
          title: "step",
          scale: { domain: [0, Math.max(figure.maxStep, 1)], nice: false },
        },
        y: { field: "value", type: "quantitative" as const, title: yTitle, ...y },
      },
      layer: [
        {
          mark: { type: "line" as const, clip: true },
          encoding: {
            color: { ...byName((l) => l.color), title: null, legend },
            strokeDash: {
              ...byName((l) => l.dash.length ? l.dash : [1, 0]),
              title: null,
              legend,
            },
            strokeWidth: { ...byName((l) => l.width), ...legendless },
            opacity: { ...byName((l) => l.opacity), ...legendless },
          },
        },
        {
          // a line through one point draws nothing: markers make few points visible
          transform: [{ filter: { field: "series", oneOf: markerNames(mine) } }],
          // unclipped: a point on the frame (the last step, the lowest value) stays whole
          mark: { type: "point" as const, filled: true, size: 36, opacity: 1, clip: false },
          encoding: { color: { ...byName((l) => l.color), ...legendless } },
        },
      ],
    };
  };
  const titles = panelTitles(figure);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: figure.title,
      fontSize: 15,
      ...(figure.notes.length > 0
        ? {
          subtitle: figure.notes.flatMap((n) => wrapText(n, NOTE_CHARS)),
          subtitleColor: NOTE_COLOR,
          subtitleFontSize: 12,
        }
        : {}),
    },
    background: "white",
    padding: 12,
    config: { font: FIGURE_FONT, view: { stroke: "#888" } },
    hconcat: [
      panel("loss", titles.loss, "loss (log scale)", true),
      panel("hella", titles.hella, "acc_norm", false),
    ],
    resolve: {
      scale: {
        color: "independent",
        strokeDash: "independent",
        strokeWidth: "independent",
        opacity: "independent",
        y: "independent",
      },
      legend: { color: "independent", strokeDash: "independent" },
    },
  } as TopLevelSpec;
}

/** The names of the lines drawn with markers (a filter needs at least one value). */
function markerNames(lines: FigureLine[]): string[] {
  const names = lines.filter((l) => l.markers).map((l) => l.name);
  return names.length > 0 ? names : [""];
}

/**
 * Characters per line of a note under the title. Without a canvas vega estimates text wider
 * than it renders (about 0.8 em a character) and widens the figure to fit: 110 stays within
 * the two panels' 1100 px.
 */
const NOTE_CHARS = 110;

/** The figure as an SVG document (vega's headless renderer). */
export async function renderSvg(figure: FigureData): Promise<string> {
  const quiet = vegaLogger(None); // vega-lite's notes on merged legends are not for users
  const { spec } = compile(vegaLiteSpec(figure), { logger: quiet });
  const view = new View(parseVega(spec), { renderer: "none", logger: quiet });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Options for {@linkcode svgToPng}. */
export interface PngOptions {
  /**
   * Pixels per SVG unit, in [{@linkcode PNG_SCALE_MIN}, {@linkcode PNG_SCALE_MAX}]; 2 by
   * default (a sharp image on high-density screens).
   */
  scale?: number;
}

/** The smallest PNG scale: below it the figure's text is a blur of a few pixels. */
export const PNG_SCALE_MIN = 0.1;
/**
 * The largest PNG scale: the figure (about 1,100 x 450 units) is then about 9,000 x 3,600
 * pixels, 130 MB to rasterise; resvg's memory grows with the square of the scale (a scale of
 * 1000 asks for tens of GB, 1e6 overflows its pixel size and aborts the process).
 */
export const PNG_SCALE_MAX = 8;

/**
 * Rasterises an SVG document to PNG bytes with resvg, using the system's fonts.
 *
 * @throws {RangeError} for a scale outside [{@linkcode PNG_SCALE_MIN}, {@linkcode PNG_SCALE_MAX}].
 */
export function svgToPng(svg: string, options: PngOptions = {}): Uint8Array {
  const scale = options.scale ?? 2;
  if (!(scale >= PNG_SCALE_MIN && scale <= PNG_SCALE_MAX)) {
    throw new RangeError(
      `Expected a PNG scale in [${PNG_SCALE_MIN}, ${PNG_SCALE_MAX}], found ${scale}`,
    );
  }
  const resvg = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: FIGURE_FONT },
  });
  return new Uint8Array(resvg.render().asPng());
}

/** The width and height an SVG document declares on its root element. */
export function svgSize(svg: string): { width: number; height: number } {
  const root = /<svg\b[^>]*>/.exec(svg)?.[0] ?? "";
  const attr = (name: string): number =>
    Number(new RegExp(`\\b${name}="([\\d.]+)"`).exec(root)?.[1]);
  const width = attr("width"), height = attr("height");
  if (!(width > 0 && height > 0)) {
    throw new Error(`Expected an <svg> root with width and height, found ${root.slice(0, 120)}`);
  }
  return { width, height };
}
