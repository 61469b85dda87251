/**
 * The notebooks as committed, readable without running them: every code cell carries the
 * outputs of a real run (`deno task notebooks`), those outputs still meet the cell's
 * expectations, no cell changed after its outputs were saved, and no output carries a script
 * or the plotly bundle (figures are committed as PNG).
 *
 * @module
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SOURCE_HASH_KEY, sourceHash } from "../../tools/notebooks/committed_outputs.ts";
import { joinText, notebookProblems, readNotebook } from "../../tools/notebooks/notebook_checks.ts";

const NOTEBOOKS: string = fileURLToPath(new URL("../../notebooks/", import.meta.url));
/** Large enough for a notebook's PNG figures, far below one inlined plotly bundle (4.8 MB). */
const MAX_BYTES = 2_500_000;

function listNotebooks(): string[] {
  return [...Deno.readDirSync(NOTEBOOKS)]
    .filter((e) => e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith("."))
    .map((e) => join(NOTEBOOKS, e.name)).sort();
}

for (const path of listNotebooks()) {
  Deno.test(`committed notebook: ${basename(path)} carries current outputs`, async () => {
    const notebook = await readNotebook(path);
    const found = notebookProblems(notebook);
    for (const [index, cell] of notebook.cells.entries()) {
      if (cell.cell_type !== "code" || joinText(cell.source).trim() === "") continue;
      const where = `cell ${index + 1}`;
      if ((cell.outputs ?? []).length === 0 && (cell.metadata?.expect ?? []).length > 0) {
        found.push(`${where} has no outputs`);
      }
      const saved = cell.metadata?.[SOURCE_HASH_KEY];
      if (saved !== await sourceHash(cell)) {
        found.push(`${where} changed after its outputs were saved`);
      }
      for (const out of cell.outputs ?? []) {
        if (joinText(out.data?.["text/html"]).includes("<script")) {
          found.push(`${where} has an output with a <script> (commit figures as PNG)`);
        }
      }
    }
    const bytes = (await Deno.stat(path)).size;
    if (bytes > MAX_BYTES) found.push(`${bytes} bytes, expected at most ${MAX_BYTES}`);
    assert.ok(
      found.length === 0,
      `${basename(path)}:\n  ${found.join("\n  ")}\nRun \`deno task notebooks ${
        basename(path, ".ipynb")
      }\` to run it in Jupyter and save its outputs`,
    );
  });
}
