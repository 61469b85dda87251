/**
 * Every notebook run as a learner runs it: in the real Jupyter Notebook UI in Chromium, with
 * "Run All" and then "Save" (`tools/notebooks/jupyter_ui.ts`). The file the UI saved must have
 * every code cell run, no error output, no JavaScript error in the page, and each cell's
 * expected texts (`metadata.expect`) under that very cell: output that Deno's kernel sent late
 * lands under the next cell or nowhere, and fails here.
 *
 * Needs Debian's jupyter-notebook and chromium (`deno task setup` installs both). Time limit
 * per notebook in seconds: `NOTEBOOK_TIMEOUT` (default 1200).
 *
 * @module
 */

import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "../../tools/chromium.ts";
import { runInUi, startJupyter, uiUnavailable } from "../../tools/notebooks/jupyter_ui.ts";
import { notebookProblems, readNotebook } from "../../tools/notebooks/notebook_checks.ts";

const NOTEBOOKS: string = fileURLToPath(new URL("../../notebooks/", import.meta.url));
const TIMEOUT = Number(Deno.env.get("NOTEBOOK_TIMEOUT") ?? "1200");

function listNotebooks(): string[] {
  return [...Deno.readDirSync(NOTEBOOKS)]
    .filter((e) => e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith("."))
    .map((e) => join(NOTEBOOKS, e.name)).sort();
}

Deno.test("notebooks in the Jupyter UI: Run All, Save, each cell's output under it", async (t) => {
  const missing = uiUnavailable();
  if (missing) throw new Error(`Cannot run the notebooks in Jupyter: ${missing}`);
  const server = await startJupyter();
  const browser = await launchChromium();
  try {
    for (const path of listNotebooks()) {
      await t.step(basename(path), async () => {
        const run = await runInUi(browser, server, path, { timeoutSeconds: TIMEOUT });
        const problems = [
          ...notebookProblems(run.saved, await readNotebook(path)),
          ...run.pageErrors.map((e) => `the page raised ${e}`),
        ];
        if (problems.length > 0) {
          throw new Error(`${basename(path)} in the Jupyter UI:\n  ${problems.join("\n  ")}`);
        }
      });
    }
  } finally {
    await browser.close();
    await server.stop();
  }
});
