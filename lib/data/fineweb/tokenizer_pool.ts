/**
 * Tokenizing in Web Workers (tokenize_worker.ts), as `fineweb.py`'s pool of processes does:
 * a pool that hands batches out round robin, the runs of texts a batch holds, and a
 * throughput benchmark.
 *
 * @module
 */

import type { TokenizeRequest, TokenizeResponse } from "./tokenize_worker.ts";

/** Tokenized documents: their tokens concatenated (each with its EOT first) and lengths. */
export interface TokenizedBatch {
  tokens: Uint16Array;
  lengths: Uint32Array;
}

/** A pool of tokenizing Web Workers; batches are handed out round robin. */
export class TokenizerPool {
  readonly size: number;
  #workers: Worker[];
  #next = 0;
  #id = 0;
  #pending = new Map<
    number,
    { resolve: (b: TokenizedBatch) => void; reject: (e: Error) => void }
  >();

  /** Starts `size` workers. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1 || size > MAX_WORKERS) {
      throw new RangeError(`Expected 1 to ${MAX_WORKERS} tokenizing workers, found ${size}`);
    }
    this.size = size;
    this.#workers = Array.from({ length: size }, () => {
      const worker = new Worker(new URL("./tokenize_worker.ts", import.meta.url).href, {
        type: "module",
      });
      worker.onmessage = (event: MessageEvent<TokenizeResponse>) => {
        const reply = event.data;
        const waiter = this.#pending.get(reply.id);
        if (!waiter) return;
        this.#pending.delete(reply.id);
        if ("error" in reply) waiter.reject(new Error(`Tokenizing failed: ${reply.error}`));
        else waiter.resolve({ tokens: reply.tokens, lengths: reply.lengths });
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        const error = new Error(`A tokenizing worker failed: ${event.message}`);
        for (const waiter of this.#pending.values()) waiter.reject(error);
        this.#pending.clear();
      };
      return worker;
    });
  }

  /** Tokenizes `texts` on the next worker. */
  tokenize(texts: string[]): Promise<TokenizedBatch> {
    const id = this.#id++;
    const worker = this.#workers[this.#next];
    this.#next = (this.#next + 1) % this.size;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const request: TokenizeRequest = { id, texts };
      worker.postMessage(request);
    });
  }

  /** Stops the workers. */
  close(): void {
    for (const worker of this.#workers) worker.terminate();
  }
}

/** The default number of workers: one per core (at most {@linkcode MAX_WORKERS}). */
export function defaultWorkers(): number {
  return Math.min(MAX_WORKERS, Math.max(1, navigator.hardwareConcurrency || 1));
}

/** The most tokenizing workers: each holds a tokenizer (tens of MB) and a thread. */
export const MAX_WORKERS = 256;

/** About 256k characters (~60k tokens) a batch: enough to keep the workers busy between messages. */
const BATCH_CHARS = 1 << 18;

/**
 * Cuts `texts` into runs `[from, to)` of about `maxChars` characters: texts are added while
 * the run holds fewer, so every run has at least one text.
 */
export function* textRuns(
  texts: string[],
  maxChars: number = BATCH_CHARS,
): Generator<[number, number]> {
  let from = 0;
  while (from < texts.length) {
    let to = from, chars = 0;
    while (to < texts.length && (to === from || chars < maxChars)) chars += texts[to++].length;
    yield [from, to];
    from = to;
  }
}

/**
 * Tokenizing throughput: `texts` tokenized `repeat` times through a pool of `workers` (after
 * one warm-up batch each), the way `tokenizeToShards` does it but without files. Returns tokens
 * and seconds.
 */
export async function benchTokenize(
  texts: string[],
  options: { workers: number; repeat: number },
): Promise<{ tokens: number; seconds: number }> {
  const { workers, repeat } = options;
  const pool = new TokenizerPool(workers);
  try {
    await Promise.all(Array.from({ length: workers }, () => pool.tokenize(["warm up"])));
    const start = performance.now();
    const inFlight: Promise<TokenizedBatch>[] = [];
    let tokens = 0;
    for (let r = 0; r < repeat; r++) {
      for (const [from, to] of textRuns(texts)) {
        const result = pool.tokenize(texts.slice(from, to));
        result.catch(() => {}); // reported where it is awaited
        inFlight.push(result);
        if (inFlight.length >= workers * 3) tokens += (await inFlight.shift()!).tokens.length;
      }
    }
    for (const p of inFlight) tokens += (await p).tokens.length;
    return { tokens, seconds: (performance.now() - start) / 1000 };
  } finally {
    pool.close();
  }
}
