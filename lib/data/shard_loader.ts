/**
 * The sharded data loader of build-nanogpt's section 4: `DataLoaderLite` over a folder of
 * `.npy` token shards (`edufineweb_train_000001.npy`, ...), or of llm.c's `.bin` ones
 * (`fineweb_train_000001.bin`, read by `lib/io/llmc.ts`), one shard in memory at a time.
 * Each rank reads its own B*T window; when the next step's windows would run past the shard,
 * all ranks move to the next shard (wrapping to the first after the last). The lecture's loader
 * tests each rank's own position, so near a shard's end ranks can disagree about moving on; here
 * every rank tests the step's first window, which gives the same batches on one process and
 * keeps the ranks in step on several. `reset()` starts over (the validation loader is reset before each evaluation), and
 * `state()` / `restore()` carry the position through a checkpoint.
 *
 * With `shuffle` on (off by default, the lecture's order), each epoch reads the shards in a new
 * order and each shard with its documents in a new order, drawn from (`shuffleSeed`, epoch): the
 * same on every rank, so the ranks still read interleaved windows of one stream. Why, and what
 * moves: `shuffle.ts`.
 *
 * {@linkcode openTokenData} opens either a shard folder or a plain text file for a split.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { Batch } from "./data_loader.ts";
import { NPY_MAGIC, npyUint16Length, readNpyUint16Sync } from "../io/npy.ts";
import { hasLlmcShardMagic, llmcShardLength, readLlmcShardSync } from "../io/llmc.ts";
import { tokenizeTextFile } from "./text_tokens.ts";
import { END_OF_TEXT, shardOrder, shuffleDocuments } from "./shuffle.ts";

/** One shard: a name for messages and errors, its length, and how to load its tokens. */
export interface TokenShard {
  /** A file path, or a label for tokens held in memory. */
  readonly name: string;
  /** Number of tokens. */
  readonly length: number;
  /** The tokens; called each time the loader moves to this shard. */
  load(): Uint16Array | Int32Array;
}

/** Where a {@linkcode ShardedDataLoader} stands; JSON-safe, for checkpoints. */
export interface LoaderState {
  /** The index of the current shard in the loader's list. */
  shard: number;
  /** Where this rank's next batch starts in that shard. */
  position: number;
  /** The current shard's name (its file name for shard files), to catch a changed folder. */
  shardName: string;
  /** Where the loader stands in its shuffled order; present exactly when it shuffles. */
  shuffle?: ShuffleState;
}

/** The shuffled order's part of a {@linkcode LoaderState}. */
export interface ShuffleState {
  /** The seed every epoch's order is drawn from (the loader's `shuffleSeed`). */
  seed: number;
  /** The pass over the shards, from 0: which order of shards and documents is being read. */
  epoch: number;
  /** The current shard's place in this epoch's shard order (`shard` is the entry there). */
  index: number;
}

/** What the training loop needs of a loader. */
export interface TokenLoader {
  readonly B: number;
  readonly T: number;
  /** The next (B, T) inputs and targets. */
  nextBatch(): Batch;
  /** Back to the first batch of the first shard. */
  reset(): void;
  /** The position, for a checkpoint. */
  state(): LoaderState;
  /** Goes back to a position that `state()` returned. */
  restore(state: LoaderState): void;
}

/** Options of {@linkcode ShardedDataLoader}. */
export interface ShardedLoaderOptions {
  processRank?: number;
  numProcesses?: number;
  /** Print which shards were found and skipped; true by default. */
  verbose?: boolean;
  /**
   * The model's vocabulary size: a token id at or above it is an error naming the shard and
   * the position, when the shard is loaded. No check by default.
   */
  vocabSize?: number;
  /**
   * Read each epoch's shards, and each shard's documents, in a new order drawn from
   * (`shuffleSeed`, epoch); false by default: the shards in their order, front to back.
   */
  shuffle?: boolean;
  /** The seed of the shuffled orders (any safe integer); 1337 by default. */
  shuffleSeed?: number;
}

/** DataLoaderLite over several shards, rank- and world-aware. */
export class ShardedDataLoader implements TokenLoader {
  readonly B: number;
  readonly T: number;
  readonly processRank: number;
  readonly numProcesses: number;
  /** The shards it cycles through. */
  readonly shards: readonly TokenShard[];
  /** The vocabulary size every token must be below, or undefined (no check). */
  readonly vocabSize: number | undefined;
  /** Whether each epoch reads the shards and their documents in a new order. */
  readonly shuffle: boolean;
  /** The seed of the shuffled orders. */
  readonly shuffleSeed: number;
  /** The index of the shard in memory (in `shards`). */
  currentShard = 0;
  /** Where this rank's next batch starts. */
  currentPosition = 0;
  /**
   * Passes over the shards: which shuffled order is read. Without shuffling it is only counted
   * (from 0 at the start, a reset or a restore), not saved.
   */
  currentEpoch = 0;
  #tokens: Uint16Array | Int32Array = new Int32Array(0);
  /** The epoch whose document order `#tokens` holds (shuffling only). */
  #tokensEpoch = 0;
  /** This epoch's shard order (the list's order without shuffling), and the place in it. */
  #order: Int32Array = new Int32Array(0);
  #orderIndex = 0;
  #notedUnshuffled = false;
  readonly #verbose: boolean;

  /**
   * A loader over `shards`. Shards too short for one step of every rank (B*T*world + 1
   * tokens) are left out with a note.
   *
   * @throws {Error} when no shard is long enough, for a bad rank or shuffle seed, or for a token
   * id outside `vocabSize` in the first shard read (later shards are checked as the loader
   * reaches them).
   */
  constructor(
    shards: readonly TokenShard[],
    B: number,
    T: number,
    options: ShardedLoaderOptions = {},
  ) {
    this.B = B;
    this.T = T;
    this.processRank = options.processRank ?? 0;
    this.numProcesses = options.numProcesses ?? 1;
    this.vocabSize = options.vocabSize;
    this.shuffle = options.shuffle ?? false;
    this.shuffleSeed = options.shuffleSeed ?? 1337;
    this.#verbose = options.verbose ?? true;
    if (!Number.isSafeInteger(this.shuffleSeed)) {
      throw new RangeError(`Expected an integer shuffle seed, found ${this.shuffleSeed}`);
    }
    if (
      !Number.isInteger(this.numProcesses) || this.numProcesses < 1 ||
      !Number.isInteger(this.processRank) || this.processRank < 0 ||
      this.processRank >= this.numProcesses
    ) {
      throw new RangeError(
        `Expected a rank in [0, ${this.numProcesses}), found ${this.processRank}`,
      );
    }
    const needed = B * T * this.numProcesses + 1;
    const usable = shards.filter((s) => s.length >= needed);
    if (options.verbose ?? true) {
      for (const s of shards) {
        if (s.length < needed) {
          console.log(
            `note: skipping ${
              basename(s.name)
            }: ${s.length} tokens, fewer than B*T*world+1 = ${needed}`,
          );
        }
      }
    }
    if (usable.length === 0) {
      const names = shards.map((s) => `${basename(s.name)} (${s.length})`).join(", ");
      throw new Error(
        `Expected a shard of at least ${needed} tokens for B=${B}, T=${T} on ${this.numProcesses} ` +
          `process(es), found ${names || "no shards"}`,
      );
    }
    this.shards = usable;
    this.reset();
  }

  /** The tokens of the shard in memory. */
  get tokens(): Uint16Array | Int32Array {
    return this.#tokens;
  }

  /** Back to the first shard (of the first epoch's order), this rank's first window. */
  reset(): void {
    this.#startEpoch(0);
    this.#load(this.#order[0]);
    this.currentPosition = this.B * this.T * this.processRank;
  }

  /** The next (B, T) batch: inputs and the same tokens shifted by one. */
  nextBatch(): Batch {
    const { B, T } = this;
    const start = this.currentPosition;
    const x = new Int32Array(B * T), y = new Int32Array(B * T);
    const buf = this.#tokens;
    for (let i = 0; i < B * T; i++) {
      x[i] = buf[start + i]; // inputs
      y[i] = buf[start + i + 1]; // targets
    }
    // advance the position in the tensor
    this.currentPosition += B * T * this.numProcesses;
    // if loading the next batch of any rank would be out of bounds, advance to next shard;
    // tested from the step's first window (rank 0's), so that all ranks move together
    const stepStart = this.currentPosition - B * T * this.processRank;
    if (stepStart + (B * T * this.numProcesses + 1) > buf.length) {
      // the next shard in this epoch's order; after the last, the next epoch's first
      if (++this.#orderIndex === this.shards.length) this.#startEpoch(this.currentEpoch + 1);
      this.#load(this.#order[this.#orderIndex]);
      this.currentPosition = B * T * this.processRank;
    }
    return { x, y };
  }

  /** The shard index and position of the next batch, and when shuffling, the epoch's order. */
  state(): LoaderState {
    const state: LoaderState = {
      shard: this.currentShard,
      position: this.currentPosition,
      shardName: basename(this.shards[this.currentShard].name),
    };
    if (this.shuffle) {
      state.shuffle = { seed: this.shuffleSeed, epoch: this.currentEpoch, index: this.#orderIndex };
    }
    return state;
  }

  /**
   * Continues from a position `state()` returned (by this rank, over the same shards). A state
   * without `shuffle` (what an unshuffled loader writes, and every loader before shuffling
   * existed) restores into an unshuffled loader.
   *
   * @throws {Error} when the shard index or position does not fit these shards, or the state's
   * shuffle setting (on or off, and the seed) is not this loader's.
   */
  restore(state: LoaderState): void {
    const order = this.#restoreOrder(state);
    const shard = this.shards[state.shard];
    if (!shard || basename(shard.name) !== state.shardName) {
      throw new Error(
        `Cannot restore the data position: expected shard ${state.shard} to be ${state.shardName}, ` +
          `found ${shard ? basename(shard.name) : `only ${this.shards.length} shards`}`,
      );
    }
    // this rank's next window must fit in the shard
    const { B, T } = this;
    if (
      !Number.isInteger(state.position) || state.position < 0 ||
      state.position + B * T + 1 > shard.length
    ) {
      throw new Error(
        `Cannot restore the data position: ${state.position} is outside ${state.shardName} ` +
          `(${shard.length} tokens)`,
      );
    }
    this.currentEpoch = order.epoch;
    this.#order = order.order;
    this.#orderIndex = order.index;
    this.#load(state.shard);
    this.currentPosition = state.position;
  }

  /**
   * The epoch, its shard order and the place in it that `state` stands at, checked against this
   * loader's shuffle setting and shards.
   */
  #restoreOrder(state: LoaderState): { epoch: number; order: Int32Array; index: number } {
    const fail = (message: string): never => {
      throw new Error(`Cannot restore the data position: ${message}`);
    };
    const saved = state.shuffle;
    const setting = (seed: number | undefined) =>
      seed === undefined ? "shuffling off" : `shuffling on with seed ${seed}`;
    const mine = this.shuffle ? this.shuffleSeed : undefined;
    if (saved?.seed !== mine) {
      fail(
        `expected a state saved with ${setting(mine)} (this loader's), found one saved with ` +
          `${setting(saved?.seed)}; resume with the shuffle setting the run started with`,
      );
    }
    const n = this.shards.length;
    if (saved === undefined) {
      return { epoch: 0, order: listOrder(n), index: state.shard };
    }
    const { epoch, index } = saved;
    if (!Number.isSafeInteger(epoch) || epoch < 0 || !Number.isInteger(index) || index < 0) {
      fail(`expected a whole epoch and shard place, found epoch ${epoch}, place ${index}`);
    }
    const order = shardOrder(n, this.shuffleSeed, epoch);
    if (index >= n || order[index] !== state.shard) {
      fail(
        `expected shard ${state.shard} (${state.shardName}) at place ${index} of epoch ${epoch}'s ` +
          `shard order, found ${
            index < n ? `shard ${order[index]}` : `only ${n} shards`
          } (a changed shard folder?)`,
      );
    }
    return { epoch, order, index };
  }

  /** Makes `epoch` the current one, with its shard order, at its first shard. */
  #startEpoch(epoch: number): void {
    const n = this.shards.length;
    this.currentEpoch = epoch;
    this.#order = this.shuffle ? shardOrder(n, this.shuffleSeed, epoch) : listOrder(n);
    this.#orderIndex = 0;
  }

  #load(index: number): void {
    // the shard in memory already, in this epoch's document order: keep it (one shard, reset)
    const same = index === this.currentShard && this.#tokens.length > 0;
    if (same && (!this.shuffle || this.#tokensEpoch === this.currentEpoch)) return;
    this.currentShard = index;
    const shard = this.shards[index];
    const tokens = shard.load();
    if (tokens.length !== shard.length) {
      throw new Error(`${shard.name}: expected ${shard.length} tokens, found ${tokens.length}`);
    }
    if (this.vocabSize !== undefined) checkVocabulary(tokens, this.vocabSize, shard.name);
    if (!this.shuffle) {
      this.#tokens = tokens;
      return;
    }
    this.#tokens = shuffleDocuments(tokens, this.shuffleSeed, this.currentEpoch, index);
    this.#tokensEpoch = this.currentEpoch;
    if (this.#tokens === tokens && this.#verbose && !this.#notedUnshuffled) {
      this.#notedUnshuffled = true;
      console.log(
        `note: ${basename(shard.name)} holds fewer than two documents (each opens with ` +
          `<|endoftext|>, ${END_OF_TEXT}): its tokens keep their order, only the shards' is shuffled`,
      );
    }
  }
}

/** The shards in the list's order: 0, 1, ..., n-1. */
function listOrder(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

/**
 * A token id at or above `vocabSize` would index past the embedding table at the first step;
 * here it is an error naming the shard and the position instead.
 */
function checkVocabulary(tokens: Uint16Array | Int32Array, vocabSize: number, name: string): void {
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i];
    if (id >= vocabSize || id < 0) {
      throw new Error(
        `${name}: expected token ids in [0, ${vocabSize}) (the model's vocabulary), ` +
          `found ${id} at position ${i}`,
      );
    }
  }
}

/** The shard formats a folder may hold, by file extension. */
const SHARD_FORMATS = {
  // checks magic, dtype, shape and size
  ".npy": { length: npyUint16Length, read: readNpyUint16Sync },
  // llm.c's: checks magic, version and size
  ".bin": { length: llmcShardLength, read: readLlmcShardSync },
} as const;

type ShardExtension = keyof typeof SHARD_FORMATS;

/**
 * The token shards of a split in `dir`: the `.npy` files (build-nanogpt's) or the `.bin` files
 * (llm.c's) whose name holds `split`, sorted.
 *
 * @throws {Error} for a bad shard (naming it), or a folder holding both kinds for the split:
 * most likely the same tokens twice, which would train on each of them twice.
 */
export async function listShards(dir: string, split: string): Promise<TokenShard[]> {
  const byFormat: Record<ShardExtension, string[]> = { ".npy": [], ".bin": [] };
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.includes(split)) continue;
    for (const ext of Object.keys(SHARD_FORMATS) as ShardExtension[]) {
      if (e.name.endsWith(ext)) byFormat[ext].push(e.name);
    }
  }
  const npy = byFormat[".npy"], bin = byFormat[".bin"];
  if (npy.length > 0 && bin.length > 0) {
    throw new Error(
      `Expected one kind of "${split}" shard in ${dir}, .npy or llm.c's .bin, found both: ` +
        `${npy.length} .npy (${npy.sort()[0]}, ...) and ${bin.length} .bin (${
          bin.sort()[0]
        }, ...); move one kind to a folder of its own`,
    );
  }
  const ext: ShardExtension = bin.length > 0 ? ".bin" : ".npy";
  const format = SHARD_FORMATS[ext];
  const shards: TokenShard[] = [];
  for (const name of byFormat[ext].sort()) {
    const path = join(dir, name);
    const length = await format.length(path);
    shards.push({ name: path, length, load: () => format.read(path) });
  }
  return shards;
}

/** The share of a text file's tokens that {@linkcode openTokenData} keeps for validation. */
export const TEXT_VAL_FRACTION = 0.1;

/** Options of {@linkcode openTokenData}. */
export interface OpenTokenDataOptions {
  /** The model's vocabulary size, to check every token id against; no check by default. */
  vocabSize?: number;
  /**
   * Shuffle the "train" split's shards and documents each epoch ({@linkcode ShardedLoaderOptions});
   * "val" is never shuffled, so that every evaluation measures the same batches.
   */
  shuffle?: boolean;
  /** The seed of the shuffled orders; 1337 by default. */
  shuffleSeed?: number;
}

/**
 * A loader for a split ("train" or "val") of `path`:
 * - a folder of `.npy` shards, or of llm.c's `.bin` shards: the files whose name holds the
 *   split, as build-nanogpt's loader picks them (`edufineweb_val_000000.npy`,
 *   `fineweb_val_000000.bin` and `tiny_shakespeare_val.bin` are "val"); for "train", a FineWeb
 *   progress record there that says the run is unfinished gives a warning;
 * - a UTF-8 text file: its GPT-2 tokens, the first 90% for "train" and the last 10% for "val".
 *
 * @throws {Error} for an unknown split, a folder with no shard of that split, a bad shard, a
 * file that is not UTF-8 text (one `.npy` or `.bin` shard: the message names its folder), or a
 * token id outside `options.vocabSize` (the message names the file and the position).
 */
export async function openTokenData(
  path: string,
  split: string,
  B: number,
  T: number,
  rank = 0,
  world = 1,
  options: OpenTokenDataOptions = {},
): Promise<ShardedDataLoader> {
  if (split !== "train" && split !== "val") {
    throw new Error(`Expected split "train" or "val", found "${split}"`);
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new Error(`Expected a shard folder or a text file at ${path}, found nothing`);
  }
  const loaderOptions = {
    processRank: rank,
    numProcesses: world,
    verbose: rank === 0,
    vocabSize: options.vocabSize,
    shuffle: split === "train" && (options.shuffle ?? false),
    shuffleSeed: options.shuffleSeed,
  };
  if (info.isDirectory) {
    const shards = await listShards(path, split);
    if (shards.length === 0) {
      throw new Error(
        `Expected .npy or llm.c .bin shards with "${split}" in their names in ${path}, found none`,
      );
    }
    if (rank === 0) {
      console.log(`found ${shards.length} shards for split ${split}`);
      if (split === "train") await warnIfUnfinished(path);
    }
    return new ShardedDataLoader(shards, B, T, loaderOptions);
  }
  const tokens = await readTokenText(path);
  const n = Math.floor(tokens.length * (1 - TEXT_VAL_FRACTION));
  const part = split === "train" ? tokens.subarray(0, n) : tokens.subarray(n);
  if (rank === 0) {
    console.log(`loaded ${part.length} ${split} tokens of ${tokens.length} from ${path}`);
  }
  const shard: TokenShard = { name: `${path} (${split})`, length: part.length, load: () => part };
  return new ShardedDataLoader([shard], B, T, loaderOptions);
}

/**
 * The tokens of a text data file, read in chunks (a file of gigabytes included) and decoded
 * strictly: one `.npy` shard (its magic, `\x93NUMPY`) or one llm.c `.bin` shard (its magic,
 * 20240520) is an error that points to its folder, and a binary or non-UTF-8 file an error
 * naming it and the offset.
 */
async function readTokenText(path: string): Promise<Int32Array> {
  let head: Uint8Array;
  try {
    using file = await Deno.open(path);
    head = new Uint8Array(1024);
    head = head.subarray(0, (await file.read(head)) ?? 0);
  } catch (error) {
    throw new Error(`Cannot read the text file ${path}: ${(error as Error).message}`);
  }
  const shard = NPY_MAGIC.every((b, i) => head[i] === b)
    ? ".npy shard"
    : hasLlmcShardMagic(head)
    ? "llm.c .bin shard"
    : null;
  if (shard) {
    throw new Error(
      `Expected a shard folder or a text file at ${path}, found one ${shard}: ` +
        `pass its folder, --data ${dirname(path)}`,
    );
  }
  return await tokenizeTextFile(path);
}

/**
 * Warns when `dir` holds a FineWeb progress record (`<prefix>_progress.json`) that says the
 * run is unfinished: its shards are only part of the data (and the last may change).
 */
async function warnIfUnfinished(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith("_progress.json")) continue;
    let record: { complete?: unknown; shards?: unknown };
    try {
      record = JSON.parse(await Deno.readTextFile(join(dir, e.name)));
    } catch {
      continue; // not a record this project wrote: nothing to say
    }
    if (record?.complete !== false) continue;
    console.warn(
      `warning: ${join(dir, e.name)} says its FineWeb run is unfinished (${
        typeof record.shards === "number" ? record.shards : "some"
      } shards written so far): training on part of the data; ` +
        `rerun the same deno task fineweb command to finish it`,
    );
  }
}
