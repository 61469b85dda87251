/**
 * A training checkpoint's folder, verified before anything is read from it: its `state.json`
 * against the hash beside it (`state.json.sha256`) and for consistency, and its files against
 * the sizes and SHA-256s `state.json` records, so a truncated or altered file is refused with
 * the file named. The loader of lib/weights checks a checkpoint's model files here before it
 * loads them; lib/train/checkpoint.ts writes checkpoints and reads them whole.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";

/** Format tag in `state.json`: version 2 has `state.json.sha256` and a run id. */
export const CHECKPOINT_FORMAT = "gpt2-ts-checkpoint/2";

/** The format before `state.json.sha256`, still read (its `state.json` is only cross-checked). */
const CHECKPOINT_FORMAT_1 = "gpt2-ts-checkpoint/1";

/** The file beside `state.json` that holds its SHA-256. */
export const STATE_HASH_FILE = "state.json.sha256";

/** The part of `state.json` that verification reads (lib/train/checkpoint.ts has it all). */
export interface RecordedState {
  format: string;
  /** Optimizer steps done. */
  step: number;
  worldSize: number;
  /** The run's settings (B and T are read). */
  run: Record<string, unknown>;
  optimizer: { stepCount: number };
  /** One entry per rank, in rank order (the data loader's position is read). */
  ranks: { loader: unknown }[];
  /** Size and SHA-256 of every other file of the folder. */
  files: Record<string, { bytes: number; sha256: string }>;
}

/** A file's size and SHA-256, read in chunks (a 1 GB file does not come into memory whole). */
export async function sha256(path: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  using file = await Deno.open(path);
  const chunk = new Uint8Array(HASH_CHUNK);
  for (let n; (n = await file.read(chunk)) !== null;) {
    hash.update(chunk.subarray(0, n));
    bytes += n;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** Bytes per read when hashing a file. */
const HASH_CHUNK = 8 << 20;

/** The SHA-256 of `data`, as hex. */
export async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What {@linkcode readCheckpointState} verifies. */
export interface VerifyOptions {
  /** The recorded files to check against their size and SHA-256; default all of them. */
  files?: readonly string[];
}

/**
 * Reads and verifies `state.json` of a checkpoint folder: it must match the hash beside it
 * (`state.json.sha256`) and be consistent (the step, AdamW's step count, one entry per rank,
 * data positions on the run's B*T*world grid), and every file it lists (or those of
 * `options.files`) must be there with the recorded size and SHA-256.
 */
export async function readCheckpointState<S extends RecordedState = RecordedState>(
  path: string,
  options: VerifyOptions = {},
): Promise<S> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(join(path, "state.json"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `Checkpoint ${path} is incomplete or not a checkpoint: expected state.json, found none`,
      );
    }
    throw e;
  }
  let state: S;
  try {
    state = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(
      `Checkpoint ${path} is corrupt: state.json is not valid JSON (${(e as Error).message})`,
    );
  }
  if (state?.format !== CHECKPOINT_FORMAT && state?.format !== CHECKPOINT_FORMAT_1) {
    throw new Error(
      `Checkpoint ${path}: expected format "${CHECKPOINT_FORMAT}", found "${state?.format}"`,
    );
  }
  if (state.format === CHECKPOINT_FORMAT) await verifyStateHash(path, bytes);
  checkStateConsistent(path, state);
  const recorded = Object.entries(state.files ?? {});
  const wanted = options.files ?? recorded.map(([name]) => name);
  for (const name of wanted) {
    const expected = state.files?.[name];
    if (!expected) {
      throw new Error(`Checkpoint ${path} is corrupt: state.json records no hash of ${name}`);
    }
    await verifyFile(path, name, expected);
  }
  return state;
}

/** `state.json` against `state.json.sha256`: an edited or damaged state is refused. */
async function verifyStateHash(path: string, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
  let line: string;
  try {
    line = await Deno.readTextFile(join(path, STATE_HASH_FILE));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`Checkpoint ${path} is incomplete: ${STATE_HASH_FILE} is missing`);
    }
    throw e;
  }
  const expected = /^([0-9a-f]{64})\s/.exec(line)?.[1];
  if (!expected) {
    throw new Error(
      `Checkpoint ${path} is corrupt: ${STATE_HASH_FILE} does not hold a SHA-256 of state.json`,
    );
  }
  const got = await sha256Hex(bytes);
  if (got !== expected) {
    throw new Error(
      `Checkpoint ${path} is corrupt: state.json has SHA-256 ${got}, expected ${expected} (${STATE_HASH_FILE}): it was edited or damaged`,
    );
  }
}

/**
 * The checks that hold for every state.json this code writes, so that an edit (a version-1
 * checkpoint has no hash of its state) is caught where it would change the run.
 */
function checkStateConsistent(path: string, state: RecordedState): void {
  const fail = (what: string): never => {
    throw new Error(`Checkpoint ${path} is corrupt: state.json ${what}`);
  };
  const isCount = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0;
  if (!isCount(state.step)) fail(`has step ${state.step}, expected a whole number`);
  const stepCount = state.optimizer?.stepCount;
  // loss scaling skips steps, so AdamW may have taken fewer than the run
  if (!isCount(stepCount) || stepCount > state.step) {
    fail(`has AdamW step count ${stepCount}, expected a whole number up to step ${state.step}`);
  }
  if (!Array.isArray(state.ranks) || state.ranks.length !== state.worldSize) {
    fail(
      `has ${
        Array.isArray(state.ranks) ? state.ranks.length : "no"
      } rank entries, expected worldSize = ${state.worldSize}`,
    );
  }
  const B = state.run?.B, T = state.run?.T;
  if (typeof B !== "number" || typeof T !== "number") return;
  // each rank starts at B*T*rank and moves B*T*world a batch (lib/data/shard_loader.ts)
  const stride = B * T * state.worldSize;
  state.ranks.forEach((r, rank) => {
    const position = (r.loader as { position?: unknown } | null)?.position;
    if (position === undefined) return;
    if (!isCount(position) || (position - B * T * rank) % stride !== 0) {
      fail(
        `has rank ${rank}'s data position ${position}, expected ${
          B * T * rank
        } plus a multiple of B*T*world = ${stride}`,
      );
    }
  });
}

/** One recorded file: there, with its size and SHA-256. */
async function verifyFile(
  path: string,
  name: string,
  expected: { bytes: number; sha256: string },
): Promise<void> {
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

/** The files a checkpoint's model is read from (`loadModelFolder` of folder.ts). */
export const MODEL_FILES: readonly string[] = ["model.safetensors", "config.json"];

/**
 * When `dir` is a checkpoint folder (it holds `state.json`): its state, verified, and its
 * model files checked against the recorded hashes, for reading the model alone (`sample`,
 * `hellaswag`); else null (a Hugging Face folder or a hub name: nothing to check against).
 */
export async function verifyCheckpointModel(dir: string): Promise<RecordedState | null> {
  const info = await Deno.stat(join(dir, "state.json")).catch(() => null);
  if (!info?.isFile) return null;
  return await readCheckpointState(dir, { files: MODEL_FILES });
}
