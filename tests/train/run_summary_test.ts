// lib/train/run_summary.ts: the end-of-run summary of `deno task train` on fixed numbers,
// worked out by hand in the comments.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  formatRunSummary,
  type RunSummaryInputs,
  summarizeRun,
} from "../../lib/train/run_summary.ts";
import type { EvalStats, StepStats } from "../../lib/train/train.ts";

/** A step of `dtMs` milliseconds with `loss`; the rest does not enter the summary. */
function step(index: number, dtMs: number, loss = 5): StepStats {
  return { step: index, loss, lr: 6e-4, norm: 1, dtMs, tokensPerSec: 0 };
}

function evaluation(index: number, valLoss: number, hellaAcc: number | null): EvalStats {
  return { step: index, valLoss, hellaAcc, samples: [] };
}

const GPT2_STEP = 524288; // build-nanogpt's total_batch_size, 2^19 tokens

Deno.test("run summary: a finished run with evaluations, HellaSwag and a known peak", () => {
  const result = {
    history: [
      step(0, 5000),
      step(1, 1000),
      step(2, 1000),
      step(3, 3000), // evaluated
      step(4, 2000),
      step(5, 4000, 3.283912), // evaluated (the last step)
    ],
    evals: [evaluation(0, 10.9, 0.25), evaluation(3, 9.5, 0.35), evaluation(5, 9.1234, 0.3)],
    stoppedBy: null,
  };
  const inputs: RunSummaryInputs = {
    wallSeconds: 75.5,
    tokensPerStep: GPT2_STEP,
    totalSteps: 6,
    flopsPerToken: 7.5e8,
    hellaswagExamples: 100,
    peak: { flops: 989e12, source: "H100 bf16 datasheet peak" },
    outputs: {
      model: "log/model",
      log: "log/log.txt",
      report: "log/report.html",
      figure: "log/figure.html",
      checkpoint: "log/checkpoints/step_000006",
    },
  };
  const s = summarizeRun(result, inputs);
  // timed: steps 1, 2 and 4 (0 is warm-up, 3 and 5 evaluated): 3 * 524288 tokens in 4 s
  //   = 393,216 tok/s; MFU = 393216 * 7.5e8 / 989e12 = 2.94912e14 / 9.89e14 = 0.29819
  assertEquals([s.timedSteps, s.tokensPerSec, s.tokens], [3, 393216, 6 * GPT2_STEP]);
  assertEquals(Math.round(s.mfu! * 1e5), 29819);
  assertEquals(
    formatRunSummary(s),
    [
      "run summary (finished)",
      "  wall time   1:16 (75.5 s)",
      "  steps       6 (steps 0-5 of 6)",
      "  tokens      3,145,728 (3.1M)",
      "  train loss  3.283912 (last step)",
      "  val loss    9.1234 (last evaluation, step 5)",
      // 35/100: Wilson 0.2636-0.4475 (tests/train/wilson_test.ts)
      "  HellaSwag   acc_norm 0.3500 (95% CI 0.264-0.447, n=100), the best, at step 3",
      "  throughput  393.2k tok/s, mean over 3 timed steps (the first and those with an evaluation left out)",
      "  MFU         29.8% (750.0 MFLOP per token against 989.0 TFLOP/s, H100 bf16 datasheet peak)",
      "  model       log/model",
      "  log         log/log.txt",
      "  report      log/report.html",
      "  figure      log/figure.html",
      "  checkpoint  log/checkpoints/step_000006",
    ].join("\n"),
  );
});

Deno.test("run summary: a resumed run stopped by SIGINT, no evaluation, no known peak", () => {
  const result = {
    history: [step(40, 900), step(41, 200), step(42, 300, 4.5)],
    evals: [],
    stoppedBy: "SIGINT",
  };
  const s = summarizeRun(result, {
    wallSeconds: 3725,
    tokensPerStep: 64,
    totalSteps: 100,
    flopsPerToken: 1.25e6,
    hellaswagExamples: null,
    peak: null,
    outputs: {
      model: null,
      log: "log/log.txt",
      report: null,
      figure: null,
      checkpoint: "log/checkpoints/step_000043",
    },
  });
  // timed: steps 41 and 42, 2 * 64 tokens in 0.5 s = 256 tok/s
  assertEquals(s.tokensPerSec, 256);
  assertEquals(
    formatRunSummary(s),
    [
      "run summary (stopped by SIGINT after step 42)",
      "  wall time   1:02:05 (3725.0 s)",
      "  steps       3 (steps 40-42 of 100)",
      "  tokens      192 (192)",
      "  train loss  4.500000 (last step)",
      "  val loss    not measured (no evaluation ran)",
      "  throughput  256 tok/s, mean over 2 timed steps (the first left out)",
      "  MFU         unknown: no peak FLOP/s is known for this device (1.3 MFLOP per token)",
      "  log         log/log.txt",
      "  checkpoint  log/checkpoints/step_000043 (continue with --resume log/checkpoints/step_000043)",
    ].join("\n"),
  );
});

Deno.test("run summary: one step measures no throughput; every step evaluated still times them", () => {
  const one = summarizeRun({ history: [step(0, 100)], evals: [], stoppedBy: null }, {
    wallSeconds: 1,
    tokensPerStep: 64,
    totalSteps: 1,
    flopsPerToken: 1e6,
    hellaswagExamples: null,
    peak: { flops: 1e9, source: "measured" },
    outputs: { model: null, log: null, report: null, figure: null, checkpoint: null },
  });
  const lines = formatRunSummary(one).split("\n");
  assertEquals(lines.slice(-3), [
    "  throughput  not measured (fewer than 2 steps)",
    "  MFU         unknown: no throughput was measured",
    "  files       none written (no --log-dir)",
  ]);
  // --eval-every 1: steps 1 and 2 were both evaluated, and are timed all the same
  const all = summarizeRun({
    history: [step(0, 100), step(1, 100), step(2, 300)],
    evals: [evaluation(0, 9, null), evaluation(1, 8, null), evaluation(2, 7, null)],
    stoppedBy: null,
  }, {
    wallSeconds: 1,
    tokensPerStep: 64,
    totalSteps: 3,
    flopsPerToken: 1e6,
    hellaswagExamples: null,
    peak: null,
    outputs: { model: null, log: null, report: null, figure: null, checkpoint: null },
  });
  assertEquals([all.timedSteps, all.tokensPerSec, all.untimed], [2, 320, "the first left out"]);
});
