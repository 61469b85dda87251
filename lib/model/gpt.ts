/**
 * GPT-2, written the way the lecture writes it: `GPTConfig`, `CausalSelfAttention`, `MLP`,
 * `Block`, `GPT` with `forward(idx, targets)` and `fromPretrained`. Parameter names are
 * Hugging Face's (`transformer.h.0.attn.c_attn.weight`), so checkpoints map one to one.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { Embedding, LayerNorm, Linear, Module } from "./nn.ts";
import * as ops from "./ops.ts";
import { cachedAttention, type KVCache } from "./kv_cache.ts";
import { Generator } from "./random.ts";
import {
  readSafetensors,
  type SafetensorsFile,
  toFloat32,
  writeSafetensors,
} from "../io/safetensors.ts";
import { forwardScope, isGradEnabled, Tensor } from "./tensor.ts";
import {
  queriesAndKeys,
  readSpeedrunConfig,
  type SpeedrunConfig,
  speedrunConfigFields,
} from "./speedrun.ts";

/** The shape of a GPT-2. */
export interface GPTConfig {
  /** max sequence length */
  block_size: number;
  /** number of tokens: 50,000 BPE merges + 256 bytes tokens + 1 <|endoftext|> token */
  vocab_size: number;
  n_layer: number;
  n_head: number;
  n_embd: number;
}

/**
 * A GPT-2's shape with, after the lecture, the speedrun's options (lib/model/speedrun.ts), all
 * absent (off) in GPT-2. The options travel with the config object wherever a `GPTConfig` goes
 * (copies, checkpoints, `config.json`), so a trained folder reloads with its architecture.
 */
export type ModelConfig = GPTConfig & SpeedrunConfig;

/** The four sizes OpenAI released, plus `tiny` for quick runs on a CPU. */
export const GPT_CONFIGS: Record<string, GPTConfig> = {
  "gpt2": { n_layer: 12, n_head: 12, n_embd: 768, block_size: 1024, vocab_size: 50257 }, // 124M
  "gpt2-medium": { n_layer: 24, n_head: 16, n_embd: 1024, block_size: 1024, vocab_size: 50257 }, // 350M
  "gpt2-large": { n_layer: 36, n_head: 20, n_embd: 1280, block_size: 1024, vocab_size: 50257 }, // 774M
  "gpt2-xl": { n_layer: 48, n_head: 25, n_embd: 1600, block_size: 1024, vocab_size: 50257 }, // 1558M
  "tiny": { n_layer: 4, n_head: 4, n_embd: 128, block_size: 256, vocab_size: 50257 },
};

/** A named config, with an optional vocab override (50304 = 128 * 393, "a nice number"). */
export function gptConfig(name: string, vocabSize?: number): GPTConfig {
  const base = GPT_CONFIGS[name];
  if (!base) {
    throw new Error(
      `Unknown model "${name}", expected one of ${Object.keys(GPT_CONFIGS).join(", ")}`,
    );
  }
  return { ...base, vocab_size: vocabSize ?? base.vocab_size };
}

/** Multi-head causal self-attention: one Linear makes q, k and v for all heads at once. */
export class CausalSelfAttention extends Module {
  c_attn: Linear;
  c_proj: Linear;
  n_head: number;
  n_embd: number;
  config: ModelConfig;
  constructor(backend: Backend, config: ModelConfig) {
    super();
    if (config.n_embd % config.n_head !== 0) {
      throw new Error(`n_embd ${config.n_embd} must be divisible by n_head ${config.n_head}`);
    }
    // key, query, value projections for all heads, but in a batch
    this.c_attn = new Linear(backend, config.n_embd, 3 * config.n_embd);
    // output projection; scaled at init as it feeds the residual stream
    this.c_proj = new Linear(backend, config.n_embd, config.n_embd);
    this.n_head = config.n_head;
    this.n_embd = config.n_embd;
    this.config = config;
  }
  forward(x: Tensor): Tensor {
    let qkv = this.c_attn.forward(x); // (B, T, 3C)
    qkv = queriesAndKeys(qkv, this.config, 0); // the speedrun's QK-norm and rotary, when on
    const y = ops.causalSelfAttention(qkv, this.n_head); // flash-style where the backend can
    return this.c_proj.forward(y);
  }
  /** Generation: the new positions attend to layer `layer`'s cached keys and values too. */
  forwardDecode(x: Tensor, cache: KVCache, layer: number): Tensor {
    let qkv = this.c_attn.forward(x); // (B, T_new, 3C)
    qkv = queriesAndKeys(qkv, this.config, cache.pos);
    const y = cachedAttention(qkv, cache, layer); // appends k, v; then attends over the cache
    return this.c_proj.forward(y);
  }
}

/** The feed-forward network: expand 4x, GELU (tanh), project back. */
export class MLP extends Module {
  c_fc: Linear;
  c_proj: Linear;
  relu2: boolean;
  constructor(backend: Backend, config: ModelConfig) {
    super();
    this.c_fc = new Linear(backend, config.n_embd, 4 * config.n_embd);
    this.c_proj = new Linear(backend, 4 * config.n_embd, config.n_embd);
    this.relu2 = config.mlp === "relu2";
  }
  forward(x: Tensor): Tensor {
    const h = this.c_fc.forward(x);
    return this.c_proj.forward(this.relu2 ? ops.relu2(h) : ops.gelu(h)); // relu2: the speedrun's
  }
}

/** A transformer block: pre-norm attention and MLP, each added to the residual stream. */
export class Block extends Module {
  ln_1: LayerNorm;
  attn: CausalSelfAttention;
  ln_2: LayerNorm;
  mlp: MLP;
  constructor(backend: Backend, config: ModelConfig) {
    super();
    this.ln_1 = new LayerNorm(backend, config.n_embd);
    this.attn = new CausalSelfAttention(backend, config);
    this.ln_2 = new LayerNorm(backend, config.n_embd);
    this.mlp = new MLP(backend, config);
  }
  forward(x: Tensor): Tensor {
    x = ops.add(x, this.attn.forward(this.ln_1.forward(x)));
    x = ops.add(x, this.mlp.forward(this.ln_2.forward(x)));
    return x;
  }
  /** `forward` with the attention of `CausalSelfAttention.forwardDecode`. */
  forwardDecode(x: Tensor, cache: KVCache, layer: number): Tensor {
    x = ops.add(x, this.attn.forwardDecode(this.ln_1.forward(x), cache, layer));
    x = ops.add(x, this.mlp.forward(this.ln_2.forward(x)));
    return x;
  }
}

/** What `forward` returns: logits (B, T, vocab) and the loss when targets were given. */
export interface GPTOutput {
  logits: Tensor;
  loss: Tensor | null;
}

/** Options of the GPT constructor. */
export interface GPTOptions {
  /** Seed of the GPT-2 init (N(0, 0.02), residual projections scaled); default 1337. */
  seed?: number;
  /** Skip the random init (weights are about to be loaded). */
  skipInit?: boolean;
}

/** The four nn.Linear weights per block that OpenAI's checkpoint stores as Conv1D, [in, out]. */
const CONV1D_WEIGHTS = [
  "attn.c_attn.weight",
  "attn.c_proj.weight",
  "mlp.c_fc.weight",
  "mlp.c_proj.weight",
];

/** GPT-2. */
export class GPT extends Module {
  config: ModelConfig;
  /** `wpe` is absent with rotary position embeddings (`config.pos` "rotary"). */
  transformer: { wte: Embedding; wpe?: Embedding; h: Block[]; ln_f: LayerNorm };
  lm_head: Linear;
  backend: Backend;

  constructor(backend: Backend, config: ModelConfig, options: GPTOptions = {}) {
    super();
    this.backend = backend;
    this.config = { ...config };
    const rotary = config.pos === "rotary";
    this.transformer = {
      wte: new Embedding(backend, config.vocab_size, config.n_embd),
      wpe: rotary ? undefined : new Embedding(backend, config.block_size, config.n_embd),
      h: Array.from({ length: config.n_layer }, () => new Block(backend, config)),
      ln_f: new LayerNorm(backend, config.n_embd),
    };
    this.lm_head = new Linear(backend, config.n_embd, config.vocab_size, false);
    // weight sharing scheme: the token embedding is also the classifier
    if (!config.untie_head) this.lm_head.weight = this.transformer.wte.weight;
    if (!options.skipInit) this.initWeights(options.seed ?? 1337);
  }

  /**
   * GPT-2's init: every weight N(0, 0.02), biases zero, and the two projections into the
   * residual stream (`c_proj`) scaled by 1/sqrt(2 * n_layer), since each block adds twice.
   */
  initWeights(seed: number): void {
    const rng = new Generator(seed);
    const residualStd = 0.02 * (2 * this.config.n_layer) ** -0.5;
    for (const [name, p] of this.namedParameters()) {
      if (name.includes(".ln_")) continue; // LayerNorm keeps 1 and 0
      if (name.endsWith(".bias")) {
        this.backend.write(p.buffer, new Float32Array(p.size));
        continue;
      }
      if (name.endsWith("c_proj.weight") && this.config.zero_init_proj) {
        this.backend.write(p.buffer, new Float32Array(p.size)); // the speedrun's zero init
        continue;
      }
      const std = name.endsWith("c_proj.weight") ? residualStd : 0.02;
      this.backend.write(p.buffer, rng.fillNormal(new Float32Array(p.size), 0, std));
    }
  }

  /** Logits for every position, and the mean cross-entropy when targets are given. */
  forward(idx: Tensor, targets: Tensor | null = null): GPTOutput {
    if (idx.shape.length !== 2) {
      throw new Error(`Expected idx of shape [B, T], found [${idx.shape}]`);
    }
    const [, T] = idx.shape;
    if (T > this.config.block_size) {
      throw new Error(
        `Cannot forward sequence of length ${T}, block size is only ${this.config.block_size}`,
      );
    }
    // the activations inside go back to the backend for the next step (tensor.ts says when)
    return forwardScope(() => {
      let x = this.embed(idx, 0);
      for (const block of this.transformer.h) x = block.forward(x);
      x = this.transformer.ln_f.forward(x);
      const logits = this.lm_head.forward(x); // (B, T, vocab_size)
      const loss = targets ? ops.crossEntropy(logits, targets) : null;
      return { logits, loss };
    }, ({ logits, loss }) => [logits, loss]);
  }

  /**
   * Generation's forward, with a KV cache (`kv_cache.ts`): logits (B, T, vocab) of the T new
   * tokens in idx, which sit at positions `cache.pos ..`; their keys and values join the
   * cache. The prompt goes in one call, then each new token in one. Gradients off only
   * (inside `noGrad`): the cached attention has no backward.
   *
   * @throws {Error} with gradients on, and {RangeError} where the cache cannot hold T more
   * positions or was made for another batch size.
   */
  forwardDecode(idx: Tensor, cache: KVCache): Tensor {
    if (isGradEnabled()) {
      throw new Error("forwardDecode has no backward: call it inside noGrad()");
    }
    if (idx.shape.length !== 2) {
      throw new Error(`Expected idx of shape [B, T], found [${idx.shape}]`);
    }
    const [B, T] = idx.shape;
    const { pos } = cache.dims(B, T); // throws before any work if T does not fit
    return forwardScope(() => {
      let x = this.embed(idx, pos);
      this.transformer.h.forEach((block, layer) => x = block.forwardDecode(x, cache, layer));
      cache.advance(T);
      x = this.transformer.ln_f.forward(x);
      return this.lm_head.forward(x); // (B, T, vocab_size)
    }, (logits) => [logits]);
  }

  /**
   * Token plus position embeddings of idx (B, T) at positions pos0 ..; the token embeddings
   * alone with rotary (positions enter in the attention).
   */
  embed(idx: Tensor, pos0: number): Tensor {
    const T = idx.shape[1];
    const tokEmb = this.transformer.wte.forward(idx); // (B, T, n_embd)
    if (!this.transformer.wpe) return tokEmb;
    const positions = Int32Array.from({ length: T }, (_, i) => pos0 + i);
    const posEmb = this.transformer.wpe.forward(Tensor.from(this.backend, positions, [T])); // (T, n_embd)
    return ops.add(tokEmb, posEmb);
  }

  /** Number of parameters, the tied wte/lm_head counted once. */
  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }

  /** The weights by name, copied to the host. */
  async stateDict(): Promise<Map<string, { data: Float32Array; shape: readonly number[] }>> {
    const out = new Map<string, { data: Float32Array; shape: readonly number[] }>();
    for (const [name, p] of this.namedParameters()) {
      out.set(name, { data: (await p.toArray()) as Float32Array, shape: p.shape });
    }
    return out;
  }

  /**
   * A GPT of `config` holding `weights` by our names (`transformer.h.0...`), every name and
   * shape checked (see {@linkcode GPT.loadStateDict}); `source` names them in errors.
   */
  static fromStateDict(
    backend: Backend,
    config: ModelConfig,
    weights: Map<string, Float32Array>,
    source: string,
  ): GPT {
    const model = new GPT(backend, config, { skipInit: true });
    model.loadStateDict(weights, source);
    return model;
  }

  /**
   * Loads weights by our names (`transformer.h.0...`), checking every name and shape.
   * `source` names the file in errors.
   */
  loadStateDict(weights: Map<string, Float32Array>, source = "state dict"): void {
    const params = new Map(this.namedParameters());
    const missing = [...params.keys()].filter((k) => !weights.has(k));
    const unexpected = [...weights.keys()].filter((k) => !params.has(k));
    if (missing.length || unexpected.length) {
      const parts = [];
      if (missing.length) parts.push(`missing ${missing.join(", ")}`);
      if (unexpected.length) parts.push(`unexpected ${unexpected.join(", ")}`);
      throw new Error(`${source}: tensors do not match the model: ${parts.join("; ")}`);
    }
    for (const [name, p] of params) {
      const data = weights.get(name)!;
      if (data.length !== p.size) {
        throw new Error(
          `${source}: tensor "${name}" has ${data.length} values, expected [${p.shape}]`,
        );
      }
      this.backend.write(p.buffer, data);
    }
  }

  /**
   * Loads a Hugging Face GPT-2 folder (`config.json` + `model.safetensors`), or with a
   * network one of "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl" from the hub. Weights
   * holding NaN or infinite values load (an evaluation of them may still be wanted), with a
   * warning line naming the first few such tensors and their count.
   *
   * @throws {Error} for a path that is neither a folder nor a GPT-2 model type, a bad
   * `config.json` (naming the file and the field), and tensors that do not fit the model.
   */
  static async fromPretrained(
    backend: Backend,
    dirOrName: string,
    options: FromPretrainedOptions = {},
  ): Promise<GPT> {
    const dir = await resolvePretrained(dirOrName);
    const config = await readHfConfig(`${dir}/config.json`);
    const file = `${dir}/model.safetensors`;
    return GPT.fromSafetensors(backend, config, await readSafetensors(file), file, options);
  }

  /**
   * `fromPretrained` of a parsed `model.safetensors` and its config, for callers that have
   * the bytes rather than a folder (the web page of `deno task serve`); `file` names the
   * source in errors and warnings.
   *
   * @throws {Error} for tensors that do not fit the model.
   */
  static fromSafetensors(
    backend: Backend,
    config: ModelConfig,
    st: SafetensorsFile,
    file: string,
    options: FromPretrainedOptions = {},
  ): GPT {
    const model = new GPT(backend, config, { skipInit: true });
    const shapes = new Map(model.namedParameters().map(([n, p]) => [n, p.shape]));
    const weights = new Map<string, Float32Array>();
    const nonFinite: NonFiniteTensor[] = [];
    for (const [key, t] of st.tensors) {
      // the causal-mask buffers are not parameters; lm_head is tied to wte
      if (key.endsWith(".attn.bias") || key.endsWith(".attn.masked_bias")) continue;
      if (key === "lm_head.weight" && !config.untie_head) continue;
      const name = key.startsWith("transformer.") || key === "lm_head.weight"
        ? key
        : `transformer.${key}`;
      const expected = shapes.get(name);
      if (!expected) throw new Error(`${file}: unexpected tensor "${key}"`);
      let data = toFloat32(t, key);
      const bad = countNonFinite(data);
      if (bad > 0) nonFinite.push({ name: key, count: bad, size: data.length });
      let shape = t.shape;
      if (CONV1D_WEIGHTS.some((w) => name.endsWith(w))) {
        // Conv1D stores [in, out]; nn.Linear wants [out, in]
        if (shape.length !== 2) {
          throw new Error(`${file}: tensor "${key}" should be 2-D, found [${shape}]`);
        }
        data = transpose(data, shape[0], shape[1]);
        shape = [shape[1], shape[0]];
      }
      if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
        const hint = CONV1D_WEIGHTS.some((w) => name.endsWith(w))
          ? " after the Conv1D transpose"
          : "";
        throw new Error(
          `${file}: tensor "${key}" has shape [${shape}]${hint}, expected [${expected}]`,
        );
      }
      weights.set(name, data);
    }
    model.loadStateDict(weights, file);
    if (nonFinite.length > 0) (options.warn ?? console.warn)(nonFiniteWarning(file, nonFinite));
    return model;
  }
}

/** Options of {@linkcode GPT.fromPretrained}. */
export interface FromPretrainedOptions {
  /** Where the warning about non-finite weights goes; `console.warn` (stderr) by default. */
  warn?: (line: string) => void;
}

/** A tensor holding NaN or infinite values: its name in the file and how many of its values. */
export interface NonFiniteTensor {
  name: string;
  count: number;
  size: number;
}

/** The number of NaN and infinite values in `data`. */
export function countNonFinite(data: Float32Array): number {
  let n = 0;
  // x - x is 0 for a finite x and NaN for NaN and +-Infinity: one test for both
  for (let i = 0; i < data.length; i++) if (data[i] - data[i] !== 0) n++;
  return n;
}

/**
 * The warning line for weights with non-finite values: the first few tensors (with how many of
 * their values) and the count of them all.
 */
export function nonFiniteWarning(source: string, tensors: readonly NonFiniteTensor[]): string {
  const shown = tensors.slice(0, 3).map((t) => `${t.name} (${t.count} of ${t.size})`);
  const more = tensors.length > 3 ? `, and ${tensors.length - 3} more` : "";
  const count = tensors.length === 1 ? "1 tensor holds" : `${tensors.length} tensors hold`;
  return `warning: ${source}: ${count} NaN or infinite values: ${shown.join(", ")}${more}; ` +
    `what this model computes will not mean anything`;
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  }
  return out;
}

/**
 * Reads a Hugging Face GPT2Config `config.json`.
 *
 * @throws {Error} naming the file (and the field) when it cannot be read, is not a JSON
 * object, lacks a positive integer size, or has an `n_embd` that `n_head` does not divide.
 */
export async function readHfConfig(path: string): Promise<ModelConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`Cannot read the model config ${path}: ${(e as Error).message}`);
  }
  return parseHfConfig(raw, path);
}

/**
 * `readHfConfig` of an already parsed `config.json`; `path` names it in errors.
 *
 * @throws {Error} naming `path` (and the field) when `raw` is not a JSON object, lacks a
 * positive integer size, or has an `n_embd` that `n_head` does not divide.
 */
export function parseHfConfig(raw: unknown, path: string): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(
      `${path}: expected a JSON object (GPT2Config), found ${
        raw === null ? "null" : Array.isArray(raw) ? "an array" : typeof raw
      }`,
    );
  }
  const fields = raw as Record<string, unknown>;
  const size = (field: string): number => {
    const v = fields[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(
        `${path}: expected a positive integer for ${field}, found ${
          v === undefined ? "no such field" : JSON.stringify(v)
        }`,
      );
    }
    return v;
  };
  const config: ModelConfig = {
    n_layer: size("n_layer"),
    n_head: size("n_head"),
    n_embd: size("n_embd"),
    // block_size is n_positions, or the older n_ctx
    block_size: size(
      fields.n_positions !== undefined && fields.n_positions !== null ? "n_positions" : "n_ctx",
    ),
    vocab_size: size("vocab_size"),
    ...readSpeedrunConfig(fields, path),
  };
  if (config.n_embd % config.n_head !== 0) {
    throw new Error(
      `${path}: expected n_embd divisible by n_head, found n_embd ${config.n_embd} and ` +
        `n_head ${config.n_head}`,
    );
  }
  return config;
}

/**
 * The folder of `dirOrName`: a local folder as it is, a GPT-2 model type downloaded from the
 * hub; anything else is an error that says which of the two was expected.
 */
async function resolvePretrained(dirOrName: string): Promise<string> {
  let info: Deno.FileInfo | null = null;
  try {
    info = await Deno.stat(dirOrName);
  } catch {
    // not a local path: a hub model name, or a mistyped folder
  }
  if (info?.isDirectory) return dirOrName;
  const hub = await import("../io/hub.ts");
  if (info === null && isGpt2ModelType(hub.gpt2HubRepo, dirOrName)) {
    return await hub.snapshotGpt2(dirOrName);
  }
  throw new Error(
    `Expected a folder holding config.json and model.safetensors, or a GPT-2 model type (${
      Object.keys(hub.GPT2_HUB_REPOS).join(", ")
    }), found ${info === null ? "no folder" : "a file"} at ${dirOrName}`,
  );
}

/** Whether the hub knows `name` as a GPT-2 model type (`gpt2HubRepo` throws for others). */
function isGpt2ModelType(gpt2HubRepo: (name: string) => string, name: string): boolean {
  try {
    gpt2HubRepo(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Saves `model` as a Hugging Face GPT-2 folder laid out like OpenAI's `gpt2` on the hub
 * (keys without `transformer.`, Conv1D weights [in, out], no lm_head), so `fromPretrained`
 * and Hugging Face's transformers both read it. Each file is written atomically.
 */
export async function savePretrained(model: GPT, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors: [string, { data: Float32Array; shape: readonly number[] }][] = [];
  const be = model.backend;
  for (const [name, p] of model.namedParameters()) {
    const key = name.replace(/^transformer\./, "");
    // the parameter's own memory where it is on the host: a 124M model is not copied whole
    const data = (be.hostView?.(p.buffer) ?? await p.toArray()) as Float32Array;
    if (CONV1D_WEIGHTS.some((w) => name.endsWith(w))) {
      const [rows, cols] = p.shape;
      tensors.push([key, { data: transpose(data, rows, cols), shape: [cols, rows] }]);
    } else {
      tensors.push([key, { data, shape: p.shape }]);
    }
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors, { format: "pt" });
  const c = model.config;
  const config = {
    model_type: "gpt2",
    architectures: ["GPT2LMHeadModel"],
    activation_function: "gelu_new",
    n_ctx: c.block_size,
    n_positions: c.block_size,
    n_embd: c.n_embd,
    n_head: c.n_head,
    n_layer: c.n_layer,
    vocab_size: c.vocab_size,
    layer_norm_epsilon: 1e-5,
    ...speedrunConfigFields(c), // only the options that are on: a plain GPT-2 stays standard
  };
  await Deno.writeTextFile(`${dir}/config.json.tmp`, JSON.stringify(config, null, 2) + "\n");
  await Deno.rename(`${dir}/config.json.tmp`, `${dir}/config.json`);
}
