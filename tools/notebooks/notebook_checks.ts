/**
 * What a run notebook must show, read from the notebook itself: the checks shared by the
 * browser test (`tests/notebooks/browser_test.ts`, notebooks run in the real Jupyter UI), the
 * committed-outputs test (`tests/notebooks/committed_test.ts`) and the runner's fixture test.
 *
 * A code cell declares what it must print in its metadata, hidden from the reader:
 * `"metadata": {"expect": ["text", ...]}`. Each text must appear in that cell's own outputs
 * (stream text, or the `text/plain` of an execute_result or display_data, ANSI colours
 * removed), so output that lands under another cell, or never arrives, fails.
 *
 * @module
 */

/** The parts of an `.ipynb` output that the checks read. */
export interface NotebookOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[] | undefined>;
  ename?: string;
  evalue?: string;
}

/** The parts of an `.ipynb` cell that the checks read. */
export interface NotebookCell {
  cell_type: string;
  source: string | string[];
  metadata?: { expect?: string[]; [key: string]: unknown };
  execution_count?: number | null;
  outputs?: NotebookOutput[];
}

/** The parts of an `.ipynb` file that the checks read. */
export interface Notebook {
  cells: NotebookCell[];
  metadata?: { kernelspec?: { name?: string } };
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, "g");
/** The old visible marker, now refused: expectations live in the cell's metadata. */
const VISIBLE_EXPECT = /\/\/\s*expect:/;

/** A cell's source or an output's text as one string. */
export function joinText(text: string | string[] | undefined): string {
  if (text === undefined) return "";
  return Array.isArray(text) ? text.join("") : text;
}

/** Reads an `.ipynb` file. */
export async function readNotebook(path: string): Promise<Notebook> {
  return JSON.parse(await Deno.readTextFile(path)) as Notebook;
}

/** The text a cell shows: its streams and the plain text of its results, colours removed. */
export function cellText(cell: NotebookCell): string {
  return (cell.outputs ?? []).map((out) => {
    const text = out.output_type === "stream"
      ? joinText(out.text)
      : joinText(out.data?.["text/plain"]);
    return text.replace(ANSI, "");
  }).join("\n");
}

/**
 * One message per problem in an executed notebook: the kernel is not `deno`, a code cell did
 * not run, a cell raised, or a cell lacks one of its expected texts. `source` gives the
 * expectations (the executed copy may have lost its metadata); by default, `executed`'s own.
 */
export function notebookProblems(executed: Notebook, source: Notebook = executed): string[] {
  const found: string[] = [];
  const kernel = source.metadata?.kernelspec?.name;
  if (kernel !== "deno") {
    found.push(`metadata.kernelspec.name is ${JSON.stringify(kernel)}, expected "deno"`);
  }
  if (executed.cells.length !== source.cells.length) {
    found.push(`${executed.cells.length} cells after the run, expected ${source.cells.length}`);
  }
  executed.cells.forEach((cell, index) => {
    if (cell.cell_type !== "code") return;
    const src = joinText(cell.source);
    if (src.trim() === "") return;
    const where = `cell ${index + 1}`;
    if (VISIBLE_EXPECT.test(src)) {
      found.push(`${where} has a visible "// expect:" line: move it to metadata.expect`);
    }
    if (typeof cell.execution_count !== "number") {
      found.push(`${where} did not run (no execution_count)`);
    }
    for (const out of cell.outputs ?? []) {
      if (out.output_type === "error") {
        found.push(`${where} raised ${out.ename ?? "an error"}: ${out.evalue ?? ""}`);
      }
    }
    const texts = cellText(cell);
    for (const expected of source.cells[index]?.metadata?.expect ?? []) {
      if (expected === "") {
        found.push(`${where} has an empty expectation`);
      } else if (!texts.includes(expected)) {
        const shown = texts === ""
          ? "no output"
          : `output ${JSON.stringify(texts.length > 400 ? `${texts.slice(0, 400)}...` : texts)}`;
        found.push(`${where} should show ${JSON.stringify(expected)}, got ${shown}`);
      }
    }
  });
  return found;
}
