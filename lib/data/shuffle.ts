/**
 * The shuffled data order of the sharded loader (`shard_loader.ts`, option `shuffle`): each epoch
 * a new order of the shards and of the documents inside each shard, drawn from (seed, epoch) alone,
 * so every rank of a DDP run computes the same order without talking to the others, and a
 * checkpoint needs only the seed and the epoch to find it again.
 *
 * Why shuffle. build-nanogpt's loader, like the lecture's `DataLoaderLite`, reads the shards in
 * file order and each shard front to back, the same way every epoch. A run of several epochs then
 * meets the same batches at the same steps of each epoch, and its training loss repeats with the
 * period of an epoch: the same easy and hard stretches of text come back at the same places (a
 * shard of code or of lists, a run of near-duplicate pages), and from the second epoch on each
 * batch is one the model saw exactly one epoch ago, at a fixed distance, which it has partly
 * memorised. The curve shows the data's order rather than the model's progress, and the model
 * learns the order's trends in sequence (a stretch of one topic, then the next) instead of their
 * mixture. Shuffling makes every epoch a fresh draw of the same tokens: the loss loses its period,
 * and the batches a step sees are a fair sample of the whole set.
 *
 * What is shuffled: the order of the shards, and the documents within a shard. A document starts
 * at an `<|endoftext|>` token (50256; FineWeb-EDU's shards put one before each document) and runs
 * to the next. The tokens before a shard's first `<|endoftext|>` (the end of a document begun in
 * the shard before) stay first: moved, they would run on from another document's last token with
 * no `<|endoftext|>` between; at the front they open the shard's first window, as without
 * shuffling. Every token stays, in its document, in order: only whole documents move. A shard
 * with one `<|endoftext|>` or none (a plain text file's tokens) keeps its order, so only the shard
 * order changes.
 *
 * @module
 */

/** GPT-2's `<|endoftext|>` token, which opens each document in the shards. */
export const END_OF_TEXT = 50256;

/** One step of splitmix32: the next state and its mixed output. */
function splitmix32(state: number): [next: number, out: number] {
  const next = (state + 0x9e3779b9) >>> 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

/**
 * A small seeded generator (sfc32, its state filled by splitmix32), the same algorithm as
 * `lib/model/random.ts`'s `Generator`, kept here so that the data order depends on nothing
 * outside `lib/data`.
 */
export class ShuffleRandom {
  #s = new Uint32Array(4);

  /** A generator for the 32-bit words `words` (a seed, an epoch, a stream), in order. */
  constructor(...words: number[]) {
    let h = 0x2545f491;
    for (const w of words) h = splitmix32((h ^ w) >>> 0)[1]; // each word mixed into the seed
    let x = h;
    for (let i = 0; i < 4; i++) [x, this.#s[i]] = splitmix32(x);
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** The next 32 random bits. */
  nextU32(): number {
    const s = this.#s;
    const t = (s[0] + s[1] + s[3]) >>> 0;
    s[3] = (s[3] + 1) >>> 0;
    s[0] = s[1] ^ (s[1] >>> 9);
    s[1] = (s[2] + (s[2] << 3)) >>> 0;
    s[2] = ((s[2] << 21) | (s[2] >>> 11)) >>> 0;
    s[2] = (s[2] + t) >>> 0;
    return t;
  }

  /** A whole number in [0, n), every value equally likely (n at most 2^32). */
  below(n: number): number {
    // reject the top values that would make some remainders more likely than others
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }
}

/**
 * The 32-bit words a seed, an epoch and a stream seed a {@linkcode ShuffleRandom} with: a seed
 * is any safe integer (its low and high 32 bits both count).
 */
function streamWords(seed: number, epoch: number, stream: number): number[] {
  const high = Math.floor(seed / 4294967296);
  return [seed >>> 0, high >>> 0, epoch >>> 0, stream >>> 0];
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, random: ShuffleRandom): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = random.below(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** The order of `count` shards in `epoch` of the stream seeded `seed`: indices into the list. */
export function shardOrder(count: number, seed: number, epoch: number): Int32Array {
  return permutation(count, new ShuffleRandom(...streamWords(seed, epoch, 0)));
}

/** Where each document of `tokens` starts: the positions of its `<|endoftext|>` tokens. */
export function documentStarts(tokens: Uint16Array | Int32Array | readonly number[]): number[] {
  const starts: number[] = [];
  // indexOf: a typed array's is native, several times faster than a loop over 100M tokens
  for (let i = tokens.indexOf(END_OF_TEXT); i >= 0; i = tokens.indexOf(END_OF_TEXT, i + 1)) {
    starts.push(i);
  }
  return starts;
}

/**
 * The tokens of shard number `shard` (its index in the loader's list) with its documents in the
 * order of `epoch` of the stream seeded `seed`: a new array of the same kind and length, the
 * tokens before the first document first, then every document whole. A shard of fewer than two
 * documents comes back as it is (the same array).
 */
export function shuffleDocuments<A extends Uint16Array | Int32Array>(
  tokens: A,
  seed: number,
  epoch: number,
  shard: number,
): A {
  const starts = documentStarts(tokens);
  if (starts.length < 2) return tokens;
  const order = permutation(
    starts.length,
    new ShuffleRandom(...streamWords(seed, epoch, shard + 1)),
  );
  const out = new (tokens.constructor as { new (n: number): A })(tokens.length);
  out.set(tokens.subarray(0, starts[0])); // the end of the shard before's last document
  let at = starts[0];
  for (const d of order) {
    const end = d + 1 < starts.length ? starts[d + 1] : tokens.length;
    out.set(tokens.subarray(starts[d], end), at);
    at += end - starts[d];
  }
  return out;
}
