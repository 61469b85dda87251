/**
 * What a committed notebook keeps of a run: each code cell's outputs and execution count, with
 * the parts a static reader cannot use removed, and a hash of the cell's source so that a test
 * can tell when a cell changed after its outputs were saved.
 *
 * Removed: the interactive plotly figures' `text/html` where the same figure is there as a
 * PNG (the plotly bundle would be 4.8 MB per notebook and does not run on GitHub), and any
 * other `text/html` that carries a `<script>`.
 *
 * @module
 */

import {
  joinText,
  type Notebook,
  type NotebookCell,
  type NotebookOutput,
} from "./notebook_checks.ts";

/** The cell metadata key holding the hash of the source its outputs came from. */
export const SOURCE_HASH_KEY = "outputs_from_source_sha256";

/** The first 16 hex digits of the SHA-256 of a cell's source. */
export async function sourceHash(cell: NotebookCell): Promise<string> {
  const bytes = new TextEncoder().encode(joinText(cell.source));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** An output as committed: without script-carrying HTML or HTML that duplicates an image. */
export function staticOutput(output: NotebookOutput): NotebookOutput {
  if (!output.data) return output;
  const data = { ...output.data };
  const html = joinText(data["text/html"]);
  if (html !== "" && ("image/png" in data || "image/svg+xml" in data || html.includes("<script"))) {
    delete data["text/html"];
  }
  return { ...output, data };
}

/**
 * The `source` notebook with the outputs and execution counts of `executed` (the same cells,
 * run), made static, each code cell stamped with the hash of its source.
 */
export async function withCommittedOutputs(
  source: Notebook,
  executed: Notebook,
): Promise<Notebook> {
  if (source.cells.length !== executed.cells.length) {
    throw new Error(
      `The run has ${executed.cells.length} cells, expected ${source.cells.length} as in the source`,
    );
  }
  const cells: NotebookCell[] = [];
  for (const [index, cell] of source.cells.entries()) {
    if (cell.cell_type !== "code") {
      cells.push(cell);
      continue;
    }
    const run = executed.cells[index];
    cells.push({
      ...cell,
      metadata: { ...cell.metadata, [SOURCE_HASH_KEY]: await sourceHash(cell) },
      execution_count: run.execution_count ?? null,
      outputs: (run.outputs ?? []).map(staticOutput),
    });
  }
  return { ...source, cells };
}

/** A notebook as written to disk: one-space indent, as Jupyter writes, and a final newline. */
export function notebookJson(notebook: Notebook): string {
  return `${JSON.stringify(notebook, null, 1)}\n`;
}
