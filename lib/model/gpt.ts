/**
 * GPT-2, written the way the lecture writes it (build-nanogpt's `train_gpt2.py`, in its order):
 * `CausalSelfAttention`, `MLP`, `Block`, `GPTConfig`, and `GPT` with the GPT-2 init,
 * `forward(idx, targets)` and `configure_optimizers`' parameter groups. Parameter names are
 * Hugging Face's (`transformer.h.0.attn.c_attn.weight`), so checkpoints map one to one; reading
 * and writing them is `pretrained.ts`.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { cachedAttention, type KVCache } from "./kv_cache.ts";
import { Embedding, LayerNorm, Linear, Module } from "./nn.ts";
import * as ops from "./ops.ts";
import { Generator } from "./random.ts";
import { forwardScope, isGradEnabled, Tensor } from "./tensor.ts";

/** Multi-head causal self-attention: one Linear makes q, k and v for all heads at once. */
export class CausalSelfAttention extends Module {
  c_attn: Linear;
  c_proj: Linear;
  n_head: number;
  n_embd: number;
  constructor(backend: Backend, config: GPTConfig) {
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
  }
  forward(x: Tensor): Tensor {
    const qkv = this.c_attn.forward(x); // (B, T, 3C)
    const y = ops.causalSelfAttention(qkv, this.n_head); // flash-style where the backend can
    return this.c_proj.forward(y);
  }
  /** Generation: the new positions attend to layer `layer`'s cached keys and values too. */
  forwardDecode(x: Tensor, cache: KVCache, layer: number): Tensor {
    const qkv = this.c_attn.forward(x); // (B, T_new, 3C)
    const y = cachedAttention(qkv, cache, layer); // appends k, v; then attends over the cache
    return this.c_proj.forward(y);
  }
}

/** The feed-forward network: expand 4x, GELU (tanh), project back. */
export class MLP extends Module {
  c_fc: Linear;
  c_proj: Linear;
  constructor(backend: Backend, config: GPTConfig) {
    super();
    this.c_fc = new Linear(backend, config.n_embd, 4 * config.n_embd);
    this.c_proj = new Linear(backend, 4 * config.n_embd, config.n_embd);
  }
  forward(x: Tensor): Tensor {
    return this.c_proj.forward(ops.gelu(this.c_fc.forward(x)));
  }
}

/** A transformer block: pre-norm attention and MLP, each added to the residual stream. */
export class Block extends Module {
  ln_1: LayerNorm;
  attn: CausalSelfAttention;
  ln_2: LayerNorm;
  mlp: MLP;
  constructor(backend: Backend, config: GPTConfig) {
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

/** What `forward` returns: logits (B, T, vocab) and the loss when targets were given. */
export interface GPTOutput {
  logits: Tensor;
  loss: Tensor | null;
}

/** Options of `GPT.forward`. */
export interface ForwardOptions {
  /**
   * The caller reads the logits no more (a training step wants the loss): the backward may
   * write their gradient over them (llm.c's classifier, one V-wide buffer for both) where the
   * backend can; the returned logits are then undefined after `backward`. Default false.
   */
  overwriteLogits?: boolean;
}

/** Options of the GPT constructor. */
export interface GPTOptions {
  /** Seed of the GPT-2 init (N(0, 0.02), residual projections scaled); default 1337. */
  seed?: number;
  /** Skip the random init (weights are about to be loaded). */
  skipInit?: boolean;
}

/** GPT-2. */
export class GPT extends Module {
  config: GPTConfig;
  /** `wpe` is absent only in a model that puts positions into its attention instead. */
  transformer: { wte: Embedding; wpe?: Embedding; h: Block[]; ln_f: LayerNorm };
  lm_head: Linear;
  backend: Backend;

  constructor(backend: Backend, config: GPTConfig, options: GPTOptions = {}) {
    super();
    this.backend = backend;
    this.config = { ...config };
    this.transformer = {
      wte: new Embedding(backend, config.vocab_size, config.n_embd),
      wpe: new Embedding(backend, config.block_size, config.n_embd),
      h: Array.from({ length: config.n_layer }, () => new Block(backend, config)),
      ln_f: new LayerNorm(backend, config.n_embd),
    };
    this.lm_head = new Linear(backend, config.n_embd, config.vocab_size, false);
    // weight sharing scheme: the token embedding is also the classifier
    this.lm_head.weight = this.transformer.wte.weight;
    if (!options.skipInit) this.initWeights(options.seed ?? 1337);
  }

  /** GPT-2's init, parameter by parameter in `namedParameters()` order, from one generator. */
  initWeights(seed: number): void {
    const rng = new Generator(seed);
    for (const [name, p] of this.namedParameters()) this.initParameter(name, p, rng);
  }

  /**
   * `_init_weights` of one parameter: weights N(0, 0.02), biases zero, LayerNorm left at 1 and
   * 0, and the two projections into the residual stream (`c_proj`) scaled by
   * 1/sqrt(2 * n_layer), since each block adds to it twice.
   */
  initParameter(name: string, p: Tensor, rng: Generator): void {
    const std = this.initStd(name);
    if (std === null) return; // LayerNorm keeps 1 and 0
    if (std === 0) return this.backend.write(p.buffer, new Float32Array(p.size));
    this.backend.write(p.buffer, rng.fillNormal(new Float32Array(p.size), 0, std));
  }

  /** The init's standard deviation of a parameter: 0 for biases, null for LayerNorm's. */
  initStd(name: string): number | null {
    if (name.includes(".ln_")) return null;
    if (name.endsWith(".bias")) return 0;
    return name.endsWith("c_proj.weight") ? 0.02 * (2 * this.config.n_layer) ** -0.5 : 0.02;
  }

  /** Logits for every position, and the mean cross-entropy when targets are given. */
  forward(idx: Tensor, targets: Tensor | null = null, options: ForwardOptions = {}): GPTOutput {
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
      const loss = targets
        ? ops.crossEntropy(logits, targets, { overwriteLogits: options.overwriteLogits })
        : null;
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

  /** Token plus position embeddings of idx (B, T) at positions pos0 ..; tokens alone without wpe. */
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
}

/** A group of parameters sharing a weight decay (one of an optimizer's `param_groups`). */
export interface ParamGroup {
  params: Tensor[];
  weightDecay: number;
}

/**
 * `configure_optimizers`' two groups of `params`: every parameter of 2 or more dimensions
 * (matmul weights, embeddings) decays; biases and LayerNorm parameters do not.
 */
export function decayGroups(params: readonly Tensor[], weightDecay: number): ParamGroup[] {
  return [
    { params: params.filter((p) => p.shape.length >= 2), weightDecay },
    { params: params.filter((p) => p.shape.length < 2), weightDecay: 0 },
  ];
}
