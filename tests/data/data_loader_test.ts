// lib/data/data_loader.ts: DataLoaderLite's windows, rank slices and the data it needs.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { DataLoaderLite } from "../../lib/data/data_loader.ts";

Deno.test("DataLoaderLite: windows march by B*T, targets shift by one, wrap at the end", () => {
  const tokens = Int32Array.from({ length: 23 }, (_, i) => i);
  const loader = new DataLoaderLite(tokens, 2, 3);
  const a = loader.nextBatch();
  assertEquals([...a.x], [0, 1, 2, 3, 4, 5]);
  assertEquals([...a.y], [1, 2, 3, 4, 5, 6]);
  assertEquals([...loader.nextBatch().x], [6, 7, 8, 9, 10, 11]);
  assertEquals([...loader.nextBatch().x], [12, 13, 14, 15, 16, 17]);
  // 18 + 7 > 23: wrapped
  assertEquals([...loader.nextBatch().x], [0, 1, 2, 3, 4, 5]);
});

Deno.test("DataLoaderLite: each rank reads its own slice", () => {
  const tokens = Int32Array.from({ length: 40 }, (_, i) => i);
  const r0 = new DataLoaderLite(tokens, 1, 4, { processRank: 0, numProcesses: 2 });
  const r1 = new DataLoaderLite(tokens, 1, 4, { processRank: 1, numProcesses: 2 });
  assertEquals([...r0.nextBatch().x], [0, 1, 2, 3]);
  assertEquals([...r1.nextBatch().x], [4, 5, 6, 7]);
  assertEquals([...r0.nextBatch().x], [8, 9, 10, 11]);
  assertEquals([...r1.nextBatch().x], [12, 13, 14, 15]);
});

Deno.test("DataLoaderLite: too little data is an error", () => {
  let message = "";
  try {
    new DataLoaderLite(new Int32Array(10), 2, 8);
  } catch (e) {
    message = (e as Error).message;
  }
  ok(message.includes("at least 17 tokens"), message);
});
