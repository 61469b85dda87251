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
 * Tokenizing runs in Web Workers (`tokenize_worker.ts`); batches are written in the order
 * they were read, so the output does not depend on the number of workers or on timing. After
 * each shard the run records where the next shard starts (input file, row, token within the
 * row) in `<prefix>_progress.json`, so a stopped run resumes at the first incomplete shard.
 *
 * The folder, by job:
 * - `documents.ts`: the inputs and their documents in batches (jsonl, plain text);
 * - `parquet.ts`: the `text` column of parquet files, one row group at a time;
 * - `hub_files.ts`: FineWeb-EDU's parquet files listed and downloaded from the hub;
 * - `tokenizer_pool.ts` and `tokenize_worker.ts`: the tokenizing Web Workers;
 * - `shards.ts`: the shards' names and the writer that cuts the token stream into them;
 * - `progress.ts`: the progress record a stopped run resumes from, and the progress line;
 * - `tokenize.ts`: the whole run, {@linkcode tokenizeToShards}.
 *
 * @module
 */

export { type DocumentBatch, type DocumentInput, localInputs, readDocuments } from "./documents.ts";
export {
  fetchFinewebFiles,
  type FetchFinewebOptions,
  FINEWEB_REPO,
  FINEWEB_SAMPLE_DIR,
  type HubFile,
  listHubDatasetFiles,
} from "./hub_files.ts";
export { progressFileName, type ShardProgress } from "./progress.ts";
export {
  DEFAULT_SHARD_SIZE,
  FINEWEB_PREFIX,
  MAX_SHARD_SIZE,
  MIN_SHARD_SIZE,
  shardFileName,
  type ShardInfo,
  ShardWriter,
  type ShardWriterOptions,
  type StreamPosition,
} from "./shards.ts";
export { type TokenizeOptions, type TokenizeResult, tokenizeToShards } from "./tokenize.ts";
export {
  benchTokenize,
  defaultWorkers,
  MAX_WORKERS,
  type TokenizedBatch,
  TokenizerPool,
} from "./tokenizer_pool.ts";
