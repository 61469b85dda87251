/**
 * The whole FineWeb run: documents read in order, tokenized in Web Workers several batches at
 * a time, written into shards in reading order, and the progress record updated after each
 * shard, so a stopped run resumes at its first incomplete shard.
 *
 * @module
 */

import { join } from "node:path";
import { ProgressBar, type ProgressWriter } from "../../io/progress.ts";
import { type DocumentBatch, type DocumentInput, readDocuments } from "./documents.ts";
import {
  DocCountWriter,
  inputFraction,
  openProgress,
  progressFileName,
  type ShardProgress,
  writeProgress,
} from "./progress.ts";
import {
  DEFAULT_SHARD_SIZE,
  FINEWEB_PREFIX,
  removeShards,
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
 * @throws {Error} when `outDir` cannot be made, when the progress record belongs to other
 * inputs or another shard size, when an input cannot be read, when the inputs hold no
 * document (nothing is left behind: a folder this call made is removed), or when a tokenizing
 * worker fails.
 */
export async function tokenizeToShards(
  inputs: DocumentInput[],
  options: TokenizeOptions,
): Promise<TokenizeResult> {
  const shardSize = options.shardSize ?? DEFAULT_SHARD_SIZE;
  const prefix = options.prefix ?? FINEWEB_PREFIX;
  const outDir = options.outDir;
  const madeOutDir = await makeFolder(outDir);
  const progressPath = join(outDir, progressFileName(prefix));
  const names = inputs.map((i) => i.name);
  const { state, resumed } = await openProgress(
    progressPath,
    { inputs: names, shardSize, prefix },
    options.restart ?? false,
  );
  // a fresh run: no stale shards may stay, removed once there is a document to replace them
  let stale = !resumed;
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
      if (stale) await removeShards(outDir, prefix);
      stale = false;
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
    if (madeOutDir) await Deno.remove(outDir).catch(() => {});
    throw new Error(
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

/** Makes `dir` (and its parents); true when it did not exist. Errors name the folder. */
async function makeFolder(dir: string): Promise<boolean> {
  let info: Deno.FileInfo | null = null;
  try {
    info = await Deno.stat(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new Error(`Cannot make the shard folder ${dir}: ${(error as Error).message}`);
    }
  }
  if (info?.isDirectory) return false;
  if (info) throw new Error(`Expected a folder for the shards at ${dir}, found a file`);
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (error) {
    throw new Error(`Cannot make the shard folder ${dir}: ${(error as Error).message}`);
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
    this.state = {
      ...this.state,
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
