/**
 * The model and autograd, the lecture's core: tensors with reverse-mode autograd
 * (`tensor.ts`), the differentiable ops, each a forward kernel and a backward kernel of the
 * backend (`ops.ts`), `Module`/`Linear`/`Embedding`/`LayerNorm` (`nn.ts`), GPT-2 itself
 * with Hugging Face's names (`gpt.ts`), the seeded generator (`random.ts`) and sampling
 * (`sample.ts`).
 *
 * @module
 */

export * from "./tensor.ts";
export * as ops from "./ops.ts";
export * from "./nn.ts";
export * from "./gpt.ts";
export * from "./random.ts";
export * from "./sample.ts";
