/**
 * Runs notebooks the way a learner does: in the real Jupyter Notebook UI (Debian's
 * `jupyter notebook`, version 6), in Chromium, with "Cell > Run All", then "File > Save", and
 * reads back the file the UI saved. What Jupyter put under each cell is in that file, so
 * output that the kernel sent late (and the UI drew under the next cell, or dropped) shows up
 * as a missing expectation (`tools/notebooks/notebook_checks.ts`).
 *
 * Used by the browser test (`tests/notebooks/browser_test.ts`: every notebook, and Kernel >
 * Interrupt step by step through {@linkcode openInUi}) and by `deno task notebooks`
 * (`tools/notebooks/save_notebooks.ts`), which commits the outputs. JupyterLab's driver,
 * `tools/notebooks/jupyter_lab.ts`, starts its server through {@linkcode startServer}.
 *
 * The notebook runs as a hidden copy beside the original (`notebooks/.check_ui_<name>`), so its
 * relative imports (`../lib/...`) resolve as they do for the learner and the original file is
 * never written by the UI.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { CHROMIUM } from "../chromium.ts";
import type { Notebook } from "./notebook_checks.ts";

const REPO_ROOT: string = fileURLToPath(new URL("../../", import.meta.url));
const NOTEBOOKS: string = join(REPO_ROOT, "notebooks");
const KERNELS: string = join(NOTEBOOKS, "jupyter");
/** Debian's Jupyter, installed by `deno task setup`. */
export const JUPYTER = "/usr/bin/jupyter";

/** What is missing for a UI run, or null when Chromium and Jupyter are both installed. */
export function uiUnavailable(): string | null {
  for (const path of [CHROMIUM, JUPYTER]) {
    if (!existsSync(path)) return `${path} is missing (deno task setup installs it)`;
  }
  return null;
}

/** A running `jupyter notebook` server on a loopback port. */
export interface JupyterServer {
  url: string;
  stop(): Promise<void>;
  /** The server's output so far, for error messages. */
  log(): string;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts `jupyter notebook` on `notebooks/` (no token, loopback only) and waits until it answers. */
export function startJupyter(): Promise<JupyterServer> {
  const port = freePort();
  return startServer(JUPYTER, port, [
    "notebook",
    "--no-browser",
    "--ip=127.0.0.1",
    `--port=${port}`,
    "--port-retries=0",
    `--notebook-dir=${NOTEBOOKS}`,
    "--NotebookApp.token=",
    "--NotebookApp.password=",
    // The copies are hidden files, so that no listing or glob of notebooks/ picks them up.
    "--ContentsManager.allow_hidden=True",
    "--NotebookApp.open_browser=False",
    // CI and containers run as root; the server is on loopback only.
    ...(Deno.uid() === 0 ? ["--allow-root"] : []),
  ]);
}

/**
 * Runs `command args` (a Jupyter server listening on `port` of 127.0.0.1) with the project's
 * Deno kernel spec on `JUPYTER_PATH` and this Deno on `PATH`, and waits until its REST API
 * answers (a minute at most; the server's output goes into the error when it does not).
 */
export async function startServer(
  command: string,
  port: number,
  args: string[],
): Promise<JupyterServer> {
  const path = [dirname(Deno.execPath()), Deno.env.get("PATH")].filter(Boolean).join(":");
  const child = new Deno.Command(command, {
    args,
    env: {
      JUPYTER_PATH: [KERNELS, Deno.env.get("JUPYTER_PATH")].filter(Boolean).join(":"),
      PATH: path,
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while (true) {
    try {
      const response = await fetch(`${url}/api/status`);
      await response.body?.cancel();
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 250)),
    ]);
    if (exited || Date.now() > deadline) {
      if (!exited) child.kill("SIGTERM");
      await child.status;
      await drained;
      throw new Error(
        `${command} ${args[0]} did not answer on ${url} within 60 s:\n${output}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return {
    url,
    log: () => output,
    async stop(): Promise<void> {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await drained;
    },
  };
}

/** Deletes the server's sessions of `path` (a name under notebooks/), which stops their kernels. */
export async function shutDownKernels(server: JupyterServer, path: string): Promise<void> {
  const response = await fetch(`${server.url}/api/sessions`);
  const sessions = (await response.json()) as { id: string; path: string }[];
  for (const session of sessions.filter((s) => s.path === path)) {
    const deleted = await fetch(`${server.url}/api/sessions/${session.id}`, { method: "DELETE" });
    await deleted.body?.cancel();
  }
}

/** Options for {@linkcode runInUi}. */
export interface RunInUiOptions {
  /** Seconds the whole notebook may take; 1200 by default. */
  timeoutSeconds?: number;
  /** Seconds to wait after the last cell, for output that comes late; 3 by default. */
  settleSeconds?: number;
  /** A PNG of the page after the run is written here when given. */
  screenshot?: string;
  /** Called with a line of progress now and then. */
  progress?: (line: string) => void;
}

/** What a UI run gives back. */
export interface UiRun {
  /** The notebook as the UI saved it. */
  saved: Notebook;
  /** Seconds from "Run All" to the last cell finishing. */
  seconds: number;
  /** Errors the page itself raised (JavaScript errors in the UI), if any. */
  pageErrors: string[];
}

/** The state of the notebook's code cells, read from the page. */
interface CellsState {
  total: number;
  done: number;
  running: number;
  idle: boolean;
}

function readCells(page: Page): Promise<CellsState> {
  return page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const jupyter = (globalThis as any).Jupyter;
    // deno-lint-ignore no-explicit-any
    const cells = jupyter.notebook.get_cells().filter((c: any) => c.cell_type === "code");
    // deno-lint-ignore no-explicit-any
    const prompts = cells.map((c: any) => c.input_prompt_number);
    // deno-lint-ignore no-explicit-any
    const indicator = (globalThis as any).document.querySelector("#kernel_indicator_icon");
    return {
      total: cells.length,
      done: prompts.filter((p: unknown) => typeof p === "number").length,
      running: prompts.filter((p: unknown) => p === "*").length,
      idle: indicator?.classList.contains("kernel_idle_icon") ?? false,
    };
  });
}

/**
 * Opens `copyName` (under notebooks/) in `page` and waits for its kernel to be connected and
 * idle; turns autosave off. No autosave: a run saves once, after the run, like a learner
 * pressing Ctrl-S (the classic notebook's save rewrites the file in place, so a read during an
 * autosave of a long notebook could see it cut short).
 */
async function openPage(page: Page, server: JupyterServer, copyName: string): Promise<void> {
  await page.goto(`${server.url}/notebooks/${copyName}`);
  await page.waitForFunction(
    () => {
      // deno-lint-ignore no-explicit-any
      const jupyter = (globalThis as any).Jupyter;
      return jupyter?.notebook?.kernel?.is_connected?.() === true &&
        // deno-lint-ignore no-explicit-any
        (globalThis as any).document.querySelector("#kernel_indicator_icon.kernel_idle_icon") !==
          null;
    },
    undefined,
    { timeout: 120_000 },
  );
  await page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    (globalThis as any).Jupyter.notebook.set_autosave_interval(0);
  });
}

/** "File > Save and Checkpoint", waiting until the server has written the file. */
async function saveFromMenu(page: Page): Promise<void> {
  // the save is done when the server has answered it (it answers after writing the file):
  // the notebook's "notebook_saved" event, not only a clean dirty flag
  await page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const jupyter = (globalThis as any).Jupyter;
    jupyter.savedByTest = false;
    jupyter.notebook.events.one("notebook_saved.Notebook", () => jupyter.savedByTest = true);
  });
  await page.click("#filelink");
  await page.click("#save_checkpoint");
  await page.waitForFunction(
    () => {
      // deno-lint-ignore no-explicit-any
      const jupyter = (globalThis as any).Jupyter;
      return jupyter.savedByTest === true && jupyter.notebook.dirty === false;
    },
    undefined,
    { timeout: 60_000 },
  );
}

/** Removes a copy and the checkpoint the server made of it. */
async function removeCopy(copyName: string): Promise<void> {
  await Deno.remove(join(NOTEBOOKS, copyName)).catch(() => {});
  await Deno.remove(
    join(NOTEBOOKS, ".ipynb_checkpoints", copyName.replace(/\.ipynb$/, "-checkpoint.ipynb")),
  ).catch(() => {});
}

/** One cell as the classic UI shows it. */
export interface UiCell {
  type: string;
  /** The prompt: a number once run, "*" while queued or running, null before a first run. */
  prompt: number | "*" | null;
  /** The text of its stream outputs and the `text/plain` of its results. */
  text: string;
}

/** The notebook in the classic UI: whether the kernel is idle, and each cell. */
export interface UiState {
  idle: boolean;
  cells: UiCell[];
}

/** A notebook open in the classic UI, as a hidden copy under `notebooks/`. */
export interface UiNotebook {
  page: Page;
  /** Errors the page raised (JavaScript errors in the UI), if any. */
  pageErrors: string[];
  state(): Promise<UiState>;
  /** Waits until `test` holds for the state, or throws `message()` after `seconds`. */
  waitFor(
    test: (state: UiState) => boolean,
    seconds: number,
    message: (state: UiState) => string,
  ): Promise<UiState>;
  /** Clicks a top menu (its element id, as `celllink`), then one of its items (`run_all_cells`). */
  menu(top: string, item: string): Promise<void>;
  /** File > Save and Checkpoint, then the file as the server wrote it. */
  save(): Promise<Notebook>;
  /** Closes the page, stops the kernel and removes the copy. */
  close(): Promise<void>;
}

/**
 * Opens `notebook` as the copy `.check_ui_<copyName>` under notebooks/ in the classic UI and
 * waits for its kernel to be idle, for a test that drives it step by step.
 */
export async function openInUi(
  browser: Browser,
  server: JupyterServer,
  notebook: Notebook,
  copyName: string,
): Promise<UiNotebook> {
  const name = `.check_ui_${copyName}`;
  await Deno.writeTextFile(join(NOTEBOOKS, name), JSON.stringify(notebook, null, 1));
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const close = async (): Promise<void> => {
    await page.close().catch(() => {});
    await shutDownKernels(server, name).catch(() => {});
    await removeCopy(name);
  };
  try {
    await openPage(page, server, name);
  } catch (e) {
    await close();
    throw new Error(`${name} did not open in the Jupyter UI with an idle kernel in 120 s: ${e}`);
  }
  const state = (): Promise<UiState> =>
    page.evaluate(() => {
      // deno-lint-ignore no-explicit-any
      const g = globalThis as any;
      // deno-lint-ignore no-explicit-any
      const cells = g.Jupyter.notebook.get_cells().map((cell: any) => {
        let text = "";
        for (const out of cell.output_area?.outputs ?? []) {
          const value = out.output_type === "stream" ? out.text : out.data?.["text/plain"];
          text += (Array.isArray(value) ? value.join("") : value ?? "") + "\n";
        }
        const prompt = cell.input_prompt_number;
        return {
          type: cell.cell_type,
          prompt: typeof prompt === "number" || prompt === "*" ? prompt : null,
          text,
        };
      });
      const indicator = g.document.querySelector("#kernel_indicator_icon");
      return { idle: indicator?.classList.contains("kernel_idle_icon") ?? false, cells };
    });
  const waitFor = async (
    test: (s: UiState) => boolean,
    seconds: number,
    message: (s: UiState) => string,
  ): Promise<UiState> => {
    const deadline = performance.now() + seconds * 1000;
    while (true) {
      const now = await state();
      if (test(now)) return now;
      if (performance.now() > deadline) throw new Error(message(now));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  return {
    page,
    pageErrors,
    state,
    waitFor,
    async menu(top: string, item: string): Promise<void> {
      await page.click(`#${top}`);
      await page.click(`#${item}`);
    },
    async save(): Promise<Notebook> {
      await saveFromMenu(page);
      return JSON.parse(await Deno.readTextFile(join(NOTEBOOKS, name))) as Notebook;
    },
    close,
  };
}

/**
 * Opens `notebook` (a path under notebooks/) in the Jupyter UI served by `server`, clicks
 * "Cell > Run All", waits for every code cell to finish (or the run to stop at an error), waits
 * `settleSeconds` more, clicks "File > Save and Checkpoint" and returns the saved file.
 */
export async function runInUi(
  browser: Browser,
  server: JupyterServer,
  notebook: string,
  options: RunInUiOptions = {},
): Promise<UiRun> {
  const copyName = `.check_ui_${basename(notebook)}`;
  const copy = join(NOTEBOOKS, copyName);
  const source = JSON.parse(await Deno.readTextFile(notebook)) as Notebook;
  for (const cell of source.cells) {
    if (cell.cell_type === "code") {
      cell.outputs = [];
      cell.execution_count = null;
    }
  }
  await Deno.writeTextFile(copy, JSON.stringify(source, null, 1));
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  try {
    await openPage(page, server, copyName);
    const started = performance.now();
    await page.click("#celllink");
    await page.click("#run_all_cells");
    const deadline = started + (options.timeoutSeconds ?? 1200) * 1000;
    let lastDone = -1;
    while (true) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const state = await readCells(page);
      if (state.done !== lastDone) {
        options.progress?.(`${basename(notebook)}: ${state.done}/${state.total} cells done`);
        lastDone = state.done;
      }
      // Finished: nothing queued or running and the kernel idle (all done, or stopped at an error).
      if (state.running === 0 && state.idle) break;
      if (performance.now() > deadline) {
        throw new Error(
          `${notebook}: ${state.done}/${state.total} code cells done after ` +
            `${options.timeoutSeconds ?? 1200} s in the Jupyter UI`,
        );
      }
    }
    const seconds = (performance.now() - started) / 1000;
    await new Promise((resolve) => setTimeout(resolve, (options.settleSeconds ?? 3) * 1000));
    await saveFromMenu(page);
    if (options.screenshot) await page.screenshot({ path: options.screenshot, fullPage: false });
    const saved = JSON.parse(await Deno.readTextFile(copy)) as Notebook;
    return { saved, seconds, pageErrors };
  } finally {
    await page.close();
    await shutDownKernels(server, copyName);
    await removeCopy(copyName);
  }
}
