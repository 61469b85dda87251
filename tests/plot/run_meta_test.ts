// lib/plot/run_meta.ts: what a run.json beside a log says about the run's model and data, and
// the fallbacks where it says less (or is not there: build-nanogpt's and llm.c's logs).
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  dataTitle,
  describeRun,
  formatCount,
  gpt2Size,
  isFineWebEdu,
  modelTitle,
  readRunMeta,
  runData,
} from "../../lib/plot/mod.ts";

Deno.test("plot run meta: the example run.json (tiny, data only through its command)", async () => {
  const log = fileURLToPath(
    new URL("../../notebooks/runs/shakespeare_tiny/log.txt", import.meta.url),
  );
  const meta = await readRunMeta(log);
  assert.ok(meta !== null);
  // "deno task train --steps 200 --log-dir /tmp/run05": no --preset, so the default one
  assert.deepEqual(describeRun(meta), { model: "tiny (7.3M)", data: "Tiny Shakespeare" });
});

Deno.test("plot run meta: absent is null, malformed is an error naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plot_test_" });
  try {
    assert.equal(await readRunMeta(join(dir, "log.txt")), null);
    await Deno.writeTextFile(join(dir, "run.json"), "{ not json");
    await assert.rejects(
      readRunMeta(join(dir, "log.txt")),
      new RegExp(`^Error: Expected JSON in ${dir}/run\\.json, found text that does not parse`),
    );
    await Deno.writeTextFile(join(dir, "run.json"), "[1, 2]");
    await assert.rejects(
      readRunMeta(join(dir, "log.txt")),
      new RegExp(`^Error: Expected a JSON object in ${dir}/run\\.json, found "\\[1, 2\\]"$`),
    );
    await Deno.writeTextFile(
      join(dir, "run.json"),
      JSON.stringify({ model: "gpt2", parameters: 124475904, data: "data/edu_fineweb10B" }),
    );
    const meta = await readRunMeta(join(dir, "log.txt"));
    assert.deepEqual(describeRun(meta!), { model: "GPT-2 124M", data: "FineWeb-EDU 10B" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plot run meta: where the data comes from, in order", () => {
  assert.equal(runData({ data: "/x/input.txt", preset: "gpt2-124M-fineweb" }), "/x/input.txt");
  assert.equal(runData({ dataPath: "shards/" }), "shards/");
  assert.equal(runData({ preset: "gpt2-124M-fineweb" }), "data/edu_fineweb10B");
  assert.equal(runData({ preset: "shakespeare" }), "tinyshakespeare");
  assert.equal(
    runData({ command: "deno task train --preset gpt2-124M-fineweb --steps 5" }),
    "data/edu_fineweb10B",
  );
  assert.equal(runData({ command: "deno task train --data=my/shards --steps 5" }), "my/shards");
  assert.equal(runData({ command: "deno task train --steps 5" }), "tinyshakespeare");
  assert.equal(runData({ command: "python train_gpt2.py" }), undefined); // not ours: unknown
  assert.equal(runData({ model: "gpt2" }), undefined);
  assert.deepEqual(describeRun({}), {});
});

Deno.test("plot run meta: model and data names", () => {
  assert.equal(modelTitle("gpt2"), "GPT-2 124M");
  assert.equal(modelTitle("gpt2-xl", 1_557_611_200), "GPT-2 1558M");
  assert.equal(modelTitle("tiny", 7_265_024), "tiny (7.3M)");
  assert.equal(modelTitle("tiny"), "tiny");
  // a GPT-2 with its shape overridden is not GPT-2 124M (its baselines are not its own)
  assert.equal(
    modelTitle("gpt2", 40_000_000, { n_layer: 2, n_head: 12, n_embd: 768 }),
    "gpt2 (40M)",
  );
  assert.equal(gpt2Size("gpt2", { n_layer: 12, n_head: 12, n_embd: 768 }), "124M");
  assert.equal(gpt2Size("gpt2-medium"), "350M");
  assert.equal(gpt2Size("tiny"), null);
  assert.deepEqual(
    [850, 12_345, 7_265_024, 124_475_904, 1_557_611_200].map(formatCount),
    ["850", "12.3K", "7.3M", "124M", "1.6B"],
  );
  assert.equal(dataTitle("tinyshakespeare"), "Tiny Shakespeare");
  assert.equal(dataTitle("/work/shared/data/tinyshakespeare/input.txt"), "Tiny Shakespeare");
  assert.equal(dataTitle("data/edu_fineweb10B"), "FineWeb-EDU 10B");
  assert.equal(dataTitle("fineweb100B/"), "FineWeb 100B");
  assert.equal(dataTitle("/data/wiki/"), "wiki");
  assert.ok(isFineWebEdu("edu_fineweb10B") && isFineWebEdu("FineWeb-EDU"));
  assert.ok(!isFineWebEdu("fineweb10B") && !isFineWebEdu("Tiny Shakespeare"));
});
