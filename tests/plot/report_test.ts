// lib/plot/report.ts: the run report (config, throughput and MFU, samples grouped by step,
// baselines and when they do not compare) beside the run's figure (writeRunFigure).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  flopsPerToken,
  type RunReportInfo,
  writeRunFigure,
  writeRunReport,
} from "../../lib/plot/mod.ts";
import { oursLog } from "./ours_log.ts";

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
    assert.match(html, /<title>Run report: GPT-2 124M on Tiny Shakespeare<\/title>/);
    assert.match(html, /<code>deno task train --steps 12<\/code>/);
    assert.match(html, /124,475,904 parameters/);
    assert.match(html, /45\.0 tok\/s/);
    // MFU = 45 tok/s * (6N + 12*12*768*64) FLOP / 230 GFLOP/s
    const expectedMfu = (45 * (6 * n + 12 * 12 * 768 * 64)) / 230e9;
    assert.ok(html.includes(`${(expectedMfu * 100).toFixed(2)}% of 230.0 GFLOP/s peak`), "MFU");
    assert.match(html, /Hello, I&#39;m a language model, &#60;\|endoftext\|&#62;/);
    assert.match(html, /3\.2924 \(OpenAI GPT-2 124M\)/);
    assert.match(html, /0\.337 \(GPT-3 124M\)/);
    assert.equal(html.split("* plotly.js v").length - 1, 1);
    assert.match(html, /data:image\/png;base64,iVBORw0KGgo/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Writes oursLog(12) (min val loss 8.9 at step 11) into a fresh folder, with a run.json if given. */
async function runFolder(meta?: unknown): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
  await Deno.writeTextFile(join(dir, "log.txt"), oursLog(12));
  if (meta) await Deno.writeTextFile(join(dir, "run.json"), JSON.stringify(meta));
  return dir;
}

const BASE: RunReportInfo = {
  model: "tiny",
  parameters: 7_265_024,
  backend: "cpu",
  hardware: "test",
};

Deno.test("plot report: samples under one heading per step", async () => {
  const dir = await runFolder();
  try {
    const { path } = await writeRunReport(dir, {
      ...BASE,
      samples: [
        { step: 0, text: "first at 0" },
        { step: 0, text: "second at 0" },
        { step: 10, text: "first at 10" },
        { step: 10, text: "second at 10" },
      ],
    });
    const html = await Deno.readTextFile(path);
    const section = html.slice(html.indexOf("<h2>Samples</h2>"));
    assert.deepEqual([...section.matchAll(/<h3>([^<]*)<\/h3>/g)].map((m) => m[1]), [
      "step 0",
      "step 10",
    ]);
    assert.match(
      section,
      /<h3>step 0<\/h3>\n<pre class="sample">first at 0<\/pre>\n<pre class="sample">second at 0<\/pre>\n<h3>step 10<\/h3>\n<pre class="sample">first at 10<\/pre>/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plot report: a val loss on other data than FineWeb-EDU is not compared as a gap", async () => {
  const dirs: string[] = [];
  try {
    const report = async (info: Partial<RunReportInfo>, meta?: unknown): Promise<string> => {
      const dir = await runFolder(meta);
      dirs.push(dir);
      return await Deno.readTextFile((await writeRunReport(dir, { ...BASE, ...info })).path);
    };
    // the preset's data (lib/train/settings.ts): Tiny Shakespeare
    const shakespeare = await report({ preset: "shakespeare" });
    assert.match(shakespeare, /<title>Run report: tiny \(7\.3M\) on Tiny Shakespeare<\/title>/);
    assert.match(
      shakespeare,
      /<td>\+5\.6076 \(not comparable: Tiny Shakespeare, not FineWeb-EDU\)<\/td>/,
    );
    assert.doesNotMatch(shakespeare, /\+5\.6076 \(worse\)/);
    assert.match(
      shakespeare,
      /<p class="caveat">Different data: the dashed 3\.2924 is OpenAI GPT-2 \(124M\)&#39;s val loss on FineWeb-EDU; this run&#39;s loss is on Tiny Shakespeare\. The baseline is a loss on a different dataset, so the difference is not a measure of the gap to GPT-2<\/p>/,
    );
    // the data given, or only in run.json (the command's default preset): the same
    assert.match(await report({ data: "/x/tinyshakespeare/input.txt" }), /<p class="caveat">/);
    assert.match(
      await report({}, { command: "deno task train --steps 12", model: "tiny" }),
      /not comparable: Tiny Shakespeare/,
    );
    // FineWeb-EDU, or data unknown: a gap, and no note
    for (
      const html of [
        await report({ model: "gpt2", parameters: 124_475_904, preset: "gpt2-124M-fineweb" }),
        await report({}),
      ]
    ) {
      assert.match(html, /<td>\+5\.6076 \(worse\)<\/td>/);
      assert.doesNotMatch(html, /class="caveat"|not comparable|different dataset/);
    }
  } finally {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plot report: MFU shown when the peak is known, said to be unknown when not", async () => {
  const dir = await runFolder();
  try {
    const page = async (throughput: RunReportInfo["throughput"]) =>
      await Deno.readTextFile((await writeRunReport(dir, { ...BASE, throughput })).path);
    // 100 tok/s × 50 MFLOP per token = 5 GFLOP/s, against a 20 GFLOP/s peak: 25%
    const known = await page({ tokensPerSec: 100, flopsPerToken: 50e6, peakFlops: 20e9 });
    assert.match(
      known,
      /<th>model FLOP\/s<\/th><td>5\.0 GFLOP\/s \(50\.0 MFLOP per token × 100\.0 tok\/s\)<\/td>/,
    );
    assert.match(known, /<th>MFU<\/th><td>25\.00% of 20\.0 GFLOP\/s peak/);
    const given = await page({ tokensPerSec: 100, mfu: 0.4 });
    assert.match(given, /<th>MFU<\/th><td>40\.00%<\/td>/);
    const unknown = await page({ tokensPerSec: 100, flopsPerToken: 50e6 });
    assert.match(unknown, /<th>model FLOP\/s<\/th><td>5\.0 GFLOP\/s/);
    assert.match(
      unknown,
      /<th>MFU<\/th><td>not known: the hardware's peak FLOP\/s was not recorded/,
    );
    // a run.json's peak fills in what the training loop did not pass
    await Deno.writeTextFile(join(dir, "run.json"), JSON.stringify({ peakFlops: 10e9 }));
    assert.match(
      await page({ tokensPerSec: 100, flopsPerToken: 50e6 }),
      /<td>50\.00% of 10\.0 GFLOP\/s peak/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
