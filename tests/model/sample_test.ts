// lib/model/sample.ts: topK and sampling helpers against plain sort-based definitions.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { Generator } from "../../lib/model/random.ts";
import { argmax, sampleTopK, softmax, topK } from "../../lib/model/sample.ts";

function sortedTopK(p: number[], k: number): number[] {
  const idx = p.map((_, i) => i);
  idx.sort((a, b) => p[b] - p[a] || a - b);
  return idx.slice(0, k);
}

Deno.test("topK equals a full sort, ties broken by the lower index (as torch.topk on CPU here)", () => {
  const rng = new Generator(3);
  for (let t = 0; t < 500; t++) {
    const n = 1 + (rng.nextU32() % 300), k = 1 + (rng.nextU32() % 70);
    const p = Array.from({ length: n }, () => (rng.nextU32() % 20) / 20); // many ties
    const got = topK(p, k);
    assertEquals(got.indices, sortedTopK(p, k));
    assertEquals(got.probs, got.indices.map((i) => p[i]));
  }
});

Deno.test("sampleTopK only returns top-k tokens, in proportion to their probability", () => {
  const probs = softmax([0, 1, 2, 3, 4, -50, 3.5]);
  const rng = new Generator(9);
  const counts = new Map<number, number>();
  for (let i = 0; i < 20000; i++) {
    const t = sampleTopK(probs, 3, rng);
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  assertEquals([...counts.keys()].sort(), [3, 4, 6]);
  const top = topK(probs, 3), total = top.probs.reduce((a, b) => a + b, 0);
  for (const [i, idx] of top.indices.entries()) {
    const expected = top.probs[i] / total, seen = counts.get(idx)! / 20000;
    ok(Math.abs(seen - expected) < 0.02, `token ${idx}: ${seen} vs ${expected}`);
  }
  assertEquals(argmax([1, 5, 5, 2]), 1);
});
