// lib/plot/report.ts: the run report (config, throughput and MFU, samples, baselines) beside the
// run's figure (writeRunFigure).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { flopsPerToken, writeRunFigure, writeRunReport } from "../../lib/plot/mod.ts";
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
