/**
 * The CUDA backend's own estimate of the device memory a GPT-2 training step holds at its
 * peak (the end of the forward, when the classifier's backward starts), buffer by buffer as
 * the backend allocates them (pool size classes included), and the check of that estimate
 * against the device's free memory that a run makes before its first step.
 *
 * What is counted, in bytes: the parameters, their gradients and AdamW's two moments (f32),
 * the weights' bf16 copies (bf16); every activation the graph keeps for the backward (f32:
 * per block the two LayerNorms' outputs with their mean and rstd, qkv, attention's output
 * and softmax statistics, the two projections, GELU's input and output, the two residual
 * sums), the bf16 copies of the activations the matmuls read again in the backward (the
 * LayerNorms' outputs, attention's output, GELU's output), the logits (their gradient written
 * over them with `overwriteLogits`, else a second V-wide buffer), the bf16 copy of dlogits
 * and the gradient it makes, and cuBLASLt's workspace.
 *
 * @module
 */

import type { MatmulPrecision } from "../../backend.ts";
import { sizeClass } from "./memory.ts";

/** The model's sizes (GPT-2's config has these fields). */
export interface ModelSizes {
  n_layer: number;
  n_head: number;
  n_embd: number;
  vocab_size: number;
  block_size: number;
}

/** What a training step's estimate depends on. */
export interface TrainingShape {
  config: ModelSizes;
  /** Micro-batch size. */
  B: number;
  /** Sequence length. */
  T: number;
  precision: MatmulPrecision;
  /** Whether dlogits is written over the logits (GPT.forward's overwriteLogits); default true. */
  overwriteLogits?: boolean;
}

/** The estimate, in bytes, by part. */
export interface TrainingMemoryEstimate {
  /** Parameters, gradients, AdamW's moments and the weights' bf16 copies. */
  parameters: number;
  /** The activations the backward reads (and their bf16 copies under bf16). */
  activations: number;
  /** The logits, dlogits' bf16 copy and the gradient the classifier's backward makes. */
  classifier: number;
  /** cuBLASLt's workspace. */
  workspace: number;
  /** The sum: the step's peak. */
  total: number;
}

/** cuBLASLt's workspace (mod.ts holds one of this size). */
export const CUBLASLT_WORKSPACE_BYTES = 32 * 2 ** 20;

/** The device memory a training step of `shape` holds at its peak, by this backend's buffers. */
export function estimateTrainingMemory(shape: TrainingShape): TrainingMemoryEstimate {
  const { config, B, T, precision } = shape;
  const { n_layer: L, n_head: NH, n_embd: C, vocab_size: V, block_size: maxT } = config;
  const bf16 = precision === "bf16";
  const f32 = (n: number) => sizeClass(4 * n), half = (n: number) => sizeClass(2 * n);
  const BT = B * T, BTC = BT * C;

  // parameters: wte (tied to lm_head), wpe, per block 2 LayerNorms and 4 nn.Linear, ln_f
  const matrices = [V * C, ...Array(L).fill([3 * C * C, C * C, 4 * C * C, 4 * C * C]).flat()];
  const vectors = [
    maxT * C,
    ...Array(L).fill([C, C, 3 * C, C, C, C, 4 * C, C]).flat(),
    C,
    C,
  ];
  let parameters = 0;
  for (const n of [...matrices, ...vectors]) parameters += 4 * f32(n); // param, grad, m, v
  if (bf16) { for (const n of matrices) parameters += half(n); }

  // per block, what the graph keeps until the backward
  const layernorm = f32(BTC) + 2 * f32(BT) + (bf16 ? half(BTC) : 0);
  const block = 2 * layernorm + // ln_1, ln_2 (and their bf16 copies)
    f32(3 * BTC) + // qkv
    f32(BTC) + f32(B * NH * T) + (bf16 ? half(BTC) : 0) + // attention's output, its lse
    2 * f32(BTC) + // the two projections' outputs
    f32(4 * BTC) + f32(4 * BTC) + (bf16 ? half(4 * BTC) : 0) + // fc's output, GELU's
    2 * f32(BTC); // the residual sums
  const embeddings = 2 * f32(BTC) + f32(C * T) + 2 * sizeClass(4 * BT); // tok + pos, ids
  const activations = L * block + embeddings + layernorm; // ln_f too

  // the classifier at the start of the backward: logits (and dlogits unless in place),
  // dlogits' bf16 copy, the gradient of ln_f's output
  const inPlace = shape.overwriteLogits ?? true;
  const classifier = (inPlace ? 1 : 2) * f32(BT * V) + (bf16 ? half(BT * V) : 0) + f32(BTC) +
    f32(BT); // the rows' losses
  const workspace = CUBLASLT_WORKSPACE_BYTES;
  const total = parameters + activations + classifier + workspace;
  return { parameters, activations, classifier, workspace, total };
}

/**
 * Throws, naming B, T and the estimate, when a training step of `shape` would not fit in
 * `freeBytes` of device memory (cuMemGetInfo's free memory plus what the backend's pool holds
 * free); returns the estimate when it does.
 *
 * @throws {Error} saying how much the step needs, how much is free, and to lower B.
 */
export function checkTrainingFits(
  shape: TrainingShape,
  freeBytes: number,
  totalBytes: number,
): TrainingMemoryEstimate {
  const estimate = estimateTrainingMemory(shape);
  if (estimate.total <= freeBytes) return estimate;
  const { B, T, precision } = shape;
  // what one row of the batch adds, and what does not grow with B
  const fixed = estimate.parameters + estimate.workspace;
  const rowBytes = estimateTrainingMemory({ ...shape, B: 1 }).total - fixed;
  const fitsB = Math.max(0, Math.floor((freeBytes - fixed) / rowBytes));
  const advice = fitsB >= 1
    ? `lower the micro batch size to --batch-size ${largestPowerOfTwo(fitsB)} or less ` +
      `(gradient accumulation keeps the total batch size)`
    : `even B = 1 does not fit: lower T or use a GPU with more memory`;
  throw new Error(
    `CUDA memory: a training step at B = ${B}, T = ${T} (${precision}) needs about ${
      gib(estimate.total)
    } by the backend's estimate (parameters and optimizer ${gib(estimate.parameters)}, ` +
      `activations ${gib(estimate.activations)}, classifier ${gib(estimate.classifier)}), ` +
      `the GPU has ${gib(freeBytes)} free of ${gib(totalBytes)}: ${advice}`,
  );
}

function largestPowerOfTwo(n: number): number {
  return 2 ** Math.floor(Math.log2(n));
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}
