/**
 * The whole FineWeb run: documents read in order, tokenized in Web Workers several batches at
 * a time, written into shards in reading order, and the progress record updated after each
 * shard, so a stopped run resumes at its first incomplete shard.
 *
 * @module
 */

import { join } from "node:path";
import { sha256File } from "../../io/download.ts";
import { lockFolder } from "../../io/folder_lock.ts";
import { ProgressBar, type ProgressWriter } from "../../io/progress.ts";
import { type DocumentBatch, type DocumentInput, readDocuments } from "./documents.ts";
import {
  checkListedShards,
  DocCountWriter,
  inputFraction,
  listedShards,
  openProgress,
  progressFileName,
  type ShardProgress,
  writeProgress,
} from "./progress.ts";
import {
  DEFAULT_SHARD_SIZE,
  FINEWEB_PREFIX,
  shardFileName,
  type ShardInfo,
  ShardWriter,
  type StreamPosition,
} from "./shards.ts";
import { defaultWorkers, textRuns, type TokenizedBatch, TokenizerPool } from "./tokenizer_pool.ts";

/** Options for {@linkcode tokenizeToShards}. */
export interface TokenizeOptions {
  /** Where the shards go (created if missing). */
  outDir: string;
  /** Tokens per shard; {@linkcode DEFAULT_SHARD_SIZE} by default. */
  shardSize?: number;
  /** File name prefix; {@linkcode FINEWEB_PREFIX} by default. */
  prefix?: string;
  /** Tokenizing workers; one per core by default. */
  workers?: number;
  /** Show a progress bar; true by default. */
  progress?: boolean;
  /** Where the progress bar writes; stderr by default. */
  progressWriter?: ProgressWriter;
  /** Seconds between the bar's plain lines when it is not on a terminal; 5 by default. */
  progressEverySeconds?: number;
  /** Start over even when a progress record exists; false by default. */
  restart?: boolean;
}

/** What {@linkcode tokenizeToShards} did. */
export interface TokenizeResult {
  /** Every shard of the output, in order (those of an earlier run included). */
  shards: string[];
  /** Documents and tokens in all the shards. */
  documents: number;
  tokens: number;
  /** Shards written by this call (fewer than `shards` after a resume). */
  written: number;
  /** Tokens tokenized by this call, and the seconds it took. */
  tokenized: number;
  seconds: number;
  /** True when this call resumed an earlier run. */
  resumed: boolean;
}

/**
 * Tokenizes `inputs` into shards in `options.outDir`, resuming from the progress record
 * there when one exists.
 *
 * The folder is this run's alone: a lock file (`<prefix>.lock`) refuses a second run while
 * this one lives (a dead run's lock is taken over); a folder holding files but no progress
 * record was not written by a run and is refused, its files named; and starting over
 * (`restart`) deletes only the shards the record lists, once there is a document to replace
 * them.
 *
 * @throws {Error} when `outDir` cannot be made, is in use by another run, holds files of no
 * run, when the progress record belongs to other inputs or another shard size, or lists
 * shards that are missing, when an input cannot be read, when the inputs hold no document
 * (nothing is left behind: a folder this call made is removed), or when a tokenizing worker
 * fails.
 */
export async function tokenizeToShards(
  inputs: DocumentInput[],
  options: TokenizeOptions,
): Promise<TokenizeResult> {
  const prefix = options.prefix ?? FINEWEB_PREFIX;
  const outDir = options.outDir;
  const madeOutDir = await makeFolder(outDir);
  const lock = await lockFolder(join(outDir, lockFileName(prefix)), {
    what: `a ${prefix} shard run`,
    flag: "--out",
    folder: outDir,
  });
  try {
    return await tokenizeLocked(inputs, options);
  } catch (error) {
    await lock.release();
    // no document at all: a folder this call made is removed again
    if (error instanceof NoDocumentsError && madeOutDir) await Deno.remove(outDir).catch(() => {});
    throw error;
  } finally {
    await lock.release();
  }
}

/** The inputs held no document: nothing was written. */
class NoDocumentsError extends Error {}

/** The lock file's name for a prefix. */
export function lockFileName(prefix: string): string {
  return `${prefix}.lock`;
}

async function tokenizeLocked(
  inputs: DocumentInput[],
  options: TokenizeOptions,
): Promise<TokenizeResult> {
  const shardSize = options.shardSize ?? DEFAULT_SHARD_SIZE;
  const prefix = options.prefix ?? FINEWEB_PREFIX;
  const outDir = options.outDir;
  const progressPath = join(outDir, progressFileName(prefix));
  const names = inputs.map((i) => i.name);
  const previous = await openProgress(
    progressPath,
    { inputs: names, shardSize, prefix },
    false,
  ).catch((e) => (options.restart ? undefined : Promise.reject(e)));
  const hasRecord = await exists(progressPath);
  if (!hasRecord) await refuseForeignFolder(outDir, prefix);
  const { state, resumed } = options.restart
    ? await openProgress(progressPath, { inputs: names, shardSize, prefix }, true)
    : previous!;
  if (resumed) await checkListedShards(outDir, state, progressPath);
  // starting over: the shards an earlier run listed go, once there is a document to replace
  // them (and the shard it may have been writing when it stopped, one past the list)
  let stale: string[] = [];
  if (options.restart && hasRecord) stale = await staleShards(progressPath, prefix);
  const allShards = (n: number): string[] =>
    Array.from({ length: n }, (_, i) => join(outDir, shardFileName(prefix, i)));
  if (state.complete) {
    return {
      shards: allShards(state.shards),
      documents: state.documents,
      tokens: state.tokens,
      written: 0,
      tokenized: 0,
      seconds: 0,
      resumed: true,
    };
  }

  const start = performance.now();
  const counter = new DocCountWriter(options.progressWriter ?? Deno.stderr);
  const bar = new ProgressBar("tokenizing", {
    unit: "tokens",
    initial: state.tokens,
    writer: counter,
    enabled: options.progress ?? true,
    tty: options.progressWriter ? false : undefined,
    logEverySeconds: options.progressEverySeconds,
  });
  const sizes = inputs.map((i) => i.size);
  const run = new ShardRun(outDir, progressPath, state);
  const pool = new TokenizerPool(options.workers ?? defaultWorkers());
  try {
    await tokenizeInOrder(readDocuments(inputs, state.next, 4096), pool, async (batch, result) => {
      for (const name of stale) await Deno.remove(join(outDir, name)).catch(() => {});
      stale = [];
      await run.push(batch, result);
      counter.documents = run.documents;
      counter.shards = run.state.shards;
      // the total from how far through the inputs this batch ends: tokens so far / fraction
      const fraction = batch.through === undefined
        ? 0
        : inputFraction(sizes, batch.file, batch.through);
      if (fraction > 0) {
        bar.total = run.tokens / fraction;
        counter.estimated = true;
      }
      bar.update(run.tokens);
    });
    await run.finish();
    // done: the total is what there was
    bar.total = run.tokens;
    counter.estimated = false;
    counter.shards = run.state.shards;
    bar.update(run.tokens);
  } finally {
    // a failed batch leaves the others pending: stop the workers so the process can exit
    pool.close();
    bar.done();
  }
  if (run.state.shards === 0) {
    // no document at all: no shard, and no record claiming a complete run of none
    throw new NoDocumentsError(
      `Expected documents in the input${names.length === 1 ? "" : "s"} (${
        describeInputs(names)
      }), found none: nothing was written`,
    );
  }
  const done = await run.complete();
  return {
    shards: allShards(done.shards),
    documents: done.documents,
    tokens: done.tokens,
    written: run.written,
    tokenized: run.tokenized,
    seconds: (performance.now() - start) / 1000,
    resumed,
  };
}

/**
 * The shard files an earlier run's record lists, the one it would have written next (it may
 * have been cut off between writing it and recording it), their `.tmp` files, and the record.
 */
async function staleShards(progressPath: string, prefix: string): Promise<string[]> {
  const text = await Deno.readTextFile(progressPath).catch(() => "");
  let listed: string[] = [];
  try {
    const record = JSON.parse(text) as ShardProgress;
    listed = listedShards({ ...record, prefix });
    listed.push(shardFileName(prefix, listed.length));
  } catch {
    // a record that does not read lists nothing
  }
  const record = progressFileName(prefix);
  return [...listed, ...listed.map((n) => `${n}.tmp`), record, `${record}.tmp`];
}

/**
 * Refuses a folder that holds files but no progress record: no run wrote them, and a run
 * must neither delete nor overwrite them. The lock file, and `.tmp` files of this prefix's
 * own names (a run cut off before its first record), are not counted.
 */
async function refuseForeignFolder(dir: string, prefix: string): Promise<void> {
  const own = new RegExp(
    `^(${escape(prefix)}\\.lock(\\.stale\\.\\d+)?|${
      escape(prefix)
    }_(val|train)_\\d{6}\\.npy\\.tmp|` +
      `${escape(progressFileName(prefix))}\\.tmp)$`,
  );
  const foreign: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!own.test(e.name)) foreign.push(e.isDirectory ? `${e.name}/` : e.name);
  }
  if (foreign.length === 0) return;
  foreign.sort();
  const shown = foreign.slice(0, 5).join(", ");
  const more = foreign.length > 5 ? ` and ${foreign.length - 5} more` : "";
  throw new Error(
    `--out ${dir} holds files no shard run wrote (no ${
      progressFileName(prefix)
    }): ${shown}${more}; ` +
      `nothing there is deleted or overwritten: pass an empty or new --out`,
  );
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Makes `dir` (and its parents); true when it did not exist. Errors name the folder. */
async function makeFolder(dir: string): Promise<boolean> {
  let info: Deno.FileInfo | null = null;
  try {
    info = await Deno.stat(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new Error(`Cannot make the shard folder ${dir} (--out): ${(error as Error).message}`);
    }
  }
  if (info?.isDirectory) return false;
  if (info) throw new Error(`Expected a folder for the shards at ${dir}, found a file`);
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (error) {
    throw new Error(`Cannot make the shard folder ${dir} (--out): ${(error as Error).message}`);
  }
  return true;
}

/** The first inputs' names for a message, and how many more there are. */
function describeInputs(names: string[]): string {
  const shown = names.slice(0, 3).join(", ");
  return names.length > 3 ? `${shown} and ${names.length - 3} more` : shown;
}

/**
 * Tokenizes the reader's batches on the pool, several in flight, and hands each result to
 * `onBatch` in reading order, so the output depends neither on the workers nor on timing.
 */
async function tokenizeInOrder(
  reader: AsyncGenerator<DocumentBatch>,
  pool: TokenizerPool,
  onBatch: (batch: DocumentBatch, result: TokenizedBatch) => Promise<void>,
): Promise<void> {
  const inFlight: { batch: DocumentBatch; result: Promise<TokenizedBatch> }[] = [];
  const maxInFlight = pool.size * 3;
  const drainOne = async (): Promise<void> => {
    const { batch, result } = inFlight.shift()!;
    await onBatch(batch, await result);
  };
  const batches = {
    // an input that fails (a download, a bad file) still lets the batches read before it
    // reach their shards, so a rerun resumes after them
    async *[Symbol.asyncIterator](): AsyncGenerator<DocumentBatch> {
      try {
        yield* reader;
      } catch (error) {
        while (inFlight.length > 0) await drainOne();
        throw error;
      }
    },
  };
  for await (const batch of batches) {
    for (const [from, to] of textRuns(batch.texts)) {
      const texts = batch.texts.slice(from, to);
      const result = pool.tokenize(texts);
      result.catch(() => {}); // a failure is reported where the batch is awaited, in order
      // only the last run of a batch ends where the reader's `through` says
      const through = to === batch.texts.length ? batch.through : undefined;
      inFlight.push({ batch: { file: batch.file, row: batch.row + from, texts, through }, result });
      if (inFlight.length >= maxInFlight) await drainOne();
    }
  }
  while (inFlight.length > 0) await drainOne();
}

/**
 * The shards one call writes: the documents' tokens into a {@linkcode ShardWriter}, the
 * progress record after each shard, and the counts of documents and tokens.
 */
class ShardRun {
  /** The progress record as of the last shard on disk. */
  state: ShardProgress;
  /** Shards written by this call. */
  written = 0;
  /** Tokens tokenized by this call. */
  tokenized = 0;
  readonly #writer: ShardWriter;
  readonly #progressPath: string;
  /** Where the first document of this call starts. */
  readonly #resumeAt: StreamPosition;
  #documents: number;
  #docsInShard = 0;

  constructor(outDir: string, progressPath: string, state: ShardProgress) {
    this.state = state;
    this.#progressPath = progressPath;
    this.#resumeAt = state.next;
    this.#documents = state.documents;
    this.#writer = new ShardWriter(outDir, {
      shardSize: state.shardSize,
      prefix: state.prefix,
      firstShard: state.shards,
      onShard: (info) => this.#onShard(info),
    });
  }

  /** Documents so far, the shard being filled included. */
  get documents(): number {
    return this.#documents + this.#docsInShard;
  }

  /** Tokens so far, the shard being filled included. */
  get tokens(): number {
    return this.state.tokens + this.#writer.tokenCount;
  }

  /** Appends a tokenized batch's documents, writing every shard they complete. */
  async push(batch: DocumentBatch, { tokens, lengths }: TokenizedBatch): Promise<void> {
    const resumeAt = this.#resumeAt;
    let at = 0;
    for (let d = 0; d < lengths.length; d++) {
      const row = batch.row + d;
      let doc = tokens.subarray(at, at + lengths[d]);
      at += lengths[d];
      let offset = 0;
      if (batch.file === resumeAt.file && row === resumeAt.row && resumeAt.offset > 0) {
        // the first document of a resumed run: its head is in the last shard on disk
        offset = resumeAt.offset;
        doc = doc.subarray(offset);
      } else {
        this.#docsInShard++;
      }
      this.tokenized += doc.length;
      await this.#writer.pushDocument(doc, { file: batch.file, row, offset });
    }
  }

  /** Writes the last, shorter shard. */
  async finish(): Promise<void> {
    await this.#writer.finish();
  }

  /** Records the run as complete; returns the final record. */
  async complete(): Promise<ShardProgress> {
    this.state = { ...this.state, complete: true };
    await writeProgress(this.#progressPath, this.state);
    return this.state;
  }

  async #onShard(info: ShardInfo): Promise<void> {
    this.written++;
    const file = {
      name: shardFileName(this.state.prefix, info.index),
      tokens: info.tokens,
      bytes: (await Deno.stat(info.path)).size,
      sha256: await sha256File(info.path),
    };
    this.state = {
      ...this.state,
      // a record from before the list was kept goes on without one (its count says it all)
      files: this.state.files === undefined ? undefined : [...this.state.files, file],
      shards: info.index + 1,
      next: info.next,
      documents: this.#documents + this.#docsInShard,
      tokens: this.state.tokens + info.tokens,
    };
    this.#documents += this.#docsInShard;
    this.#docsInShard = 0;
    await writeProgress(this.#progressPath, this.state);
  }
}
