/**
 * Weights in and out, for either model (the lecture's GPT-2 of lib/model, the speedrun's of
 * lib/speedrun): the one loader every flag that takes weights goes through (`resolve.ts`),
 * Hugging Face folders that rebuild the architecture their `config.json` records
 * (`folder.ts`), and the verification of a training checkpoint's files (`checkpoint_files.ts`).
 * It sits above lib/model and lib/speedrun and below lib/train.
 *
 * @module
 */

export * from "./checkpoint_files.ts";
export * from "./folder.ts";
export * from "./resolve.ts";
