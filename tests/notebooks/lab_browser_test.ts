/**
 * The notebooks in JupyterLab, in Chromium (`tools/notebooks/jupyter_lab.ts`), as a learner uses
 * them:
 *
 * - a small notebook (`interrupt_notebook.ts`): Run > Run All Cells, the toolbar's Interrupt
 *   while its training loop runs (the cell must end within a few seconds with its "interrupted
 *   at step N" line, the next cell must run and read the loop's variables), File > Save
 *   Notebook, and each cell's expected texts under that very cell in the saved file;
 * - every committed notebook opened unrun, untrusted as a fresh checkout is: each figure in its
 *   committed outputs drawn as an image (Lab draws no SVG of an untrusted notebook, so a figure
 *   needs its PNG).
 *
 * Needs JupyterLab (`pip install jupyterlab`; `deno task setup` installs it) and Debian's
 * chromium.
 *
 * @module
 */

import { ok } from "node:assert/strict";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../../tools/chromium.ts";
import type { JupyterServer } from "../../tools/notebooks/jupyter_ui.ts";
import {
  type LabState,
  labUnavailable,
  openInLab,
  startJupyterLab,
} from "../../tools/notebooks/jupyter_lab.ts";
import {
  type Notebook,
  type NotebookOutput,
  notebookProblems,
  readNotebook,
} from "../../tools/notebooks/notebook_checks.ts";
import {
  AFTER_CELL,
  INTERRUPTED_TEXT,
  interruptNotebook,
  RUNNING_TEXT,
  STOP_SECONDS,
  TRAINING_CELL,
} from "./interrupt_notebook.ts";

const NOTEBOOKS: string = fileURLToPath(new URL("../../notebooks/", import.meta.url));

function listNotebooks(): string[] {
  return [...Deno.readDirSync(NOTEBOOKS)]
    .filter((e) => e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith("."))
    .map((e) => join(NOTEBOOKS, e.name)).sort();
}

/** The cells' outputs so far, for failure messages. */
function shown(state: LabState): string {
  return [
    `  kernel ${state.kernel}`,
    ...state.cells.map((c, i) => `  cell ${i + 1} [${c.count ?? " "}] ${JSON.stringify(c.text)}`),
  ].join("\n");
}

/**
 * The page's errors, less Lab's debugger asking a kernel without a debugger (Deno's) for its
 * state, which Lab raises and shows nothing of.
 */
function pageProblems(errors: string[]): string[] {
  return errors.filter((e) => !e.includes("No active debugger session"))
    .map((e) => `the page raised ${e}`);
}

/** Whether an output is a figure: an image, or HTML that draws one. */
function isFigure(out: NotebookOutput): boolean {
  const data = out.data ?? {};
  if (Object.keys(data).some((mime) => mime.startsWith("image/"))) return true;
  const html = data["text/html"];
  const text = Array.isArray(html) ? html.join("") : html ?? "";
  return /<(svg|canvas|script|img)\b/i.test(text);
}

/**
 * Run All on the interrupt notebook, the toolbar's Interrupt once its training loop runs, and
 * the checks on the cells and the saved file.
 */
async function runAndInterrupt(browser: Browser, server: JupyterServer): Promise<void> {
  const source = interruptNotebook();
  const lab = await openInLab(browser, server, source, "interrupt.ipynb");
  try {
    await lab.menu("Run", "Run All Cells");
    const training = (s: LabState) => s.cells[TRAINING_CELL];
    await lab.waitFor(
      (s) => training(s).text.includes(RUNNING_TEXT),
      120,
      (s) => `the training cell did not print "${RUNNING_TEXT}" in 120 s:\n${shown(s)}`,
    );
    const clicked = performance.now();
    await lab.interrupt();
    await lab.waitFor(
      (s) => training(s).count !== null,
      STOP_SECONDS,
      (s) =>
        `the training cell still ran ${STOP_SECONDS} s after the toolbar's Interrupt ` +
        `(the kernel did not stop the loop):\n${shown(s)}`,
    );
    const stopped = (performance.now() - clicked) / 1000;
    console.log(`the training cell ended ${stopped.toFixed(1)} s after Interrupt`);
    const done = await lab.waitFor(
      (s) => s.cells[AFTER_CELL].count !== null && s.kernel === "idle",
      60,
      (s) => `the cell after the interrupted one did not run in 60 s:\n${shown(s)}`,
    );
    ok(
      training(done).text.includes(INTERRUPTED_TEXT),
      `the training cell ended without "${INTERRUPTED_TEXT}":\n${shown(done)}`,
    );
    const saved = await lab.save();
    const problems = [
      ...notebookProblems(saved, source),
      ...pageProblems(lab.pageErrors),
    ];
    if (problems.length > 0) {
      throw new Error(`the notebook saved by JupyterLab:\n  ${problems.join("\n  ")}`);
    }
  } finally {
    await lab.close();
  }
}

/** Opens a committed notebook unrun and checks that each of its figures is drawn. */
async function checkFigures(
  browser: Browser,
  server: JupyterServer,
  page: Page,
  path: string,
  notebook: Notebook,
  expected: number[],
): Promise<void> {
  const lab = await openInLab(browser, server, notebook, basename(path), {
    waitForKernel: false,
    page,
  });
  try {
    // Lab attaches the cells below the first screens when idle, or scrolled to: scroll to
    // the end until every cell is in the page
    await lab.page.waitForFunction(
      (count) => {
        // deno-lint-ignore no-explicit-any
        const lab = (globalThis as any).jupyterapp.shell.currentWidget.content;
        lab.scrollToItem(count - 1);
        return lab.node.querySelectorAll(".jp-Cell").length === count;
      },
      notebook.cells.length,
      { timeout: 60_000, polling: 250 },
    ).catch(() => {});
    // each cell's images that Lab rendered and the browser decoded
    const drawn: number[] = await lab.page.evaluate(async () => {
      // deno-lint-ignore no-explicit-any
      const notebook = (globalThis as any).jupyterapp.shell.currentWidget.content;
      const cells = [...notebook.node.querySelectorAll(".jp-Cell")];
      return await Promise.all(cells.map(async (cell) => {
        let decoded = 0;
        for (const img of cell.querySelectorAll(".jp-OutputArea-output img")) {
          img.scrollIntoView();
          await img.decode().catch(() => {});
          if (img.naturalWidth > 0 && img.naturalHeight > 0) decoded++;
        }
        return decoded;
      }));
    });
    const problems: string[] = [];
    if (drawn.length !== notebook.cells.length) {
      problems.push(`Lab shows ${drawn.length} cells, the file has ${notebook.cells.length}`);
    }
    expected.forEach((want, i) => {
      if ((drawn[i] ?? 0) < want) {
        problems.push(
          `cell ${i + 1}: ${drawn[i] ?? 0} of its ${want} figures drawn as an image ` +
            "(an untrusted notebook shows no SVG or script: commit a PNG beside it)",
        );
      }
    });
    problems.push(...pageProblems(lab.pageErrors));
    if (problems.length > 0) {
      throw new Error(`${basename(path)} in JupyterLab:\n  ${problems.join("\n  ")}`);
    }
  } finally {
    await lab.close();
  }
}

Deno.test("notebooks in JupyterLab: Run All, Interrupt, Save; the committed ones' figures", async (t) => {
  const missing = labUnavailable();
  if (missing) throw new Error(`Cannot run notebooks in JupyterLab: ${missing}`);
  const server = await startJupyterLab();
  const browser = await launchChromium();
  try {
    // a page of its own: a kernel that a failed interrupt killed leaves a dialog on it
    await t.step(
      "Run All, Interrupt mid-training, the next cell runs, Save",
      () => runAndInterrupt(browser, server),
    );
    // one page for the committed notebooks: Lab loads once, each opens as from the file browser
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    for (const path of listNotebooks()) {
      const notebook = await readNotebook(path);
      const expected = notebook.cells.map((cell) => (cell.outputs ?? []).filter(isFigure).length);
      const figures = expected.reduce((a, b) => a + b, 0);
      if (figures === 0) continue;
      await t.step(
        `${basename(path)} unrun: its ${figures} figures drawn`,
        () => checkFigures(browser, server, page, path, notebook, expected),
      );
    }
    await page.close();
  } finally {
    await browser.close();
    await server.stop();
  }
});
