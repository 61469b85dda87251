/**
 * Files and folders replaced whole: what is written goes to a temporary name in the same
 * folder, is flushed to disk (`fsync`), and is then renamed over the old one, so that a crash or
 * a full disk leaves either the old version or the new one, never half of either.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Flushes a file or folder to disk; a file system that cannot (some network ones) is skipped. */
async function syncPath(path: string): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return;
  }
  try {
    await file.sync();
  } catch {
    // fsync of a folder is refused by a few file systems: the rename still orders the writes
  } finally {
    file.close();
  }
}

/** Writes `data` to `path` atomically (a temporary file in its folder, fsync, rename). */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${Deno.pid}`);
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      for (let n = 0; n < bytes.length;) n += await file.write(bytes.subarray(n));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncPath(dirname(path));
}

/** Flushes every file under `dir`, then `dir` itself. */
async function syncTree(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) await syncTree(path);
    else if (e.isFile) await syncPath(path);
  }
  await syncPath(dir);
}

/**
 * Replaces the folder `dir` with what `fill` writes into a fresh temporary folder beside it:
 * the files are flushed, the old folder is moved aside, the new one renamed into place and the
 * old one removed. At every moment `dir` is the old folder or the new one (or, for the instant
 * between the two renames, the old one is whole under `<dir>.old-<pid>`).
 */
export async function replaceFolderAtomic(
  dir: string,
  fill: (tmp: string) => Promise<void>,
): Promise<void> {
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${Deno.pid}`);
  const old = join(dirname(dir), `.${basename(dir)}.old-${Deno.pid}`);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await fill(tmp);
    await syncTree(tmp);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  const hadOld = await Deno.stat(dir).then(() => true, () => false);
  if (hadOld) {
    await Deno.remove(old, { recursive: true }).catch(() => {});
    await Deno.rename(dir, old);
  }
  try {
    await Deno.rename(tmp, dir);
  } catch (e) {
    if (hadOld) await Deno.rename(old, dir).catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  await syncPath(dirname(dir));
  if (hadOld) await Deno.remove(old, { recursive: true });
}
