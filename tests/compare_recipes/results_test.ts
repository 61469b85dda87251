// tools/compare_recipes/results.ts: what deno task compare-recipes reads from a run (the val lines of
// log.txt, the dt of the step lines) and computes (the crossing of L*, the rows' summary, the
// markdown table), on hand-made logs and curves.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import {
  crossingStep,
  formatTable,
  meanAndSd,
  median,
  medianStepMs,
  parseStepTimes,
  parseValCurve,
  type RunResult,
  summarizeRows,
  targetLoss,
} from "../../tools/compare_recipes/results.ts";

Deno.test("recipe results: val lines of log.txt, sorted, a repeated step keeping its later value", () => {
  const log = [
    "0 val 10.8295",
    "0 train 10.825747",
    "5 val 9.5",
    "3 val 10.1", // out of order
    "5 val 9.25", // a resumed run logs step 5 again: it wins
    "5 hella 0.2500",
    "garbage line",
    "",
  ].join("\n");
  assertEquals(parseValCurve(log), { steps: [0, 3, 5], values: [10.8295, 10.1, 9.25] });
  assertEquals(parseValCurve(""), { steps: [], values: [] });
  assertEquals(parseValCurve("7 val NaN\n8 val nan\n9 val Infinity\n10 val -inf"), {
    steps: [7, 8, 9, 10],
    values: [NaN, NaN, Infinity, -Infinity],
  });
  throws(
    () => parseValCurve("1 train 3\n2 val abc"),
    /Expected a number after "val" on line 2, found "abc"/,
  );
});

Deno.test("recipe results: step times from the train task's step lines; the median leaves out step 0 and evaluations", () => {
  const stdout = [
    "validation loss: 10.8295",
    "step     0 | loss: 10.825747 | lr 6.0000e-5 | norm: 2.1 | dt: 5000.00ms | tok/sec: 200.00",
    "step     1 | loss: 10.7 | lr 1.2000e-4 | norm: 2.0 | dt: 100.50ms | tok/sec: 9000.00",
    "rank 0 sample 0: Hello, I'm a language model, step 9 | dt: 1ms",
    "step     2 | loss: 10.6 | lr 1.8000e-4 | norm: 2.0 | dt: 3000.00ms | tok/sec: 300.00",
    "step     3 | loss: 10.5 | lr 2.4000e-4 | norm: 2.0 | dt: 110.00ms | tok/sec: 9000.00",
    "step     4 | loss: 10.4 | lr 3.0000e-4 | norm: 2.0 | dt: 90.25ms | tok/sec: 9000.00",
  ].join("\n");
  const times = parseStepTimes(stdout);
  assertEquals([...times], [[0, 5000], [1, 100.5], [2, 3000], [3, 110], [4, 90.25]]);
  assertEquals(medianStepMs(times, [2]), 100.5); // of 100.5, 110, 90.25
  assertEquals(medianStepMs(times, [1, 2, 3, 4]), NaN);
  assertEquals([median([3, 1, 2]), median([4, 1, 3, 2]), median([])], [2, 2.5, NaN]);
});

Deno.test("recipe results: the crossing step interpolates between the evaluations around L*", () => {
  const curve = { steps: [0, 5, 10, 15], values: [10, 8, 6, 5] };
  assertEquals(crossingStep(curve, 7), 7.5); // halfway from 8 (step 5) to 6 (step 10)
  assertEquals(crossingStep(curve, 6), 10); // exactly at an evaluation
  assertEquals(crossingStep(curve, 5.5), 12.5);
  assertEquals(crossingStep(curve, 11), 0); // already there at the first evaluation
  assertEquals(crossingStep(curve, 4.9), null); // never
  // the first crossing counts, even where the curve goes back up after it
  assertEquals(crossingStep({ steps: [0, 10, 20], values: [9, 6, 8] }, 7), 20 / 3);
  // a NaN evaluation is not a crossing
  assertEquals(crossingStep({ steps: [0, 10], values: [NaN, NaN] }, 7), null);
});

function run(seed: number, finalVal: number, crossing: number | null, stepMs: number): RunResult {
  return {
    seed,
    val: { steps: [0, 99], values: [11, finalVal] },
    stepMs,
    wallS: 1,
    finalVal,
    crossing,
    diverged: false,
  };
}

Deno.test("recipe results: L* is the lecture runs' mean final loss; the rows' summary and table", () => {
  const lecture = [run(1, 6.0, 99, 100), run(2, 6.2, 95, 120), run(3, 6.1, 97, 500)];
  assertEquals(targetLoss(lecture.slice(0, 2)), 6.1);
  throws(
    () => targetLoss([]),
    /Expected at least one run of the lecture row to set L\*, found none/,
  );
  const faster = [run(1, 5.0, 40, 150), run(2, 5.2, 60, 180), run(3, 5.1, 50, 165)];
  const never = [run(1, 7.0, null, 110), { ...run(2, NaN, null, 110), diverged: true }];
  const [a, b, c] = summarizeRows([
    { id: "lecture", change: "the lecture's", runs: lecture },
    { id: "+muon", change: "Muon", runs: faster },
    { id: "+bad", change: "worse", runs: never },
  ], 99);
  assertEquals(a.crossing, { mean: 97, sd: 2, min: 95, max: 99 });
  // the step time is the median over seeds: the run slowed to 500 ms does not move it
  assertEquals([a.stepMs, a.stepMsRatio, a.stepFraction], [120, 1, 97 / 99]);
  assertEquals(b.crossing?.mean, 50);
  assertEquals([b.stepMs, b.stepMsRatio, b.reached], [165, 1.375, 3]);
  assertEquals([c.crossing, c.reached, c.stepFraction, c.diverged], [null, 0, null, 1]);
  const table = formatTable([a, b, c], 6.1).split("\n");
  ok(table[0].includes("steps to L* = 6.1000"), table[0]);
  assertEquals(table[1], "| --- | --- | ---: | ---: | ---: | ---: | ---: |");
  assertEquals(
    table[3],
    "| +muon | Muon | 5.1000 ± 0.1000 | 50.0 ± 10.0 (40.0–60.0) | 0.51 | 165.0 | 1.38x |",
  );
  ok(table[4].includes("not reached (0/2 seeds)") && table[4].includes("(1 diverged)"), table[4]);
  const empty = summarizeRows([{ id: "lecture", change: "l", runs: lecture }, {
    id: "x",
    change: "y",
    runs: [],
  }], 99);
  ok(
    formatTable(empty, 6.1).split("\n")[3].endsWith(
      "| n/a ± n/a | no runs yet | n/a | n/a | n/a |",
    ),
  );
  const partial = summarizeRows([{
    id: "x",
    change: "y",
    runs: [run(1, 6, 50, 1), run(2, 7, null, 1)],
  }], 99);
  ok(formatTable(partial, 6).includes("50.0 ± 0.0 (50.0–50.0) (1/2 seeds)"));
});

Deno.test("recipe results: mean and sample standard deviation", () => {
  assertEquals(meanAndSd([2, 4, 6]), { mean: 4, sd: 2 });
  assertEquals(meanAndSd([5]), { mean: 5, sd: 0 });
  assertEquals(meanAndSd([]), { mean: NaN, sd: NaN });
});
