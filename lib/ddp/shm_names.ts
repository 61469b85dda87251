/**
 * The names of a job's shared-memory files, and their cleanup. Every file is
 * `/dev/shm/gpt2-ddp-<owner>-<run id>-node<N>[-grads]`, where the owner is the pid of the
 * launcher that started the ranks (`GPT2_DDP_LAUNCHER_PID`), or `x` for ranks started by hand.
 * The ranks unlink each file as soon as all have mapped it, and on every error before that;
 * the launcher removes whatever its job left (a rank killed in that window) once the ranks
 * have exited, and at its start removes the files of launchers that are gone (one killed with
 * SIGKILL cannot clean up after itself).
 *
 * @module
 */

import { join } from "node:path";

/** Where the files are made. */
export const SHM_DIR = "/dev/shm";
const PREFIX = "gpt2-ddp-";

/** The owner part of this job's file names: the launcher's pid, or `x` without one. */
export function shmOwner(): string {
  const pid = Deno.env.get("GPT2_DDP_LAUNCHER_PID");
  return pid && /^\d+$/.test(pid) ? pid : "x";
}

/** The path of a job's file: run `runId`, node `nodeRank`, `suffix` (e.g. "-grads"). */
export function shmPath(runId: string, nodeRank: number, suffix = ""): string {
  return join(SHM_DIR, `${PREFIX}${shmOwner()}-${runId}-node${nodeRank}${suffix}`);
}

/** Removes the files owned by launcher `pid`; returns their paths. */
export function removeJobSegments(pid: number): string[] {
  return removeWhere((owner) => owner === String(pid));
}

/** Removes the files whose launcher is no longer running; returns their paths. */
export function removeStaleSegments(): string[] {
  return removeWhere((owner) => /^\d+$/.test(owner) && !processExists(Number(owner)));
}

function removeWhere(test: (owner: string) => boolean): string[] {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(SHM_DIR)];
  } catch {
    return removed; // no /dev/shm: no shared-memory transport either
  }
  for (const e of entries) {
    if (!e.name.startsWith(PREFIX)) continue;
    const owner = e.name.slice(PREFIX.length).split("-")[0];
    if (!test(owner)) continue;
    const path = join(SHM_DIR, e.name);
    try {
      Deno.removeSync(path);
      removed.push(path);
    } catch {
      // gone meanwhile, or another user's
    }
  }
  return removed;
}

/** Whether a process with this pid exists (a zombie counts as gone). */
function processExists(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}
