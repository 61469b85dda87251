/**
 * The headless runner `tests/tools/run_notebook.py` (nbclient, for running a notebook without
 * a browser) on its own fixture, `tests/fixtures/smoke.ipynb`, then checks the executed copy
 * (the notebooks themselves run in the real Jupyter UI: `browser_test.ts`):
 *
 * - the notebook's metadata names the kernel `deno`;
 * - every code cell ran (has an `execution_count`);
 * - no cell has an error output;
 * - every text in a code cell's `metadata.expect` is matched by one of that
 *   cell's outputs (`tests/tools/notebook_checks.ts`).
 *
 * Also checks that `tests/tools/check_notebooks.ts` type-checks every notebook and the fixture.
 *
 * Needs Debian's Jupyter (`deno task setup`). Per-cell timeout in seconds:
 * `NOTEBOOK_CELL_TIMEOUT` (default 600).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { notebookProblems, readNotebook } from "../tools/notebook_checks.ts";

const REPO_ROOT: string = fileURLToPath(new URL("../../", import.meta.url));
const RUNNER: string = join(REPO_ROOT, "tests", "tools", "run_notebook.py");
const CHECKER: string = join(REPO_ROOT, "tests", "tools", "check_notebooks.ts");
const KERNELS: string = join(REPO_ROOT, "notebooks", "jupyter");
const FIXTURE: string = join(REPO_ROOT, "tests", "fixtures", "smoke.ipynb");
const PYTHON = "/usr/bin/python3";
const JUPYTER = "/usr/bin/jupyter";
const CELL_TIMEOUT: string = Deno.env.get("NOTEBOOK_CELL_TIMEOUT") ?? "600";

/** Lists `notebooks/*.ipynb`, sorted. */
function listNotebooks(): string[] {
  const folder = join(REPO_ROOT, "notebooks");
  if (!existsSync(folder)) return [];
  return [...Deno.readDirSync(folder)]
    .filter((e) => e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith("."))
    .map((e) => join(folder, e.name))
    .sort();
}

let jupyterChecked: Promise<void> | undefined;

/** Fails with a clear message when Debian's Jupyter packages are missing. */
function requireJupyter(): Promise<void> {
  jupyterChecked ??= (async (): Promise<void> => {
    const hint = "Run `deno task setup` (installs Debian's Jupyter packages)";
    if (!existsSync(JUPYTER) || !existsSync(PYTHON)) {
      throw new Error(`Jupyter is not installed (${JUPYTER} missing). ${hint}`);
    }
    const probe = await new Deno.Command(PYTHON, {
      args: ["-c", "import nbclient, nbformat, jupyter_client"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!probe.success) {
      const why = new TextDecoder().decode(probe.stderr).trim().split("\n").at(-1);
      throw new Error(`${PYTHON} cannot import nbclient (${why}). ${hint}`);
    }
  })();
  return jupyterChecked;
}

/** Environment for the runner: the repo's kernel spec and this test's deno. */
function runnerEnv(): Record<string, string> {
  const jupyterPath = [KERNELS, Deno.env.get("JUPYTER_PATH")].filter(Boolean).join(":");
  const path = [dirname(Deno.execPath()), Deno.env.get("PATH")].filter(Boolean).join(":");
  return { JUPYTER_PATH: jupyterPath, PATH: path };
}

/** Runs one notebook through the runner and checks the executed copy. */
async function runAndCheck(notebook: string): Promise<void> {
  await requireJupyter();
  const tmp = await Deno.makeTempDir({ prefix: "notebook_test_" });
  try {
    const out = join(tmp, basename(notebook));
    const result = await new Deno.Command(PYTHON, {
      args: [RUNNER, notebook, "--out", out, "--timeout", CELL_TIMEOUT],
      env: runnerEnv(),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    const log = (decoder.decode(result.stdout) + decoder.decode(result.stderr)).trim();
    if (!result.success) {
      throw new Error(`Runner failed on ${notebook} (exit ${result.code}):\n${log}`);
    }
    const found = notebookProblems(await readNotebook(out), await readNotebook(notebook));
    if (found.length > 0) {
      throw new Error(`${notebook}:\n  ${found.join("\n  ")}\nRunner log:\n${log}`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("notebook runner: tests/fixtures/smoke.ipynb keeps every output", async () => {
  await runAndCheck(FIXTURE);
});

Deno.test("notebooks type-check (tests/tools/check_notebooks.ts)", async () => {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CHECKER, ...listNotebooks(), FIXTURE],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const log = (decoder.decode(result.stdout) + decoder.decode(result.stderr)).trim();
  if (!result.success) throw new Error(`Notebook type check failed:\n${log}`);
});
