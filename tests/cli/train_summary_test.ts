// `deno task train` (lib/cli/train.ts) on the small model: the end-of-run summary, HellaSwag's
// 95% interval and the progress bars of the evaluation; the summary also after Ctrl-C.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { repoRoot, runTask, smallModelFlags } from "../support.ts";

/** Asserts `pattern` matches `text`, showing the text when it does not. */
function matches(text: string, pattern: RegExp): RegExpMatchArray {
  const m = text.match(pattern);
  ok(m, `expected ${pattern} in:\n${text}`);
  return m;
}

Deno.test("train task: a finished run prints its summary; HellaSwag with its interval, bars on stderr", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runTask([
      "lib/cli/train.ts",
      ...smallModelFlags,
      // later flags win: a block long enough for HellaSwag's first examples, two evaluations
      ...["--block-size", "128", "--eval-every", "2", "--val-batches", "2", "--hellaswag", "4"],
      ...["--steps", "4", "--log-dir", dir],
    ]);
    assertEquals(r.code, 0, r.stderr);
    // in the loop: acc_norm with its interval on the terminal, build-nanogpt's line in log.txt
    const printed = [...r.stdout.matchAll(
      /^HellaSwag acc_norm: (\d)\/4 = (\d\.\d{4}) \(95% CI \d\.\d{3}-\d\.\d{3}, n=4\)$/gm,
    )];
    assertEquals(printed.length, 3, r.stdout); // steps 0, 2 and 3 (the last)
    printed.forEach(([, correct, acc]) => assertEquals(Number(acc), Number(correct) / 4));
    const log = await Deno.readTextFile(join(dir, "log.txt"));
    assertEquals(log.match(/^\d+ hella \d\.\d{4}$/gm)?.length, 3, log);
    // the bars over the validation batches and HellaSwag's examples (plain lines: no terminal)
    matches(r.stderr, /^validation: 100%, 2\/2 batches, .* in \d+:\d\d$/m);
    matches(r.stderr, /^hellaswag: 100%, 4\/4 examples, .* in \d+:\d\d$/m);

    const summary = r.stdout.slice(r.stdout.indexOf("run summary (finished)"));
    ok(summary.startsWith("run summary (finished)\n"), r.stdout);
    matches(summary, /^ {2}wall time {3}\d+:\d\d \(\d+\.\d s\)$/m);
    matches(summary, /^ {2}steps {7}4 \(steps 0-3 of 4\)$/m);
    matches(summary, /^ {2}tokens {6}128 \(128\)$/m); // 4 steps of B * T = 2 * 16
    const lastLoss = [...r.stdout.matchAll(/^step +3 \| loss: (\d+\.\d{6})/gm)][0][1];
    matches(summary, new RegExp(`^ {2}train loss {2}${lastLoss} \\(last step\\)$`, "m"));
    const lastVal = [...r.stdout.matchAll(/^validation loss: (\d+\.\d{4})$/gm)].at(-1)![1];
    matches(summary, new RegExp(`^ {2}val loss {4}${lastVal} \\(last evaluation, step 3\\)$`, "m"));
    // the best of the three printed accuracies, with the same interval
    const best = Math.max(...printed.map(([, , acc]) => Number(acc)));
    const [, bestAcc, interval] = matches(
      summary,
      /^ {2}HellaSwag {3}acc_norm (\d\.\d{4}) \((95% CI [\d.-]+, n=4)\), the best, at step \d$/m,
    );
    assertEquals(Number(bestAcc), best);
    ok(printed.some(([line]) => line.includes(interval)), interval);
    // step 1 alone is timed: 0 warms up, 2 and 3 evaluated
    matches(summary, /^ {2}throughput {2}[\d,.]+k? tok\/s, mean over 1 timed step \(/m);
    // the native backend measures its peak; the reference backend (no compiler) has none
    matches(
      summary,
      /^ {2}MFU {9}(\d+\.\d% \([\d.]+ MFLOP per token against [\d.]+ [GT]FLOP\/s, .*\)|unknown: no peak FLOP\/s is known for this device .*)$/m,
    );
    for (
      const [label, path] of [["model", "model"], ["log", "log.txt"], ["report", "report.html"]]
    ) {
      matches(summary, new RegExp(`^ {2}${label} +${join(dir, path)}$`, "m"));
    }
    matches(
      summary,
      new RegExp(`^ {2}checkpoint {2}${join(dir, "checkpoints", "step_000004")}$`, "m"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train task: Ctrl-C after some steps prints the summary, naming the checkpoint to resume", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "lib/cli/train.ts", ...smallModelFlags]
        .concat(["--steps", "1000", "--checkpoint-every", "0", "--log-dir", dir]),
      cwd: repoRoot,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let sawStep!: () => void;
    const stepped = new Promise<void>((resolve) => sawStep = resolve);
    const stdout = (async () => {
      let text = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        if (/^step {5}1 \|/m.test(text)) sawStep();
      }
      sawStep(); // ended early: the assertions below say how
      return text;
    })();
    const stderr = new Response(child.stderr).text();
    await stepped;
    child.kill("SIGINT");
    const [status, out, err] = [await child.status, await stdout, await stderr];
    assertEquals(status.code, 0, err);
    const [, last] = matches(out, /^run summary \(stopped by SIGINT after step (\d+)\)$/m);
    const steps = Number(last) + 1;
    matches(out, new RegExp(`^ {2}steps {7}${steps} \\(steps 0-${last} of 1000\\)$`, "m"));
    matches(out, new RegExp(`^ {2}tokens {6}${(32 * steps).toLocaleString("en-US")} `, "m"));
    const ckpt = join(dir, "checkpoints", `step_${String(steps).padStart(6, "0")}`);
    matches(
      out,
      new RegExp(`^ {2}checkpoint {2}${ckpt} \\(continue with --resume ${ckpt}\\)$`, "m"),
    );
    // a stopped run writes neither the model nor the report
    const summary = out.slice(out.indexOf("run summary"));
    ok(!/^ {2}(model|report) /m.test(summary), summary);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
