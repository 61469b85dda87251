/**
 * The data a run trains on: GPT-2's tokenizer, Tiny Shakespeare and HellaSwag found or
 * downloaded (`datasets.ts`), the lecture's `DataLoaderLite`, the sharded loader over
 * build-nanogpt's `.npy` shards, and FineWeb-EDU's tokenization into shards (`fineweb/`).
 *
 * @module
 */

export * from "./tokenizer.ts";
export * from "./datasets.ts";
export * from "./data_loader.ts";
export * from "./shard_loader.ts";
export * from "./fineweb/mod.ts";
