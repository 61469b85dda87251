/**
 * After the lecture: the architecture options of Keller Jordan's modded-nanogpt speedrun, as
 * fields of `GPTConfig` (all absent in GPT-2): ReLU² in the MLP, QK-norm, rotary position
 * embeddings, zero-initialised residual projections and an untied head. This module says how
 * the attention applies them and how `config.json` records them; the ops are in `ops.ts`.
 *
 * @module
 */

import * as ops from "./ops.ts";
import type { Tensor } from "./tensor.ts";

/** The MLP's activation: GPT-2's tanh GELU, or the speedrun's ReLU². */
export type MlpActivation = "gelu" | "relu2";
/** The MLP activations by name. */
export const MLP_ACTIVATIONS: readonly MlpActivation[] = ["gelu", "relu2"];

/** Position information: GPT-2's learned `wpe`, or rotary embeddings of queries and keys. */
export type PositionEncoding = "learned" | "rotary";
/** The position encodings by name. */
export const POSITION_ENCODINGS: readonly PositionEncoding[] = ["learned", "rotary"];

/** The speedrun's fields of a GPT config (a subset of `GPTConfig`). */
export interface SpeedrunConfig {
  /** The MLP's activation; absent: GELU. */
  mlp?: MlpActivation;
  /** RMS-normalise each head's queries and keys (no learned scale). */
  qk_norm?: boolean;
  /** Position information; absent: the learned `wpe`. */
  pos?: PositionEncoding;
  /** The projections that write into the residual stream (`c_proj`) start at zero. */
  zero_init_proj?: boolean;
  /** A separate `lm_head` weight instead of the one tied to `wte`. */
  untie_head?: boolean;
}

/** What the attention needs of the config: heads, and the options. */
interface AttentionConfig extends SpeedrunConfig {
  n_head: number;
}

/**
 * Packed qkv (B, T, 3C) with the speedrun's QK-norm then rotary applied to q and k where the
 * config has them on (positions from `pos0`); unchanged, the same tensor, otherwise.
 */
export function queriesAndKeys(qkv: Tensor, config: AttentionConfig, pos0: number): Tensor {
  if (config.qk_norm) qkv = ops.qkNorm(qkv, config.n_head);
  if (config.pos === "rotary") qkv = ops.rotary(qkv, config.n_head, pos0);
  return qkv;
}

/** The options that are on, as `config.json` records them (nothing for GPT-2). */
export function speedrunConfigFields(c: SpeedrunConfig): SpeedrunConfig {
  const out: SpeedrunConfig = {};
  if (c.mlp && c.mlp !== "gelu") out.mlp = c.mlp;
  if (c.qk_norm) out.qk_norm = true;
  if (c.pos && c.pos !== "learned") out.pos = c.pos;
  if (c.zero_init_proj) out.zero_init_proj = true;
  if (c.untie_head) out.untie_head = true;
  return out;
}

/**
 * The options a `config.json` (at `path`, for errors) records; absent fields are off.
 *
 * @throws {Error} for a field of the wrong kind, naming the file, the field and what was found.
 */
export function readSpeedrunConfig(fields: Record<string, unknown>, path: string): SpeedrunConfig {
  const out: SpeedrunConfig = {};
  const oneOf = <T extends string>(field: string, names: readonly T[]): T | undefined => {
    const v = fields[field];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !names.includes(v as T)) {
      throw new Error(
        `${path}: expected ${field} to be one of ${names.join(", ")}, found ${JSON.stringify(v)}`,
      );
    }
    return v as T;
  };
  const flag = (field: string): boolean => {
    const v = fields[field];
    if (v === undefined) return false;
    if (typeof v !== "boolean") {
      throw new Error(`${path}: expected ${field} to be true or false, found ${JSON.stringify(v)}`);
    }
    return v;
  };
  const mlp = oneOf("mlp", MLP_ACTIVATIONS), pos = oneOf("pos", POSITION_ENCODINGS);
  if (mlp && mlp !== "gelu") out.mlp = mlp;
  if (pos && pos !== "learned") out.pos = pos;
  if (flag("qk_norm")) out.qk_norm = true;
  if (flag("zero_init_proj")) out.zero_init_proj = true;
  if (flag("untie_head")) out.untie_head = true;
  return out;
}
