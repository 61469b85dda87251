/**
 * FineWeb-EDU into token shards, as build-nanogpt's `fineweb.py` makes them: every document
 * is `[EOT 50256, ...encode_ordinary(text)]` (tiktoken "gpt2"), the documents' tokens run on
 * as one stream, and the stream is cut into shards of exactly `shardSize` tokens, the last
 * one holding what is left. Shard 0 is the validation split, the others are training:
 * `edufineweb_val_000000.npy`, `edufineweb_train_000001.npy`, ... (numpy `.npy`, uint16).
 * A document that does not fit in a shard goes on in the next one, as in `fineweb.py`.
 *
 * Documents come from parquet files (Hugging Face's layout: a `text` column), jsonl files
 * (a `"text"` field per line) or plain text files (the whole file is one document). With a
 * network, {@linkcode fetchFinewebFiles} lists `HuggingFaceFW/fineweb-edu`'s `sample/10BT`
 * parquet files through the hub's API and downloads them into the cache.
 *
 * Tokenizing runs in Web Workers (`lib/data/tokenize_worker.ts`); batches are written in the order
 * they were read, so the output does not depend on the number of workers or on timing. After
 * each shard the run records where the next shard starts (input file, row, token within the
 * row) in `<prefix>_progress.json`, so a stopped run resumes at the first incomplete shard.
 *
 * Parquet is read with `hyparquet` (pure JavaScript, no native code, reads one row group at a
 * time from a file handle) and `hyparquet-compressors` (zstd, gzip, brotli, lz4 besides its
 * built-in snappy: Hugging Face's exports use snappy, other writers zstd).
 *
 * @module
 */

import { basename, extname, join } from "node:path";
import { type AsyncBuffer, type FileMetaData, parquetMetadataAsync, parquetRead } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { DownloadError, downloadFile } from "../io/download.ts";
import { hubCacheDir, hubEndpoint, hubFileUrl } from "../io/hub.ts";
import { writeNpyUint16 } from "../io/npy.ts";
import { formatCount, ProgressBar, type ProgressWriter } from "../io/progress.ts";
import type { TokenizeRequest, TokenizeResponse } from "./tokenize_worker.ts";

/** The Hugging Face dataset build-nanogpt uses. */
export const FINEWEB_REPO = "HuggingFaceFW/fineweb-edu";
/** The folder of the 10B-token sample (`name="sample-10BT"` in `load_dataset`). */
export const FINEWEB_SAMPLE_DIR = "sample/10BT";
/** 100M tokens per shard, total of 100 shards for the 10B sample (`fineweb.py`). */
export const DEFAULT_SHARD_SIZE = 100_000_000;
/** The file name prefix of `fineweb.py`'s shards. */
export const FINEWEB_PREFIX = "edufineweb";

/** The file name of shard `index`: shard 0 is `val`, the rest `train` (`fineweb.py`). */
export function shardFileName(prefix: string, index: number): string {
  const split = index === 0 ? "val" : "train";
  return `${prefix}_${split}_${String(index).padStart(6, "0")}.npy`;
}

// ---------------------------------------------------------------------------------------------
// Documents

/** One input file of documents. */
export interface DocumentInput {
  /** What identifies the file in the progress record and in errors (a path or hub path). */
  name: string;
  /** The local path, downloading first where needed; called when the file's turn comes. */
  path(): Promise<string>;
}

/** A run of consecutive documents of one input file. */
export interface DocumentBatch {
  /** The input's index. */
  file: number;
  /** The row (document) index of `texts[0]` within that file. */
  row: number;
  texts: string[];
}

/** Local files as inputs (`.parquet`, `.jsonl`, or any other file as one text document). */
export function localInputs(paths: string[]): DocumentInput[] {
  return paths.map((p) => ({ name: p, path: () => Promise.resolve(p) }));
}

/**
 * The documents of `inputs` in order, from input `start.file`, row `start.row` on, in
 * batches of at most `batchDocs` documents that never span two files.
 *
 * @throws {Error} naming the file (and line) for a jsonl line without a string `"text"`, a
 * parquet file without a `text` column, or a file that cannot be parsed.
 */
export async function* readDocuments(
  inputs: DocumentInput[],
  start: { file: number; row: number } = { file: 0, row: 0 },
  batchDocs = 1024,
): AsyncGenerator<DocumentBatch> {
  for (let file = start.file; file < inputs.length; file++) {
    const path = await inputs[file].path();
    const firstRow = file === start.file ? start.row : 0;
    const ext = extname(path).toLowerCase();
    if (ext === ".parquet") {
      yield* readParquet(path, file, firstRow, batchDocs);
    } else if (ext === ".jsonl" || ext === ".json" || ext === ".ndjson") {
      yield* readJsonl(path, file, firstRow, batchDocs);
    } else if (firstRow === 0) {
      yield { file, row: 0, texts: [await Deno.readTextFile(path)] };
    }
  }
}

async function* readJsonl(
  path: string,
  file: number,
  firstRow: number,
  batchDocs: number,
): AsyncGenerator<DocumentBatch> {
  let row = 0, lineNo = 0;
  let batch: DocumentBatch = { file, row: firstRow, texts: [] };
  const handle = await Deno.open(path, { read: true });
  const decoder = new TextDecoder();
  let rest = "";
  const take = (line: string): void => {
    lineNo++;
    if (line.trim() === "") return; // blank lines are not documents
    if (row++ < firstRow) return;
    let text: unknown;
    try {
      text = (JSON.parse(line) as { text?: unknown }).text;
    } catch (error) {
      throw new Error(`${path}:${lineNo}: expected a JSON object, ${(error as Error).message}`);
    }
    if (typeof text !== "string") {
      throw new Error(`${path}:${lineNo}: expected a string "text" field, found ${typeof text}`);
    }
    batch.texts.push(text);
  };
  try {
    for await (const chunk of handle.readable) {
      const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        take(line);
        if (batch.texts.length >= batchDocs) {
          yield batch;
          batch = { file, row: row, texts: [] };
        }
      }
    }
  } finally {
    try {
      handle.close();
    } catch {
      // the readable stream closes the file when it ends
    }
  }
  take(rest + decoder.decode());
  if (batch.texts.length > 0) yield batch;
}

/** A file handle as hyparquet's `AsyncBuffer`: it reads only the byte ranges it asks for. */
async function fileAsyncBuffer(path: string): Promise<AsyncBuffer & { close(): void }> {
  const handle = await Deno.open(path, { read: true });
  const byteLength = (await handle.stat()).size;
  return {
    byteLength,
    async slice(start: number, end = byteLength): Promise<ArrayBuffer> {
      const out = new Uint8Array(end - start);
      await handle.seek(start, Deno.SeekMode.Start);
      let got = 0;
      while (got < out.length) {
        const n = await handle.read(out.subarray(got));
        if (n === null) throw new Error(`${path}: unexpected end of file at byte ${start + got}`);
        got += n;
      }
      return out.buffer;
    },
    close(): void {
      handle.close();
    },
  };
}

async function* readParquet(
  path: string,
  file: number,
  firstRow: number,
  batchDocs: number,
): AsyncGenerator<DocumentBatch> {
  const buffer = await fileAsyncBuffer(path);
  try {
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (error) {
      throw new Error(`${path}: not a readable parquet file (${(error as Error).message})`);
    }
    const columns = metadata.schema.slice(1).map((s) => s.name);
    if (!columns.includes("text")) {
      throw new Error(`${path}: expected a "text" column, found ${columns.join(", ")}`);
    }
    let groupStart = 0;
    for (const group of metadata.row_groups) {
      const groupEnd = groupStart + Number(group.num_rows);
      // skip whole row groups before the resume point without decompressing them
      if (groupEnd > firstRow) {
        const rowStart = Math.max(groupStart, firstRow);
        const texts = await readTextColumn(buffer, metadata, rowStart, groupEnd, path);
        for (let i = 0; i < texts.length; i += batchDocs) {
          yield { file, row: rowStart + i, texts: texts.slice(i, i + batchDocs) };
        }
      }
      groupStart = groupEnd;
    }
  } finally {
    buffer.close();
  }
}

async function readTextColumn(
  file: AsyncBuffer,
  metadata: FileMetaData,
  rowStart: number,
  rowEnd: number,
  path: string,
): Promise<string[]> {
  let rows: unknown[][] = [];
  try {
    await parquetRead({
      file,
      metadata,
      columns: ["text"],
      rowStart,
      rowEnd,
      compressors,
      onComplete: (r: unknown[][]) => {
        rows = r;
      },
    });
  } catch (error) {
    throw new Error(
      `${path}: could not read rows ${rowStart}-${rowEnd} (${(error as Error).message})`,
    );
  }
  return rows.map(([text], i) => {
    if (typeof text !== "string") {
      throw new Error(`${path}: row ${rowStart + i}: expected a string "text", found ${text}`);
    }
    return text;
  });
}

// ---------------------------------------------------------------------------------------------
// Tokenizing workers

/** Tokenized documents: their tokens concatenated (each with its EOT first) and lengths. */
export interface TokenizedBatch {
  tokens: Uint16Array;
  lengths: Uint32Array;
}

/** A pool of tokenizing Web Workers; batches are handed out round robin. */
export class TokenizerPool {
  readonly size: number;
  #workers: Worker[];
  #next = 0;
  #id = 0;
  #pending = new Map<
    number,
    { resolve: (b: TokenizedBatch) => void; reject: (e: Error) => void }
  >();

  /** Starts `size` workers. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`Expected at least 1 tokenizing worker, found ${size}`);
    }
    this.size = size;
    this.#workers = Array.from({ length: size }, () => {
      const worker = new Worker(new URL("./tokenize_worker.ts", import.meta.url).href, {
        type: "module",
      });
      worker.onmessage = (event: MessageEvent<TokenizeResponse>) => {
        const reply = event.data;
        const waiter = this.#pending.get(reply.id);
        if (!waiter) return;
        this.#pending.delete(reply.id);
        if ("error" in reply) waiter.reject(new Error(`Tokenizing failed: ${reply.error}`));
        else waiter.resolve({ tokens: reply.tokens, lengths: reply.lengths });
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        const error = new Error(`A tokenizing worker failed: ${event.message}`);
        for (const waiter of this.#pending.values()) waiter.reject(error);
        this.#pending.clear();
      };
      return worker;
    });
  }

  /** Tokenizes `texts` on the next worker. */
  tokenize(texts: string[]): Promise<TokenizedBatch> {
    const id = this.#id++;
    const worker = this.#workers[this.#next];
    this.#next = (this.#next + 1) % this.size;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const request: TokenizeRequest = { id, texts };
      worker.postMessage(request);
    });
  }

  /** Stops the workers. */
  close(): void {
    for (const worker of this.#workers) worker.terminate();
  }
}

/** The default number of workers: one per core. */
export function defaultWorkers(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

// ---------------------------------------------------------------------------------------------
// Shards

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
    if (!Number.isSafeInteger(options.shardSize) || options.shardSize < 1) {
      throw new RangeError(`Expected a positive shard size, found ${options.shardSize}`);
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

// ---------------------------------------------------------------------------------------------
// The whole run

/** What `<prefix>_progress.json` records after each shard. */
export interface ShardProgress {
  /** The inputs by name, in order: a resumed run must be given the same. */
  inputs: string[];
  shardSize: number;
  prefix: string;
  /** Shards 0 .. shards-1 are on disk. */
  shards: number;
  /** Where shard `shards` starts. */
  next: StreamPosition;
  /** Documents and tokens in the shards on disk (a split document counts where it starts). */
  documents: number;
  tokens: number;
  /** True once the last shard is written. */
  complete: boolean;
}

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

/** The progress record's file name for a prefix. */
export function progressFileName(prefix: string): string {
  return `${prefix}_progress.json`;
}

/**
 * Tokenizes `inputs` into shards in `options.outDir`, resuming from the progress record
 * there when one exists.
 *
 * @throws {Error} when the progress record belongs to other inputs or another shard size,
 * when an input cannot be read, or when a tokenizing worker fails.
 */
export async function tokenizeToShards(
  inputs: DocumentInput[],
  options: TokenizeOptions,
): Promise<TokenizeResult> {
  const shardSize = options.shardSize ?? DEFAULT_SHARD_SIZE;
  const prefix = options.prefix ?? FINEWEB_PREFIX;
  const outDir = options.outDir;
  await Deno.mkdir(outDir, { recursive: true });
  const progressPath = join(outDir, progressFileName(prefix));
  const names = inputs.map((i) => i.name);

  let state: ShardProgress = {
    inputs: names,
    shardSize,
    prefix,
    shards: 0,
    next: { file: 0, row: 0, offset: 0 },
    documents: 0,
    tokens: 0,
    complete: false,
  };
  const previous = options.restart ? undefined : await readProgress(progressPath);
  if (previous !== undefined) {
    const same = previous.shardSize === shardSize && previous.prefix === prefix &&
      previous.inputs.length === names.length && previous.inputs.every((n, i) => n === names[i]);
    if (!same) {
      throw new Error(
        `${progressPath} records a run over other inputs or another shard size ` +
          `(${previous.inputs.length} inputs, --shard-size ${previous.shardSize}); ` +
          `expected ${names.length} inputs, --shard-size ${shardSize}: pass --restart or another --out`,
      );
    }
    state = previous;
  }
  const resumed = previous !== undefined && (previous.shards > 0 || previous.complete);
  if (!resumed) await removeShards(outDir, prefix); // a fresh run: no stale shards may stay
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
  const resumeAt = state.next; // where the first document of this call starts
  const counter = new DocCountWriter(options.progressWriter ?? Deno.stderr);
  const bar = new ProgressBar("tokenizing", {
    unit: "tokens",
    initial: state.tokens,
    writer: counter,
    enabled: options.progress ?? true,
    tty: options.progressWriter ? false : undefined,
  });
  let documents = state.documents, tokenized = 0, written = 0, docsInShard = 0;
  const writer = new ShardWriter(outDir, {
    shardSize,
    prefix,
    firstShard: state.shards,
    onShard: async (info) => {
      written++;
      state = {
        ...state,
        shards: info.index + 1,
        next: info.next,
        documents: documents + docsInShard,
        tokens: state.tokens + info.tokens,
      };
      documents += docsInShard;
      docsInShard = 0;
      await writeProgress(progressPath, state);
    },
  });

  const pool = new TokenizerPool(options.workers ?? defaultWorkers());
  const inFlight: { batch: DocumentBatch; result: Promise<TokenizedBatch> }[] = [];
  const maxInFlight = pool.size * 3;
  const drainOne = async (): Promise<void> => {
    const { batch, result } = inFlight.shift()!;
    const { tokens, lengths } = await result;
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
        docsInShard++;
      }
      tokenized += doc.length;
      await writer.pushDocument(doc, { file: batch.file, row, offset });
    }
    counter.documents = documents + docsInShard;
    bar.update(state.tokens + writer.tokenCount);
  };

  try {
    // a batch of about 256k characters (~60k tokens) keeps the workers busy between messages
    const maxChars = 1 << 18;
    const reader = readDocuments(inputs, state.next, 4096);
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
      let from = 0;
      while (from < batch.texts.length) {
        let to = from, chars = 0;
        while (to < batch.texts.length && (to === from || chars < maxChars)) {
          chars += batch.texts[to++].length;
        }
        const texts = batch.texts.slice(from, to);
        const result = pool.tokenize(texts);
        result.catch(() => {}); // a failure is reported where the batch is awaited, in order
        inFlight.push({ batch: { file: batch.file, row: batch.row + from, texts }, result });
        from = to;
        if (inFlight.length >= maxInFlight) await drainOne();
      }
    }
    while (inFlight.length > 0) await drainOne();
    await writer.finish();
  } finally {
    // a failed batch leaves the others pending: stop the workers so the process can exit
    pool.close();
    bar.done();
  }
  state = { ...state, complete: true };
  await writeProgress(progressPath, state);
  return {
    shards: allShards(state.shards),
    documents: state.documents,
    tokens: state.tokens,
    written,
    tokenized,
    seconds: (performance.now() - start) / 1000,
    resumed,
  };
}

/** Deletes `<prefix>_{val,train}_NNNNNN.npy` files (and their `.tmp`) in `dir`. */
async function removeShards(dir: string, prefix: string): Promise<void> {
  const pattern = new RegExp(`^${prefix}_(val|train)_\\d{6}\\.npy(\\.tmp)?$`);
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && pattern.test(e.name)) await Deno.remove(join(dir, e.name));
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

async function writeProgress(path: string, state: ShardProgress): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(state, null, 2) + "\n");
  await Deno.rename(`${path}.tmp`, path);
}

/**
 * A progress writer that puts the document count after the bar's label, so one line shows
 * documents, tokens and tokens/s (`tokenizing 1.2k docs [####--] 41% 41.0M tokens ...`).
 */
class DocCountWriter implements ProgressWriter {
  documents = 0;
  readonly #inner: ProgressWriter;
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder();

  constructor(inner: ProgressWriter) {
    this.#inner = inner;
  }

  writeSync(p: Uint8Array): number {
    const text = this.#decoder.decode(p).replace(
      "tokenizing",
      `tokenizing ${formatCount(this.documents)} docs`,
    );
    const bytes = this.#encoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += this.#inner.writeSync(bytes.subarray(offset));
    return p.length;
  }
}

// ---------------------------------------------------------------------------------------------
// The hub

/** A file in a hub dataset, as the tree API lists it. */
export interface HubFile {
  path: string;
  size: number;
}

/**
 * The files under `dir` of the hub dataset `repo` at `revision`, from the hub's tree API
 * (`/api/datasets/{repo}/tree/{revision}/{dir}`), following its pagination; sorted by path.
 *
 * @throws {Error} when the hub cannot be reached or answers with an error.
 */
export async function listHubDatasetFiles(
  repo: string,
  dir: string,
  revision = "main",
): Promise<HubFile[]> {
  let url: string | undefined = `${hubEndpoint()}/api/datasets/${repo}/tree/${
    encodeURIComponent(revision)
  }/${dir}`;
  const files: HubFile[] = [];
  while (url !== undefined) {
    let response: Response;
    try {
      response = await fetch(url);
    } catch (error) {
      throw new Error(
        `Could not reach the Hugging Face hub at ${hubEndpoint()} to list ${repo}/${dir} ` +
          `(${(error as Error).message}); pass --input FILES to use local parquet or jsonl files`,
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(
        `The Hugging Face hub answered HTTP ${response.status} for ${url}; ` +
          `pass --input FILES to use local parquet or jsonl files`,
      );
    }
    const entries = await response.json() as { type: string; path: string; size?: number }[];
    for (const e of entries) {
      if (e.type === "file") files.push({ path: e.path, size: e.size ?? 0 });
    }
    url = response.headers.get("link")?.match(/<([^>]+)>;\s*rel="next"/)?.[1];
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Options for {@linkcode fetchFinewebFiles}. */
export interface FetchFinewebOptions {
  /** The hub dataset; {@linkcode FINEWEB_REPO} by default. */
  repo?: string;
  /** Its folder; {@linkcode FINEWEB_SAMPLE_DIR} by default. */
  dir?: string;
  /** Only the first `limit` files (for a quick try); all by default. */
  limit?: number;
  /** Show download progress; true by default. */
  progress?: boolean;
}

/**
 * The parquet files of FineWeb-EDU's `sample/10BT` as inputs: listed through the hub's API
 * now, each downloaded into `<cache>/datasets/<repo>/` (resuming, with a progress bar) when
 * its turn comes, and taken from there without a request once it is complete.
 */
export async function fetchFinewebFiles(
  options: FetchFinewebOptions = {},
): Promise<DocumentInput[]> {
  const repo = options.repo ?? FINEWEB_REPO;
  const dir = options.dir ?? FINEWEB_SAMPLE_DIR;
  let files = (await listHubDatasetFiles(repo, dir)).filter((f) => f.path.endsWith(".parquet"));
  if (files.length === 0) {
    throw new Error(`Expected parquet files in ${repo}/${dir} on the hub, found none`);
  }
  if (options.limit !== undefined) files = files.slice(0, options.limit);
  const cache = join(hubCacheDir(), "datasets", repo);
  return files.map((f) => ({
    name: `${repo}/${f.path}`,
    async path(): Promise<string> {
      const dest = join(cache, f.path);
      const url = hubFileUrl(`datasets/${repo}`, f.path);
      try {
        await downloadFile(url, dest, { progress: options.progress, label: basename(f.path) });
      } catch (error) {
        if (!(error instanceof DownloadError)) throw error;
        throw new Error(
          `Could not download ${url} (${error.message}); pass --input FILES to use local files`,
          { cause: error },
        );
      }
      return dest;
    },
  }));
}

/**
 * Tokenizing throughput: `texts` tokenized `repeat` times through a pool of `workers` (after
 * one warm-up batch each), the way {@linkcode tokenizeToShards} does it but without files. Returns tokens and seconds.
 */
export async function benchTokenize(
  texts: string[],
  options: { workers: number; repeat: number },
): Promise<{ tokens: number; seconds: number }> {
  const { workers, repeat } = options;
  const pool = new TokenizerPool(workers);
  try {
    await Promise.all(Array.from({ length: workers }, () => pool.tokenize(["warm up"])));
    const start = performance.now();
    const inFlight: Promise<TokenizedBatch>[] = [];
    let tokens = 0;
    const maxChars = 1 << 18;
    for (let r = 0; r < repeat; r++) {
      let from = 0;
      while (from < texts.length) {
        let to = from, chars = 0;
        while (to < texts.length && (to === from || chars < maxChars)) chars += texts[to++].length;
        const result = pool.tokenize(texts.slice(from, to));
        result.catch(() => {}); // reported where it is awaited
        inFlight.push(result);
        from = to;
        if (inFlight.length >= workers * 3) tokens += (await inFlight.shift()!).tokens.length;
      }
    }
    for (const p of inFlight) tokens += (await p).tokens.length;
    return { tokens, seconds: (performance.now() - start) / 1000 };
  } finally {
    pool.close();
  }
}
