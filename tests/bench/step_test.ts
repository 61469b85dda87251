// lib/bench/step.ts: the median, and what timeSteps reports about the steps it timed.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { median, timeSteps } from "../../lib/bench/step.ts";
import type { GPTConfig } from "../../lib/model/gpt.ts";

/** One layer, 8 channels; the vocabulary holds the ids the steps draw (below 50257). */
const CONFIG: GPTConfig = { n_layer: 1, n_head: 2, n_embd: 8, block_size: 8, vocab_size: 50304 };

Deno.test("median: the middle value, or the mean of the middle two; none is an error", () => {
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertEquals(median([7]), 7);
  throws(() => median([]), /Expected at least one time, found none/);
});

Deno.test("timeSteps reports the median, min and max of the timed steps only", async () => {
  const seen: [number, boolean][] = [];
  const t = await timeSteps(new CpuBackend(), CONFIG, {
    mode: "train",
    B: 1,
    T: 4,
    warmup: 2,
    iters: 5,
    onIter: (i, _ms, warmup) => seen.push([i, warmup]),
  });
  // two untimed warm-up steps, then five timed ones
  assertEquals(seen, [0, 1, 2, 3, 4, 5, 6].map((i) => [i, i < 2]));
  assertEquals(t.timesMs.length, 5);
  const sorted = [...t.timesMs].sort((a, b) => a - b);
  assertEquals(t.medianMs, sorted[2]);
  assertEquals(t.minMs, sorted[0]);
  assertEquals(t.maxMs, sorted[4]);
  ok(t.minMs > 0 && t.minMs <= t.medianMs && t.medianMs <= t.maxMs);
  assertEquals(t.tokensPerSec, 4 / (t.medianMs / 1000));
  assertEquals([t.mode, t.B, t.T], ["train", 1, 4]);
});

Deno.test("timeSteps times forward passes too, and refuses to time no step", async () => {
  const t = await timeSteps(new CpuBackend(), CONFIG, {
    mode: "fwd",
    B: 1,
    T: 4,
    warmup: 0,
    iters: 1,
  });
  assertEquals(t.timesMs.length, 1);
  assertEquals(t.mode, "fwd");
  await rejects(
    timeSteps(new CpuBackend(), CONFIG, { mode: "fwd", B: 1, T: 4, warmup: 1, iters: 0 }),
    /Expected at least 1 timed iteration, found 0/,
  );
});
