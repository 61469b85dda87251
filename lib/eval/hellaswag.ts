/**
 * HellaSwag, scored the way build-nanogpt's `hellaswag.py` scores it ("completion style"):
 * each example is a context and four endings; each ending is appended to the context
 * (`encode(ctx)` then `encode(" " + ending)`), the four rows are right-padded with token 0,
 * and the model's cross-entropy is taken over the ending's tokens only. `acc` picks the ending
 * with the lowest summed loss, `acc_norm` the one with the lowest average loss per token (which
 * does not favour short endings).
 *
 * Several examples go through one forward pass (their rows padded to the longest); padding on
 * the right never changes the losses before it, since attention is causal. Under DDP, example
 * i is scored on rank i % world and the counts are summed, as in build-nanogpt's training loop.
 *
 * @module
 */

import { join } from "node:path";
import { type DatasetFile, type ResolveDataOptions, resolveDataset } from "../data/datasets.ts";
import type { GPT } from "../model/gpt.ts";
import { noGrad, Tensor } from "../model/tensor.ts";
import { getGpt2Tokenizer } from "../data/tokenizer.ts";
import { readTextFileStrict } from "../io/files.ts";

/** Where build-nanogpt downloads HellaSwag's validation set from (rowanz/hellaswag). */
export const HELLASWAG_VAL_URL =
  "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl";

/** One HellaSwag example: a context, four endings, and the index of the right one. */
export interface HellaswagExample {
  /** The example's id in the dataset, when the file has one. */
  ind?: number;
  ctx: string;
  endings: string[];
  label: number;
}

/** An example as token rows: 4 rows of `width` tokens, row-major, and the ending mask. */
export interface RenderedExample {
  /** (4, width) token ids, each row context + ending, right-padded with 0. */
  tokens: Int32Array;
  /** (4, width): 1 on the ending's tokens, 0 on the context and the padding. */
  mask: Uint8Array;
  width: number;
  label: number;
  ctxTokens: number[];
  endingTokens: number[][];
}

/** The losses of one example's four endings and the predictions they give. */
export interface ExampleScore {
  /** Summed cross-entropy over each ending's tokens. */
  sumLoss: number[];
  /** The same divided by the ending's token count. */
  avgLoss: number[];
  /** argmin of `sumLoss` (for acc). */
  pred: number;
  /** argmin of `avgLoss` (for acc_norm). */
  predNorm: number;
  label: number;
}

/** Counts that ranks sum. */
export interface HellaswagCounts {
  total: number;
  correct: number;
  correctNorm: number;
}

/** Counts with the two accuracies. */
export interface HellaswagResult extends HellaswagCounts {
  acc: number;
  accNorm: number;
}

/** Options for {@linkcode resolveHellaswag}. */
export type ResolveHellaswagOptions = ResolveDataOptions;

/** HellaSwag's validation set, `hellaswag/hellaswag_val.jsonl`. */
export const HELLASWAG_VAL: DatasetFile = {
  name: "HellaSwag",
  kind: "jsonl file",
  relative: join("hellaswag", "hellaswag_val.jsonl"),
  url: HELLASWAG_VAL_URL,
};

/** {@linkcode resolveDataset} for HellaSwag's validation set. */
export function resolveHellaswag(
  path?: string,
  options: ResolveHellaswagOptions = {},
): Promise<string> {
  return resolveDataset(HELLASWAG_VAL, path, options);
}

/**
 * The examples of a HellaSwag jsonl file (`ctx`, `endings`, `label` per line), the first
 * `limit` of them when given.
 *
 * @throws {Error} naming the file and line for a line that is not such an example, and naming
 * the file when it holds no example (an accuracy of 0/0 measures nothing) or is not UTF-8.
 */
export async function loadHellaswag(path: string, limit?: number): Promise<HellaswagExample[]> {
  const lines = (await readTextFileStrict(path)).split("\n");
  const examples: HellaswagExample[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (limit !== undefined && examples.length >= limit) break;
    if (lines[i].trim() === "") continue;
    let raw: Partial<HellaswagExample>;
    try {
      raw = JSON.parse(lines[i]);
    } catch (error) {
      throw new Error(`${path}:${i + 1}: expected a JSON object, ${(error as Error).message}`);
    }
    const { ctx, endings, label } = raw;
    if (
      typeof ctx !== "string" || !Array.isArray(endings) || endings.length !== 4 ||
      !endings.every((e) => typeof e === "string") || !Number.isInteger(label) ||
      label! < 0 || label! > 3
    ) {
      throw new Error(
        `${path}:${i + 1}: expected "ctx" (a string), 4 "endings" and a "label" in 0-3`,
      );
    }
    examples.push({ ind: raw.ind, ctx, endings, label: label! });
  }
  if (examples.length === 0) {
    throw new Error(`Expected HellaSwag examples (one JSON object a line) in ${path}, found none`);
  }
  return examples;
}

/**
 * Renders an example as build-nanogpt's `render_example` does: rows `encode(ctx) +
 * encode(" " + ending)` ("note: prepending " " because GPT-2 tokenizer"), right-padded with
 * 0 to the longest, and a mask that is 1 on the ending's tokens.
 */
export function renderExample(example: HellaswagExample): RenderedExample {
  const enc = getGpt2Tokenizer();
  const ctxTokens = enc.encode(example.ctx);
  const endingTokens = example.endings.map((e) => enc.encode(" " + e));
  const width = Math.max(...endingTokens.map((e) => ctxTokens.length + e.length));
  const tokens = new Int32Array(4 * width);
  const mask = new Uint8Array(4 * width);
  endingTokens.forEach((end, r) => {
    tokens.set(ctxTokens, r * width);
    tokens.set(end, r * width + ctxTokens.length);
    mask.fill(1, r * width + ctxTokens.length, r * width + ctxTokens.length + end.length);
  });
  return { tokens, mask, width, label: example.label, ctxTokens, endingTokens };
}

/**
 * Scores one rendered example from the logits of its 4 rows: `logits` is (rows, T, V) with
 * the example's rows starting at row `row0`, T >= width. The loss at position t predicts token
 * t + 1, so the mask is shifted by one ("we must shift mask, so we start at the last prompt
 * token"); sums are taken in float64.
 */
export function scoreExample(
  ex: RenderedExample,
  logits: Float32Array,
  row0: number,
  T: number,
  V: number,
): ExampleScore {
  const sumLoss: number[] = [], avgLoss: number[] = [];
  for (let r = 0; r < 4; r++) {
    let sum = 0, count = 0;
    for (let t = 0; t + 1 < ex.width; t++) {
      if (ex.mask[r * ex.width + t + 1] === 0) continue;
      const target = ex.tokens[r * ex.width + t + 1];
      const base = ((row0 + r) * T + t) * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) if (logits[base + v] > max) max = logits[base + v];
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[base + v] - max);
      sum += Math.log(z) + max - logits[base + target]; // cross-entropy = logsumexp - logit
      count++;
    }
    sumLoss.push(sum);
    avgLoss.push(sum / count);
  }
  return { sumLoss, avgLoss, pred: argmin(sumLoss), predNorm: argmin(avgLoss), label: ex.label };
}

function argmin(xs: number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] < xs[best]) best = i;
  return best;
}

/** The indices of the examples rank `rank` of `world` scores: i with i % world === rank. */
export function examplesForRank(n: number, rank: number, world: number): number[] {
  if (
    !Number.isInteger(world) || world < 1 || !Number.isInteger(rank) || rank < 0 || rank >= world
  ) {
    throw new RangeError(`Expected a rank in [0, ${world}), found ${rank}`);
  }
  const out: number[] = [];
  for (let i = rank; i < n; i += world) out.push(i);
  return out;
}

/** Sums the counts of every rank and gives the accuracies. */
export function sumCounts(parts: HellaswagCounts[]): HellaswagResult {
  const total = parts.reduce((a, p) => a + p.total, 0);
  const correct = parts.reduce((a, p) => a + p.correct, 0);
  const correctNorm = parts.reduce((a, p) => a + p.correctNorm, 0);
  return {
    total,
    correct,
    correctNorm,
    acc: total === 0 ? 0 : correct / total,
    accNorm: total === 0 ? 0 : correctNorm / total,
  };
}

/** Options for {@linkcode evaluateHellaswag}. */
export interface EvaluateHellaswagOptions {
  /** This process's rank and the number of processes; 0 and 1 by default. */
  rank?: number;
  world?: number;
  /** Score only the first `limit` examples (before splitting across ranks). */
  limit?: number;
  /**
   * Most logits one forward pass may produce (rows x T x vocab floats); examples are batched
   * up to it. 2^26 (256 MiB) by default.
   */
  maxLogits?: number;
  /** Called after each batch with the examples done on this rank and the counts so far. */
  onProgress?: (done: number, of: number, counts: HellaswagCounts) => void;
}

/** What {@linkcode evaluateHellaswag} returns for this rank. */
export interface HellaswagEvaluation {
  /** This rank's counts: sum them over ranks with {@linkcode sumCounts}. */
  counts: HellaswagCounts;
  /** This rank's per-example scores, with the example's index in `examples`. */
  scores: (ExampleScore & { index: number })[];
}

/**
 * Scores this rank's share of `examples` with `model` (no gradients), batching examples into
 * one forward pass as far as `maxLogits` allows.
 *
 * @throws {Error} when an example is longer than the model's block size.
 */
export async function evaluateHellaswag(
  model: GPT,
  examples: HellaswagExample[],
  options: EvaluateHellaswagOptions = {},
): Promise<HellaswagEvaluation> {
  const n = Math.min(examples.length, options.limit ?? Infinity);
  const mine = examplesForRank(n, options.rank ?? 0, options.world ?? 1);
  const V = model.config.vocab_size;
  const maxLogits = options.maxLogits ?? 2 ** 26;
  const counts: HellaswagCounts = { total: 0, correct: 0, correctNorm: 0 };
  const scores: (ExampleScore & { index: number })[] = [];
  // Render every example first and batch them by length: rows padded to a similar width
  // waste little compute. Each example's score does not depend on its batch.
  const rendered = mine.map((index) => {
    const ex = renderExample(examples[index]);
    if (ex.width > model.config.block_size) {
      throw new Error(
        `HellaSwag example ${examples[index].ind ?? index} has ${ex.width} tokens, ` +
          `more than the model's block size ${model.config.block_size}`,
      );
    }
    return { index, ex };
  }).sort((a, b) => a.ex.width - b.ex.width || a.index - b.index);
  let next = 0;
  while (next < rendered.length) {
    // gather examples while the padded batch's logits fit the budget
    const batch: { index: number; ex: RenderedExample }[] = [];
    let T = 0;
    while (next < rendered.length) {
      const width = Math.max(T, rendered[next].ex.width);
      if (batch.length > 0 && 4 * (batch.length + 1) * width * V > maxLogits) break;
      batch.push(rendered[next++]);
      T = width;
    }
    const rows = 4 * batch.length;
    const idx = new Int32Array(rows * T); // right-padded with 0
    batch.forEach(({ ex }, b) => {
      for (let r = 0; r < 4; r++) {
        idx.set(ex.tokens.subarray(r * ex.width, (r + 1) * ex.width), (4 * b + r) * T);
      }
    });
    const logits = await noGrad(async () => {
      const out = model.forward(Tensor.from(model.backend, idx, [rows, T]));
      return (await out.logits.toArray()) as Float32Array;
    });
    batch.forEach(({ index, ex }, b) => {
      const score = scoreExample(ex, logits, 4 * b, T, V);
      scores.push({ ...score, index });
      counts.total++;
      if (score.pred === score.label) counts.correct++;
      if (score.predNorm === score.label) counts.correctNorm++;
    });
    options.onProgress?.(next, mine.length, counts);
  }
  scores.sort((a, b) => a.index - b.index);
  return { counts, scores };
}
