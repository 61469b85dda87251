/**
 * `DataLoaderLite` from the lecture: B*T windows over one token array that march forward
 * by B*T per process and wrap around at the end; each rank reads its own slice.
 *
 * @module
 */

import { displayPath } from "../io/files.ts";
import { tokenizeTextFile } from "./text_tokens.ts";

/** One batch: inputs and next-token targets, both (B, T) flattened row-major. */
export interface Batch {
  x: Int32Array;
  y: Int32Array;
}

/** Options of `DataLoaderLite`. */
export interface DataLoaderOptions {
  processRank?: number;
  numProcesses?: number;
}

/** Sequential batches of (B, T) from one token array. */
export class DataLoaderLite {
  readonly B: number;
  readonly T: number;
  readonly processRank: number;
  readonly numProcesses: number;
  readonly tokens: Int32Array;
  /** Where the next batch starts. */
  currentPosition: number;

  constructor(tokens: Int32Array, B: number, T: number, options: DataLoaderOptions = {}) {
    this.tokens = tokens;
    this.B = B;
    this.T = T;
    this.processRank = options.processRank ?? 0;
    this.numProcesses = options.numProcesses ?? 1;
    if (tokens.length < B * T * this.numProcesses + 1) {
      throw new Error(
        `Expected at least ${
          B * T * this.numProcesses + 1
        } tokens for B=${B}, T=${T} on ${this.numProcesses} process(es), found ${tokens.length}`,
      );
    }
    // state, starting at this rank's slice
    this.currentPosition = B * T * this.processRank;
  }

  /**
   * Tokens of a text file, encoded with GPT-2's tokenizer.
   *
   * @throws {Error} naming the file when it is not UTF-8 text.
   */
  static async fromTextFile(
    path: string,
    B: number,
    T: number,
    options: DataLoaderOptions = {},
  ): Promise<DataLoaderLite> {
    // in chunks: a file of gigabytes is more text than one string can hold
    const tokens = await tokenizeTextFile(path);
    console.log(`loaded ${tokens.length} tokens from ${displayPath(path)}`);
    console.log(`1 epoch = ${Math.floor(tokens.length / (B * T))} batches`);
    return new DataLoaderLite(tokens, B, T, options);
  }

  /** The next (B, T) inputs and targets; wraps to the start when the data runs out. */
  nextBatch(): Batch {
    const { B, T } = this;
    const buf = this.tokens.subarray(this.currentPosition, this.currentPosition + B * T + 1);
    const x = buf.slice(0, B * T); // inputs
    const y = buf.slice(1, B * T + 1); // targets
    // advance the position in the tensor
    this.currentPosition += B * T * this.numProcesses;
    // if loading the next batch would be out of bounds, reset
    if (this.currentPosition + (B * T * this.numProcesses + 1) > this.tokens.length) {
      this.currentPosition = B * T * this.processRank;
    }
    return { x, y };
  }
}
