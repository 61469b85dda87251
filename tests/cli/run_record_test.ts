// run.json (lib/train/run_summary.ts): a finished `deno task train` writes it beside log.txt with
// what ran and how it went, and the figure's title (lib/plot/run_meta.ts) reads model and data
// from it.
import { ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { describeRun, readRunMeta } from "../../lib/plot/run_meta.ts";
import type { RunRecord } from "../../lib/train/run_summary.ts";
import { runTask, smallModelFlags } from "../support.ts";

Deno.test("train task: a finished run writes run.json with its settings and results", async () => {
  const dir = await Deno.makeTempDir({ prefix: "run_record_" });
  try {
    const r = await runTask([
      "lib/cli/train.ts",
      ...smallModelFlags,
      "--steps",
      "3",
      "--eval-every",
      "2",
      "--val-batches",
      "1",
      "--log-dir",
      dir,
    ]);
    strictEqual(r.code, 0, r.stderr);
    ok(r.stdout.includes(`wrote ${join(dir, "run.json")}`), r.stdout);
    const record = JSON.parse(await Deno.readTextFile(join(dir, "run.json"))) as RunRecord;
    strictEqual(record.steps, 3);
    strictEqual(record.tokens, 3 * record.B * record.T);
    strictEqual(record.data, "tinyshakespeare");
    strictEqual(record.preset, "shakespeare");
    ok(record.command.startsWith("deno task train --"), record.command);
    ok(record.parameters > 0 && record.config.n_layer > 0, JSON.stringify(record.config));
    ok(record.finalValLoss !== null && Number.isFinite(record.finalValLoss.loss));
    ok(record.finalTrainLoss !== null && Number.isFinite(record.finalTrainLoss));
    ok(Date.parse(record.finished) >= Date.parse(record.started));
    ok(/cores/.test(record.machine), record.machine);
    const meta = await readRunMeta(join(dir, "log.txt"));
    strictEqual(describeRun(meta!).data, "Tiny Shakespeare");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
