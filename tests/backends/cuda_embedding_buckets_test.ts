// The CUDA embedding backward's host part (lib/backends/cuda/layers.ts bucketPositions): the
// counting sorts group each id's positions in ascending order, buckets largest first and
// then by id, skip ids outside [0, V), and equal a plain grouping by Map and sort, also
// when returned in the reused scratch arrays.
import { deepStrictEqual, equal } from "node:assert/strict";
import { bucketPositions } from "../../lib/backends/cuda/layers.ts";

/** The grouping by a Map and a comparison sort, as a model. */
function model(ids: Int32Array, N: number, V: number) {
  const byId = new Map<number, number[]>();
  for (let n = 0; n < N; n++) {
    if (ids[n] < 0 || ids[n] >= V) continue;
    byId.set(ids[n], [...(byId.get(ids[n]) ?? []), n]);
  }
  const order = [...byId.entries()].sort((a, b) => b[1].length - a[1].length || a[0] - b[0]);
  const buckets: number[] = [], positions: number[] = [];
  for (const [id, list] of order) {
    buckets.push(id, positions.length, list.length);
    positions.push(...list);
  }
  return { buckets, positions, count: order.length };
}

/** A small deterministic generator (xorshift32). */
function ids(N: number, V: number, seed: number, outside = 0): Int32Array {
  let x = seed;
  const out = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const r = (x >>> 0) % (V + 2 * outside);
    out[n] = r - outside; // some below 0 and some at V or past it
  }
  return out;
}

Deno.test("bucketPositions: equal to grouping by Map and sorting, on skewed and uniform ids", () => {
  const cases: [Int32Array, number, number][] = [
    [ids(1000, 7, 1), 1000, 7], // few ids, large buckets with ties
    [ids(4096, 50257, 2), 4096, 50257], // GPT-2's vocabulary, mostly buckets of 1
    [ids(500, 40, 3, 5), 500, 40], // ids outside [0, V) skipped
    [ids(300, 20, 4), 200, 20], // N below the array's length
    [new Int32Array([3, 3, 1, 1, 2, 0, 3]), 7, 4],
    [new Int32Array(0), 0, 10],
    [new Int32Array([-1, 9]), 2, 5], // nothing in range
  ];
  for (const [xs, N, V] of cases) {
    const got = bucketPositions(xs, N, V), want = model(xs, N, V);
    equal(got.count, want.count);
    deepStrictEqual([...got.buckets], want.buckets, `buckets N=${N} V=${V}`);
    deepStrictEqual([...got.positions], want.positions, `positions N=${N} V=${V}`);
    equal(got.table.length, 3 * got.count + want.positions.length, "one table, nothing spare");
    // the same from the reused scratch arrays (the embedding backward's way), after other calls
    const reused = bucketPositions(xs, N, V, true);
    deepStrictEqual([...reused.buckets], want.buckets, `reused buckets N=${N} V=${V}`);
    deepStrictEqual([...reused.positions], want.positions, `reused positions N=${N} V=${V}`);
    equal(reused.table.length, got.table.length, "reused: one table, nothing spare");
  }
});
