/**
 * A folder owned by one process at a time: a lock file inside it names the process that
 * holds it (pid, its start time, the host), made with `createNew` so that two runs cannot
 * both make it. A second run is refused while the holder lives; a lock whose process is gone
 * (killed, crashed) is taken over, safely when two runs find it at once: the stale file is
 * moved aside under a name of the taker's own, checked to be the same file (inode) that was
 * judged stale, and only then is a new lock made, with `createNew` again.
 *
 * Whether a process lives is read from `/proc/PID/stat` (its start time guards against a pid
 * used again by another process). A lock from another host cannot be checked and is never
 * taken over.
 *
 * @module
 */

/** What a lock file records about its holder. */
export interface LockHolder {
  pid: number;
  /** The holder's start time in clock ticks since boot (`/proc/PID/stat`, field 22). */
  start: number | null;
  host: string;
  /** When the lock was taken, ISO 8601. */
  since: string;
  /** What the holder does there (e.g. "deno task fineweb"). */
  what: string;
}

/** A held lock: {@linkcode FolderLock.release} removes it. */
export interface FolderLock {
  /** The lock file. */
  path: string;
  /** The stale holder this lock took over from, if any. */
  tookOverFrom: LockHolder | undefined;
  /** Removes the lock file if it is still this process's (idempotent). */
  release(): Promise<void>;
}

/**
 * Takes the lock file `path` for `what`, taking over a stale one.
 *
 * @throws {Error} naming `flag`, the folder and the holder when a live process (or one on
 * another host) holds it.
 */
export async function lockFolder(
  path: string,
  options: { what: string; flag: string; folder: string },
): Promise<FolderLock> {
  const me: LockHolder = {
    pid: Deno.pid,
    start: processStart(Deno.pid),
    host: Deno.hostname(),
    since: new Date().toISOString(),
    what: options.what,
  };
  let tookOverFrom: LockHolder | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await Deno.writeTextFile(path, JSON.stringify(me) + "\n", { createNew: true });
      return {
        path,
        tookOverFrom,
        release: () => releaseLock(path, me),
      };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) {
        throw new Error(
          `${options.flag} ${options.folder}: cannot make the lock file ${path} (${
            (e as Error).message
          })`,
        );
      }
    }
    const found = await readHolder(path);
    if (found === undefined) continue; // gone meanwhile: try again
    const { holder, ino } = found;
    if (holder === null || isAlive(holder)) {
      throw new Error(
        `${options.flag} ${options.folder} is in use: ${describeHolder(holder, path)}; ` +
          `wait for it to end, or pass another ${options.flag}`,
      );
    }
    // stale: move it aside under a name of this process's own, and make sure it is the file
    // judged stale (not a fresh lock another run made meanwhile) before making a new one
    const aside = `${path}.stale.${Deno.pid}`;
    try {
      await Deno.rename(path, aside);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue; // another run moved it first
      throw e;
    }
    const moved = await Deno.stat(aside);
    if (moved.ino !== ino) {
      await Deno.rename(aside, path).catch(() => {});
      continue;
    }
    await Deno.remove(aside);
    tookOverFrom = holder;
  }
  throw new Error(`${options.flag} ${options.folder}: could not take the lock ${path}`);
}

/** The start time of process `pid` in clock ticks since boot, or null where it is not known. */
export function processStart(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // the command name (field 2) may hold spaces and parentheses: fields follow the last ')'
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return null; // a zombie has ended
    return Number(fields[19]); // field 22 of the line, the 20th after the name
  } catch {
    return null;
  }
}

/** Whether the lock's holder still runs (always true for another host's: it cannot be seen). */
function isAlive(holder: LockHolder): boolean {
  if (holder.host !== Deno.hostname()) return true;
  const start = processStart(holder.pid);
  if (start === null) return false;
  return holder.start === null || holder.start === start;
}

function describeHolder(holder: LockHolder | null, path: string): string {
  if (holder === null) return `${path} is being written by another run`;
  const where = holder.host === Deno.hostname() ? "" : ` on ${holder.host}`;
  return `${holder.what} (pid ${holder.pid}${where}) has held ${path} since ${holder.since}`;
}

/**
 * The lock's holder and the file's inode; `holder` is null for a file that does not read
 * (being written this instant); undefined when the file is gone.
 */
async function readHolder(
  path: string,
): Promise<{ holder: LockHolder | null; ino: number | null } | undefined> {
  try {
    const info = await Deno.stat(path);
    const text = await Deno.readTextFile(path);
    try {
      const holder = JSON.parse(text) as LockHolder;
      if (typeof holder.pid !== "number") return { holder: null, ino: info.ino };
      return { holder, ino: info.ino };
    } catch {
      // a lock file cut short by a crash is stale once it is old; a fresh one is being written
      const age = Date.now() - (info.mtime?.getTime() ?? 0);
      if (age < 10_000) return { holder: null, ino: info.ino };
      return {
        holder: { pid: -1, start: null, host: Deno.hostname(), since: "?", what: "?" },
        ino: info.ino,
      };
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function releaseLock(path: string, me: LockHolder): Promise<void> {
  try {
    const holder = JSON.parse(await Deno.readTextFile(path)) as LockHolder;
    if (holder.pid === me.pid && holder.since === me.since) await Deno.remove(path);
  } catch {
    // gone already, or not ours any more
  }
}
