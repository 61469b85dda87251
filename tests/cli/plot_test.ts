// `deno task plot` (lib/cli/plot.ts): three log formats overlaid, the summary printed, the files
// written, and bad input failing clearly (a folder given as a log, --out that is a file).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { oursLog } from "../plot/ours_log.ts";
import { repoRoot, runTask } from "../support.ts";

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
    // run in the logs' folder, so that the paths it is given and prints are relative
    const run = (...args: string[]) =>
      runTask([join(repoRoot, "lib/cli/plot.ts"), ...args], { cwd: dir });
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
    // a run's folder instead of its log: the message names the log inside it
    const folder = await run("ours", "--out", "from_folder");
    assert.equal(folder.code, 1);
    assert.match(
      folder.stderr,
      /^error: Expected a log file at ours, found a folder: pass ours\/log\.txt$/m,
    );
    await Deno.mkdir(join(dir, "empty"));
    const empty = await run("empty", "--out", "from_folder");
    assert.match(
      empty.stderr,
      /^error: Expected a log file at empty, found a folder \(with no log\.txt or main\.log in it\)$/m,
    );
    assert.ok(!existsSync(join(dir, "from_folder")), "nothing written");
    // --out naming a file, or a path under one: the flag is named, the file left alone
    await Deno.writeTextFile(join(dir, "taken"), "keep me");
    const file = await run("main.log", "--out", "taken");
    assert.equal(file.code, 1);
    assert.match(file.stderr, /^error: --out taken: expected a folder, found a file$/m);
    const under = await run("main.log", "--out", "taken/figs");
    assert.match(
      under.stderr,
      /^error: --out taken\/figs: cannot use it as a folder \(Not a directory/m,
    );
    assert.equal(await Deno.readTextFile(join(dir, "taken")), "keep me");
    // --scale is bounded: a huge one would grow the rasteriser to tens of GB, or abort it
    for (const scale of ["1000", "1e6", "0", "-1", "NaN"]) {
      const big = await run("main.log", "--out", "scaled", `--scale=${scale}`);
      assert.equal(big.code, 1, big.stderr);
      assert.match(
        big.stderr,
        new RegExp(`^error: --scale expects a number in \\[0\\.1, 8\\], found "${scale}"$`, "m"),
      );
    }
    assert.ok(!existsSync(join(dir, "scaled")), "nothing written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
