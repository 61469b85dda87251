/**
 * `deno task sample`: loads a Hugging Face GPT-2 folder (or `gpt2` from the hub) and
 * continues a prompt with top-k sampling from a seeded generator, as the lecture does, with
 * a KV cache unless `--no-kv-cache`; the last line says the speed in tokens per second.
 *
 * @module
 */

import type { GPTConfig } from "../model/gpt.ts";
import { formatBytes } from "../io/progress.ts";
import { Generator } from "../model/random.ts";
import { generate } from "../model/sample.ts";
import { decodePadded, getGpt2Tokenizer } from "../data/tokenizer.ts";
import {
  BACKEND_HELP,
  loadModelFromFlags,
  numberFlag,
  parseFlags,
  runMain,
  stringFlag,
} from "./flags.ts";

/** The longest --max-length, in block sizes: past one, each token re-reads the last block. */
const MAX_LENGTH_BLOCKS = 16;

const HELP = `deno task sample [flags]

  --weights DIR|NAME|FILE     a Hugging Face GPT-2 folder (model.safetensors + config.json), a
                              trained log/model or checkpoint folder, an llm.c model FILE.bin,
                              or gpt2, gpt2-medium, gpt2-large, gpt2-xl from the hub (default gpt2)
  --prompt TEXT               default "Hello, I'm a language model,"
  --prompt-ids 5,40,8,43      token ids instead of text (for models with their own vocabulary)
  --num-return-sequences N    default 5 (at most what half of this machine's memory holds)
  --max-length N              total tokens per sequence, prompt included (default 30; at most
                              ${MAX_LENGTH_BLOCKS} x the block size: past it the context is cropped)
  --top-k K                   default 50
  --greedy                    argmax instead of sampling
  --seed N                    generator seed (default 42): same seed, same text
  --no-kv-cache               recompute the whole context for every token, as the lecture's
                              loop does (same tokens, slower: for comparison)
  --backend NAME              ${BACKEND_HELP}
  --json                      one JSON object per sequence: {"tokens": [...], "text": "..."}
  -h, --help                  this text`;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    weights: { type: "string" },
    prompt: { type: "string" },
    "prompt-ids": { type: "string" },
    "num-return-sequences": { type: "string" },
    "max-length": { type: "string" },
    "top-k": { type: "string" },
    greedy: { type: "boolean" },
    seed: { type: "string" },
    "no-kv-cache": { type: "boolean" },
    backend: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const log = f.json ? console.error : console.log; // keep stdout pure JSON with --json
  // what can be checked without the model, before a download of it
  const topK = numberFlag(f, "top-k", 50, { integer: true, min: 1 });
  const seed = numberFlag(f, "seed", 42, { integer: true });
  const n = numberFlag(f, "num-return-sequences", 5, { integer: true, min: 1 });
  numberFlag(f, "max-length", 30, { integer: true, min: 1 });
  const { model } = await loadModelFromFlags(f, log);
  const { vocab_size: V, block_size } = model.config;

  const tokenizer = getGpt2Tokenizer();
  let prompt: number[];
  const idsFlag = stringFlag(f, "prompt-ids");
  if (idsFlag !== undefined) {
    if (f.prompt !== undefined) throw new Error("Pass --prompt or --prompt-ids, not both");
    prompt = parsePromptIds(idsFlag, V);
  } else {
    prompt = tokenizer.encode(stringFlag(f, "prompt", "Hello, I'm a language model,"));
    const bad = prompt.find((t) => t >= V);
    if (bad !== undefined) {
      throw new Error(
        `The prompt encodes to token ${bad}, outside this model's vocabulary of ${V}: use --prompt-ids`,
      );
    }
  }
  if (prompt.length === 0) throw new Error("The prompt is empty");
  const maxLength = numberFlag(f, "max-length", 30, { integer: true, min: prompt.length });
  const lengthLimit = MAX_LENGTH_BLOCKS * block_size;
  if (maxLength > lengthLimit) {
    throw new Error(
      `--max-length expects an integer in [${prompt.length}, ${lengthLimit}] (at most ` +
        `${MAX_LENGTH_BLOCKS} x the model's block size ${block_size}), found "${f["max-length"]}"`,
    );
  }
  const kvCache = !f["no-kv-cache"];
  checkSequencesFit(n, f["num-return-sequences"], maxLength, model.config, kvCache);
  if (maxLength > block_size) {
    log(
      `note: --max-length ${maxLength} exceeds the block size; the context is cropped to ${block_size}`,
    );
  }

  const start = performance.now();
  const rows = await generate(model, Array.from({ length: n }, () => prompt), {
    maxLength,
    topK,
    greedy: Boolean(f.greedy),
    generator: new Generator(seed),
    kvCache,
  });
  const seconds = (performance.now() - start) / 1000;
  // Text only where ids are GPT-2 tokens: a model with its own small vocabulary has none.
  const decodable = V >= tokenizer.nVocab;
  for (const tokens of rows) {
    const text = decodable ? decodePadded(tokens) : undefined;
    if (f.json) console.log(JSON.stringify(text === undefined ? { tokens } : { tokens, text }));
    else console.log(`> ${text ?? tokens.join(",")}`);
  }
  log(speedLine(n * (maxLength - prompt.length), seconds, kvCache));
});

/** The closing line: new tokens (all sequences), the time they took and their rate. */
function speedLine(tokens: number, seconds: number, kvCache: boolean): string {
  const rate = seconds > 0 ? (tokens / seconds).toFixed(1) : "-";
  return `generated ${tokens} tokens in ${seconds.toFixed(2)} s: ${rate} tokens/s ` +
    `(KV cache ${kvCache ? "on" : "off, --no-kv-cache"})`;
}

/**
 * `--prompt-ids`: comma-separated token ids of the model's vocabulary of `V`; an empty list or
 * an empty item (`5,40,`) is an error, not token 0.
 */
function parsePromptIds(flag: string, V: number): number[] {
  const expects = `--prompt-ids expects comma-separated integers in [0, ${V})`;
  if (flag.trim() === "") throw new Error(`${expects}, found an empty list`);
  return flag.split(",").map((item, i) => {
    const s = item.trim();
    if (s === "") throw new Error(`${expects}, found an empty item (number ${i + 1}) in "${flag}"`);
    const id = /^\d+$/.test(s) ? Number(s) : NaN;
    if (!(id < V)) throw new Error(`${expects}, found "${item}"`);
    return id;
  });
}

/**
 * Refuses `n` sequences whose forward passes would not fit in half of this machine's memory
 * (each step's logits, their host copy, one layer's activations and, with `kvCache`, every
 * layer's cached keys and values), at once rather than after minutes of allocating.
 */
function checkSequencesFit(
  n: number,
  raw: unknown,
  maxLength: number,
  config: GPTConfig,
  kvCache: boolean,
): void {
  let total: number;
  try {
    total = Deno.systemMemoryInfo().total;
  } catch {
    return; // no --allow-sys: nothing to measure against
  }
  const T = Math.max(Math.min(maxLength - 1, config.block_size), 1); // the longest forward
  const cached = kvCache
    ? 4 * 2 * config.n_layer * Math.min(maxLength, config.block_size) * config.n_embd
    : 0;
  const perSequence = 4 * T * (2 * config.vocab_size + 16 * config.n_embd) +
    4 * config.n_head * T * T + cached;
  const most = Math.max(Math.floor(total / 2 / perSequence), 1);
  if (n <= most) return;
  const need = `${
    formatBytes(perSequence)
  } per step (${T} x ${config.vocab_size} logits and activations)`;
  throw new Error(
    `--num-return-sequences expects an integer in [1, ${most}] for --max-length ${maxLength}, ` +
      `found "${raw}": each sequence needs about ${need}, and half of this machine's ` +
      `${formatBytes(total)} of memory holds ${most}`,
  );
}
