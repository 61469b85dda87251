/**
 * One run per log folder. Before a run writes anything, rank 0 claims `--log-dir`:
 *
 * - the folder is made (a file there, or a folder that cannot be made or written, is an error
 *   naming `--log-dir`);
 * - the folder itself is locked: an exclusive `flock` on an open descriptor of the folder, which
 *   the kernel drops when its holder dies and which no file deletion can undo (removing
 *   `train.lock` does not let a second trainer in). `train.lock` names the holder (pid, host,
 *   start time) for the message a second trainer gets; one left behind with the folder unlocked
 *   is stale: it is taken over, saying so;
 * - checkpoint writes that a dead run left half done (`step_*.tmp-<pid>`) are removed, saying so;
 * - a fresh run (no `--resume`) in a folder that holds any earlier run's outputs (checkpoints/,
 *   log.txt, model/, run.json, the figure, report.html) is refused, naming what it found,
 *   unless `--overwrite` asks for them to go first (with `--resume` only of a checkpoint
 *   elsewhere: it would remove what it resumes).
 *
 * Then, while the run trains, what stops it early and cleanly (below: stop signals).
 *
 * @module
 */

import { hostname } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { parentPid } from "../ddp/libc.ts";
import { checkpointsDir, HEAD_FILE, listCheckpoints, listTemporaryFolders } from "./checkpoint.ts";

/** The lock file's name in the log folder. */
export const LOCK_FILE = "train.lock";

/** What the lock file says about its holder. */
export interface LockOwner {
  pid: number;
  host: string;
  /** ISO time the run started. */
  startedAt: string;
}

/** A claimed log folder; `release` at the run's end (the lock file goes). */
export interface LogDirClaim {
  release(): Promise<void>;
}

/** What {@linkcode claimLogDir} needs of the run's options. */
export interface LogDirOptions {
  logDir: string;
  /** The checkpoint the run resumes (`--resume`: a folder or "latest"), or null. */
  resume: string | null;
  /** Remove an earlier run's outputs ({@linkcode RUN_OUTPUTS}) first (`--overwrite`). */
  overwrite: boolean;
}

/**
 * What a run leaves in its log folder: a fresh run is refused where any of them is, and
 * `--overwrite` removes them.
 */
export const RUN_OUTPUTS = [
  "checkpoints",
  "log.txt",
  "model",
  "run.json",
  "figure.html",
  "figure.svg",
  "figure.png",
  "report.html",
] as const;

/**
 * Claims `o.logDir` for this process (see the module's description); `say` prints what was
 * done. On an error nothing is held.
 */
export async function claimLogDir(
  o: LogDirOptions,
  say: (line: string) => void,
): Promise<LogDirClaim> {
  const dir = o.logDir;
  if (dir === "") throw new Error('--log-dir expects a folder, found ""');
  if (o.overwrite && o.resume && resumesFromInside(o.resume, dir)) {
    throw new Error(
      `--overwrite would remove the checkpoint that --resume ${o.resume} continues from: pass only one of them`,
    );
  }
  await makeFolder(dir);
  const release = await takeLock(dir, say);
  try {
    await removeInterruptedWrites(checkpointsDir(dir), say);
    const earlier = await earlierOutputs(dir);
    if (!o.resume && earlier.length && !o.overwrite) {
      const hasCheckpoints = earlier.some((e) => e.name === "checkpoints" && e.checkpoints);
      throw new Error(
        `--log-dir ${dir} already holds an earlier run's ${
          earlier.map((e) => e.label).join(", ")
        }: ${
          hasCheckpoints ? "continue it with --resume latest, " : ""
        }start over with --overwrite (removes them), or pick a new --log-dir`,
      );
    }
    if (o.overwrite) await removeEarlierRun(dir, earlier, say);
  } catch (e) {
    await release();
    throw e;
  }
  return { release };
}

/** One of {@linkcode RUN_OUTPUTS} found in a log folder, described for a message. */
interface FoundOutput {
  name: (typeof RUN_OUTPUTS)[number];
  label: string;
  /** For checkpoints/: how many complete checkpoints it holds. */
  checkpoints?: number;
}

/** The earlier run's outputs in `dir`; a checkpoints/ folder with nothing but HEAD is none. */
async function earlierOutputs(dir: string): Promise<FoundOutput[]> {
  const found: FoundOutput[] = [];
  for (const name of RUN_OUTPUTS) {
    const path = join(dir, name);
    const info = await Deno.stat(path).catch(() => null);
    if (!info) continue;
    if (name === "checkpoints") {
      const all = await listCheckpoints(path).catch(() => []);
      let entries = 0;
      // HEAD alone (its checkpoints deleted) is nothing of a run's
      for await (const e of Deno.readDir(path)) if (e.name !== HEAD_FILE) entries++;
      if (!entries) continue;
      const label = all.length
        ? `checkpoints/ (${all.length} checkpoint(s), newest ${all[all.length - 1].path})`
        : "checkpoints/";
      found.push({ name, label, checkpoints: all.length });
    } else {
      found.push({ name, label: info.isDirectory ? `${name}/` : name });
    }
  }
  return found;
}

/** Whether `resume` names `latest` or a folder in `<dir>/checkpoints`. */
function resumesFromInside(resume: string, dir: string): boolean {
  if (resume === "latest") return true;
  const rel = relative(resolve(checkpointsDir(dir)), resolve(resume));
  return !rel.startsWith("..") && !rel.startsWith("/");
}

/** Makes the folder, or says why `--log-dir` cannot be one. */
async function makeFolder(dir: string): Promise<void> {
  const info = await Deno.stat(dir).catch(() => null);
  if (info && !info.isDirectory) throw new Error(`--log-dir ${dir} is a file, expected a folder`);
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new Error(`--log-dir ${dir} cannot be made: ${(e as Error).message}`);
  }
}

/**
 * Locks the folder `dir` (an exclusive flock on a descriptor of the folder itself), refusing
 * when another process holds it, and writes this process into `<dir>/train.lock` for the
 * message a second trainer gets; returns the release.
 */
async function takeLock(dir: string, say: (line: string) => void): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  let folder: Deno.FsFile;
  try {
    folder = await Deno.open(dir, { read: true });
  } catch (e) {
    throw new Error(`--log-dir ${dir} cannot be opened: ${(e as Error).message}`);
  }
  let owned = false;
  try {
    if (!(await folder.tryLock(true))) {
      const owner = parseOwner(await Deno.readTextFile(path).catch(() => ""));
      throw new Error(
        `--log-dir ${dir} is in use by another trainer (${
          owner ? describeOwner(owner) : "see " + path
        }): wait for it to end, or pick another --log-dir`,
      );
    }
    // a text left behind with the folder unlocked: its holder ended without releasing it
    const stale = parseOwner(await Deno.readTextFile(path).catch(() => ""));
    if (stale) {
      say(
        `took over the stale lock ${path} of ${
          describeOwner(stale)
        }: that run is no longer running`,
      );
    }
    const release = await writeOwner(path, folder);
    owned = true;
    return release;
  } finally {
    if (!owned) folder.close();
  }
}

/** Writes this process as the lock's holder; returns the release (the file goes, then the lock). */
async function writeOwner(path: string, folder: Deno.FsFile): Promise<() => Promise<void>> {
  const owner: LockOwner = { pid: Deno.pid, host: hostname(), startedAt: new Date().toISOString() };
  try {
    await Deno.writeTextFile(path, JSON.stringify(owner) + "\n");
  } catch (e) {
    throw new Error(`--log-dir ${dirname(path)} is not writable: ${(e as Error).message}`);
  }
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await Deno.remove(path).catch(() => {});
    folder.close(); // drops the flock
  };
}

function parseOwner(text: string): LockOwner | null {
  try {
    const o = JSON.parse(text);
    return typeof o?.pid === "number" && typeof o?.host === "string" ? o : null;
  } catch {
    return null;
  }
}

/** The holder of a lock; a lock text written by hand may lack the start time. */
function describeOwner(o: LockOwner): string {
  const started = typeof o.startedAt === "string" ? `, started ${o.startedAt}` : "";
  return `pid ${o.pid} on host ${o.host}${started}`;
}

/**
 * Whether `pid` runs on this machine (Linux's /proc; a zombie is dead). Without /proc: false,
 * as the folder's lock already says no live trainer writes here.
 */
export function pidAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Removes the `step_*.tmp-<pid>` folders of processes that are gone, saying so. */
async function removeInterruptedWrites(dir: string, say: (line: string) => void): Promise<void> {
  for (const t of await listTemporaryFolders(dir).catch(() => [])) {
    if (pidAlive(t.pid)) {
      say(`left ${t.path}: pid ${t.pid} still runs (remove it once that process is over)`);
      continue;
    }
    await Deno.remove(t.path, { recursive: true });
    say(`removed ${t.path}: an interrupted checkpoint write (pid ${t.pid} is gone)`);
  }
}

/** `--overwrite`: the earlier run's outputs removed, saying which. */
async function removeEarlierRun(
  dir: string,
  earlier: readonly FoundOutput[],
  say: (line: string) => void,
): Promise<void> {
  for (const e of earlier) await Deno.remove(join(dir, e.name), { recursive: true });
  if (earlier.length) {
    say(`--overwrite: removed ${earlier.map((e) => e.label).join(", ")} from ${dir}`);
  }
}

// ---- stop signals ----
//
// When a run stops early: Ctrl-C, SIGTERM or SIGHUP (a closed terminal), or its parent process gone (the `deno task train`
// wrapper or the DDP launcher killed, even with SIGKILL). Either is remembered, so the loop
// finishes the step, saves a checkpoint and returns: nothing is lost, and no trainer or rank
// runs on unattended. The parent is checked every second and at every step.

/** What the loop asks once per step, and what ends the watch. */
export interface StopWatch {
  /** Why the run should stop after this step (the first cause), else null. */
  stopSignal: () => string | null;
  /** Removes the signal handlers and the parent check (the run's end). */
  dispose: () => void;
}

/** Watches for Ctrl-C, SIGTERM, SIGHUP and the parent's death; `enabled` false watches nothing. */
export function catchStopSignals(rank: number, enabled: boolean): StopWatch {
  let signalled: string | null = null;
  const stop = (why: string): void => {
    if (!signalled) console.error(`rank ${rank}: ${why}: stopping after this step`);
    signalled ??= why;
  };
  const handlers: [Deno.Signal, () => void][] = enabled
    ? [
      ["SIGINT", () => stop("SIGINT")],
      ["SIGTERM", () => stop("SIGTERM")],
      // a closed terminal or a dropped ssh session: a stop like Ctrl-C, not a kill
      ["SIGHUP", () => stop("SIGHUP")],
    ]
    : [];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  const checkParent = enabled ? parentWatch(stop) : () => {};
  // between the awaits of a step too, so a long step still notices within a second
  const timer = enabled ? setInterval(checkParent, 1000) : undefined;
  if (timer !== undefined) Deno.unrefTimer(timer);
  return {
    stopSignal: () => {
      checkParent();
      return signalled;
    },
    dispose: () => {
      clearInterval(timer);
      for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    },
  };
}

/**
 * A check that calls `stop` once the parent has died: its pid changes when the process is
 * reparented (to init or a subreaper). Where libc cannot be reached (no FFI permission), none.
 */
function parentWatch(stop: (why: string) => void): () => void {
  let parent: number;
  try {
    parent = parentPid();
  } catch {
    return () => {};
  }
  return () => {
    if (parentPid() !== parent) stop(`the parent process (pid ${parent}) is gone`);
  };
}
