/**
 * Files and downloads, the bottom layer: safetensors, numpy `.npy` files and llm.c's `.bin`
 * model and token files, text decoded strictly, output folders checked, resumable downloads with
 * progress bars, the Hugging Face hub, the project's cache folder.
 *
 * @module
 */

export * from "./safetensors.ts";
export * from "./npy.ts";
export * from "./llmc.ts";
export * from "./download.ts";
export * from "./hub.ts";
export * from "./cache.ts";
export * from "./progress.ts";
export * from "./files.ts";
