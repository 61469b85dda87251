// lib/plot/log.ts: the log formats (ours and build-nanogpt's, llm.c's main.log) on logs written
// here: partial lines, steps out of order, a resumed run repeating steps, unreadable files.
import assert from "node:assert/strict";
import { detectLogFormat, parseLog, readLog } from "../../lib/plot/mod.ts";
import { oursLog } from "./ours_log.ts";

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
