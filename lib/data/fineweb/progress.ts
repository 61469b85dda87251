/**
 * Where a FineWeb run stands: after each shard the run records in `<prefix>_progress.json`
 * the shards it wrote (name, tokens, bytes, SHA-256) and where the next shard starts (input
 * file, row, token within the row), so a stopped run resumes at the first incomplete shard,
 * and a run that starts over deletes only the shards listed there; how far through its inputs it is (for the progress
 * line's estimated total and ETA); and the progress line's document and shard counts.
 *
 * @module
 */

import { join } from "node:path";
import { formatCount, type ProgressWriter } from "../../io/progress.ts";
import { shardFileName, type StreamPosition } from "./shards.ts";

/** A shard the run wrote, as its record lists it. */
export interface ShardFile {
  /** The file name in the output folder. */
  name: string;
  tokens: number;
  /** The file's size in bytes. */
  bytes: number;
  /** The SHA-256 of the file, hex. */
  sha256: string;
}

/** What `<prefix>_progress.json` records after each shard. */
export interface ShardProgress {
  /** The inputs by name, in order: a resumed run must be given the same. */
  inputs: string[];
  shardSize: number;
  prefix: string;
  /** Shards 0 .. shards-1 are on disk. */
  shards: number;
  /**
   * Those shards, in order (a record written before the list was kept has none: its shards
   * are the first `shards` names of the prefix).
   */
  files?: ShardFile[];
  /** Where shard `shards` starts. */
  next: StreamPosition;
  /** Documents and tokens in the shards on disk (a split document counts where it starts). */
  documents: number;
  tokens: number;
  /** True once the last shard is written. */
  complete: boolean;
}

/** The progress record's file name for a prefix. */
export function progressFileName(prefix: string): string {
  return `${prefix}_progress.json`;
}

/** What identifies a run: a progress record of other inputs cannot be resumed. */
export interface RunIdentity {
  inputs: string[];
  shardSize: number;
  prefix: string;
}

/**
 * The record a run starts from: the one at `path` when there is one (and `restart` is
 * false), else a fresh one. `resumed` is true when the record has shards on disk.
 *
 * @throws {Error} when the record belongs to other inputs, another shard size or prefix, or
 * is not JSON.
 */
export async function openProgress(
  path: string,
  run: RunIdentity,
  restart: boolean,
): Promise<{ state: ShardProgress; resumed: boolean }> {
  const { inputs: names, shardSize, prefix } = run;
  const previous = restart ? undefined : await readProgress(path);
  if (previous === undefined) {
    const state: ShardProgress = {
      inputs: names,
      shardSize,
      prefix,
      shards: 0,
      files: [],
      next: { file: 0, row: 0, offset: 0 },
      documents: 0,
      tokens: 0,
      complete: false,
    };
    return { state, resumed: false };
  }
  const same = previous.shardSize === shardSize && previous.prefix === prefix &&
    previous.inputs.length === names.length && previous.inputs.every((n, i) => n === names[i]);
  if (!same) {
    throw new Error(
      `${path} records a run over other inputs or another shard size ` +
        `(${previous.inputs.length} inputs, --shard-size ${previous.shardSize}); ` +
        `expected ${names.length} inputs, --shard-size ${shardSize}: pass --restart or another --out`,
    );
  }
  return { state: previous, resumed: previous.shards > 0 || previous.complete };
}

/** The names of the shards a record lists (from the count, for a record without a list). */
export function listedShards(state: ShardProgress): string[] {
  if (state.files !== undefined) return state.files.map((f) => f.name);
  return Array.from({ length: state.shards }, (_, i) => shardFileName(state.prefix, i));
}

/**
 * Checks that the shards a record lists are in `dir` with the sizes it records, so that a run
 * resumes (or says it is complete) only over the shards it wrote.
 *
 * @throws {Error} naming the record and the first shard missing or of another size.
 */
export async function checkListedShards(
  dir: string,
  state: ShardProgress,
  recordPath: string,
): Promise<void> {
  const sizes = new Map((state.files ?? []).map((f) => [f.name, f.bytes]));
  for (const name of listedShards(state)) {
    let size: number;
    try {
      size = (await Deno.stat(join(dir, name))).size;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new Error(
        `${recordPath} lists ${name}, found no such file: pass --restart to write the shards anew`,
      );
    }
    const want = sizes.get(name);
    if (want !== undefined && size !== want) {
      throw new Error(
        `${recordPath} lists ${name} of ${want} bytes, found ${size}: pass --restart to write ` +
          `the shards anew`,
      );
    }
  }
}

async function readProgress(path: string): Promise<ShardProgress | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as ShardProgress;
  } catch (error) {
    throw new Error(`${path}: expected JSON, ${(error as Error).message}; delete it to restart`);
  }
}

/** Writes the record atomically (a `.tmp` file, then a rename). */
export async function writeProgress(path: string, state: ShardProgress): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(state, null, 2) + "\n");
  await Deno.rename(`${path}.tmp`, path);
}

/**
 * How far through its inputs a run is, 0-1: the inputs before `file` read, and `through` (0-1)
 * of input `file`. Each input weighs its size in bytes (FineWeb's parquet files hold about as
 * many documents per byte); one of unknown size weighs the known ones' mean, and when no size
 * is known they weigh alike.
 */
export function inputFraction(
  sizes: readonly (number | undefined)[],
  file: number,
  through: number,
): number {
  const known = sizes.filter((s): s is number => s !== undefined && s > 0);
  const fallback = known.length > 0 ? known.reduce((a, b) => a + b, 0) / known.length : 1;
  const weights = sizes.map((s) => (s !== undefined && s > 0 ? s : fallback));
  const total = weights.reduce((a, b) => a + b, 0);
  if (total === 0 || file >= weights.length) return 1;
  const before = weights.slice(0, file).reduce((a, b) => a + b, 0);
  return Math.min(1, (before + weights[file] * Math.min(Math.max(through, 0), 1)) / total);
}

/**
 * A progress writer that puts the document and shard counts after the bar's label, so one
 * line shows documents, shards, tokens of the total, tokens/s and the ETA
 * (`tokenizing 1.2k docs, 3 shards, total estimated [####--] 41% 41.0M/100.0M tokens ...`).
 * While `estimated`, the total is the tokens so far over the fraction of the inputs read
 * (the tokens of what is left are not known before it is tokenized).
 */
export class DocCountWriter implements ProgressWriter {
  documents = 0;
  /** Shards on disk. */
  shards = 0;
  /** Whether the bar's total is an estimate. */
  estimated = false;
  readonly #inner: ProgressWriter;
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder();

  /** Writes through to `inner`. */
  constructor(inner: ProgressWriter) {
    this.#inner = inner;
  }

  /** Writes `p` with the count inserted; returns `p.length`, as if all of `p` was written. */
  writeSync(p: Uint8Array): number {
    const shards = `${this.shards} shard${this.shards === 1 ? "" : "s"}`;
    const text = this.#decoder.decode(p).replace(
      "tokenizing",
      `tokenizing ${formatCount(this.documents)} docs, ${shards}${
        this.estimated ? ", total estimated" : ""
      }`,
    );
    const bytes = this.#encoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += this.#inner.writeSync(bytes.subarray(offset));
    return p.length;
  }
}
