/**
 * `deno task notebooks [NAME...]`: runs the notebooks (all of `notebooks/*.ipynb`, or the
 * named ones) in the real Jupyter UI, as a learner would, and saves their outputs into the
 * committed files, so that a reader on GitHub sees every number and figure without running
 * anything. `tests/notebooks/committed_test.ts` then keeps the committed outputs honest.
 *
 * @module
 */

import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { notebookJson, withCommittedOutputs } from "./committed_outputs.ts";
import { launchChromium } from "../chromium.ts";
import { runInUi, startJupyter, uiUnavailable } from "./jupyter_ui.ts";
import { notebookProblems, readNotebook } from "./notebook_checks.ts";

const NOTEBOOKS: string = fileURLToPath(new URL("../../notebooks/", import.meta.url));

function listNotebooks(names: string[]): string[] {
  const all = [...Deno.readDirSync(NOTEBOOKS)]
    .filter((e) => e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith("."))
    .map((e) => e.name).sort();
  if (names.length === 0) return all.map((name) => join(NOTEBOOKS, name));
  return names.map((name) => {
    const found = all.find((n) => n === name || n === `${name}.ipynb` || n.startsWith(`${name}_`));
    if (!found) {
      throw new Error(`No notebook "${name}" in notebooks/, expected one of ${all.join(", ")}`);
    }
    return join(NOTEBOOKS, found);
  });
}

async function main(): Promise<void> {
  const missing = uiUnavailable();
  if (missing) throw new Error(`Cannot run the notebooks in Jupyter: ${missing}`);
  const notebooks = listNotebooks(Deno.args);
  const server = await startJupyter();
  const browser = await launchChromium();
  let failed = 0;
  try {
    for (const path of notebooks) {
      const source = await readNotebook(path);
      const run = await runInUi(browser, server, path, { progress: (line) => console.log(line) });
      const problems = [...notebookProblems(run.saved, source), ...run.pageErrors];
      if (problems.length > 0) {
        failed++;
        console.error(
          `${basename(path)}: not saved, ${problems.length} problem(s):\n  ${
            problems.join("\n  ")
          }`,
        );
        continue;
      }
      await Deno.writeTextFile(path, notebookJson(await withCommittedOutputs(source, run.saved)));
      console.log(
        `${basename(path)}: ran in ${run.seconds.toFixed(0)} s in the Jupyter UI, outputs saved`,
      );
    }
  } finally {
    await browser.close();
    await server.stop();
  }
  if (failed > 0) {
    console.error(`${failed} notebook(s) left as they were`);
    Deno.exit(1);
  }
}

if (import.meta.main) await main();
