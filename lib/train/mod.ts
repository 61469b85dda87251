/**
 * Training: build-nanogpt's loop (`train.ts`, with `setup.ts` and `evaluate.ts`), AdamW,
 * clipping and the schedule (`optim.ts`), the hyperparameter table and the presets,
 * checkpoints that resume exactly and are only written finite (`finite.ts`), one run per log
 * folder (`run_folder.ts`), dynamic loss scaling for f16, and what DDP does to the model
 * between ranks (`ddp_sync.ts`).
 *
 * @module
 */

export * from "./train.ts";
export * from "./optim.ts";
export * from "./hyperparameters.ts";
export * from "./presets.ts";
export * from "./checkpoint.ts";
export * from "./finite.ts";
export * from "./run_folder.ts";
export * from "./grad_scaler.ts";
export * from "./ddp_sync.ts";
export * from "./init_from.ts";
