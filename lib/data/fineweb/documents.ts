/**
 * The documents of FineWeb's inputs, in order and in batches: parquet files (Hugging Face's
 * layout, a `text` column; see parquet.ts), jsonl files (a `"text"` field per line) or plain
 * text files (the whole file is one document). A run resumes at a file and row.
 *
 * @module
 */

import { extname } from "node:path";
import { invalidUtf8Offset, readTextFileStrict } from "../../io/files.ts";
import { type DocumentBatch, readParquet } from "./parquet.ts";

/** One input file of documents. */
export interface DocumentInput {
  /** What identifies the file in the progress record and in errors (a path or hub path). */
  name: string;
  /**
   * The file's size in bytes, when known before it is read (a local file, a hub listing): it
   * weighs the file in the progress bar's estimate of the total.
   */
  size?: number;
  /** The local path, downloading first where needed; called when the file's turn comes. */
  path(): Promise<string>;
}

export type { DocumentBatch };

/** Local files as inputs (`.parquet`, `.jsonl`, or any other file as one text document). */
export function localInputs(paths: string[]): DocumentInput[] {
  return paths.map((p) => ({ name: p, size: fileSize(p), path: () => Promise.resolve(p) }));
}

/** The file's size, or undefined where it cannot be read (the read reports why, later). */
function fileSize(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch {
    return undefined;
  }
}

/**
 * The documents of `inputs` in order, from input `start.file`, row `start.row` on, in
 * batches of at most `batchDocs` documents that never span two files. An empty text file is
 * no document (as a blank jsonl line is none).
 *
 * @throws {Error} naming the file (and line) for a jsonl line without a string `"text"`, a
 * parquet file without a `text` column, a file that cannot be parsed, or a text or jsonl file
 * that is not UTF-8.
 */
export async function* readDocuments(
  inputs: DocumentInput[],
  start: { file: number; row: number } = { file: 0, row: 0 },
  batchDocs = 1024,
): AsyncGenerator<DocumentBatch> {
  for (let file = start.file; file < inputs.length; file++) {
    const path = await inputs[file].path();
    const firstRow = file === start.file ? start.row : 0;
    const ext = extname(path).toLowerCase();
    try {
      if (ext === ".parquet") {
        yield* readParquet(path, file, firstRow, batchDocs);
      } else if (ext === ".jsonl" || ext === ".json" || ext === ".ndjson") {
        yield* readJsonl(path, file, firstRow, batchDocs);
      } else if (firstRow === 0) {
        const text = await readTextFileStrict(path);
        if (text !== "") yield { file, row: 0, texts: [text], through: 1 };
      }
    } catch (error) {
      // the OS's own words name neither the input nor what was being done with it
      if (!isOsError(error)) throw error;
      throw new Error(`Cannot read the input ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
}

async function* readJsonl(
  path: string,
  file: number,
  firstRow: number,
  batchDocs: number,
): AsyncGenerator<DocumentBatch> {
  let row = 0, lineNo = 0;
  let batch: DocumentBatch = { file, row: firstRow, texts: [] };
  const handle = await Deno.open(path, { read: true });
  const size = (await handle.stat()).size;
  let read = 0; // bytes of the chunks before the current one
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const take = (bytes: Uint8Array): void => {
    lineNo++;
    let line: string;
    try {
      line = decoder.decode(bytes);
    } catch {
      throw new Error(
        `${path}:${lineNo}: expected UTF-8 text, found bytes that are not UTF-8 ` +
          `(at byte ${invalidUtf8Offset(bytes) + 1} of the line)`,
      );
    }
    if (line.trim() === "") return; // blank lines are not documents
    if (row++ < firstRow) return;
    let text: unknown;
    try {
      text = (JSON.parse(line) as { text?: unknown }).text;
    } catch (error) {
      throw new Error(`${path}:${lineNo}: expected a JSON object, ${(error as Error).message}`);
    }
    if (typeof text !== "string") {
      throw new Error(`${path}:${lineNo}: expected a string "text" field, found ${typeof text}`);
    }
    batch.texts.push(text);
  };
  // lines are cut on the bytes ("\n" is never inside a UTF-8 character) and decoded strictly
  // one by one, so that a bad byte is reported with its line
  const pending: Uint8Array[] = []; // the start of a line that runs over chunks
  try {
    for await (const chunk of handle.readable) {
      let start = 0;
      for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
        pending.push(chunk.subarray(start, nl));
        take(concatBytes(pending.splice(0)));
        start = nl + 1;
        if (batch.texts.length >= batchDocs) {
          yield { ...batch, through: size > 0 ? (read + start) / size : 1 };
          batch = { file, row: row, texts: [] };
        }
      }
      if (start < chunk.length) pending.push(chunk.slice(start));
      read += chunk.length;
    }
  } finally {
    try {
      handle.close();
    } catch {
      // the readable stream closes the file when it ends
    }
  }
  take(concatBytes(pending));
  if (batch.texts.length > 0) yield { ...batch, through: 1 };
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Whether `error` is one of Deno's OS errors (NotFound, PermissionDenied, ...). */
function isOsError(error: unknown): boolean {
  return Object.values(Deno.errors).some((OsError) => error instanceof OsError);
}
