// lib/plot/figure.ts: the figure's data: baselines per model size, every point of every run in
// the vega-lite and plotly specs, the runs' summaries.
import assert from "node:assert/strict";
import {
  BASELINES,
  buildFigure,
  figureLines,
  type ModelSize,
  parseLog,
  parseModelSize,
  plotlySpec,
  summarize,
  vegaLiteSpec,
} from "../../lib/plot/mod.ts";
import { oursLog } from "./ours_log.ts";

Deno.test("plot figure: baselines for each model size, as drawn by both renderers", () => {
  const expected: Record<ModelSize, [number | null, number, number]> = {
    "124M": [3.2924, 0.294463, 0.337],
    "350M": [null, 0.375224, 0.436],
    "774M": [null, 0.431986, 0.510],
    "1558M": [null, 0.488946, 0.547],
  };
  for (
    const [size, [loss, gpt2, gpt3]] of Object.entries(expected) as [
      ModelSize,
      [number | null, number, number],
    ][]
  ) {
    assert.deepEqual(BASELINES[size], { size, valLoss: loss, hellaGpt2: gpt2, hellaGpt3: gpt3 });
    const figure = buildFigure([{ label: "ours", log: parseLog(oursLog(20)) }], { size });
    const baselines = figureLines(figure).filter((l) => l.kind === "baseline");
    const want = [
      ...(loss === null ? [] : [{ panel: "loss", v: loss }]),
      { panel: "hella", v: gpt2 },
      { panel: "hella", v: gpt3 },
    ];
    assert.deepEqual(baselines.map((l) => ({ panel: l.panel, v: l.values[0] })), want);
    for (const l of baselines) {
      assert.deepEqual(l.steps, [0, 19]);
      assert.ok(l.dash.length > 0, `${l.name} should be dashed`);
    }
    const traces = plotlySpec(figure).data.filter((t) => String(t.name).includes("OpenAI"));
    assert.equal(traces.length, want.length);
  }
  assert.equal(parseModelSize("gpt2-xl"), "1558M");
  assert.equal(parseModelSize("124m"), "124M");
  assert.throws(() => parseModelSize("7B"), /^Error: Unknown model size "7B": expected 124M, 350M/);
});

Deno.test("plot figure: every point of every run reaches the vega-lite and plotly specs", () => {
  const a = parseLog(oursLog(50));
  const b = parseLog("s:0 trl:11.0\ns:10 trl:8.0\ns:10 tel:8.5\ns:20 trl:7.0\ns:20 eval:0.26\n");
  const figure = buildFigure([{ label: "ours", log: a }, { label: "llm.c", log: b }]);
  assert.equal(figure.maxStep, 49);
  const lines = figureLines(figure).filter((l) => l.kind !== "baseline");
  assert.deepEqual(
    lines.map((l) => [l.name, l.steps.length]),
    [
      ["ours train loss", 50],
      ["ours val loss", 11],
      ["ours HellaSwag", 11],
      ["llm.c train loss", 3],
      ["llm.c val loss", 1],
      ["llm.c HellaSwag", 1],
    ],
  );
  const spec = plotlySpec(figure);
  for (const l of lines) {
    const trace = spec.data.find((t) => t.name === l.name);
    assert.deepEqual(trace?.y, l.values, l.name);
  }
  const vl = JSON.stringify(vegaLiteSpec(figure));
  const points = (vl.match(/"series":"ours train loss"/g) ?? []).length;
  assert.equal(points, 50);
  const [ours, llmc] = summarize(figure);
  assert.deepEqual(ours.minTrainLoss, { step: 49, value: Number((10.9 - 4.9).toFixed(6)) });
  assert.deepEqual(ours.maxHella, { step: 49, value: 0.299 });
  assert.deepEqual(llmc.minValLoss, { step: 10, value: 8.5 });
});
