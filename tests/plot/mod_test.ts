// lib/plot/mod.ts's writeFigure: the PNG decoded back to its size and pixels, the SVG's legend,
// the self-contained HTML, and that HTML opened in Debian's Chromium (skipped with a notice where
// /usr/bin/chromium is missing).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { buildFigure, figureLines, parseLog, svgSize, writeFigure } from "../../lib/plot/mod.ts";
import { oursLog } from "./ours_log.ts";

const CHROMIUM = "/usr/bin/chromium";

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
