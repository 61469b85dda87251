// lib/data/shard_loader.ts with `shuffle`: off, the batches of the loader before shuffling existed
// (a recorded sequence); on, every token once an epoch with whole documents, a new order each epoch
// and the same for the same seed, resume mid-epoch bit for bit, ranks interleaved equal to one
// process with their batch and, where every shard holds an even number of windows, to one process
// that accumulates two micro-batches, the old state format, and the validation split never
// shuffled.
import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok,
  throws,
} from "node:assert/strict";
import { join } from "node:path";
import { writeNpyUint16 } from "../../lib/io/npy.ts";
import {
  type LoaderState,
  openTokenData,
  ShardedDataLoader,
  type ShardedLoaderOptions,
  type TokenShard,
} from "../../lib/data/shard_loader.ts";
import { documentStarts, END_OF_TEXT } from "../../lib/data/shuffle.ts";

/**
 * A shard of documents as FineWeb-EDU's are laid out: `leading` tokens that end a document begun
 * in the shard before, then each document `<|endoftext|>` first. Every other token is unique:
 * 1000 * (index + 1) + its position.
 */
function documentShard(index: number, leading: number, docs: number[]): TokenShard {
  const tokens: number[] = [];
  for (let i = 0; i < leading; i++) tokens.push(1000 * (index + 1) + tokens.length);
  for (const n of docs) {
    tokens.push(END_OF_TEXT);
    for (let i = 1; i < n; i++) tokens.push(1000 * (index + 1) + tokens.length);
  }
  const data = Uint16Array.from(tokens);
  return { name: `shard_${index}`, length: data.length, load: () => data };
}

/** Four shards of 40, 32, 10 and 40 tokens; one document of shard 3 is `<|endoftext|>` alone. */
function syntheticShards(): TokenShard[] {
  return [
    documentShard(0, 0, [5, 9, 3, 12, 7, 4]),
    documentShard(1, 6, [8, 2, 11, 5]),
    documentShard(2, 0, [4, 6]),
    documentShard(3, 3, [6, 14, 1, 9, 7]),
  ];
}

// The batches of syntheticShards() with B=2, T=3, as "x | y", recorded from the loader as it was
// before it could shuffle: without shuffling it must give exactly these.
/** One process, B=2, T=3: 40 steps, two epochs and a bit. */
const ONE_PROCESS = [
  "50256 1001 1002 1003 1004 50256 | 1001 1002 1003 1004 50256 1006",
  "1006 1007 1008 1009 1010 1011 | 1007 1008 1009 1010 1011 1012",
  "1012 1013 50256 1015 1016 50256 | 1013 50256 1015 1016 50256 1018",
  "1018 1019 1020 1021 1022 1023 | 1019 1020 1021 1022 1023 1024",
  "1024 1025 1026 1027 1028 50256 | 1025 1026 1027 1028 50256 1030",
  "1030 1031 1032 1033 1034 1035 | 1031 1032 1033 1034 1035 50256",
  "2000 2001 2002 2003 2004 2005 | 2001 2002 2003 2004 2005 50256",
  "50256 2007 2008 2009 2010 2011 | 2007 2008 2009 2010 2011 2012",
  "2012 2013 50256 2015 50256 2017 | 2013 50256 2015 50256 2017 2018",
  "2018 2019 2020 2021 2022 2023 | 2019 2020 2021 2022 2023 2024",
  "2024 2025 2026 50256 2028 2029 | 2025 2026 50256 2028 2029 2030",
  "50256 3001 3002 3003 50256 3005 | 3001 3002 3003 50256 3005 3006",
  "4000 4001 4002 50256 4004 4005 | 4001 4002 50256 4004 4005 4006",
  "4006 4007 4008 50256 4010 4011 | 4007 4008 50256 4010 4011 4012",
  "4012 4013 4014 4015 4016 4017 | 4013 4014 4015 4016 4017 4018",
  "4018 4019 4020 4021 4022 50256 | 4019 4020 4021 4022 50256 50256",
  "50256 4025 4026 4027 4028 4029 | 4025 4026 4027 4028 4029 4030",
  "4030 4031 4032 50256 4034 4035 | 4031 4032 50256 4034 4035 4036",
  "50256 1001 1002 1003 1004 50256 | 1001 1002 1003 1004 50256 1006",
  "1006 1007 1008 1009 1010 1011 | 1007 1008 1009 1010 1011 1012",
  "1012 1013 50256 1015 1016 50256 | 1013 50256 1015 1016 50256 1018",
  "1018 1019 1020 1021 1022 1023 | 1019 1020 1021 1022 1023 1024",
  "1024 1025 1026 1027 1028 50256 | 1025 1026 1027 1028 50256 1030",
  "1030 1031 1032 1033 1034 1035 | 1031 1032 1033 1034 1035 50256",
  "2000 2001 2002 2003 2004 2005 | 2001 2002 2003 2004 2005 50256",
  "50256 2007 2008 2009 2010 2011 | 2007 2008 2009 2010 2011 2012",
  "2012 2013 50256 2015 50256 2017 | 2013 50256 2015 50256 2017 2018",
  "2018 2019 2020 2021 2022 2023 | 2019 2020 2021 2022 2023 2024",
  "2024 2025 2026 50256 2028 2029 | 2025 2026 50256 2028 2029 2030",
  "50256 3001 3002 3003 50256 3005 | 3001 3002 3003 50256 3005 3006",
  "4000 4001 4002 50256 4004 4005 | 4001 4002 50256 4004 4005 4006",
  "4006 4007 4008 50256 4010 4011 | 4007 4008 50256 4010 4011 4012",
  "4012 4013 4014 4015 4016 4017 | 4013 4014 4015 4016 4017 4018",
  "4018 4019 4020 4021 4022 50256 | 4019 4020 4021 4022 50256 50256",
  "50256 4025 4026 4027 4028 4029 | 4025 4026 4027 4028 4029 4030",
  "4030 4031 4032 50256 4034 4035 | 4031 4032 50256 4034 4035 4036",
  "50256 1001 1002 1003 1004 50256 | 1001 1002 1003 1004 50256 1006",
  "1006 1007 1008 1009 1010 1011 | 1007 1008 1009 1010 1011 1012",
  "1012 1013 50256 1015 1016 50256 | 1013 50256 1015 1016 50256 1018",
  "1018 1019 1020 1021 1022 1023 | 1019 1020 1021 1022 1023 1024",
];

/** Two ranks, B=2, T=3 (shard 2 is too short for a step and left out): 20 steps each. */
const RANK_0_OF_2 = [
  "50256 1001 1002 1003 1004 50256 | 1001 1002 1003 1004 50256 1006",
  "1012 1013 50256 1015 1016 50256 | 1013 50256 1015 1016 50256 1018",
  "1024 1025 1026 1027 1028 50256 | 1025 1026 1027 1028 50256 1030",
  "2000 2001 2002 2003 2004 2005 | 2001 2002 2003 2004 2005 50256",
  "2012 2013 50256 2015 50256 2017 | 2013 50256 2015 50256 2017 2018",
  "4000 4001 4002 50256 4004 4005 | 4001 4002 50256 4004 4005 4006",
  "4012 4013 4014 4015 4016 4017 | 4013 4014 4015 4016 4017 4018",
  "50256 4025 4026 4027 4028 4029 | 4025 4026 4027 4028 4029 4030",
  "50256 1001 1002 1003 1004 50256 | 1001 1002 1003 1004 50256 1006",
  "1012 1013 50256 1015 1016 50256 | 1013 50256 1015 1016 50256 1018",
  "1024 1025 1026 1027 1028 50256 | 1025 1026 1027 1028 50256 1030",
  "2000 2001 2002 2003 2004 2005 | 2001 2002 2003 2004 2005 50256",
  "2012 2013 50256 2015 50256 2017 | 2013 50256 2015 50256 2017 2018",
  "4000 4001 4002 50256 4004 4005 | 4001 4002 50256 4004 4005 4006",
  "4012 4013 4014 4015 4016 4017 | 4013 4014 4015 4016 4017 4018",
  "50256 4025 4026 4027 4028 4029 | 4025 4026 4027 4028 4029 4030",
  "50256 1001 1002 1003 1004 50256 | 1001 1002 1003 1004 50256 1006",
  "1012 1013 50256 1015 1016 50256 | 1013 50256 1015 1016 50256 1018",
  "1024 1025 1026 1027 1028 50256 | 1025 1026 1027 1028 50256 1030",
  "2000 2001 2002 2003 2004 2005 | 2001 2002 2003 2004 2005 50256",
];

const RANK_1_OF_2 = [
  "1006 1007 1008 1009 1010 1011 | 1007 1008 1009 1010 1011 1012",
  "1018 1019 1020 1021 1022 1023 | 1019 1020 1021 1022 1023 1024",
  "1030 1031 1032 1033 1034 1035 | 1031 1032 1033 1034 1035 50256",
  "50256 2007 2008 2009 2010 2011 | 2007 2008 2009 2010 2011 2012",
  "2018 2019 2020 2021 2022 2023 | 2019 2020 2021 2022 2023 2024",
  "4006 4007 4008 50256 4010 4011 | 4007 4008 50256 4010 4011 4012",
  "4018 4019 4020 4021 4022 50256 | 4019 4020 4021 4022 50256 50256",
  "4030 4031 4032 50256 4034 4035 | 4031 4032 50256 4034 4035 4036",
  "1006 1007 1008 1009 1010 1011 | 1007 1008 1009 1010 1011 1012",
  "1018 1019 1020 1021 1022 1023 | 1019 1020 1021 1022 1023 1024",
  "1030 1031 1032 1033 1034 1035 | 1031 1032 1033 1034 1035 50256",
  "50256 2007 2008 2009 2010 2011 | 2007 2008 2009 2010 2011 2012",
  "2018 2019 2020 2021 2022 2023 | 2019 2020 2021 2022 2023 2024",
  "4006 4007 4008 50256 4010 4011 | 4007 4008 50256 4010 4011 4012",
  "4018 4019 4020 4021 4022 50256 | 4019 4020 4021 4022 50256 50256",
  "4030 4031 4032 50256 4034 4035 | 4031 4032 50256 4034 4035 4036",
  "1006 1007 1008 1009 1010 1011 | 1007 1008 1009 1010 1011 1012",
  "1018 1019 1020 1021 1022 1023 | 1019 1020 1021 1022 1023 1024",
  "1030 1031 1032 1033 1034 1035 | 1031 1032 1033 1034 1035 50256",
  "50256 2007 2008 2009 2010 2011 | 2007 2008 2009 2010 2011 2012",
];

const line = (b: { x: Int32Array; y: Int32Array }): string => `${b.x.join(" ")} | ${b.y.join(" ")}`;
const quiet = { verbose: false };

function loader(rank: number, world: number, options: ShardedLoaderOptions = {}, B = 2, T = 3) {
  return new ShardedDataLoader(syntheticShards(), B, T, {
    processRank: rank,
    numProcesses: world,
    ...quiet,
    ...options,
  });
}

function lines(l: ShardedDataLoader, steps: number): string[] {
  return Array.from({ length: steps }, () => line(l.nextBatch()));
}

Deno.test("ShardedDataLoader: without shuffle, the batches and states of the loader before shuffling", () => {
  for (const options of [{}, { shuffle: false }, { shuffle: false, shuffleSeed: 99 }]) {
    assertEquals(lines(loader(0, 1, options), 40), ONE_PROCESS);
    assertEquals(lines(loader(0, 2, options), 20), RANK_0_OF_2);
    assertEquals(lines(loader(1, 2, options), 20), RANK_1_OF_2);
  }
  // the state keeps its three fields, so checkpoints of unshuffled runs are unchanged
  const l = loader(1, 2);
  lines(l, 3); // 3 steps of 12 tokens fill shard 0's 40 (36 + 13 > 40)
  assertEquals(l.state(), { shard: 1, position: 6, shardName: "shard_1" });
});

/** One step of every rank: their batches side by side, and where the step read from. */
interface Step {
  x: number[];
  y: number[];
  /** The shard's number in syntheticShards() (its name's). */
  shard: number;
  epoch: number;
  /** The shard's tokens in this epoch's document order, as the loader holds them. */
  tokens: Uint16Array | Int32Array;
}

/** `steps` steps of ranks 0..world-1 reading together. */
function readSteps(world: number, steps: number, options: ShardedLoaderOptions, B = 2, T = 3) {
  const ranks = Array.from({ length: world }, (_, r) => loader(r, world, options, B, T));
  const out: Step[] = [];
  for (let s = 0; s < steps; s++) {
    const state = ranks[0].state();
    const tokens = ranks[0].tokens;
    const batches = ranks.map((l) => l.nextBatch());
    out.push({
      x: batches.flatMap((b) => Array.from(b.x)),
      y: batches.flatMap((b) => Array.from(b.y)),
      shard: Number(state.shardName.slice("shard_".length)),
      epoch: state.shuffle?.epoch ?? -1,
      tokens,
    });
  }
  return out;
}

/** The tokens before a shard's first document, then its documents as strings, sorted. */
function documents(tokens: ArrayLike<number>): string[] {
  const all = Array.from(tokens), starts = documentStarts(all);
  const docs = starts.map((s, i) => all.slice(s, starts[i + 1] ?? all.length).join(" "));
  return [all.slice(0, starts[0]).join(" "), ...docs.sort()];
}

Deno.test("ShardedDataLoader: shuffled, each epoch reads every token once in whole documents, less each shard's last partial step", () => {
  const originals = syntheticShards().map((s) => s.load());
  for (const world of [1, 2]) {
    const stride = 2 * 3 * world;
    // one process reads 18 steps an epoch, two ranks 8: read three epochs and some
    const steps = readSteps(world, world === 1 ? 60 : 28, { shuffle: true, shuffleSeed: 5 });
    const usable = world === 1 ? [0, 1, 2, 3] : [0, 1, 3]; // shard 2 (10 tokens) < 13
    let moved = 0;
    const orders = new Map<number, Set<string>>(); // each shard's document orders, by epoch
    for (const epoch of [0, 1, 2]) {
      const inEpoch = steps.filter((s) => s.epoch === epoch);
      const shards = [...new Set(inEpoch.map((s) => s.shard))];
      assertEquals([...shards].sort(), usable, `world ${world}, epoch ${epoch}: every shard once`);
      const seen = new Map<number, number>();
      for (const shard of shards) {
        const run = inEpoch.filter((s) => s.shard === shard);
        const tokens = run[0].tokens;
        ok(run.every((s) => s.tokens === tokens), "one document order per shard and epoch");
        // the steps read the shard's tokens front to back, targets one ahead
        const xs = run.flatMap((s) => s.x), ys = run.flatMap((s) => s.y);
        assertEquals(xs, Array.from(tokens.subarray(0, xs.length)));
        assertEquals(ys, Array.from(tokens.subarray(1, xs.length + 1)));
        // what is left is too short for one more step: at most B*T*world tokens
        const tail = tokens.length - xs.length;
        ok(tail >= 1 && tail <= stride, `a tail of ${tail} tokens, at most ${stride}`);
        // the same documents, whole, in some order
        assertEquals(documents(tokens), documents(originals[shard]));
        if (Array.from(tokens).join() !== Array.from(originals[shard]).join()) moved++;
        orders.set(shard, (orders.get(shard) ?? new Set()).add(Array.from(tokens).join()));
        for (const id of Array.from(tokens)) if (id !== END_OF_TEXT) seen.set(id, 0);
        for (const id of xs) if (id !== END_OF_TEXT) seen.set(id, (seen.get(id) ?? 0) + 1);
        // each token is read once, or is in the tail
        const unread = Array.from(tokens.subarray(xs.length)).filter((id) => id !== END_OF_TEXT);
        for (const id of unread) assertEquals(seen.get(id), 0, `token ${id} is in the tail`);
      }
      const counts = [...seen.values()];
      ok(counts.every((c) => c <= 1), "no token read twice in an epoch");
      // every token of the usable shards but the <|endoftext|>s: 40 + 32 (+ 10) + 40 tokens
      const eots = usable.map((i) => documentStarts(originals[i]).length);
      assertEquals(seen.size, (world === 1 ? 122 : 112) - eots.reduce((a, b) => a + b));
    }
    ok(moved > 0, "documents move");
    // and move anew each epoch: shard 0's six documents in three orders
    assertEquals(orders.get(0)?.size, 3);
  }
});

Deno.test("ShardedDataLoader: shuffled, a new order each epoch, the same for the same seed", () => {
  const epochs = (seed: number) => {
    const steps = readSteps(1, 60, { shuffle: true, shuffleSeed: seed });
    return [0, 1, 2].map((e) => steps.filter((s) => s.epoch === e).map((s) => s.x.join(" ")));
  };
  const a = epochs(5);
  notDeepStrictEqual(a[0], a[1]);
  notDeepStrictEqual(a[1], a[2]);
  notDeepStrictEqual(a[0], a[2]);
  assertEquals(epochs(5), a);
  notDeepStrictEqual(epochs(6)[0], a[0]);
  // and unlike the unshuffled order
  notDeepStrictEqual(a[0], ONE_PROCESS.slice(0, 18).map((l) => l.split(" | ")[0]));
  // the default seed is a seed like any other
  assertEquals(
    lines(loader(0, 1, { shuffle: true }), 40),
    lines(loader(0, 1, { shuffle: true, shuffleSeed: 1337 }), 40),
  );
});

Deno.test("ShardedDataLoader: shuffled, stopping at any step and restoring a saved state continues bit for bit", () => {
  const options = { shuffle: true, shuffleSeed: 11 };
  for (const [rank, world, total] of [[0, 1, 45], [0, 2, 25], [1, 2, 25]]) {
    const straight = lines(loader(rank, world, options), total);
    for (let k = 0; k < total; k++) {
      const first = loader(rank, world, options);
      lines(first, k);
      const saved: LoaderState = JSON.parse(JSON.stringify(first.state()));
      assertEquals(Object.keys(saved.shuffle ?? {}).sort(), ["epoch", "index", "seed"]);
      // a loader that stands elsewhere (another epoch's shard in memory) as a resumed run's might
      const resumed = loader(rank, world, options);
      lines(resumed, (k * 7) % 23);
      resumed.restore(saved);
      assertEquals(resumed.state(), saved);
      assertEquals(lines(resumed, total - k), straight.slice(k), `rank ${rank}/${world}, k ${k}`);
    }
  }
});

Deno.test("ShardedDataLoader: shuffled, two ranks' batches side by side are one process's with twice the batch", () => {
  const options = { shuffle: true, shuffleSeed: 3 };
  for (const [B, T] of [[2, 3], [1, 5]]) {
    const ranks = readSteps(2, 40, options, B, T);
    const one = readSteps(1, 40, options, 2 * B, T);
    assertEquals(ranks.map((s) => [s.x, s.y]), one.map((s) => [s.x, s.y]));
    ok(new Set(one.map((s) => s.epoch)).size >= 3, "over several epochs");
  }
});

/**
 * syntheticShards() resized so that each holds an even number of B*T = 6 windows (6, 4, 2, 6):
 * where two ranks stop at a shard's end, one process reading their two windows in turn stops too.
 */
function evenWindowShards(): TokenShard[] {
  return [
    documentShard(0, 0, [5, 9, 3, 12, 7, 4]), // 40 tokens: 6 windows
    documentShard(1, 6, [8, 2, 11]), // 27: 4
    documentShard(2, 0, [4, 6, 3]), // 13: 2
    documentShard(3, 3, [6, 14, 1, 9, 7]), // 40: 6
  ];
}

/**
 * Steps of two ranks (their batches side by side) and of one process that accumulates two
 * micro-batches of the same B per step, on `shards`.
 */
function ranksAndAccumulation(shards: () => TokenShard[], steps: number) {
  const options = { shuffle: true, shuffleSeed: 3, ...quiet };
  const [r0, r1] = [0, 1].map((rank) =>
    new ShardedDataLoader(shards(), 2, 3, { processRank: rank, numProcesses: 2, ...options })
  );
  const one = new ShardedDataLoader(shards(), 2, 3, options);
  const ranks: string[][] = [], accumulated: string[][] = [];
  const epochs = new Set<number>();
  for (let step = 0; step < steps; step++) {
    ranks.push([line(r0.nextBatch()), line(r1.nextBatch())]);
    accumulated.push([line(one.nextBatch()), line(one.nextBatch())]);
    epochs.add(one.currentEpoch);
  }
  return { ranks, accumulated, epochs };
}

Deno.test("ShardedDataLoader: shuffled, two ranks read one process's two accumulation micro-batches where each shard holds an even number of B*T windows", () => {
  for (const { name, length } of evenWindowShards()) {
    assertEquals(Math.floor((length - 1) / 6) % 2, 0, `${name}: ${length} tokens`);
  }
  const even = ranksAndAccumulation(evenWindowShards, 40);
  assertEquals(even.ranks, even.accumulated);
  ok(even.epochs.size >= 3, "over several epochs, each in a new order");
  // otherwise they part ways at the first shard with an odd count: one process reads the last
  // window of shard 1 (5 windows) that two ranks, who move on in pairs, skip; and shard 2 (10
  // tokens) is too short for two ranks' step but not for one micro-batch
  const odd = ranksAndAccumulation(syntheticShards, 40);
  notDeepStrictEqual(odd.ranks, odd.accumulated);
});

Deno.test("ShardedDataLoader: an old state restores without shuffle; a state of another shuffle setting is refused", () => {
  // a state from before shuffling existed: shard, position, shard name
  const old: LoaderState = { shard: 1, position: 6, shardName: "shard_1" };
  const plain = loader(1, 2);
  plain.restore(old);
  assertEquals(lines(plain, 17), RANK_1_OF_2.slice(3));
  throws(() => loader(1, 2, { shuffle: true, shuffleSeed: 4 }).restore(old), {
    message: "Cannot restore the data position: expected a state saved with shuffling on with " +
      "seed 4 (this loader's), found one saved with shuffling off; resume with the shuffle " +
      "setting the run started with",
  });
  const shuffled = loader(0, 1, { shuffle: true, shuffleSeed: 4 });
  lines(shuffled, 25);
  const saved = shuffled.state();
  throws(() => loader(0, 1).restore(saved), {
    message: "Cannot restore the data position: expected a state saved with shuffling off " +
      "(this loader's), found one saved with shuffling on with seed 4; resume with the shuffle " +
      "setting the run started with",
  });
  throws(
    () => loader(0, 1, { shuffle: true, shuffleSeed: 5 }).restore(saved),
    /expected a state saved with shuffling on with seed 5 \(this loader's\), found one saved with shuffling on with seed 4/,
  );
  // a shard that is not at that place of the epoch's order: the folder changed
  const place = saved.shuffle!.index;
  const other = (saved.shard + 1) % 4;
  throws(
    () =>
      loader(0, 1, { shuffle: true, shuffleSeed: 4 }).restore({
        ...saved,
        shard: other,
        shardName: `shard_${other}`,
      }),
    new RegExp(`expected shard ${other} \\(shard_${other}\\) at place ${place} of epoch 1's`),
  );
  throws(
    () =>
      loader(0, 1, { shuffle: true, shuffleSeed: 4 }).restore({
        ...saved,
        shuffle: { seed: 4, epoch: -1, index: 0 },
      }),
    /expected a whole epoch and shard place, found epoch -1, place 0/,
  );
  throws(() => loader(0, 1, { shuffleSeed: 0.5 }), /Expected an integer shuffle seed, found 0\.5/);
});

Deno.test("ShardedDataLoader: shuffled, a shard without <|endoftext|> keeps its tokens; only the shard order changes", () => {
  const plain = (i: number): TokenShard => {
    const data = Int32Array.from({ length: 20 }, (_, j) => 100 * i + j);
    return { name: `text_${i}`, length: 20, load: () => data };
  };
  const shards = [plain(1), plain(2), plain(3)];
  const notes: string[] = [];
  const log = console.log;
  console.log = (note: string) => notes.push(note);
  let l: ShardedDataLoader;
  try {
    l = new ShardedDataLoader(shards, 1, 4, { shuffle: true, shuffleSeed: 2 });
  } finally {
    console.log = log;
  }
  assertEquals(notes.length, 1);
  ok(notes[0].includes("holds fewer than two documents"), notes[0]);
  const firsts: number[] = [];
  for (let i = 0; i < 4 * 3 * 3; i++) {
    const x = Array.from(l.nextBatch().x);
    assertEquals(x, x.map((_, j) => x[0] + j), "a window of consecutive tokens");
    if (x[0] % 100 === 0) firsts.push(x[0] / 100);
  }
  assertEquals(firsts.length, 9);
  for (let e = 0; e < 3; e++) assertEquals(firsts.slice(3 * e, 3 * e + 3).sort(), [1, 2, 3]);
  notDeepStrictEqual(firsts.slice(0, 3), firsts.slice(3, 6));
});

Deno.test("openTokenData: shuffle reaches the train split's loader, never the validation split's", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const [i, split] of [[0, "val"], [1, "train"], [2, "train"]] as const) {
      const shard = documentShard(i, 0, [5, 9, 3, 12, 7, 4]);
      await writeNpyUint16(
        join(dir, `edufineweb_${split}_00000${i}.npy`),
        shard.load() as Uint16Array,
      );
    }
    const options = { shuffle: true, shuffleSeed: 8 };
    const train = await openTokenData(dir, "train", 2, 3, 0, 1, options);
    const val = await openTokenData(dir, "val", 2, 3, 0, 1, options);
    assertEquals([train.shuffle, train.shuffleSeed, val.shuffle], [true, 8, false]);
    assertEquals(train.state().shuffle, { seed: 8, epoch: 0, index: 0 });
    assertEquals(val.state(), { shard: 0, position: 0, shardName: "edufineweb_val_000000.npy" });
    // the validation batches are the shard front to back, the same after every reset
    const first = lines(val, 9);
    assertEquals(first[0], "50256 1001 1002 1003 1004 50256 | 1001 1002 1003 1004 50256 1006");
    val.reset();
    assertEquals(lines(val, 9), first);
    assertEquals((await openTokenData(dir, "train", 2, 3)).shuffle, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
