/**
 * The plots (`lib/plot/`, `deno task plot`): the three log formats on logs written here (partial
 * lines, steps out of order, a resumed run repeating steps), the figure's data (baselines per
 * model size, complete series), the PNG decoded back to its size and pixels, the HTML opened in
 * Debian's Chromium (skipped with a notice where /usr/bin/chromium is missing), the live
 * notebook chart and the run report.
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BASELINES,
  buildFigure,
  detectLogFormat,
  figureLines,
  flopsPerToken,
  LiveFigure,
  type MimeBundle,
  type ModelSize,
  parseLog,
  parseModelSize,
  plotlySpec,
  readLog,
  summarize,
  svgSize,
  vegaLiteSpec,
  writeFigure,
  writeRunFigure,
  writeRunReport,
} from "../lib/plot/mod.ts";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";

/** Lines exactly as our training loop writes them (lib/train/train.ts: `toFixed(6)`), plus val/hella. */
function oursLog(steps: number): string {
  let text = "";
  for (let step = 0; step < steps; step++) {
    if (step % 5 === 0 || step === steps - 1) {
      text += `${step} val ${(10 - step * 0.1).toFixed(4)}\n`;
      text += `${step} hella ${(0.25 + step * 0.001).toFixed(4)}\n`;
    }
    text += `${step} train ${(10.9 - step * 0.1).toFixed(6)}\n`;
  }
  return text;
}

Deno.test("plot log: build-nanogpt/our lines, out of order, repeated steps win, partial last line", () => {
  const text = [
    "0 val 10.9500",
    "0 hella 0.2480",
    "0 train 10.955100",
    "2 train 9.500000",
    "1 train 10.100000", // out of order
    "",
    "2 train 9.400000", // a resumed run repeats step 2: the later line wins
    "3 val 9.1000",
    "3 train 9.1", // the last line, cut off while written
  ].join("\n");
  const log = parseLog(text.slice(0, -2), { source: "fixture/log.txt" }); // "3 train 9" stays readable
  assert.equal(log.format, "build-nanogpt");
  assert.deepEqual(log.train.steps, [0, 1, 2, 3]);
  assert.deepEqual(log.train.values, [10.9551, 10.1, 9.4, 9]);
  assert.deepEqual(log.val, { steps: [0, 3], values: [10.95, 9.1] });
  assert.deepEqual(log.hella, { steps: [0], values: [0.248] });
  assert.deepEqual(log.warnings, []);

  const cut = parseLog(`${oursLog(3)}3 tra`, { source: "fixture/log.txt" });
  assert.deepEqual(cut.train.steps, [0, 1, 2]);
  assert.equal(cut.warnings.length, 1);
  assert.match(
    cut.warnings[0],
    /^fixture\/log\.txt:8: expected "\{step\} \{stream\} \{value\}", found "3 tra"/,
  );
  assert.match(cut.warnings[0], /last line/);
});

Deno.test("plot log: build-nanogpt's Python log (val and hella at .4f) and unknown streams", () => {
  // As build-nanogpt's train_gpt2.py writes it: val and hella before the train line of a step
  const text = "0 val 10.9807\n0 hella 0.2490\n0 train 10.987000\n1 train 10.1234\n1 lr 0.0006\n";
  const log = parseLog(text);
  assert.equal(detectLogFormat(text), "build-nanogpt");
  assert.deepEqual(log.train, { steps: [0, 1], values: [10.987, 10.1234] });
  assert.deepEqual(log.other.lr, { steps: [1], values: [0.0006] });
  const bad = parseLog("0 train 1.5\n1 train nan\n2 train 1.2\n");
  assert.deepEqual(bad.train.steps, [0, 2]);
  assert.match(bad.warnings[0], /^log:2: expected .*"1 train nan"/);
});

Deno.test("plot log: llm.c main.log (trl/tel/eval), resumed steps, partial line", () => {
  const text = [
    "s:0 tel:10.9832",
    "s:0 eval:0.2500",
    "s:0 trl:10.9900 lr:0.000000 norm:15.23",
    "s:1 trl:10.1200 lr:0.000001 norm:9.10",
    "s:2 trl:9.8000 lr:0.000002 norm:5.00",
    "s:1 trl:10.1100 lr:0.000001 norm:9.00", // resumed from step 1
    "s:2 trl:9.7000 lr:0.000002 norm:4.90",
    "s:2 tel:9.6", // old llm.c wrote %f without fixed digits: also fine
    "s:3 trl:9.6",
    "s:3 trl:", // partial
  ].join("\n");
  assert.equal(detectLogFormat(text), "llm.c");
  const log = parseLog(text, { source: "llmc/main.log" });
  assert.equal(log.format, "llm.c");
  assert.deepEqual(log.train, { steps: [0, 1, 2, 3], values: [10.99, 10.11, 9.7, 9.6] });
  assert.deepEqual(log.val, { steps: [0, 2], values: [10.9832, 9.6] });
  assert.deepEqual(log.hella, { steps: [0], values: [0.25] });
  assert.deepEqual(log.other.norm.values, [15.23, 9, 4.9]);
  assert.equal(log.warnings.length, 1);
  assert.match(
    log.warnings[0],
    /^llmc\/main\.log:10: expected "s:\{step\} key:value \.\.\.", found "s:3 trl:"/,
  );
});

Deno.test("plot log: unreadable and missing files name the file and what was expected", async () => {
  assert.throws(
    () => parseLog("step 0 | loss: 10.9\n", { source: "out.txt" }),
    /^Error: out\.txt: expected build-nanogpt lines \("\{step\} train \{loss\}"\) or llm\.c lines .*found "step 0 \| loss: 10\.9"$/,
  );
  assert.throws(
    () => parseLog("0 train\n1 train x\n", { source: "bad.txt" }),
    /^Error: bad\.txt: no readable build-nanogpt lines \(bad\.txt:1: expected/,
  );
  const empty = parseLog("\n", { source: "empty.txt" }); // a run that has not logged yet
  assert.deepEqual([empty.train.steps, empty.val.steps, empty.hella.steps], [[], [], []]);
  await assert.rejects(
    readLog("/nonexistent/log.txt"),
    /^Error: Log file \/nonexistent\/log\.txt not found: expected a log\.txt or llm\.c main\.log$/,
  );
});

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

/** Decodes an 8-bit RGB/RGBA PNG: its size and pixels (filters undone), checking every chunk. */
async function decodePng(
  bytes: Uint8Array,
): Promise<{ width: number; height: number; pixels: Uint8Array; channels: number }> {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  assert.deepEqual([...bytes.subarray(0, 8)], signature, "PNG signature");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8, width = 0, height = 0, channels = 0;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (offset < bytes.length) {
    const length = view.getUint32(offset);
    const type = new TextDecoder().decode(bytes.subarray(offset + 4, offset + 8));
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(offset + 8);
      height = view.getUint32(offset + 12);
      assert.equal(data[8], 8, "bit depth");
      channels = ({ 2: 3, 6: 4 } as Record<number, number>)[data[9]];
      assert.ok(channels, `colour type ${data[9]}`);
    }
    if (type === "IDAT") idat.push(data);
    if (type === "IEND") ended = true;
    offset += 12 + length;
  }
  assert.ok(ended, "IEND chunk");
  const stream = new Blob(idat as BlobPart[]).stream().pipeThrough(
    new DecompressionStream("deflate"),
  );
  const raw = new Uint8Array(await new Response(stream).arrayBuffer());
  const stride = width * channels;
  assert.equal(raw.length, height * (stride + 1), "decompressed size");
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const predictor =
        [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      assert.ok(predictor !== undefined, `filter type ${filter}`);
      pixels[y * stride + x] = (line[x] + predictor) & 0xff;
    }
  }
  return { width, height, pixels, channels };
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
    const has = (r: number, g: number, b: number): boolean => {
      for (let i = 0; i < png.pixels.length; i += png.channels) {
        const [pr, pg, pb] = png.pixels.subarray(i, i + 3);
        if (Math.abs(pr - r) < 12 && Math.abs(pg - g) < 12 && Math.abs(pb - b) < 12) return true;
      }
      return false;
    };
    assert.ok(has(0xd6, 0x27, 0x28), "baseline red in the PNG");
    assert.ok(has(0x08, 0x51, 0x9c), "val loss blue in the PNG");
    assert.ok(has(0x2c, 0xa0, 0x2c), "GPT-3 green in the PNG");
    for (
      const name of [
        "ours val loss",
        "OpenAI GPT-2 (124M) checkpoint val loss",
        "OpenAI GPT-3 (124M) HellaSwag",
      ]
    ) {
      assert.ok(svg.includes(name), `SVG legend has "${name}"`);
    }
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
    const { chromium } = await import("playwright-core");
    const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
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
      assert.ok(legend.includes("OpenAI GPT-2 (124M) checkpoint val loss"), legend.join(", "));
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

Deno.test("plot task: three formats overlaid, summary printed, files written; bad input fails clearly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
  try {
    await Deno.mkdir(join(dir, "ours"));
    await Deno.writeTextFile(join(dir, "ours", "log.txt"), oursLog(25));
    await Deno.writeTextFile(
      join(dir, "nanogpt.txt"),
      "0 val 11.0\n0 hella 0.25\n0 train 11.0\n10 train 6.0\n10 val 6.5\n10 hella 0.26\n",
    );
    await Deno.writeTextFile(
      join(dir, "main.log"),
      "s:0 tel:11.0\ns:0 trl:11.0 lr:0.0 norm:1.0\ns:5 trl:7.5 lr:0.0 norm:1.0\n",
    );
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", join(REPO_ROOT, "lib/cli/plot.ts"), ...args],
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const d = new TextDecoder();
      return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
    };
    const ok = await run(
      "ours/log.txt",
      "nanogpt.txt",
      "main.log",
      "--out",
      "figs",
      "--label",
      "ours",
      "--label",
      "build-nanogpt",
      "--label",
      "llm.c",
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /main\.log: llm\.c log, "llm\.c": 2 train, 1 val, 0 hella points/);
    assert.match(
      ok.stdout,
      /^ours: min train loss 8\.5000 \(step 24\), min val loss 7\.6000 \(step 24\), max HellaSwag 0\.2740 \(step 24\)$/m,
    );
    assert.match(
      ok.stdout,
      /^build-nanogpt: min train loss 6\.0000 \(step 10\), min val loss 6\.5000 \(step 10\), max HellaSwag 0\.2600 \(step 10\)$/m,
    );
    assert.match(
      ok.stdout,
      /^llm\.c: min train loss 7\.5000 \(step 5\), min val loss 11\.0000 \(step 0\), max HellaSwag none logged$/m,
    );
    for (const ext of ["html", "svg", "png"]) {
      assert.ok(existsSync(join(dir, "figs", `figure.${ext}`)), ext);
    }

    const none = await run("--out", "x");
    assert.equal(none.code, 1);
    assert.match(
      none.stderr,
      /^error: Expected one or more log files, found none \(see --help\)$/m,
    );
    const labels = await run("main.log", "--label", "a", "--label", "b");
    assert.match(labels.stderr, /^error: Expected one --label per log \(1\), found 2$/m);
    const missing = await run("nope.txt");
    assert.match(missing.stderr, /^error: Log file nope\.txt not found/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plot notebook: a live chart displays once, then updates the same display id", async () => {
  const calls: { bundle: MimeBundle; display_id?: string; update?: boolean }[] = [];
  const live = new LiveFigure({
    label: "ours",
    displayId: "live-1",
    display: (bundle, options) => {
      calls.push({ bundle, display_id: options.display_id, update: options.update });
      return Promise.resolve();
    },
  });
  const text = oursLog(30).split("\n");
  await live.update(parseLog(text.slice(0, 20).join("\n")));
  const summary = await live.update(parseLog(text.join("\n")));
  // plotly.js once (no display id), then the chart, then its update
  assert.equal(calls.length, 3);
  assert.match(
    calls[0].bundle["text/html"] ?? "",
    /^<script type="text\/javascript">\/\*\*\n\* plotly\.js v/,
  );
  assert.equal(calls[0].display_id, undefined);
  assert.deepEqual(calls.slice(1).map((c) => [c.display_id, c.update]), [["live-1", false], [
    "live-1",
    true,
  ]]);
  assert.match(summary, /^ours: min train loss 8\.0000 \(step 29\)/);
  assert.equal(calls[2].bundle["text/plain"], summary);
  assert.match(calls[2].bundle["image/png"] ?? "", /^iVBORw0KGgo/); // base64 of the PNG signature
  assert.match(calls[2].bundle["text/html"] ?? "", /id="live-1-div"/);
});

Deno.test("plot report and run figure: report.html with config, throughput, samples and baselines", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
  try {
    await Deno.writeTextFile(join(dir, "log.txt"), oursLog(12));
    const fig = await writeRunFigure(join(dir, "log.txt"), dir);
    assert.ok(existsSync(fig.png) && existsSync(fig.html) && existsSync(fig.svg));
    const n = 124_475_904;
    const { path } = await writeRunReport(dir, {
      command: "deno task train --steps 12",
      preset: "Tiny <Shakespeare>",
      model: "gpt2",
      parameters: n,
      modelConfig: { n_layer: 12, n_head: 12, n_embd: 768, block_size: 1024, vocab_size: 50304 },
      training: { B: 4, T: 64, steps: 12 },
      backend: "cpu (reference TypeScript)",
      throughput: {
        tokensPerSec: 45,
        flopsPerToken: flopsPerToken(n, { n_layer: 12, n_embd: 768 }, 64),
        peakFlops: 230e9,
      },
      samples: [{ step: 0, text: "Hello, I'm a language model, <|endoftext|>" }],
      durationSeconds: 75,
    });
    const html = await Deno.readTextFile(path);
    assert.equal(path, join(dir, "report.html"));
    assert.match(html, /<title>GPT-2 run: gpt2 on Tiny &#60;Shakespeare&#62;<\/title>/);
    assert.match(html, /<code>deno task train --steps 12<\/code>/);
    assert.match(html, /124,475,904 parameters/);
    assert.match(html, /45\.0 tok\/s/);
    // MFU = 45 tok/s * (6N + 12*12*768*64) FLOP / 230 GFLOP/s
    const expectedMfu = (45 * (6 * n + 12 * 12 * 768 * 64)) / 230e9;
    assert.ok(html.includes(`${(expectedMfu * 100).toFixed(2)}% of 0.2 TFLOP/s peak`), "MFU");
    assert.match(html, /Hello, I&#39;m a language model, &#60;\|endoftext\|&#62;/);
    assert.match(html, /3\.2924 \(OpenAI GPT-2 124M\)/);
    assert.match(html, /0\.337 \(GPT-3 124M\)/);
    assert.equal(html.split("* plotly.js v").length - 1, 1);
    assert.match(html, /data:image\/png;base64,iVBORw0KGgo/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
