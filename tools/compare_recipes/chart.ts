/**
 * The figure of `deno task compare-recipes` as a vega-lite spec (plain data): each row's
 * validation loss, the mean over its seeds at each evaluation, against the step, with L* as a
 * dashed rule. The command and notebook 06 compile and render it (lib/plot/svg.ts's
 * `svgToPng` for the PNG).
 *
 * @module
 */

import { type Curve, meanAndSd } from "./results.ts";

/** A row's curves, one per seed, under the row's id. */
export interface ChartRow {
  id: string;
  curves: readonly Curve[];
}

/**
 * The mean over `curves` at each step every curve evaluated (a run that stopped early shortens
 * its row's mean curve, rather than biasing it).
 */
export function meanCurve(curves: readonly Curve[]): Curve {
  if (curves.length === 0) return { steps: [], values: [] };
  const common = curves[0].steps.filter((s) => curves.every((c) => c.steps.includes(s)));
  return {
    steps: common,
    values: common.map((s) => meanAndSd(curves.map((c) => c.values[c.steps.indexOf(s)])).mean),
  };
}

/** The vega-lite spec: a line per row (the seeds' mean), and L* as a dashed horizontal rule. */
export function recipeChartSpec(
  rows: readonly ChartRow[],
  lStar: number | null,
  title: string,
): Record<string, unknown> {
  const points = rows.flatMap(({ id, curves }, order) => {
    const mean = meanCurve(curves);
    return mean.steps.map((step, i) => ({ row: `${order}. ${id}`, step, loss: mean.values[i] }))
      .filter((p) => Number.isFinite(p.loss));
  });
  const layers: Record<string, unknown>[] = [{
    data: { values: points },
    mark: { type: "line", point: { size: 12 } },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step" },
      y: {
        field: "loss",
        type: "quantitative",
        title: "validation loss (mean of the seeds)",
        scale: { zero: false },
      },
      color: { field: "row", type: "nominal", title: "row", sort: null },
    },
  }];
  if (lStar !== null && Number.isFinite(lStar)) {
    layers.push({
      data: { values: [{ loss: lStar, label: `L* = ${lStar.toFixed(4)}` }] },
      layer: [
        {
          mark: { type: "rule", strokeDash: [6, 4], color: "black" },
          encoding: { y: { field: "loss", type: "quantitative" } },
        },
        {
          mark: { type: "text", align: "right", dy: -6, x: "width" },
          encoding: { y: { field: "loss", type: "quantitative" }, text: { field: "label" } },
        },
      ],
    });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    width: 560,
    height: 340,
    background: "white",
    config: { font: "DejaVu Sans" },
    layer: layers,
  };
}
