/**
 * FineWeb's shards, as `fineweb.py` writes them: the token stream cut into shards of exactly
 * `shardSize` tokens (the last one holding what is left), shard 0 the validation split and
 * the others training (`edufineweb_val_000000.npy`, `edufineweb_train_000001.npy`, ...,
 * numpy `.npy`, uint16). A document that does not fit in a shard goes on in the next one.
 *
 * @module
 */

import { join } from "node:path";
import { writeNpyUint16 } from "../../io/npy.ts";

/** 100M tokens per shard, total of 100 shards for the 10B sample (`fineweb.py`). */
export const DEFAULT_SHARD_SIZE = 100_000_000;
/** The smallest shard size the tasks take: smaller makes a file per handful of documents. */
export const MIN_SHARD_SIZE = 1000;
/**
 * The largest shard size: the shard being filled is held in memory (2 bytes a token, 2 GB at
 * this size), and a shard is read whole by the loader.
 */
export const MAX_SHARD_SIZE = 1_000_000_000;
/** The file name prefix of `fineweb.py`'s shards. */
export const FINEWEB_PREFIX = "edufineweb";

/** The file name of shard `index`: shard 0 is `val`, the rest `train` (`fineweb.py`). */
export function shardFileName(prefix: string, index: number): string {
  const split = index === 0 ? "val" : "train";
  return `${prefix}_${split}_${String(index).padStart(6, "0")}.npy`;
}

/** Where the token stream stands: a row of an input file, and a token within it. */
export interface StreamPosition {
  file: number;
  row: number;
  /** Tokens of that row (its EOT included) already in earlier shards. */
  offset: number;
}

/** A written shard. */
export interface ShardInfo {
  index: number;
  path: string;
  tokens: number;
  /** Where the next shard starts. */
  next: StreamPosition;
}

/** Options for {@linkcode ShardWriter}. */
export interface ShardWriterOptions {
  /** Tokens per shard; the last shard holds the rest. */
  shardSize: number;
  /** The file name prefix (`edufineweb`). */
  prefix: string;
  /** The index of the first shard this writer writes (a resumed run starts past 0). */
  firstShard?: number;
  /** Called after each shard is on disk. */
  onShard?: (info: ShardInfo) => Promise<void> | void;
}

/**
 * Cuts a stream of documents' tokens into shards of exactly `shardSize` tokens, as
 * `fineweb.py` does: a document that does not fit goes on in the next shard, and
 * {@linkcode ShardWriter.finish} writes what is left as a shorter last shard.
 */
export class ShardWriter {
  readonly outDir: string;
  readonly shardSize: number;
  readonly prefix: string;
  /** The index of the shard being filled. */
  shardIndex: number;
  /** Tokens in the shard being filled. */
  tokenCount = 0;
  readonly #buffer: Uint16Array;
  readonly #onShard?: (info: ShardInfo) => Promise<void> | void;
  #last: StreamPosition = { file: 0, row: 0, offset: 0 };

  /** A writer into `outDir`, which must exist. */
  constructor(outDir: string, options: ShardWriterOptions) {
    const size = options.shardSize;
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_SHARD_SIZE) {
      throw new RangeError(
        `Expected a shard size of 1 to ${MAX_SHARD_SIZE} tokens, found ${options.shardSize}`,
      );
    }
    this.outDir = outDir;
    this.shardSize = options.shardSize;
    this.prefix = options.prefix;
    this.shardIndex = options.firstShard ?? 0;
    // preallocate buffer to hold current shard
    this.#buffer = new Uint16Array(options.shardSize);
    this.#onShard = options.onShard;
  }

  /**
   * Appends one document's tokens (`tokens`, from token `offset` of the row on), writing every
   * shard it completes.
   */
  async pushDocument(tokens: Uint16Array, at: StreamPosition): Promise<void> {
    let used = 0;
    while (used < tokens.length) {
      const n = Math.min(tokens.length - used, this.shardSize - this.tokenCount);
      this.#buffer.set(tokens.subarray(used, used + n), this.tokenCount);
      this.tokenCount += n;
      used += n;
      if (this.tokenCount === this.shardSize) {
        const next = used < tokens.length
          ? { file: at.file, row: at.row, offset: at.offset + used }
          : { file: at.file, row: at.row + 1, offset: 0 };
        await this.#write(this.#buffer, next);
      }
    }
    this.#last = { file: at.file, row: at.row + 1, offset: 0 };
  }

  /** Writes the tokens left over as the last shard (nothing if there are none). */
  async finish(): Promise<void> {
    // write any remaining tokens as the last shard
    if (this.tokenCount !== 0) {
      await this.#write(this.#buffer.subarray(0, this.tokenCount), this.#last);
    }
  }

  async #write(tokens: Uint16Array, next: StreamPosition): Promise<void> {
    const path = join(this.outDir, shardFileName(this.prefix, this.shardIndex));
    await writeNpyUint16(path, tokens);
    const info = { index: this.shardIndex, path, tokens: tokens.length, next };
    this.shardIndex++;
    this.tokenCount = 0;
    await this.#onShard?.(info);
  }
}
