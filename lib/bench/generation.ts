/**
 * Times generation with and without the KV cache (`lib/model/kv_cache.ts`) on one backend:
 * by default 256 new tokens from GPT-2 124M, greedy so that both runs must produce the same
 * tokens (checked, and reported). Speed does not depend on the weights, so without a
 * model it builds GPT-2 124M with GPT-2's init rather than downloading one.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { GPT, gptConfig } from "../model/gpt.ts";
import { generate } from "../model/sample.ts";

/** Options of `benchGeneration`. */
export interface GenerationBenchOptions {
  /** The model to time; default GPT-2 124M (vocab 50257) with GPT-2's init, seed 0. */
  model?: GPT;
  /** New tokens per sequence; default 256. */
  tokens?: number;
  /** Prompt tokens per sequence; default 8 (about "Hello, I'm a language model,"). */
  promptLength?: number;
  /** Sequences generated together; default 1. */
  batch?: number;
  /** Untimed new tokens generated first on each path (kernel builds, pools); default 2. */
  warmupTokens?: number;
  /** Called after each timed token, with which run it is and the sequence's length. */
  onToken?: (kvCache: boolean, length: number) => void;
}

/** One timed run. */
export interface GenerationTiming {
  kvCache: boolean;
  /** New tokens over all sequences. */
  tokens: number;
  seconds: number;
  tokensPerSec: number;
}

/** What `benchGeneration` measured. */
export interface GenerationBench {
  /** The backend's one-line description. */
  backend: string;
  /** The model's config, as JSON. */
  model: string;
  promptLength: number;
  batch: number;
  withCache: GenerationTiming;
  withoutCache: GenerationTiming;
  /** withCache's tokens per second over withoutCache's. */
  speedup: number;
  /** Whether both runs generated the same tokens (they must: greedy, same model). */
  sameTokens: boolean;
}

/**
 * Generates `tokens` new tokens greedily with the KV cache, then without it, and times both.
 *
 * @throws {RangeError} for a prompt or token count that is not a positive integer.
 */
export async function benchGeneration(
  backend: Backend,
  options: GenerationBenchOptions = {},
): Promise<GenerationBench> {
  const tokens = options.tokens ?? 256, promptLength = options.promptLength ?? 8;
  const batch = options.batch ?? 1, warmup = options.warmupTokens ?? 2;
  for (const [name, v] of [["tokens", tokens], ["promptLength", promptLength], ["batch", batch]]) {
    if (!Number.isInteger(v) || (v as number) < 1) {
      throw new RangeError(`benchGeneration: expected a positive integer ${name}, found ${v}`);
    }
  }
  const model = options.model ?? new GPT(backend, gptConfig("gpt2"), { seed: 0 });
  const V = model.config.vocab_size;
  const prompts = Array.from(
    { length: batch },
    (_, b) => Array.from({ length: promptLength }, (_, i) => (b * 7919 + i * 104729 + 13) % V),
  );
  const run = async (kvCache: boolean) => {
    if (warmup > 0) {
      await generate(model, prompts, { maxLength: promptLength + warmup, greedy: true, kvCache });
    }
    const t0 = performance.now();
    const rows = await generate(model, prompts, {
      maxLength: promptLength + tokens,
      greedy: true,
      kvCache,
      onToken: (length) => options.onToken?.(kvCache, length),
    });
    const seconds = (performance.now() - t0) / 1000;
    const timing: GenerationTiming = {
      kvCache,
      tokens: tokens * batch,
      seconds,
      tokensPerSec: tokens * batch / seconds,
    };
    return { rows, timing };
  };
  const cached = await run(true), plain = await run(false);
  return {
    backend: backend.describe(),
    model: JSON.stringify(model.config),
    promptLength,
    batch,
    withCache: cached.timing,
    withoutCache: plain.timing,
    speedup: cached.timing.tokensPerSec / plain.timing.tokensPerSec,
    sameTokens: JSON.stringify(cached.rows) === JSON.stringify(plain.rows),
  };
}

/** The measurement as a small Markdown table, with the setup on the line above it. */
export function generationTable(r: GenerationBench): string {
  const row = (t: GenerationTiming) =>
    `| ${t.kvCache ? "on" : "off"} | ${t.tokens} | ${t.seconds.toFixed(2)} | ${
      t.tokensPerSec.toFixed(1)
    } |`;
  return [
    `generation on ${r.backend}: ${r.model}, prompt ${r.promptLength} tokens, batch ${r.batch}, greedy`,
    "",
    "| KV cache | new tokens | seconds | tokens/s |",
    "| -------- | ---------- | ------- | -------- |",
    row(r.withCache),
    row(r.withoutCache),
    "",
    `speedup ${r.speedup.toFixed(1)}x; same tokens: ${r.sameTokens ? "yes" : "NO"}`,
  ].join("\n");
}
