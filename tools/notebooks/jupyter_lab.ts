/**
 * Drives notebooks in JupyterLab (4.x, `pip install jupyterlab`) in Chromium, as a learner does:
 * the menus and the toolbar (Run > Run All Cells, the toolbar's Interrupt, File > Save Notebook),
 * with the page's state read from Lab's own model (the server exposes the app to the page as
 * `jupyterapp`). Used by `tests/notebooks/lab_browser_test.ts`.
 *
 * The server runs on `notebooks/` with a settings folder of its own (no news pop-up, no autosave,
 * so only the test's Save writes a file) and a workspace folder of its own (no tabs restored from
 * an earlier session). Notebooks open as hidden copies beside the originals, as in the classic
 * UI's runs (`tools/notebooks/jupyter_ui.ts`), so relative imports resolve and the committed
 * files are never written.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { CHROMIUM } from "../chromium.ts";
import { freePort, type JupyterServer, shutDownKernels, startServer } from "./jupyter_ui.ts";
import type { Notebook } from "./notebook_checks.ts";

const NOTEBOOKS: string = fileURLToPath(new URL("../../notebooks/", import.meta.url));

/** `jupyter-lab` on `PATH` (pip puts it there), or null. */
export function findJupyterLab(): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir !== "" && existsSync(join(dir, "jupyter-lab"))) return join(dir, "jupyter-lab");
  }
  return null;
}

/** What is missing for a JupyterLab run, or null when Chromium and JupyterLab are installed. */
export function labUnavailable(): string | null {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (deno task setup installs it)`;
  if (findJupyterLab() === null) {
    return "jupyter-lab is not on PATH (pip install jupyterlab; deno task setup installs it)";
  }
  return null;
}

/** Lab's user settings the runs need, by settings file under the settings folder. */
const SETTINGS: Record<string, unknown> = {
  // the first-run question about Jupyter news, which would sit over the notebook
  "@jupyterlab/apputils-extension/notification.jupyterlab-settings": { fetchNews: "false" },
  // only the test saves: an autosave would write while the test reads the file
  "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": { autosave: false },
};

/** Starts `jupyter lab` on `notebooks/` (no token, loopback only) and waits until it answers. */
export async function startJupyterLab(): Promise<JupyterServer> {
  const lab = findJupyterLab();
  if (lab === null) throw new Error(labUnavailable()!);
  const state = await Deno.makeTempDir({ prefix: "jupyterlab_" });
  for (const [file, value] of Object.entries(SETTINGS)) {
    const path = join(state, "settings", file);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeTextFile(path, JSON.stringify(value));
  }
  const port = freePort();
  const server = await startServer(lab, port, [
    "--no-browser",
    "--ip=127.0.0.1",
    `--port=${port}`,
    "--port-retries=0",
    `--ServerApp.root_dir=${NOTEBOOKS}`,
    "--IdentityProvider.token=",
    "--ServerApp.password=",
    "--ContentsManager.allow_hidden=True",
    `--LabApp.user_settings_dir=${join(state, "settings")}`,
    `--LabApp.workspaces_dir=${join(state, "workspaces")}`,
    "--LabApp.news_url=None",
    "--LabApp.expose_app_in_browser=True",
    ...(Deno.uid() === 0 ? ["--allow-root"] : []),
  ]).catch(async (e) => {
    await Deno.remove(state, { recursive: true });
    throw e;
  });
  return {
    ...server,
    async stop(): Promise<void> {
      await server.stop();
      await Deno.remove(state, { recursive: true }).catch(() => {});
    },
  };
}

/** One code cell as Lab's model holds it. */
export interface LabCell {
  type: string;
  /** The execution count; null while queued or running, and before a first run. */
  count: number | null;
  /** The text of its stream outputs and the `text/plain` of its results. */
  text: string;
}

/** The notebook's state in the page: the kernel's status and each cell. */
export interface LabState {
  kernel: string;
  dirty: boolean;
  cells: LabCell[];
}

/** A notebook open in JupyterLab, as a hidden copy of a file under `notebooks/`. */
export interface LabNotebook {
  page: Page;
  /** The copy's name under notebooks/. */
  name: string;
  /** Errors the page raised (JavaScript errors in Lab), if any. */
  pageErrors: string[];
  state(): Promise<LabState>;
  /** Waits until `test` holds for the state, or throws `message()` after `seconds`. */
  waitFor(
    test: (state: LabState) => boolean,
    seconds: number,
    message: (state: LabState) => string,
  ): Promise<LabState>;
  /** Clicks a top menu, then one of its items, by their labels. */
  menu(top: string, item: string): Promise<void>;
  /** Clicks the notebook toolbar's Interrupt button. */
  interrupt(): Promise<void>;
  /** File > Save Notebook, then the file as the server wrote it. */
  save(): Promise<Notebook>;
  /** Closes the notebook (and the page, unless it was given), stops the kernel, removes the copy. */
  close(): Promise<void>;
}

/**
 * Opens `notebook` (a file; its copy `.check_lab_<copyName>` is written under notebooks/) in
 * JupyterLab and waits for its kernel to be idle (or, with `waitForKernel: false`, only for the
 * file to be open). With `clearOutputs`, the copy has no outputs. With `page`, a page that
 * already shows Lab opens it from the file browser's command (`docmanager:open`) without
 * loading Lab again; otherwise a new page loads Lab on it.
 */
export async function openInLab(
  browser: Browser,
  server: JupyterServer,
  notebook: Notebook,
  copyName: string,
  options: { clearOutputs?: boolean; waitForKernel?: boolean; page?: Page } = {},
): Promise<LabNotebook> {
  const name = `.check_lab_${copyName}`;
  const copy = join(NOTEBOOKS, name);
  const source = structuredClone(notebook);
  if (options.clearOutputs) {
    for (const cell of source.cells) {
      if (cell.cell_type === "code") {
        cell.outputs = [];
        cell.execution_count = null;
      }
    }
  }
  await Deno.writeTextFile(copy, JSON.stringify(source, null, 1));
  const ownPage = options.page === undefined;
  const page = options.page ?? await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors: string[] = [];
  const onError = (e: Error): void => {
    pageErrors.push(String(e));
  };
  page.on("pageerror", onError);

  const state = (): Promise<LabState> =>
    page.evaluate(() => {
      // deno-lint-ignore no-explicit-any
      const panel = (globalThis as any).jupyterapp.shell.currentWidget;
      const model = panel.content.model;
      const cells = [];
      for (let i = 0; i < model.cells.length; i++) {
        const cell = model.cells.get(i);
        let text = "";
        if (cell.type === "code") {
          for (let j = 0; j < cell.outputs.length; j++) {
            const out = cell.outputs.get(j).toJSON();
            const value = out.output_type === "stream" ? out.text : out.data?.["text/plain"];
            text += (Array.isArray(value) ? value.join("") : value ?? "") + "\n";
          }
        }
        cells.push({ type: cell.type, count: cell.executionCount ?? null, text });
      }
      return {
        kernel: panel.sessionContext.session?.kernel?.status ?? "none",
        dirty: panel.context.model.dirty,
        cells,
      };
    });

  const waitFor = async (
    test: (s: LabState) => boolean,
    seconds: number,
    message: (s: LabState) => string,
  ): Promise<LabState> => {
    const deadline = performance.now() + seconds * 1000;
    while (true) {
      const now = await state();
      if (test(now)) return now;
      if (performance.now() > deadline) throw new Error(message(now));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };

  const close = async (): Promise<void> => {
    page.off("pageerror", onError);
    if (ownPage) {
      await page.close().catch(() => {});
    } else {
      await page.evaluate((path) => {
        // deno-lint-ignore no-explicit-any
        for (const widget of (globalThis as any).jupyterapp.shell.widgets("main")) {
          if (widget.context?.path === path) widget.dispose();
        }
      }, name).catch(() => {});
    }
    await shutDownKernels(server, name).catch(() => {});
    await Deno.remove(copy).catch(() => {});
    await Deno.remove(
      join(NOTEBOOKS, ".ipynb_checkpoints", name.replace(/\.ipynb$/, "-checkpoint.ipynb")),
    ).catch(() => {});
  };

  try {
    // deno-lint-ignore no-explicit-any
    const labShown = await page.evaluate(() => (globalThis as any).jupyterapp !== undefined);
    if (labShown) {
      await page.evaluate(
        (path) =>
          // deno-lint-ignore no-explicit-any
          (globalThis as any).jupyterapp.commands.execute("docmanager:open", { path })
            .then(() => true),
        name,
      );
    } else {
      await page.goto(`${server.url}/lab/tree/${name}`);
    }
    await page.waitForFunction(
      ([path, kernel]) => {
        // deno-lint-ignore no-explicit-any
        const panel = (globalThis as any).jupyterapp?.shell?.currentWidget;
        return panel?.context?.path === path && panel.context.isReady &&
          (!kernel || panel.sessionContext?.session?.kernel?.status === "idle");
      },
      [name, options.waitForKernel ?? true] as const,
      { timeout: 120_000 },
    );
  } catch (e) {
    await close();
    throw new Error(`${name} did not open in JupyterLab (with an idle kernel) in 120 s: ${e}`);
  }

  const menu = async (top: string, item: string): Promise<void> => {
    await page.click(`.lm-MenuBar-itemLabel:text-is(${JSON.stringify(top)})`);
    await page.click(`.lm-Menu-itemLabel:text-is(${JSON.stringify(item)})`);
  };

  return {
    page,
    name,
    pageErrors,
    state,
    waitFor,
    menu,
    async interrupt(): Promise<void> {
      await page.click('jp-button[data-command="notebook:interrupt-kernel"]');
    },
    async save(): Promise<Notebook> {
      const before = (await Deno.stat(copy)).mtime?.getTime();
      await menu("File", "Save Notebook");
      // the model is clean once the server has answered the save, which it does after writing
      const deadline = performance.now() + 60_000;
      while ((await state()).dirty || (await Deno.stat(copy)).mtime?.getTime() === before) {
        if (performance.now() > deadline) {
          throw new Error(`${name}: File > Save Notebook did not write the file in 60 s`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      return JSON.parse(await Deno.readTextFile(copy)) as Notebook;
    },
    close,
  };
}
