/**
 * After the lecture: Keller Jordan's modded-nanogpt speedrun on top of the lecture's GPT-2.
 * Its architecture options as config fields (`config.ts`), their ops and host kernels
 * (`ops.ts`, `kernels.ts`), the model that applies them by subclassing the lecture's classes
 * (`model.ts`), and its optimizer, Muon (`muon.ts`). lib/model never imports this folder.
 *
 * @module
 */

export * from "./config.ts";
export * as ops from "./ops.ts";
export * from "./kernels.ts";
export * from "./model.ts";
export * from "./muon.ts";
