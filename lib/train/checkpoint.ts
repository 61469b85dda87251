/**
 * Training checkpoints that resume exactly. One folder per checkpoint,
 * `<log-dir>/checkpoints/step_000020/` (20 optimizer steps done), holding:
 *
 * - `model.safetensors` + `config.json`: the model as a Hugging Face GPT-2 folder (HF names,
 *   Conv1D layout), so `deno task sample --weights <dir>` and `transformers` read it;
 * - `optimizer.safetensors`: AdamW's first and second moments per parameter
 *   (`<name>.exp_avg`, `<name>.exp_avg_sq`, PyTorch's names);
 * - `state.json`: the step, AdamW's step count and settings, every rank's data-loader
 *   position and RNG state, the loss scaler's state (runs with loss scaling), the run's
 *   settings, and the size and SHA-256 of each file.
 *
 * A checkpoint is written into a temporary folder that is renamed into place once
 * complete, so a crash never leaves a half-written `step_*`; on load every file is checked
 * against `state.json`, so a truncated or altered one is refused with the file named.
 *
 * @module
 */

import { join } from "node:path";
import type { GPT, GPTConfig } from "../model/gpt.ts";
import { GPT as GPTClass, savePretrained } from "../model/gpt.ts";
import type { AdamW } from "./optim.ts";
import { readSafetensors, toFloat32, writeSafetensors } from "../io/safetensors.ts";
import type { Backend } from "../backend.ts";
import type { GradScalerState } from "./grad_scaler.ts";

/** Format tag in `state.json`. */
export const CHECKPOINT_FORMAT = "gpt2-ts-checkpoint/1";

/** What one rank contributes to a checkpoint. */
export interface RankState {
  /** The training data loader's position (whatever `state()` returns). */
  loader: unknown;
  /** RNG states by name (`Generator.getState()`). */
  rng: Record<string, number[]>;
}

/** `state.json`. */
export interface CheckpointState {
  format: string;
  /** Optimizer steps done: the run continues at this step. */
  step: number;
  worldSize: number;
  config: GPTConfig;
  /** The run's settings (B, T, total batch size, schedule, seed, ...). */
  run: Record<string, unknown>;
  optimizer: {
    stepCount: number;
    lr: number;
    betas: [number, number];
    eps: number;
    /** Each group's weight decay and parameter names. */
    groups: { weightDecay: number; params: string[] }[];
  };
  /** One entry per rank, in rank order. */
  ranks: RankState[];
  /**
   * The loss scaler's scale and growth count, in runs with loss scaling (absent otherwise, and
   * in checkpoints older than it: a resumed run then starts a fresh scaler).
   */
  gradScaler?: GradScalerState;
  /** The last training loss, for the record. */
  loss: number | null;
  /** Size and SHA-256 of every other file of the folder. */
  files: Record<string, { bytes: number; sha256: string }>;
}

/** What `saveCheckpoint` needs. */
export interface SaveCheckpointInput {
  model: GPT;
  optimizer: AdamW;
  step: number;
  run: Record<string, unknown>;
  ranks: RankState[];
  loss: number | null;
  /** The loss scaler's state, in runs with loss scaling. */
  gradScaler?: GradScalerState | null;
}

const STEP_DIR = /^step_(\d+)$/;

/** `<logDir>/checkpoints`. */
export function checkpointsDir(logDir: string): string {
  return join(logDir, "checkpoints");
}

async function sha256(path: string): Promise<{ bytes: number; sha256: string }> {
  const data = await Deno.readFile(path);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return {
    bytes: data.length,
    sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

/**
 * Writes a checkpoint of `input` into `<dir>/step_<step>` atomically (a temporary folder,
 * then a rename), then deletes all but the newest `keep`. Returns the folder.
 */
export async function saveCheckpoint(
  dir: string,
  input: SaveCheckpointInput,
  { keep = 3 }: { keep?: number } = {},
): Promise<string> {
  const { model, optimizer } = input;
  await Deno.mkdir(dir, { recursive: true });
  const final = join(dir, `step_${String(input.step).padStart(6, "0")}`);
  const tmp = `${final}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await savePretrained(model, tmp);

  const names = new Map(model.namedParameters().map(([n, p]) => [p, n]));
  const moments: [string, { data: Float32Array; shape: readonly number[] }][] = [];
  for (const [p, s] of optimizer.state) {
    const name = names.get(p);
    if (!name) throw new Error("The optimizer holds a tensor that is not a model parameter");
    const m = (await p.backend.read(s.m)) as Float32Array;
    const v = (await p.backend.read(s.v)) as Float32Array;
    moments.push([`${name}.exp_avg`, { data: m, shape: p.shape }]);
    moments.push([`${name}.exp_avg_sq`, { data: v, shape: p.shape }]);
  }
  await writeSafetensors(join(tmp, "optimizer.safetensors"), moments, {
    step: String(optimizer.stepCount),
  });

  const files: CheckpointState["files"] = {};
  for (const f of ["model.safetensors", "config.json", "optimizer.safetensors"]) {
    files[f] = await sha256(join(tmp, f));
  }
  const state: CheckpointState = {
    format: CHECKPOINT_FORMAT,
    step: input.step,
    worldSize: input.ranks.length,
    config: model.config,
    run: input.run,
    optimizer: {
      stepCount: optimizer.stepCount,
      lr: optimizer.lr,
      betas: optimizer.betas,
      eps: optimizer.eps,
      groups: optimizer.groups.map((g) => ({
        weightDecay: g.weightDecay,
        params: g.params.map((p) => names.get(p)!),
      })),
    },
    ranks: input.ranks,
    ...(input.gradScaler ? { gradScaler: input.gradScaler } : {}),
    loss: input.loss,
    files,
  };
  await Deno.writeTextFile(join(tmp, "state.json"), JSON.stringify(state, null, 1) + "\n");
  await Deno.remove(final, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, final);
  await pruneCheckpoints(dir, keep);
  return final;
}

/** The complete checkpoints of `dir`, oldest first (temporary folders are not listed). */
export async function listCheckpoints(dir: string): Promise<{ step: number; path: string }[]> {
  const out: { step: number; path: string }[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = STEP_DIR.exec(e.name);
      if (e.isDirectory && m) out.push({ step: Number(m[1]), path: join(dir, e.name) });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return out.sort((a, b) => a.step - b.step);
}

async function pruneCheckpoints(dir: string, keep: number): Promise<void> {
  const all = await listCheckpoints(dir);
  for (const c of all.slice(0, Math.max(0, all.length - Math.max(1, keep)))) {
    await Deno.remove(c.path, { recursive: true });
  }
}

/**
 * The folder `--resume` names: `latest` is the newest complete checkpoint of
 * `<logDir>/checkpoints`, anything else a checkpoint folder.
 */
export async function resolveResume(resume: string, logDir: string | null): Promise<string> {
  if (resume !== "latest") return resume;
  if (!logDir) throw new Error("--resume latest needs a --log-dir");
  const all = await listCheckpoints(checkpointsDir(logDir));
  if (!all.length) {
    throw new Error(
      `--resume latest: expected a checkpoint in ${checkpointsDir(logDir)}, found none`,
    );
  }
  return all[all.length - 1].path;
}

/**
 * Reads and verifies `state.json` of a checkpoint folder: every file it lists must be
 * there with the recorded size and SHA-256.
 */
export async function readCheckpointState(path: string): Promise<CheckpointState> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(path, "state.json"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `Checkpoint ${path} is incomplete or not a checkpoint: expected state.json, found none`,
      );
    }
    throw e;
  }
  let state: CheckpointState;
  try {
    state = JSON.parse(text);
  } catch (e) {
    throw new Error(
      `Checkpoint ${path} is corrupt: state.json is not valid JSON (${(e as Error).message})`,
    );
  }
  if (state.format !== CHECKPOINT_FORMAT) {
    throw new Error(
      `Checkpoint ${path}: expected format "${CHECKPOINT_FORMAT}", found "${state.format}"`,
    );
  }
  for (const [name, expected] of Object.entries(state.files ?? {})) {
    let got;
    try {
      got = await sha256(join(path, name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error(`Checkpoint ${path} is incomplete: ${name} is missing`);
      }
      throw e;
    }
    if (got.bytes !== expected.bytes) {
      throw new Error(
        `Checkpoint ${path} is corrupt: ${name} has ${got.bytes} bytes, expected ${expected.bytes} (truncated?)`,
      );
    }
    if (got.sha256 !== expected.sha256) {
      throw new Error(
        `Checkpoint ${path} is corrupt: ${name} has SHA-256 ${got.sha256}, expected ${expected.sha256}`,
      );
    }
  }
  return state;
}

/** A verified checkpoint, loaded: the model, and the state to restore the rest from. */
export interface LoadedCheckpoint {
  path: string;
  state: CheckpointState;
  model: GPT;
  /** AdamW's moments by parameter name. */
  moments: Map<string, { m: Float32Array; v: Float32Array }>;
}

/** Verifies and loads a checkpoint folder onto `backend`. */
export async function loadCheckpoint(backend: Backend, path: string): Promise<LoadedCheckpoint> {
  const state = await readCheckpointState(path);
  const model = await GPTClass.fromPretrained(backend, path);
  const st = await readSafetensors(join(path, "optimizer.safetensors"));
  const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
  for (const [name] of model.namedParameters()) {
    const m = st.tensors.get(`${name}.exp_avg`), v = st.tensors.get(`${name}.exp_avg_sq`);
    if (!m || !v) continue; // never stepped (no gradient yet)
    moments.set(name, { m: toFloat32(m, name).slice(), v: toFloat32(v, name).slice() });
  }
  return { path, state, model, moments };
}

/** Puts AdamW's step count, learning rate and moments back from a loaded checkpoint. */
export function restoreOptimizer(optimizer: AdamW, model: GPT, ckpt: LoadedCheckpoint): void {
  optimizer.stepCount = ckpt.state.optimizer.stepCount;
  optimizer.lr = ckpt.state.optimizer.lr;
  for (const [name, p] of model.namedParameters()) {
    const mv = ckpt.moments.get(name);
    if (!mv) continue;
    if (mv.m.length !== p.size || mv.v.length !== p.size) {
      throw new Error(
        `Checkpoint ${ckpt.path}: optimizer moments of "${name}" have ${mv.m.length} values, expected ${p.size}`,
      );
    }
    optimizer.state.set(p, { m: p.backend.upload(mv.m), v: p.backend.upload(mv.v) });
  }
}
