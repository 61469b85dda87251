// lib/plot/mod.ts's writeFigure: the PNG decoded back to its size and pixels, the SVG's legend
// and axis labels, one-point series drawn as markers, titles and notes from a run.json beside
// the log, the self-contained HTML, and that HTML opened in Debian's Chromium (skipped with a
// notice where /usr/bin/chromium is missing).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  buildFigure,
  figureLines,
  parseLog,
  plotLogs,
  PNG_SCALE_MAX,
  PNG_SCALE_MIN,
  renderSvg,
  svgSize,
  svgToPng,
  writeFigure,
} from "../../lib/plot/mod.ts";
import { oursLog } from "./ours_log.ts";
import { decodePng, hasColor } from "./png.ts";
import { CHROMIUM, launchChromium } from "../../tools/chromium.ts";

/** The labels of the SVG's y axis titled `title`, in drawing order (bottom to top). */
function yAxisLabels(svg: string, title: string): string[] {
  const at = svg.indexOf(`aria-label="Y-axis titled '${title}'`);
  assert.ok(at >= 0, `a y axis titled ${title}`);
  const group = /class="mark-text role-axis-label"[^>]*>(.*?)<\/g>/.exec(svg.slice(at));
  return [...(group?.[1] ?? "").matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

/** The legend labels of the SVG, in order. */
function legendLabels(svg: string): string[] {
  return [...svg.matchAll(/class="mark-text role-legend-label"[^>]*>(.*?)<\/g>/g)]
    .flatMap((g) => [...g[1].matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]));
}

Deno.test("plot files: PNG decodes to the SVG's size times the scale, with the lines' colours", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
  try {
    const figure = buildFigure([{ label: "ours", log: parseLog(oursLog(40)) }]);
    const written = await writeFigure(figure, dir, { pngScale: 1.5 });
    const svg = await Deno.readTextFile(written.svg);
    const { width, height } = svgSize(svg);
    const png = await decodePng(await Deno.readFile(written.png));
    assert.equal(png.width, Math.round(width * 1.5));
    assert.equal(png.height, Math.round(height * 1.5));
    // The GPT-2 baselines' red (#d62728) and the val loss's dark blue (#08519c) are drawn
    assert.ok(hasColor(png, 0xd6, 0x27, 0x28), "baseline red in the PNG");
    assert.ok(hasColor(png, 0x08, 0x51, 0x9c), "val loss blue in the PNG");
    assert.ok(hasColor(png, 0x2c, 0xa0, 0x2c), "GPT-3 green in the PNG");
    // each baseline's legend entry says its value
    assert.deepEqual(legendLabels(svg), [
      "ours train loss",
      "ours val loss",
      "OpenAI GPT-2 (124M) checkpoint val loss: 3.2924",
      "ours HellaSwag",
      "OpenAI GPT-2 (124M) HellaSwag: 0.2945",
      "OpenAI GPT-3 (124M) HellaSwag: 0.337",
    ]);
    // losses 6.1-10.9 and the baseline 3.29: labelled from 3 up, so the dashed line sits
    // between 3 and 4 (vega's own log ticks would start at 4)
    assert.deepEqual(yAxisLabels(svg, "loss (log scale)"), [
      "3",
      "4",
      "5",
      "6",
      "7",
      "8",
      "9",
      "10",
    ]);
    const html = await Deno.readTextFile(written.html);
    assert.equal(html.split("* plotly.js v").length - 1, 1, "plotly.js inlined exactly once");
    assert.doesNotMatch(html, /<script[^>]+src=/, "no external script: it opens offline");
    assert.match(
      written.summary,
      /^ours: min train loss 7\.0000 \(step 39\), min val loss 6\.1000 \(step 39\), max HellaSwag 0\.2890 \(step 39\)$/m,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "plot html: renders in Chromium (plotly's SVG, one trace per line, no console errors)",
  ignore: !existsSync(CHROMIUM),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
    const browser = await launchChromium(["--disable-gpu"]);
    try {
      const figure = buildFigure([
        { label: "ours", log: parseLog(oursLog(30)) },
        { label: "llm.c", log: parseLog("s:0 trl:11\ns:20 trl:8\ns:20 tel:8.4\ns:20 eval:0.27\n") },
      ]);
      const written = await writeFigure(figure, dir);
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`file://${written.html}`);
      await page.waitForSelector("#figure svg.main-svg", { timeout: 30_000 });
      assert.ok(await page.locator("#figure svg.main-svg").count() >= 1);
      assert.equal(
        await page.locator("#figure .scatterlayer .trace").count(),
        figureLines(figure).length,
      );
      const legend = await page.locator("#figure .legendtext").allTextContents();
      assert.ok(
        legend.includes("OpenAI GPT-2 (124M) checkpoint val loss: 3.2924"),
        legend.join(", "),
      );
      const lossTicks = await page.locator("#figure .ytick text").allTextContents();
      assert.deepEqual(lossTicks, ["3", "4", "5", "6", "7", "8", "9", "10"]);
      // a marker per point of every run's series (ours: 30 train, 7 val, 7 HellaSwag; llm.c:
      // 2, 1, 1), so llm.c's one val loss and one HellaSwag are visible; none on the baselines
      const points = await page.locator("#figure .scatterlayer .trace .points path").count();
      assert.equal(points, 30 + 7 + 7 + 2 + 1 + 1);
      assert.equal(await page.locator("#figure img").count(), 0, "the PNG fallback was replaced");
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

if (!existsSync(CHROMIUM)) {
  console.log(
    `notice: ${CHROMIUM} not found: the browser test is skipped (deno task setup installs chromium)`,
  );
}

Deno.test("plot files: a one-point series is a marker in the SVG and in the PNG", async () => {
  // one HellaSwag evaluation and nothing else: a line through one point would draw nothing
  const figure = buildFigure([{ label: "ours", log: parseLog("0 hella 0.2600\n") }]);
  const svg = await renderSvg(figure);
  const points = [
    ...svg.matchAll(/<path aria-label="([^"]*)"[^>]*aria-roledescription="point"[^>]*>/g),
  ];
  assert.deepEqual(points.map((m) => m[1]), ["step: 0; acc_norm: 0.26; series: ours HellaSwag"]);
  assert.match(points[0][0], /fill="#08519c"/);
  // the run's dark blue is in the PNG only through that marker (the baselines are red and green)
  const png = await decodePng(svgToPng(svg, { scale: 1 }));
  assert.ok(hasColor(png, 0x08, 0x51, 0x9c), "the one HellaSwag point's blue in the PNG");
});

Deno.test("plot files: svgToPng refuses a scale outside its range before rasterising", () => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>';
  for (const scale of [1000, 1e6, 0, -1, NaN, PNG_SCALE_MAX * 1.01, PNG_SCALE_MIN / 2]) {
    assert.throws(
      () => svgToPng(svg, { scale }),
      (e: Error) => e instanceof RangeError && e.message.includes(`[0.1, 8], found ${scale}`),
      String(scale),
    );
  }
  assert.ok(svgToPng(svg, { scale: PNG_SCALE_MAX }).length > 0);
});

Deno.test("plot files: a run.json beside a log names the title and flags other data", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
  try {
    const write = async (name: string, log: string, meta?: unknown): Promise<string> => {
      await Deno.mkdir(join(dir, name));
      await Deno.writeTextFile(join(dir, name, "log.txt"), log);
      if (meta) await Deno.writeTextFile(join(dir, name, "run.json"), JSON.stringify(meta));
      return join(dir, name, "log.txt");
    };
    const tiny = await write("tiny", oursLog(12), {
      command: "deno task train --steps 12 --log-dir tiny",
      model: "tiny",
      parameters: 7_265_024,
    });
    const fineweb = await write("fineweb", oursLog(12), {
      model: "gpt2",
      preset: "gpt2-124M-fineweb",
    });
    const bare = await write("bare", "s:0 trl:11.0\ns:1 trl:10.5\n"); // llm.c's, no run.json

    const shakespeare = await plotLogs([tiny], join(dir, "out1"));
    assert.equal(shakespeare.figure.title, "tiny (7.3M) on Tiny Shakespeare: loss and HellaSwag");
    const svg = await Deno.readTextFile(shakespeare.svg);
    assert.ok(svg.includes("Title text 'tiny (7.3M) on Tiny Shakespeare: loss and HellaSwag'"));
    // the note under the title (wrapped over lines in the SVG), the summary and the HTML say it
    assert.match(
      svg.replace(/<[^>]+>/g, " "),
      /Different data: the dashed 3\.2924 is OpenAI GPT-2/,
    );
    assert.match(shakespeare.summary, /FineWeb-EDU; this run's loss is on Tiny Shakespeare\./);
    assert.match(shakespeare.summary, /not a measure of the gap to GPT-2$/);
    assert.match(await Deno.readTextFile(shakespeare.html), /a loss on a different dataset/);

    const same = await plotLogs([fineweb, bare], join(dir, "out2"));
    assert.equal(same.figure.title, "GPT-2 124M on FineWeb-EDU 10B vs bare: loss and HellaSwag");
    assert.deepEqual(same.figure.notes, []);
    assert.doesNotMatch(same.summary, /different dataset/);
    assert.doesNotMatch(await Deno.readTextFile(same.svg), /Different data/);

    const alone = await plotLogs([bare], join(dir, "out3"));
    assert.equal(
      alone.figure.title,
      "Loss and HellaSwag against the OpenAI GPT-2 and GPT-3 (124M) baselines",
    );
    assert.deepEqual(alone.figure.notes, []);

    // a run.json naming GPT-2 medium draws the 350M baselines unless told otherwise
    const medium = await write("medium", oursLog(3), { model: "gpt2-medium" });
    const drawn = await plotLogs([medium], join(dir, "out4"));
    assert.equal(drawn.figure.baselines.size, "350M");
    assert.equal(
      (await plotLogs([medium], join(dir, "out5"), { size: "124M" })).figure.baselines.size,
      "124M",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
