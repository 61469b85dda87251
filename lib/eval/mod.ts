/**
 * Evaluation beyond the validation loss: HellaSwag, scored as build-nanogpt scores it
 * (the completion with the lowest mean loss over its tokens, acc_norm).
 *
 * @module
 */

export * from "./hellaswag.ts";
