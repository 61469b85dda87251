/**
 * After the lecture: the architecture options of Keller Jordan's modded-nanogpt speedrun, as
 * fields beside `GPTConfig`'s (all absent in GPT-2): ReLU² in the MLP, QK-norm, rotary position
 * embeddings, zero-initialised residual projections and an untied head. This module says what
 * they are and how `config.json` records them; `model.ts` applies them, with the ops of `ops.ts`.
 *
 * @module
 */

import type { GPTConfig } from "../model/gpt.ts";

/** The MLP's activation: GPT-2's tanh GELU, or the speedrun's ReLU². */
export type MlpActivation = "gelu" | "relu2";
/** The MLP activations by name. */
export const MLP_ACTIVATIONS: readonly MlpActivation[] = ["gelu", "relu2"];

/** Position information: GPT-2's learned `wpe`, or rotary embeddings of queries and keys. */
export type PositionEncoding = "learned" | "rotary";
/** The position encodings by name. */
export const POSITION_ENCODINGS: readonly PositionEncoding[] = ["learned", "rotary"];

/** The speedrun's fields of a GPT config, beside `GPTConfig`'s sizes. */
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

/**
 * A GPT-2's shape with the speedrun's options. The options travel with the config object
 * wherever a `GPTConfig` goes (copies, checkpoints, `config.json`), so a trained folder reloads
 * with its architecture.
 */
export type SpeedrunGPTConfig = GPTConfig & SpeedrunConfig;

/** Whether any option of `c` is on (then the model is `SpeedrunGPT`; else GPT-2's `GPT`). */
export function hasSpeedrunOptions(c: SpeedrunConfig): boolean {
  return Object.keys(speedrunConfigFields(c)).length > 0;
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
