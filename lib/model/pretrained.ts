/**
 * GPT-2 in and out of Hugging Face folders (`config.json` + `model.safetensors`), the lecture's
 * `from_pretrained`: OpenAI's checkpoint stores the four Linear weights of a block as Conv1D,
 * [in, out], so they are transposed on the way in and out; every name and shape is checked,
 * and weights holding NaN or infinite values load with a warning that names them.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import {
  readSafetensors,
  type SafetensorsFile,
  toFloat32,
  writeSafetensors,
} from "../io/safetensors.ts";
import { GPT, type GPTConfig } from "./gpt.ts";

/** The four nn.Linear weights per block that OpenAI's checkpoint stores as Conv1D, [in, out]. */
const CONV1D_WEIGHTS = [
  "attn.c_attn.weight",
  "attn.c_proj.weight",
  "mlp.c_fc.weight",
  "mlp.c_proj.weight",
];

/** Options of {@linkcode fromPretrained} and {@linkcode loadSafetensors}. */
export interface FromPretrainedOptions {
  /** Where the warning about non-finite weights goes; `console.warn` (stderr) by default. */
  warn?: (line: string) => void;
}

/**
 * Loads a Hugging Face GPT-2 folder (`config.json` + `model.safetensors`) into the lecture's
 * `GPT`. The one loader of lib/weights resolves hub names and checkpoints around it, and builds
 * the model that a `config.json` with options beyond GPT-2's asks for.
 *
 * @throws {Error} for a bad `config.json` (naming the file and the field), and tensors that do
 * not fit the model.
 */
export async function fromPretrained(
  backend: Backend,
  dir: string,
  options: FromPretrainedOptions = {},
): Promise<GPT> {
  const config = await readHfConfig(`${dir}/config.json`);
  const file = `${dir}/model.safetensors`;
  const model = new GPT(backend, config, { skipInit: true });
  return loadSafetensors(model, await readSafetensors(file), file, options);
}

/**
 * Loads a parsed Hugging Face `model.safetensors` into `model` (built with `skipInit`), for
 * callers that have the bytes rather than a folder (the web page of `deno task serve`): keys
 * with or without `transformer.`, Conv1D weights transposed, the causal-mask buffers skipped,
 * `lm_head.weight` skipped where the head is tied to `wte`. `file` names the source in errors
 * and warnings. Returns `model`.
 *
 * @throws {Error} for tensors that do not fit the model.
 */
export function loadSafetensors(
  model: GPT,
  st: SafetensorsFile,
  file: string,
  options: FromPretrainedOptions = {},
): GPT {
  const shapes = new Map(model.namedParameters().map(([n, p]) => [n, p.shape]));
  const tied = model.lm_head.weight === model.transformer.wte.weight;
  const weights = new Map<string, Float32Array>();
  const nonFinite: NonFiniteTensor[] = [];
  for (const [key, t] of st.tensors) {
    // the causal-mask buffers are not parameters; a tied lm_head is wte
    if (key.endsWith(".attn.bias") || key.endsWith(".attn.masked_bias")) continue;
    if (key === "lm_head.weight" && tied) continue;
    const name = key.startsWith("transformer.") || key === "lm_head.weight"
      ? key
      : `transformer.${key}`;
    const expected = shapes.get(name);
    if (!expected) throw new Error(`${file}: unexpected tensor "${key}"`);
    let data = toFloat32(t, key);
    const bad = countNonFinite(data);
    if (bad > 0) nonFinite.push({ name: key, count: bad, size: data.length });
    let shape = t.shape;
    const conv1d = CONV1D_WEIGHTS.some((w) => name.endsWith(w));
    if (conv1d) {
      // Conv1D stores [in, out]; nn.Linear wants [out, in]
      if (shape.length !== 2) {
        throw new Error(`${file}: tensor "${key}" should be 2-D, found [${shape}]`);
      }
      data = transpose(data, shape[0], shape[1]);
      shape = [shape[1], shape[0]];
    }
    if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
      const hint = conv1d ? " after the Conv1D transpose" : "";
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
 * The JSON of a `config.json`.
 *
 * @throws {Error} naming the file when it cannot be read or is not JSON.
 */
export async function readConfigJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`Cannot read the model config ${path}: ${(e as Error).message}`);
  }
}

/**
 * Reads a Hugging Face GPT2Config `config.json`: the five sizes.
 *
 * @throws {Error} naming the file (and the field) when it cannot be read, is not a JSON
 * object, lacks a positive integer size, or has an `n_embd` that `n_head` does not divide.
 */
export async function readHfConfig(path: string): Promise<GPTConfig> {
  return parseHfConfig(await readConfigJson(path), path);
}

/**
 * `readHfConfig` of an already parsed `config.json`; `path` names it in errors.
 *
 * @throws {Error} naming `path` (and the field) when `raw` is not a JSON object, lacks a
 * positive integer size, or has an `n_embd` that `n_head` does not divide.
 */
export function parseHfConfig(raw: unknown, path: string): GPTConfig {
  const fields = configFields(raw, path);
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
  const config: GPTConfig = {
    n_layer: size("n_layer"),
    n_head: size("n_head"),
    n_embd: size("n_embd"),
    // block_size is n_positions, or the older n_ctx
    block_size: size(
      fields.n_positions !== undefined && fields.n_positions !== null ? "n_positions" : "n_ctx",
    ),
    vocab_size: size("vocab_size"),
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
 * The fields of a parsed `config.json` (`path` for errors).
 *
 * @throws {Error} naming `path` when `raw` is not a JSON object.
 */
export function configFields(raw: unknown, path: string): Record<string, unknown> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(
      `${path}: expected a JSON object (GPT2Config), found ${
        raw === null ? "null" : Array.isArray(raw) ? "an array" : typeof raw
      }`,
    );
  }
  return raw as Record<string, unknown>;
}

/** Options of {@linkcode savePretrained}. */
export interface SavePretrainedOptions {
  /** More `config.json` fields, after GPT-2's (a model's own options). */
  configFields?: Record<string, unknown>;
}

/**
 * Saves `model` as a Hugging Face GPT-2 folder laid out like OpenAI's `gpt2` on the hub
 * (keys without `transformer.`, Conv1D weights [in, out], no tied lm_head), so `fromPretrained`
 * and Hugging Face's transformers both read it. Each file is written atomically.
 */
export async function savePretrained(
  model: GPT,
  dir: string,
  options: SavePretrainedOptions = {},
): Promise<void> {
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
    ...options.configFields,
  };
  await Deno.writeTextFile(`${dir}/config.json.tmp`, JSON.stringify(config, null, 2) + "\n");
  await Deno.rename(`${dir}/config.json.tmp`, `${dir}/config.json`);
}
