/**
 * Training checkpoints that resume exactly. One folder per checkpoint,
 * `<log-dir>/checkpoints/step_000020/` (20 optimizer steps done), holding:
 *
 * - `model.safetensors` + `config.json`: the model as a Hugging Face GPT-2 folder (HF names,
 *   Conv1D layout), so `deno task sample --weights <dir>` and `transformers` read it;
 * - `optimizer.safetensors`: AdamW's first and second moments per parameter
 *   (`<name>.exp_avg`, `<name>.exp_avg_sq`, PyTorch's names);
 * - `state.json`: the step, the run's id, AdamW's step count and settings, every rank's
 *   data-loader position and RNG state, the loss scaler's state (runs with loss scaling), the
 *   run's settings, and the size and SHA-256 of each file;
 * - `state.json.sha256`: the SHA-256 of `state.json` itself (`sha256sum -c` reads it).
 *
 * A checkpoint is written into a temporary folder that is renamed into place once
 * complete, so a crash never leaves a half-written `step_*`, and only when every parameter
 * and moment is finite. On load `state.json` is checked against its hash and for consistency
 * (step, data positions), and every file against `state.json`, so a truncated or altered one
 * is refused with the file named.
 *
 * Each checkpoint records its lineage: an id of its own, when it was written, and its parent
 * (the checkpoint the run continued from or wrote before it: step, folder name and id), so a
 * folder can hold branches (a run resumed from an older checkpoint writes a new one beside the
 * abandoned one). `checkpoints/HEAD` names the checkpoint last written or resumed: `--resume
 * latest` follows it, and pruning removes only older checkpoints of the branch that leads to
 * the newest one, never another branch's. It also records the data's identity
 * (lib/data/identity.ts), so a resume on other data is caught. Checkpoints without either
 * (older versions) still resume.
 *
 * Before a checkpoint is written, and when one is resumed, every parameter and moment is checked
 * for NaN and infinities (below: non-finite values); the trail (below) tells which checkpoint a
 * stopped run can go back to, and holds back pruning until the newest one has passed a step.
 *
 * @module
 */

import { basename, join } from "node:path";
import type { Backend, DeviceBuffer } from "../backend.ts";
import type { DataIdentity } from "../data/identity.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { readSafetensors, toFloat32, writeSafetensors } from "../io/safetensors.ts";
import type { GPT, GPTConfig } from "../model/gpt.ts";
import { loadModelFolder, saveModelFolder } from "../weights/folder.ts";
import {
  CHECKPOINT_FORMAT,
  MODEL_FILES,
  readCheckpointState as readVerifiedState,
  sha256,
  sha256Hex,
  STATE_HASH_FILE,
  verifyCheckpointModel,
  type VerifyOptions,
} from "../weights/checkpoint_files.ts";
import type { GradScalerState } from "./precision.ts";
import { type AdamW, MuonAndAdamW } from "./optim.ts";

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
  /**
   * The run this checkpoint belongs to (kept by a resumed run); pruning removes only the same
   * run's checkpoints. Absent in version-1 checkpoints.
   */
  runId?: string;
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
    /**
     * With `--optimizer muon`: Muon's constants and parameters (their momentum buffers are
     * `NAME.momentum_buffer` in `optimizer.safetensors`); absent for AdamW alone.
     */
    muon?: MuonState;
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
  /** Where the checkpoint comes from (absent in older checkpoints). */
  lineage?: Lineage;
  /** The training data (absent in older checkpoints). */
  data?: DataIdentity;
  /** Size and SHA-256 of every other file of the folder. */
  files: Record<string, { bytes: number; sha256: string }>;
}

/** A checkpoint as its children name it: its step, folder name and id. */
export interface CheckpointRef {
  step: number;
  name: string;
  id: string;
}

/** A checkpoint's place in its run's history. */
export interface Lineage {
  /** This checkpoint's own id. */
  id: string;
  /** When it was written, ISO 8601. */
  writtenAt: string;
  /** The checkpoint it descends from: the one resumed or written before it; null at a start. */
  parent: CheckpointRef | null;
}

/** Muon's part of `state.json`. */
export interface MuonState {
  /** Muon's learning rate at the checkpoint. */
  lr?: number;
  /** Older checkpoints: Muon's rate as a multiple of AdamW's `lr`, in place of `lr`. */
  lrScale?: number;
  momentum: number;
  nesterov: boolean;
  nsSteps: number;
  params: string[];
}

/** What `saveCheckpoint` needs. */
export interface SaveCheckpointInput {
  model: GPT;
  optimizer: AdamW;
  step: number;
  /** The run's id: pruning removes only checkpoints with the same one. */
  runId: string;
  run: Record<string, unknown>;
  ranks: RankState[];
  loss: number | null;
  /** The loss scaler's state, in runs with loss scaling. */
  gradScaler?: GradScalerState | null;
  /** The checkpoint this one descends from (null: the run's start). */
  parent?: CheckpointRef | null;
  /** This checkpoint's id; a new one by default. */
  id?: string;
  /** The training data's identity, where known. */
  data?: DataIdentity | null;
}

const STEP_DIR = /^step_(\d+)$/;
/** A checkpoint being written, by the process in its name: `step_000020.tmp-1234`. */
const TMP_DIR = /^step_\d+\.tmp-(\d+)$/;

/** A checkpoint refused because values went non-finite: `tensors` names them. */
export class NonFiniteCheckpointError extends Error {
  constructor(readonly path: string, readonly tensors: string[]) {
    super(
      `Refusing to write checkpoint ${path}: non-finite values in ${listNames(tensors)}`,
    );
    this.name = "NonFiniteCheckpointError";
  }
}

/** `<logDir>/checkpoints`. */
export function checkpointsDir(logDir: string): string {
  return join(logDir, "checkpoints");
}

/** The folder of the checkpoint after `step` steps in `dir`: `<dir>/step_000020`. */
export function checkpointPath(dir: string, step: number): string {
  return join(dir, `step_${String(step).padStart(6, "0")}`);
}

/**
 * Writes a checkpoint of `input` into `<dir>/step_<step>` atomically (a temporary folder,
 * then a rename), then (unless `prune` is false: the caller prunes later with
 * {@linkcode pruneCheckpoints}) deletes the same run's older checkpoints beyond the newest
 * `keep` (the one just written always stays). Returns the folder.
 *
 * @throws {NonFiniteCheckpointError} when a parameter or moment holds a NaN or an infinity:
 * nothing is written. Any other failure (a full disk) removes the temporary folder.
 */
export async function saveCheckpoint(
  dir: string,
  input: SaveCheckpointInput,
  { keep = 3, prune = true }: { keep?: number; prune?: boolean } = {},
): Promise<string> {
  const final = checkpointPath(dir, input.step);
  const bad = await nonFiniteBuffers(trainingBuffers(input.model, input.optimizer));
  if (bad.length) throw new NonFiniteCheckpointError(final, bad);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${final}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  try {
    await writeCheckpointFiles(tmp, input);
    await Deno.remove(final, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, final);
  } catch (e) {
    // a full disk must not stay full of a checkpoint that can never be used
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  await markHead(dir, final);
  if (prune) await pruneCheckpoints(dir, keep, input.runId, input.step);
  return final;
}

/**
 * A buffer's values on the host: the buffer's own memory where the backend keeps it there (no
 * copy: the moments are 1 GB at 124M), else a copy read back.
 */
async function hostOrRead(backend: Backend, buf: DeviceBuffer): Promise<Float32Array> {
  return (backend.hostView?.(buf) ?? await backend.read(buf)) as Float32Array;
}

/** The checkpoint's files in the folder `tmp`: model, moments, state.json and its hash. */
async function writeCheckpointFiles(tmp: string, input: SaveCheckpointInput): Promise<void> {
  const { model, optimizer } = input;
  await saveModelFolder(model, tmp);

  const names = new Map(model.namedParameters().map(([n, p]) => [p, n]));
  const moments: [string, { data: Float32Array; shape: readonly number[] }][] = [];
  for (const [p, s] of optimizer.state) {
    const name = names.get(p);
    if (!name) throw new Error("The optimizer holds a tensor that is not a model parameter");
    const m = await hostOrRead(p.backend, s.m), v = await hostOrRead(p.backend, s.v);
    moments.push([`${name}.exp_avg`, { data: m, shape: p.shape }]);
    moments.push([`${name}.exp_avg_sq`, { data: v, shape: p.shape }]);
  }
  const muon = optimizer instanceof MuonAndAdamW ? optimizer.muon : null;
  for (const [p, buf] of muon?.state ?? []) {
    const name = names.get(p);
    if (!name) throw new Error("Muon holds a tensor that is not a model parameter");
    const data = await hostOrRead(p.backend, buf);
    moments.push([`${name}.momentum_buffer`, { data, shape: p.shape }]);
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
    runId: input.runId,
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
      ...(muon && optimizer instanceof MuonAndAdamW
        ? {
          muon: {
            lr: optimizer.muonLr,
            momentum: muon.momentum,
            nesterov: muon.nesterov,
            nsSteps: muon.nsSteps,
            params: muon.params.map((p) => names.get(p)!),
          },
        }
        : {}),
    },
    ranks: input.ranks,
    ...(input.gradScaler ? { gradScaler: input.gradScaler } : {}),
    loss: input.loss,
    lineage: {
      id: input.id ?? crypto.randomUUID(),
      writtenAt: new Date().toISOString(),
      parent: input.parent ?? null,
    },
    ...(input.data ? { data: input.data } : {}),
    files,
  };
  const text = new TextEncoder().encode(JSON.stringify(state, null, 1) + "\n");
  await Deno.writeFile(join(tmp, "state.json"), text);
  await Deno.writeTextFile(join(tmp, STATE_HASH_FILE), `${await sha256Hex(text)}  state.json\n`);
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

/**
 * Removes run `runId`'s checkpoints older than the one of step `current` beyond the newest
 * `keep - 1` (the one of step `current` is the `keep`-th), among its ancestors only: the
 * checkpoints it descends from by their recorded parents (and, below a checkpoint of an older
 * version, which records none, the same run's older-version checkpoints below it). Other
 * runs' checkpoints, other branches' (an abandoned one, or the one a resume goes back to) and
 * later ones are left alone.
 */
export async function pruneCheckpoints(
  dir: string,
  keep: number,
  runId: string,
  current: number,
): Promise<void> {
  const all = await describeCheckpoints(dir);
  const byId = new Map(all.map((c) => [c.id, c]));
  let node = all.find((c) => c.step === current);
  const older: CheckpointEntry[] = [];
  while (node) {
    const here: CheckpointEntry = node;
    const parentId = here.lineage?.parent?.id;
    const next: CheckpointEntry | undefined = here.lineage
      ? (parentId === undefined ? undefined : byId.get(parentId))
      : all.filter((c) => !c.lineage && c.step < here.step && c.runId === here.runId).at(-1);
    if (!next || next.step >= here.step || older.includes(next)) break;
    older.push(next);
    node = next;
  }
  const mine = older.filter((c) => c.runId === runId).sort((a, b) => a.step - b.step);
  for (const c of mine.slice(0, Math.max(0, mine.length - (Math.max(1, keep) - 1)))) {
    await Deno.remove(c.path, { recursive: true });
  }
}

/** A checkpoint of a folder with what its state.json says of its place. */
interface CheckpointEntry {
  step: number;
  path: string;
  /** Its lineage id; for an older checkpoint, `sha256:` and its state.json's hash. */
  id: string;
  runId: string | null;
  lineage: Lineage | null;
}

/** The checkpoints of `dir` with their ids and lineage, oldest step first. */
async function describeCheckpoints(dir: string): Promise<CheckpointEntry[]> {
  const out: CheckpointEntry[] = [];
  for (const c of await listCheckpoints(dir)) {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = await Deno.readFile(join(c.path, "state.json"));
    } catch {
      continue; // not a checkpoint that could be resumed: never anyone's ancestor
    }
    let state: Partial<CheckpointState> | null = null;
    try {
      state = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      // unreadable: identified by its bytes alone
    }
    const lineage = state?.lineage && typeof state.lineage.id === "string" ? state.lineage : null;
    out.push({
      ...c,
      id: lineage?.id ?? `sha256:${await sha256Hex(bytes)}`,
      runId: typeof state?.runId === "string" ? state.runId : null,
      lineage,
    });
  }
  return out;
}

/** A checkpoint as its children name it (an older one's id: its state.json's hash). */
export async function checkpointRef(path: string, state: CheckpointState): Promise<CheckpointRef> {
  const id = state.lineage?.id ??
    `sha256:${await sha256Hex(await Deno.readFile(join(path, "state.json")))}`;
  return { step: state.step, name: basename(path), id };
}

/** The file in a checkpoints folder naming the checkpoint last written or resumed. */
export const HEAD_FILE = "HEAD";

/**
 * Records `path` (a checkpoint folder in `dir`) as the one last written or resumed, which
 * `--resume latest` continues.
 */
export async function markHead(dir: string, path: string): Promise<void> {
  await writeFileAtomic(join(dir, HEAD_FILE), `${basename(path)}\n`);
}

/** The run id in a checkpoint's state.json, or null (none, unreadable, or version 1). */
async function readRunId(path: string): Promise<string | null> {
  try {
    const state = JSON.parse(await Deno.readTextFile(join(path, "state.json")));
    return typeof state?.runId === "string" ? state.runId : null;
  } catch {
    return null;
  }
}

/**
 * The checkpoints of `dir` that belong to another run than `runId` (a recorded run id that
 * differs; version-1 checkpoints, which record none, are nobody's).
 */
export async function otherRunsCheckpoints(
  dir: string,
  runId: string | undefined,
): Promise<string[]> {
  const out: string[] = [];
  for (const c of await listCheckpoints(dir)) {
    const id = await readRunId(c.path);
    if (id !== null && id !== runId) out.push(c.path);
  }
  return out;
}

/** Checkpoint writes left in `dir` (`step_*.tmp-<pid>`), with the pid of their writer. */
export async function listTemporaryFolders(
  dir: string,
): Promise<{ path: string; pid: number }[]> {
  const out: { path: string; pid: number }[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = TMP_DIR.exec(e.name);
      if (e.isDirectory && m) out.push({ path: join(dir, e.name), pid: Number(m[1]) });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * The folder `--resume` names: `latest` is the checkpoint of `<logDir>/checkpoints` last
 * written or resumed (its `HEAD`; without one, the newest written, then the highest step),
 * anything else a checkpoint folder. A `HEAD` that names a checkpoint no longer there is said
 * on `say`, with the checkpoint taken instead.
 */
export async function resolveResume(
  resume: string,
  logDir: string | null,
  say?: (line: string) => void,
): Promise<string> {
  if (resume !== "latest") return resume;
  if (!logDir) throw new Error("--resume latest needs a --log-dir");
  const dir = checkpointsDir(logDir);
  const all = await listCheckpoints(dir);
  if (!all.length) {
    throw new Error(
      `--resume latest: expected a checkpoint in ${dir}, found none`,
    );
  }
  // the branch last written or resumed, not the highest step (an abandoned branch may be)
  const head = (await Deno.readTextFile(join(dir, HEAD_FILE)).catch(() => "")).trim();
  const named = all.find((c) => basename(c.path) === head);
  if (named) return named.path;
  // no HEAD (older versions): the newest written, then the highest step
  const entries = await describeCheckpoints(dir);
  entries.sort((a, b) =>
    (a.lineage?.writtenAt ?? "").localeCompare(b.lineage?.writtenAt ?? "") || a.step - b.step
  );
  const path = entries.at(-1)?.path ?? all[all.length - 1].path;
  if (head) {
    say?.(
      `warning: ${join(dir, HEAD_FILE)} names ${head}, which is not a checkpoint there: ` +
        `--resume latest takes the newest one written, ${path}`,
    );
  }
  return path;
}

export {
  CHECKPOINT_FORMAT,
  MODEL_FILES,
  STATE_HASH_FILE,
  verifyCheckpointModel,
  type VerifyOptions,
};

/**
 * `state.json` of a checkpoint folder, verified (lib/weights/checkpoint_files.ts): its hash,
 * its consistency, and its files (or those of `options.files`) against their recorded hashes.
 */
export function readCheckpointState(
  path: string,
  options: VerifyOptions = {},
): Promise<CheckpointState> {
  return readVerifiedState<CheckpointState>(path, options);
}

/** A verified checkpoint, loaded: the model, and the state to restore the rest from. */
export interface LoadedCheckpoint {
  path: string;
  state: CheckpointState;
  model: GPT;
  /** AdamW's moments by parameter name. */
  moments: Map<string, { m: Float32Array; v: Float32Array }>;
  /** Muon's momentum buffers by parameter name (empty for AdamW alone). */
  momentumBuffers: Map<string, Float32Array>;
}

/** Verifies and loads a checkpoint folder onto `backend`. */
export async function loadCheckpoint(backend: Backend, path: string): Promise<LoadedCheckpoint> {
  const state = await readCheckpointState(path);
  const model = await loadModelFolder(backend, path);
  const st = await readSafetensors(join(path, "optimizer.safetensors"));
  const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
  for (const [name] of model.namedParameters()) {
    const m = st.tensors.get(`${name}.exp_avg`), v = st.tensors.get(`${name}.exp_avg_sq`);
    if (!m || !v) continue; // never stepped (no gradient yet)
    moments.set(name, { m: toFloat32(m, name).slice(), v: toFloat32(v, name).slice() });
  }
  const momentumBuffers = new Map<string, Float32Array>();
  for (const [name] of model.namedParameters()) {
    const b = st.tensors.get(`${name}.momentum_buffer`);
    if (b) momentumBuffers.set(name, toFloat32(b, name).slice());
  }
  return { path, state, model, moments, momentumBuffers };
}

/**
 * Refuses a loaded checkpoint whose weights or moments hold a NaN or an infinity (one written
 * before checkpoints were checked), naming them: resuming it would only repeat the NaN.
 */
export async function checkFiniteCheckpoint(ckpt: LoadedCheckpoint): Promise<void> {
  const bad = [
    ...(await nonFiniteBuffers(trainingBuffers(ckpt.model, null))),
    ...nonFiniteArrays(
      [...ckpt.moments].flatMap(([name, mv]) => [
        [`${name}.exp_avg`, mv.m] as [string, Float32Array],
        [`${name}.exp_avg_sq`, mv.v] as [string, Float32Array],
      ]),
    ),
    ...nonFiniteArrays(
      [...ckpt.momentumBuffers].map(([name, b]) =>
        [`${name}.momentum_buffer`, b] as [string, Float32Array]
      ),
    ),
  ];
  if (bad.length) {
    throw new Error(
      `Checkpoint ${ckpt.path} holds non-finite values in ${
        listNames(bad)
      }: resuming it would repeat them; resume from an earlier checkpoint`,
    );
  }
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
  restoreMuon(optimizer, model, ckpt);
}

/**
 * Puts Muon's momentum buffers back; a checkpoint of one optimizer resumed with the other is
 * refused, since the run would not continue as it was.
 */
function restoreMuon(optimizer: AdamW, model: GPT, ckpt: LoadedCheckpoint): void {
  const saved = ckpt.state.optimizer.muon;
  if (!(optimizer instanceof MuonAndAdamW)) {
    if (saved) {
      throw new Error(
        `Checkpoint ${ckpt.path} was trained with --optimizer muon, this run uses adamw: pass --optimizer muon`,
      );
    }
    return;
  }
  if (!saved) {
    throw new Error(
      `Checkpoint ${ckpt.path} was trained with AdamW alone, this run uses --optimizer muon: pass --optimizer adamw`,
    );
  }
  // the schedule sets it again before the next step; older checkpoints record a multiple
  optimizer.muonLr = saved.lr ?? (saved.lrScale ?? 0) * ckpt.state.optimizer.lr;
  for (const [name, p] of model.namedParameters()) {
    const b = ckpt.momentumBuffers.get(name);
    if (!b) continue; // never stepped
    if (b.length !== p.size) {
      throw new Error(
        `Checkpoint ${ckpt.path}: Muon's momentum of "${name}" has ${b.length} values, expected ${p.size}`,
      );
    }
    optimizer.muon.state.set(p, p.backend.upload(b));
  }
}

// ---- non-finite values ----
//
// Which of a model's parameters and AdamW's moments hold a NaN or an infinity: the check a
// checkpoint passes before it is written and a resumed checkpoint passes when loaded, so that
// "the last good checkpoint" is true. It costs one pass over the values on every backend: a
// scan of the buffer's own memory where the backend has `hostView` (cpu, native), else the
// backend's `sumOfSquares` (one wait for all with `sumsOfSquares`), a non-finite sum being
// confirmed by reading the buffer back (a sum of squares of large finite values can overflow).

/** A named buffer to check: its first `size` elements. */
export interface NamedBuffer {
  name: string;
  backend: Backend;
  buffer: DeviceBuffer;
  size: number;
}

/**
 * The model's parameters by name, AdamW's moments as `<name>.exp_avg(_sq)`, and Muon's
 * momentum as `<name>.momentum_buffer` where Muon runs.
 */
export function trainingBuffers(model: GPT, optimizer: AdamW | null): NamedBuffer[] {
  const out: NamedBuffer[] = [];
  const names = new Map<unknown, string>();
  for (const [name, p] of model.namedParameters()) {
    names.set(p, name);
    out.push({ name, backend: p.backend, buffer: p.buffer, size: p.size });
  }
  for (const [p, s] of optimizer?.state ?? []) {
    const name = names.get(p) ?? "(a tensor outside the model)";
    out.push({ name: `${name}.exp_avg`, backend: p.backend, buffer: s.m, size: p.size });
    out.push({ name: `${name}.exp_avg_sq`, backend: p.backend, buffer: s.v, size: p.size });
  }
  if (optimizer instanceof MuonAndAdamW) {
    for (const [p, buffer] of optimizer.muon.state) {
      const name = names.get(p) ?? "(a tensor outside the model)";
      out.push({ name: `${name}.momentum_buffer`, backend: p.backend, buffer, size: p.size });
    }
  }
  return out;
}

/** The names of the buffers holding a NaN or an infinity, in the order given. */
export async function nonFiniteBuffers(buffers: readonly NamedBuffer[]): Promise<string[]> {
  const suspects: NamedBuffer[] = [];
  const bySum: NamedBuffer[] = [];
  for (const b of buffers) {
    if (b.backend.hostView) {
      if (!allFinite(b.backend.hostView(b.buffer), b.size)) suspects.push(b);
    } else {
      bySum.push(b);
    }
  }
  const sums = await sumsOfSquares(bySum);
  for (let i = 0; i < bySum.length; i++) {
    const b = bySum[i];
    // a finite sum of squares means every value is finite; a non-finite one is read to be sure
    if (!Number.isFinite(sums[i]) && !allFinite(await b.backend.read(b.buffer), b.size)) {
      suspects.push(b);
    }
  }
  const bad = new Set(suspects);
  return buffers.filter((b) => bad.has(b)).map((b) => b.name);
}

/** Host arrays (a loaded checkpoint's moments) by name: the names holding a NaN or infinity. */
export function nonFiniteArrays(arrays: Iterable<[string, Float32Array]>): string[] {
  const out: string[] = [];
  for (const [name, a] of arrays) if (!allFinite(a, a.length)) out.push(name);
  return out;
}

/** Up to `max` names, then how many more: `a, b, c and 4 more`. */
export function listNames(names: readonly string[], max = 3): string {
  if (names.length <= max) return names.join(", ");
  return `${names.slice(0, max).join(", ")} and ${names.length - max} more`;
}

function allFinite(a: Float32Array | Int32Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    // x * 0 is 0 for every finite x, NaN for NaN and the infinities
    if (a[i] * 0 !== 0) return false;
  }
  return true;
}

/** Each buffer's sum of squares, with one wait per backend that batches them. */
async function sumsOfSquares(buffers: readonly NamedBuffer[]): Promise<number[]> {
  const sums = new Array<number>(buffers.length);
  const byBackend = new Map<Backend, number[]>();
  buffers.forEach((b, i) => {
    const indices = byBackend.get(b.backend) ?? [];
    indices.push(i);
    byBackend.set(b.backend, indices);
  });
  for (const [backend, indices] of byBackend) {
    if (backend.sumsOfSquares) {
      const got = await backend.sumsOfSquares(
        indices.map((i) => buffers[i].buffer),
        indices.map((i) => buffers[i].size),
      );
      indices.forEach((i, k) => sums[i] = got[k]);
    } else {
      for (const i of indices) {
        sums[i] = await backend.sumOfSquares(buffers[i].buffer, buffers[i].size);
      }
    }
  }
  return sums;
}

// ---- the trail of checkpoints ----
//
// Which checkpoint a run can go back to. A checkpoint's weights are only known to be good once
// a step has started from them and found the loss and the gradient norm finite: weights that
// are finite but exploding give a NaN at the very next step, and resuming them would give it
// again. So the trail keeps the newest checkpoint written (`last`) apart from the newest one
// that passed a step (`good`), the messages of a stopped run name `good`, and the pruning of
// older checkpoints waits until the new one has passed: `--keep-checkpoints 1` never leaves a
// run with only a checkpoint that fails.

/** A run's checkpoints so far, and the pruning that waits for the newest to pass a step. */
export class CheckpointTrail {
  /** The newest checkpoint written (or resumed from), or null. */
  last: string | null;
  /** The newest checkpoint whose weights passed a step, or null. */
  good: string | null = null;
  #pendingPrune: number | null = null;
  readonly #prune: (step: number) => Promise<void>;

  /**
   * @param resumedFrom the checkpoint the run continues, or null
   * @param prune removes the older checkpoints, keeping the newest up to a step's
   */
  constructor(resumedFrom: string | null, prune: (step: number) => Promise<void>) {
    this.last = resumedFrom;
    this.#prune = prune;
  }

  /** A step started from the weights of `last` and found them good: prune, if waiting. */
  async passed(): Promise<void> {
    this.good = this.last;
    if (this.#pendingPrune !== null) {
      const step = this.#pendingPrune;
      this.#pendingPrune = null;
      await this.#prune(step);
    }
  }

  /** Checkpoint `path` of `step` was written; with `prunedNow` false its pruning waits. */
  written(path: string | null, step: number, prunedNow: boolean): void {
    if (path === null) return;
    this.last = path;
    this.#pendingPrune = prunedNow ? null : step;
  }

  /**
   * What a stopped run can go back to, for its message: the newest checkpoint that passed a
   * step; where a newer one holds the weights that failed, that one too (every checkpoint is
   * finite: lib/train/checkpoint.ts writes no other).
   */
  goBackTo(): string {
    const { last, good } = this;
    if (last === null) return "no checkpoint was written yet (try a lower --max-lr)";
    const resume = (path: string) =>
      `the last good checkpoint is ${path} (--resume ${path}, perhaps with a lower --max-lr)`;
    if (last === good) return resume(last);
    if (good) {
      return `${
        resume(good)
      }; ${last}, written after it, is finite but holds the weights that gave this: resuming it repeats it`;
    }
    return `the last good checkpoint is ${last} (its weights are finite, but this step started from them: resuming it repeats this, so start again with a lower --max-lr)`;
  }
}
