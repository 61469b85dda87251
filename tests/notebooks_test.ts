/**
 * Executes every `notebooks/*.ipynb` (and the runner's own fixture,
 * `tests/fixtures/smoke.ipynb`) headless with the Deno kernel through
 * `tests/tools/run_notebook.py`, then checks the executed copy:
 *
 * - the notebook's metadata names the kernel `deno`;
 * - every code cell ran (has an `execution_count`);
 * - no cell has an error output;
 * - every `// expect: <text>` line in a code cell is matched by one of that
 *   cell's outputs (stream text, or the `text/plain` of an execute_result or
 *   display_data), ANSI colours removed. This is how notebook authors declare
 *   what a cell must print, so an output the kernel dropped fails the test.
 *
 * Also checks that `tests/tools/check_notebooks.ts` type-checks them.
 *
 * Needs Debian's Jupyter (`deno task setup`). Per-cell timeout in seconds:
 * `NOTEBOOK_CELL_TIMEOUT` (default 600).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT: string = fileURLToPath(new URL("../", import.meta.url));
const RUNNER: string = join(REPO_ROOT, "tests", "tools", "run_notebook.py");
const CHECKER: string = join(REPO_ROOT, "tests", "tools", "check_notebooks.ts");
const KERNELS: string = join(REPO_ROOT, "notebooks", "jupyter");
const FIXTURE: string = join(REPO_ROOT, "tests", "fixtures", "smoke.ipynb");
const PYTHON = "/usr/bin/python3";
const JUPYTER = "/usr/bin/jupyter";
const CELL_TIMEOUT: string = Deno.env.get("NOTEBOOK_CELL_TIMEOUT") ?? "600";

/** The parts of an `.ipynb` output that the checks read. */
interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[] | undefined>;
  ename?: string;
  evalue?: string;
}

/** The parts of an `.ipynb` cell that the checks read. */
interface Cell {
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: Output[];
}

/** The parts of an `.ipynb` file that the checks read. */
interface Notebook {
  cells: Cell[];
  metadata?: { kernelspec?: { name?: string } };
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, "g");
/** `// expect: <text>`, on a line of its own or after code. */
const EXPECT = /\/\/\s*expect:[ \t]*(.*?)\s*$/gm;

function joinText(text: string | string[] | undefined): string {
  if (text === undefined) return "";
  return Array.isArray(text) ? text.join("") : text;
}

/** Lists `notebooks/*.ipynb`, sorted. */
function listNotebooks(): string[] {
  const folder = join(REPO_ROOT, "notebooks");
  if (!existsSync(folder)) return [];
  return [...Deno.readDirSync(folder)]
    .filter((e) => e.isFile && e.name.endsWith(".ipynb"))
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

/** Returns one message per problem found in an executed notebook. */
function problems(source: Notebook, executed: Notebook): string[] {
  const found: string[] = [];
  const kernel = source.metadata?.kernelspec?.name;
  if (kernel !== "deno") {
    found.push(`metadata.kernelspec.name is ${JSON.stringify(kernel)}, expected "deno"`);
  }
  executed.cells.forEach((cell, index) => {
    if (cell.cell_type !== "code") return;
    const src = joinText(cell.source);
    if (src.trim() === "") return;
    const where = `cell ${index + 1}`;
    const outputs = cell.outputs ?? [];
    if (typeof cell.execution_count !== "number") {
      found.push(`${where} did not run (no execution_count)`);
    }
    for (const out of outputs) {
      if (out.output_type === "error") {
        found.push(`${where} raised ${out.ename ?? "an error"}: ${out.evalue ?? ""}`);
      }
    }
    const texts = outputs.map((out) => {
      const text = out.output_type === "stream"
        ? joinText(out.text)
        : joinText(out.data?.["text/plain"]);
      return text.replace(ANSI, "");
    }).join("\n");
    for (const match of src.matchAll(EXPECT)) {
      const expected = match[1];
      if (expected === "") {
        found.push(`${where} has an empty "// expect:" marker`);
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
    const source = JSON.parse(await Deno.readTextFile(notebook)) as Notebook;
    const executed = JSON.parse(await Deno.readTextFile(out)) as Notebook;
    const found = problems(source, executed);
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

for (const notebook of listNotebooks()) {
  Deno.test(`notebook: notebooks/${basename(notebook)}`, async () => {
    await runAndCheck(notebook);
  });
}

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
