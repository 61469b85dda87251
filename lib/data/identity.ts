/**
 * What training data a run read, recorded in its checkpoints so that a resume on other data
 * (another file, or another set of shards under the same name) is caught rather than continued
 * silently: the path, each file's name and size (a text file; a folder's train and val
 * shards), and the SHA-256 of the text file or of the first train shard.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, relative } from "node:path";
import { listShards } from "./shard_loader.ts";

/** A run's data, as a checkpoint records it. */
export interface DataIdentity {
  /** The path the run was given (a text file or a shard folder). */
  path: string;
  kind: "text" | "shards";
  /** The text file, or every train and val shard, with its size in bytes. */
  files: { name: string; bytes: number }[];
  /** SHA-256 of the text file, or of the first train shard's bytes. */
  sha256: string;
}

/** The identity of the data at `path` (a text file or a folder of shards). */
export async function dataIdentity(path: string): Promise<DataIdentity> {
  const info = await Deno.stat(path);
  if (!info.isDirectory) {
    return {
      path,
      kind: "text",
      files: [{ name: basename(path), bytes: info.size }],
      sha256: await sha256File(path),
    };
  }
  const train = await listShards(path, "train");
  const val = await listShards(path, "val");
  const files = [];
  for (const s of [...train, ...val]) {
    files.push({ name: relative(path, s.name), bytes: (await Deno.stat(s.name)).size });
  }
  return {
    path,
    kind: "shards",
    files,
    sha256: train.length ? await sha256File(train[0].name) : "",
  };
}

/**
 * How the data `now` differs from the `recorded` data, in words, or null where it is the same
 * (a moved folder or file with the same contents is the same data).
 */
export function describeDataChange(recorded: DataIdentity, now: DataIdentity): string | null {
  if (recorded.kind !== now.kind) {
    return `it was a ${recorded.kind === "text" ? "text file" : "shard folder"}, now a ${
      now.kind === "text" ? "text file" : "shard folder"
    }`;
  }
  const was = new Map(recorded.files.map((f) => [f.name, f.bytes]));
  const is = new Map(now.files.map((f) => [f.name, f.bytes]));
  const gone = [...was.keys()].filter((n) => !is.has(n));
  const added = [...is.keys()].filter((n) => !was.has(n));
  if (recorded.kind === "shards" && (gone.length || added.length)) {
    return [
      gone.length ? `missing ${gone.join(", ")}` : "",
      added.length ? `new ${added.join(", ")}` : "",
    ].filter(Boolean).join("; ");
  }
  for (const [name, bytes] of is) {
    const before = was.get(name);
    if (before !== undefined && before !== bytes) {
      return `${name} has ${bytes} bytes, the checkpoint's had ${before}`;
    }
  }
  if (recorded.sha256 !== now.sha256) {
    const what = now.kind === "text" ? "the text file" : "the first train shard";
    return `${what} has SHA-256 ${now.sha256}, the checkpoint's had ${recorded.sha256}`;
  }
  return null;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const chunk = new Uint8Array(8 << 20);
  for (let n; (n = await file.read(chunk)) !== null;) hash.update(chunk.subarray(0, n));
  return hash.digest("hex");
}
