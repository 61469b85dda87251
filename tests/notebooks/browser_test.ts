/**
 * Every notebook run as a learner runs it: in the real Jupyter Notebook UI in Chromium, with
 * "Run All" and then "Save" (`tools/notebooks/jupyter_ui.ts`). The file the UI saved must have
 * every code cell run, no error output, no JavaScript error in the page, and each cell's
 * expected texts (`metadata.expect`) under that very cell: output that Deno's kernel sent late
 * lands under the next cell or nowhere, and fails here.
 *
 * And Kernel > Interrupt: a small notebook (`interrupt_notebook.ts`) run with "Run All", its
 * training loop interrupted from the menu; the cell must end within a few seconds with its
 * "interrupted at step N" line and the next cell must run with the loop's variables.
 * (`lab_browser_test.ts` does the same in JupyterLab.)
 *
 * Needs Debian's jupyter-notebook and chromium (`deno task setup` installs both). Time limit
 * per notebook in seconds: `NOTEBOOK_TIMEOUT` (default 1200).
 *
 * @module
 */

import { ok } from "node:assert/strict";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "../../tools/chromium.ts";
import {
  openInUi,
  runInUi,
  startJupyter,
  type UiState,
  uiUnavailable,
} from "../../tools/notebooks/jupyter_ui.ts";
import { notebookProblems, readNotebook } from "../../tools/notebooks/notebook_checks.ts";
import {
  AFTER_CELL,
  INTERRUPTED_TEXT,
  interruptNotebook,
  RUNNING_TEXT,
  STOP_SECONDS,
  TRAINING_CELL,
} from "./interrupt_notebook.ts";

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

/** The cells' outputs so far, for failure messages. */
function shown(state: UiState): string {
  return [
    `  kernel ${state.idle ? "idle" : "busy"}`,
    ...state.cells.map((c, i) => `  cell ${i + 1} [${c.prompt ?? " "}] ${JSON.stringify(c.text)}`),
  ].join("\n");
}

Deno.test("Jupyter UI: Kernel > Interrupt mid-training, the next cell runs", async () => {
  const missing = uiUnavailable();
  if (missing) throw new Error(`Cannot run notebooks in Jupyter: ${missing}`);
  const server = await startJupyter();
  const browser = await launchChromium();
  try {
    const source = interruptNotebook();
    const ui = await openInUi(browser, server, source, "interrupt.ipynb");
    try {
      await ui.menu("celllink", "run_all_cells");
      const training = (s: UiState) => s.cells[TRAINING_CELL];
      await ui.waitFor(
        (s) => training(s).text.includes(RUNNING_TEXT),
        120,
        (s) => `the training cell did not print "${RUNNING_TEXT}" in 120 s:\n${shown(s)}`,
      );
      const clicked = performance.now();
      await ui.menu("kernellink", "int_kernel");
      await ui.waitFor(
        (s) => typeof training(s).prompt === "number",
        STOP_SECONDS,
        (s) =>
          `the training cell still ran ${STOP_SECONDS} s after Kernel > Interrupt ` +
          `(the kernel did not stop the loop):\n${shown(s)}`,
      );
      const stopped = (performance.now() - clicked) / 1000;
      console.log(`the training cell ended ${stopped.toFixed(1)} s after Interrupt`);
      const done = await ui.waitFor(
        (s) => typeof s.cells[AFTER_CELL].prompt === "number" && s.idle,
        60,
        (s) => `the cell after the interrupted one did not run in 60 s:\n${shown(s)}`,
      );
      ok(
        training(done).text.includes(INTERRUPTED_TEXT),
        `the training cell ended without "${INTERRUPTED_TEXT}":\n${shown(done)}`,
      );
      const saved = await ui.save();
      const problems = [
        ...notebookProblems(saved, source),
        ...ui.pageErrors.map((e) => `the page raised ${e}`),
      ];
      if (problems.length > 0) {
        throw new Error(`the notebook saved by the Jupyter UI:\n  ${problems.join("\n  ")}`);
      }
    } finally {
      await ui.close();
    }
  } finally {
    await browser.close();
    await server.stop();
  }
});
