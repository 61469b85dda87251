/**
 * The speedrun's model: the lecture's GPT-2 (lib/model/gpt.ts) with the options of
 * `config.ts` applied by subclassing its classes. The attention normalises and rotates its
 * queries and keys (QK-norm, rotary), the MLP squares its ReLU, the model drops `wpe` where
 * rotary gives the positions, unties its head and may start its residual projections at zero.
 * Parameter names and their order stay the lecture's, so checkpoints read alike.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { Block, CausalSelfAttention, GPT, type GPTOptions, MLP } from "../model/gpt.ts";
import { cachedAttention, type KVCache } from "../model/kv_cache.ts";
import { Linear } from "../model/nn.ts";
import * as ops from "../model/ops.ts";
import type { Generator } from "../model/random.ts";
import type { Tensor } from "../model/tensor.ts";
import { hasSpeedrunOptions, type SpeedrunGPTConfig } from "./config.ts";
import { qkNorm, relu2, rotary } from "./ops.ts";

/**
 * Packed qkv (B, T, 3C) with QK-norm then rotary applied to q and k where `config` has them on
 * (positions from `pos0`); the same tensor otherwise.
 */
export function queriesAndKeys(qkv: Tensor, config: SpeedrunGPTConfig, pos0: number): Tensor {
  if (config.qk_norm) qkv = qkNorm(qkv, config.n_head);
  if (config.pos === "rotary") qkv = rotary(qkv, config.n_head, pos0);
  return qkv;
}

/** The lecture's attention with QK-norm and rotary on its queries and keys. */
export class SpeedrunAttention extends CausalSelfAttention {
  config: SpeedrunGPTConfig;
  constructor(backend: Backend, config: SpeedrunGPTConfig) {
    super(backend, config);
    this.config = config;
  }
  override forward(x: Tensor): Tensor {
    const qkv = queriesAndKeys(this.c_attn.forward(x), this.config, 0); // (B, T, 3C)
    return this.c_proj.forward(ops.causalSelfAttention(qkv, this.n_head));
  }
  override forwardDecode(x: Tensor, cache: KVCache, layer: number): Tensor {
    const qkv = queriesAndKeys(this.c_attn.forward(x), this.config, cache.pos); // (B, T_new, 3C)
    return this.c_proj.forward(cachedAttention(qkv, cache, layer));
  }
}

/** The lecture's MLP with ReLU² in place of GELU where `config.mlp` is "relu2". */
export class SpeedrunMLP extends MLP {
  relu2: boolean;
  constructor(backend: Backend, config: SpeedrunGPTConfig) {
    super(backend, config);
    this.relu2 = config.mlp === "relu2";
  }
  override forward(x: Tensor): Tensor {
    if (!this.relu2) return super.forward(x);
    return this.c_proj.forward(relu2(this.c_fc.forward(x)));
  }
}

/** The lecture's block made of the speedrun's attention and MLP. */
export class SpeedrunBlock extends Block {
  declare attn: SpeedrunAttention;
  declare mlp: SpeedrunMLP;
  constructor(backend: Backend, config: SpeedrunGPTConfig) {
    super(backend, config);
    // the speedrun's attention and MLP take the places of those Block made (the same
    // parameters under the same names; no weight has been set yet)
    this.attn = new SpeedrunAttention(backend, config);
    this.mlp = new SpeedrunMLP(backend, config);
  }
}

/**
 * GPT-2 with the speedrun's options: its blocks, no `wpe` with rotary, a head of its own with
 * `untie_head`, and zero residual projections at init with `zero_init_proj`.
 */
export class SpeedrunGPT extends GPT {
  declare config: SpeedrunGPTConfig;

  constructor(backend: Backend, config: SpeedrunGPTConfig, options: GPTOptions = {}) {
    // the lecture's embeddings, final LayerNorm and head, without blocks: these are the speedrun's
    super(backend, { ...config, n_layer: 0 }, { skipInit: true });
    this.config = { ...config };
    this.transformer.h = Array.from(
      { length: config.n_layer },
      () => new SpeedrunBlock(backend, config),
    );
    if (config.pos === "rotary") delete this.transformer.wpe; // positions enter in the attention
    if (config.untie_head) {
      this.lm_head = new Linear(backend, config.n_embd, config.vocab_size, false);
    }
    if (!options.skipInit) this.initWeights(options.seed ?? 1337);
  }

  /** The lecture's init, but the residual projections start at zero with `zero_init_proj`. */
  override initParameter(name: string, p: Tensor, rng: Generator): void {
    if (this.config.zero_init_proj && name.endsWith("c_proj.weight")) {
      return this.backend.write(p.buffer, new Float32Array(p.size));
    }
    super.initParameter(name, p, rng);
  }
}

/**
 * The model of `config`: a `SpeedrunGPT` where any speedrun option is on, else the lecture's
 * `GPT`, so a config (a checkpoint's, a `config.json`'s) always builds its own architecture.
 */
export function createGPT(
  backend: Backend,
  config: SpeedrunGPTConfig,
  options: GPTOptions = {},
): GPT {
  return hasSpeedrunOptions(config)
    ? new SpeedrunGPT(backend, config, options)
    : new GPT(backend, config, options);
}
