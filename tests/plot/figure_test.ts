// lib/plot/figure.ts: the figure's data: baselines per model size (their values in the legend),
// every point of every run in the vega-lite and plotly specs, the loss axis's ticks, markers for
// few points, titles from the runs' model and data, the different-data note, the summaries.
import assert from "node:assert/strict";
import {
  BASELINES,
  buildFigure,
  figureLines,
  formatSummary,
  lossAxis,
  type ModelSize,
  parseLog,
  parseModelSize,
  plotlySpec,
  summarize,
  vegaLiteSpec,
} from "../../lib/plot/mod.ts";
import { oursLog } from "./ours_log.ts";

/** The value at `path` in a spec (objects and arrays), e.g. `dig(spec, "hconcat", 0, "layer")`. */
function dig(value: unknown, ...path: (string | number)[]): unknown {
  let at = value;
  for (const key of path) {
    assert.ok(typeof at === "object" && at !== null, `expected an object at ${key}`);
    at = (at as Record<string | number, unknown>)[key];
  }
  return at;
}

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

Deno.test("plot figure: each baseline's legend label says its value", () => {
  const names = (size: ModelSize) =>
    figureLines(buildFigure([{ label: "ours", log: parseLog(oursLog(10)) }], { size }))
      .filter((l) => l.kind === "baseline").map((l) => l.name);
  assert.deepEqual(names("124M"), [
    "OpenAI GPT-2 (124M) checkpoint val loss: 3.2924",
    "OpenAI GPT-2 (124M) HellaSwag: 0.2945",
    "OpenAI GPT-3 (124M) HellaSwag: 0.337",
  ]);
  assert.deepEqual(names("350M"), [
    "OpenAI GPT-2 (350M) HellaSwag: 0.3752",
    "OpenAI GPT-3 (350M) HellaSwag: 0.436",
  ]);
  const figure = buildFigure([{ label: "ours", log: parseLog(oursLog(10)) }]);
  const legend = dig(
    vegaLiteSpec(figure),
    "hconcat",
    0,
    "layer",
    0,
    "encoding",
    "color",
    "scale",
    "domain",
  );
  assert.ok((legend as string[]).includes("OpenAI GPT-2 (124M) checkpoint val loss: 3.2924"));
  assert.ok(plotlySpec(figure).data.some((t) => t.name === "OpenAI GPT-3 (124M) HellaSwag: 0.337"));
});

Deno.test("plot figure: the loss axis has a tick at 3 under the baseline, in both specs", () => {
  // losses 10.9 down to 8.1 and the baseline 3.2924
  const figure = buildFigure([{ label: "ours", log: parseLog(oursLog(20)) }]);
  const axis = lossAxis(figure)!;
  assert.deepEqual(axis.ticks, [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(axis.domain[0] < 3 && axis.domain[1] > 10.9, `domain ${axis.domain}`);
  const y = dig(vegaLiteSpec(figure), "hconcat", 0, "encoding", "y");
  assert.deepEqual(dig(y, "axis", "values"), [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(dig(y, "scale", "type"), "log");
  assert.ok((dig(y, "scale", "domain", 0) as number) < 3);
  const plotlyY = plotlySpec(figure).layout.yaxis;
  assert.deepEqual(dig(plotlyY, "tickvals"), [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(dig(plotlyY, "tickmode"), "array");
  assert.ok((dig(plotlyY, "range", 0) as number) < Math.log10(3)); // log axes range in log10
  // no baseline (350M): the axis fits the data alone
  const medium = buildFigure([{ label: "ours", log: parseLog(oursLog(20)) }], { size: "350M" });
  assert.deepEqual(lossAxis(medium)!.ticks, [8, 9, 10]);
  // a run far below the baseline still gets a tick under the baseline
  const low = buildFigure([{ label: "ours", log: parseLog("0 train 0.9\n1 train 0.5\n") }]);
  assert.ok(lossAxis(low)!.ticks.includes(3), `${lossAxis(low)!.ticks}`);
});

Deno.test("plot figure: series of few points get markers in both specs", () => {
  const figure = buildFigure([
    { label: "one", log: parseLog("0 train 10.9\n0 hella 0.2500\n") },
    { label: "long", log: parseLog(oursLog(50)) }, // 50 train points: a line is enough
  ]);
  const marked = figureLines(figure).filter((l) => l.markers).map((l) => l.name);
  assert.deepEqual(marked, [
    "one train loss",
    "one HellaSwag",
    "long val loss",
    "long HellaSwag",
  ]);
  for (
    const [i, names] of [[0, ["one train loss", "long val loss"]], [1, [
      "one HellaSwag",
      "long HellaSwag",
    ]]] as const
  ) {
    const points = dig(vegaLiteSpec(figure), "hconcat", i, "layer", 1);
    assert.equal(dig(points, "mark", "type"), "point");
    assert.deepEqual(dig(points, "transform"), [{ filter: { field: "series", oneOf: names } }]);
  }
  const modes = Object.fromEntries(plotlySpec(figure).data.map((t) => [t.name, t.mode]));
  assert.equal(modes["one train loss"], "lines+markers");
  assert.equal(modes["one HellaSwag"], "lines+markers");
  assert.equal(modes["long train loss"], "lines");
  assert.equal(modes["OpenAI GPT-2 (124M) HellaSwag: 0.2945"], "lines");
});

Deno.test("plot figure: the title names the runs' model and data, never a reproduction it is not", () => {
  const log = parseLog(oursLog(10));
  const tiny = { model: "tiny (7.3M)", data: "Tiny Shakespeare" };
  assert.equal(
    buildFigure([{ label: "ours", log, about: tiny }]).title,
    "tiny (7.3M) on Tiny Shakespeare: loss and HellaSwag",
  );
  assert.equal(
    buildFigure([{ label: "ours", log, about: { model: "GPT-2 124M", data: "FineWeb-EDU 10B" } }])
      .title,
    "GPT-2 124M on FineWeb-EDU 10B: loss and HellaSwag",
  );
  assert.equal(
    buildFigure([{ label: "ours", log, about: tiny }, { label: "llm.c", log }]).title,
    "tiny (7.3M) on Tiny Shakespeare vs llm.c: loss and HellaSwag",
  );
  assert.equal(
    buildFigure([{ label: "ours", log }], { size: "774M" }).title,
    "Loss and HellaSwag against the OpenAI GPT-2 and GPT-3 (774M) baselines",
  );
  assert.equal(buildFigure([{ label: "ours", log, about: tiny }], { title: "Mine" }).title, "Mine");
});

Deno.test("plot figure: a note, the summary and the specs say when the baseline's data is not the run's", () => {
  const log = parseLog(oursLog(10));
  const shakespeare = buildFigure([{
    label: "ours",
    log,
    about: { model: "tiny (7.3M)", data: "Tiny Shakespeare" },
  }]);
  assert.equal(shakespeare.notes.length, 1);
  assert.match(
    shakespeare.notes[0],
    /^Different data: the dashed 3\.2924 is OpenAI GPT-2 \(124M\)'s val loss on FineWeb-EDU; this run's loss is on Tiny Shakespeare\. The baseline is a loss on a different dataset, so the difference is not a measure of the gap to GPT-2$/,
  );
  const subtitle = dig(vegaLiteSpec(shakespeare), "title", "subtitle") as string[];
  assert.match(subtitle.join(" "), /on FineWeb-EDU; this run's loss is on Tiny Shakespeare\./);
  const plotlyTitle = (plotlySpec(shakespeare).layout.title as { text: string }).text;
  assert.match(plotlyTitle, /this run&#39;s loss is on Tiny Shakespeare/);
  assert.match(formatSummary(summarize(shakespeare), shakespeare.baselines), /different dataset/);

  // two runs: the note names the one on other data
  const two = buildFigure([
    { label: "a", log, about: { data: "FineWeb-EDU 10B" } },
    { label: "b", log, about: { data: "Tiny Shakespeare" } },
  ]);
  assert.match(two.notes[0], /FineWeb-EDU; "b" is on Tiny Shakespeare\. The baseline/);

  // FineWeb-EDU, unknown data, or no baseline loss drawn: nothing to say
  for (
    const figure of [
      buildFigure([{ label: "ours", log, about: { data: "FineWeb-EDU 10B" } }]),
      buildFigure([{ label: "ours", log }]),
      buildFigure([{ label: "ours", log, about: { data: "Tiny Shakespeare" } }], { size: "350M" }),
    ]
  ) {
    assert.deepEqual(figure.notes, []);
    assert.doesNotMatch(JSON.stringify(vegaLiteSpec(figure)), /different dataset|subtitle/);
    assert.doesNotMatch(JSON.stringify(plotlySpec(figure).layout), /different dataset/);
    assert.doesNotMatch(formatSummary(summarize(figure), figure.baselines), /different dataset/);
  }
});
