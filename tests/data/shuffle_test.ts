// lib/data/shuffle.ts: the seeded generator, permutations, shard orders and documents moved whole.
import { deepStrictEqual as assertEquals, notDeepStrictEqual, ok } from "node:assert/strict";
import {
  documentStarts,
  END_OF_TEXT,
  permutation,
  shardOrder,
  shuffleDocuments,
  ShuffleRandom,
} from "../../lib/data/shuffle.ts";

const E = END_OF_TEXT;

Deno.test("ShuffleRandom: the same words give the same numbers; every word counts", () => {
  const draw = (...words: number[]) => {
    const r = new ShuffleRandom(...words);
    return Array.from({ length: 8 }, () => r.nextU32());
  };
  assertEquals(draw(1337, 0, 2, 0), draw(1337, 0, 2, 0));
  const a = draw(1337, 0, 2, 0);
  for (const other of [[1338, 0, 2, 0], [1337, 1, 2, 0], [1337, 0, 3, 0], [1337, 0, 2, 1]]) {
    notDeepStrictEqual(draw(...other), a);
  }
  ok(a.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32));
});

Deno.test("ShuffleRandom.below and permutation: in range, and every order equally likely", () => {
  const r = new ShuffleRandom(7);
  for (const n of [1, 2, 3, 1000, 2 ** 32 - 1]) {
    for (let i = 0; i < 50; i++) {
      const x = r.below(n);
      ok(Number.isInteger(x) && x >= 0 && x < n, `${x} in [0, ${n})`);
    }
  }
  // 6000 permutations of 3: each of the 6 orders about 1000 times (binomial sd ~29)
  const counts = new Map<string, number>();
  for (let i = 0; i < 6000; i++) {
    const key = Array.from(permutation(3, r)).join("");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assertEquals([...counts.keys()].sort(), ["012", "021", "102", "120", "201", "210"]);
  for (const [key, c] of counts) ok(Math.abs(c - 1000) < 150, `${key}: ${c} of 6000`);
  assertEquals(Array.from(permutation(50, r)).sort((a, b) => a - b), [...Array(50).keys()]);
});

Deno.test("shardOrder: a permutation, the same for (seed, epoch), another for another epoch or seed", () => {
  const order = Array.from(shardOrder(20, 1337, 0));
  assertEquals([...order].sort((a, b) => a - b), [...Array(20).keys()]);
  assertEquals(Array.from(shardOrder(20, 1337, 0)), order);
  notDeepStrictEqual(Array.from(shardOrder(20, 1337, 1)), order);
  notDeepStrictEqual(Array.from(shardOrder(20, 1338, 0)), order);
  // a seed's high 32 bits count: 2^32 + 1337 is not 1337
  notDeepStrictEqual(Array.from(shardOrder(20, 2 ** 32 + 1337, 0)), order);
});

Deno.test("documentStarts: each <|endoftext|>", () => {
  assertEquals(documentStarts([]), []);
  assertEquals(documentStarts([5, 6, 7]), []);
  assertEquals(documentStarts([E, 1, 2, E, E, 3]), [0, 3, 4]);
  assertEquals(documentStarts([9, 9, E, 1]), [2]);
});

Deno.test("shuffleDocuments: whole documents move, the leading tokens stay first, the kind is kept", () => {
  // 2 leading tokens, then 6 documents, one of them <|endoftext|> alone
  const tokens = Uint16Array.of(7, 8, E, 10, 11, E, 20, E, E, 40, 41, 42, E, 50, E, 60, 61);
  const docs = ["50256 10 11", "50256 20", "50256", "50256 40 41 42", "50256 50", "50256 60 61"];
  const split = (t: Uint16Array): string[] => {
    const all = Array.from(t), s = documentStarts(all);
    return s.map((start, i) => all.slice(start, s[i + 1] ?? all.length).join(" "));
  };
  const orders = new Set<string>();
  for (let epoch = 0; epoch < 20; epoch++) {
    const out = shuffleDocuments(tokens, 1337, epoch, 0);
    ok(out instanceof Uint16Array && out !== tokens);
    assertEquals(Array.from(out.subarray(0, 2)), [7, 8]);
    const moved = split(out);
    assertEquals([...moved].sort(), [...docs].sort());
    orders.add(moved.join(","));
    assertEquals(shuffleDocuments(tokens, 1337, epoch, 0), out, "the same for the same epoch");
  }
  ok(orders.size > 10, `${orders.size} orders in 20 epochs`);
  assertEquals(tokens, Uint16Array.of(7, 8, E, 10, 11, E, 20, E, E, 40, 41, 42, E, 50, E, 60, 61));
  // each shard its own order
  notDeepStrictEqual(shuffleDocuments(tokens, 1337, 0, 0), shuffleDocuments(tokens, 1337, 0, 1));
  const ints = Int32Array.from(tokens);
  ok(shuffleDocuments(ints, 1, 0, 0) instanceof Int32Array);
  // fewer than two documents: nothing to move, the same array back
  for (const one of [Int32Array.of(1, 2, 3), Int32Array.of(4, E, 5, 6), new Int32Array(0)]) {
    ok(shuffleDocuments(one, 1, 0, 0) === one);
  }
});
