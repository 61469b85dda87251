// lib/plot/notebook.ts: the live notebook chart, and the run.json it reads beside a log.
import assert from "node:assert/strict";
import { join } from "node:path";
import { LiveFigure, type MimeBundle, parseLog } from "../../lib/plot/mod.ts";
import { oursLog } from "./ours_log.ts";

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

Deno.test("plot notebook: a live chart of a log path takes its title and note from run.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
  try {
    await Deno.writeTextFile(join(dir, "log.txt"), oursLog(12));
    await Deno.writeTextFile(
      join(dir, "run.json"),
      JSON.stringify({ model: "tiny", parameters: 7_265_024, preset: "shakespeare" }),
    );
    const bundles: MimeBundle[] = [];
    const display = (bundle: MimeBundle) => {
      bundles.push(bundle);
      return Promise.resolve();
    };
    const summary = await new LiveFigure({ display }).update(join(dir, "log.txt"));
    assert.match(
      summary,
      /this run's loss is on Tiny Shakespeare\. The baseline is a loss on a different dataset/,
    );
    assert.match(
      bundles.at(-1)!["text/html"] ?? "",
      /tiny \(7\.3M\) on Tiny Shakespeare: loss and HellaSwag/,
    );
    // told what ran, it takes that instead; a parsed log has no run.json to read
    const told = await new LiveFigure({ display, about: { data: "FineWeb-EDU 10B" } })
      .update(join(dir, "log.txt"));
    assert.doesNotMatch(told, /different dataset/);
    const parsed = await new LiveFigure({ display }).update(parseLog(oursLog(12)));
    assert.doesNotMatch(parsed, /different dataset/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
