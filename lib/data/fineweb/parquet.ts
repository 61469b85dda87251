/**
 * Parquet input for FineWeb: the `text` column, one row group at a time, read with `hyparquet`
 * (pure JavaScript, no native code, reads only the byte ranges it asks for from a file handle)
 * and `hyparquet-compressors` (zstd, gzip, brotli, lz4 besides its built-in snappy: Hugging
 * Face's exports use snappy, other writers zstd).
 *
 * @module
 */

import { type AsyncBuffer, type FileMetaData, parquetMetadataAsync, parquetRead } from "hyparquet";
import { compressors } from "hyparquet-compressors";

/** A file handle as hyparquet's `AsyncBuffer`: it reads only the byte ranges it asks for. */
async function fileAsyncBuffer(path: string): Promise<AsyncBuffer & { close(): void }> {
  const handle = await Deno.open(path, { read: true });
  const byteLength = (await handle.stat()).size;
  return {
    byteLength,
    async slice(start: number, end = byteLength): Promise<ArrayBuffer> {
      const out = new Uint8Array(end - start);
      await handle.seek(start, Deno.SeekMode.Start);
      let got = 0;
      while (got < out.length) {
        const n = await handle.read(out.subarray(got));
        if (n === null) throw new Error(`${path}: unexpected end of file at byte ${start + got}`);
        got += n;
      }
      return out.buffer;
    },
    close(): void {
      handle.close();
    },
  };
}

/**
 * A run of consecutive documents of one input file: what every reader yields (parquet here,
 * jsonl and plain text in documents.ts).
 */
export interface DocumentBatch {
  /** The input's index. */
  file: number;
  /** The row (document) index of `texts[0]` within that file. */
  row: number;
  texts: string[];
  /**
   * How far through its file the reader is after this batch, 0-1 (rows for parquet, bytes for
   * jsonl), for the progress bar's estimate of the total; unknown when left out.
   */
  through?: number;
}

/**
 * The `text` column of the parquet file at `path` from row `firstRow` on, as batches of at
 * most `batchDocs` documents of input `file`; whole row groups before `firstRow` are skipped.
 *
 * @throws {Error} naming the file for a file that is not parquet, has no `text` column, or
 * a row group that cannot be read.
 */
export async function* readParquet(
  path: string,
  file: number,
  firstRow: number,
  batchDocs: number,
): AsyncGenerator<DocumentBatch> {
  const buffer = await fileAsyncBuffer(path);
  try {
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (error) {
      throw new Error(`${path}: not a readable parquet file (${(error as Error).message})`);
    }
    const columns = metadata.schema.slice(1).map((s) => s.name);
    if (!columns.includes("text")) {
      throw new Error(`${path}: expected a "text" column, found ${columns.join(", ")}`);
    }
    const rows = metadata.row_groups.reduce((n, g) => n + Number(g.num_rows), 0);
    let groupStart = 0;
    for (const group of metadata.row_groups) {
      const groupEnd = groupStart + Number(group.num_rows);
      // skip whole row groups before the resume point without decompressing them
      if (groupEnd > firstRow) {
        const rowStart = Math.max(groupStart, firstRow);
        const texts = await readTextColumn(buffer, metadata, rowStart, groupEnd, path);
        for (let i = 0; i < texts.length; i += batchDocs) {
          const batch = texts.slice(i, i + batchDocs);
          const through = (rowStart + i + batch.length) / rows;
          yield { file, row: rowStart + i, texts: batch, through };
        }
      }
      groupStart = groupEnd;
    }
  } finally {
    buffer.close();
  }
}

async function readTextColumn(
  file: AsyncBuffer,
  metadata: FileMetaData,
  rowStart: number,
  rowEnd: number,
  path: string,
): Promise<string[]> {
  let rows: unknown[][] = [];
  try {
    await parquetRead({
      file,
      metadata,
      columns: ["text"],
      rowStart,
      rowEnd,
      compressors,
      onComplete: (r: unknown[][]) => {
        rows = r;
      },
    });
  } catch (error) {
    throw new Error(
      `${path}: could not read rows ${rowStart}-${rowEnd} (${(error as Error).message})`,
    );
  }
  return rows.map(([text], i) => {
    if (typeof text !== "string") {
      throw new Error(`${path}: row ${rowStart + i}: expected a string "text", found ${text}`);
    }
    return text;
  });
}
