/**
 * The notebook type check of `deno task check` (`tools/notebooks/check_notebooks.ts`): a
 * notebook's code cells joined into one module, and `deno check`'s errors reported against the
 * notebook's cells.
 *
 * @module
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { checkNotebooks, extractCode } from "../../tools/notebooks/check_notebooks.ts";

function notebook(...cells: [string, string][]): unknown {
  return {
    cells: cells.map(([cell_type, source]) => ({ cell_type, source, metadata: {} })),
    metadata: {},
    nbformat: 4,
    nbformat_minor: 5,
  };
}

Deno.test("check_notebooks: code cells joined in order, markdown left out, each cell's first line kept", () => {
  const { code, spans } = extractCode(
    notebook(["markdown", "# Title"], ["code", "const a = 1;\nconst b = a + 1;\n"], [
      "code",
      "console.log(b);",
    ]),
  );
  deepEqual(spans, [{ cell: 1, firstLine: 3, lines: 2 }, { cell: 2, firstLine: 6, lines: 1 }]);
  const lines = code.split("\n");
  equal(lines[2], "const a = 1;");
  equal(lines[5], "console.log(b);");
  ok(code.includes("export {};"), "Expected the module marker for top-level await");
  ok(!code.includes("# Title"));
});

Deno.test("check_notebooks: a type error is reported at its notebook cell and line; a clean notebook passes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "check_notebooks_test_" });
  try {
    const bad = join(dir, "bad.ipynb"), good = join(dir, "good.ipynb");
    await Deno.writeTextFile(
      bad,
      JSON.stringify(notebook(["markdown", "text"], ["code", "const n = 1;"], [
        "code",
        "// a comment\nconst s: string = n;",
      ])),
    );
    await Deno.writeTextFile(good, JSON.stringify(notebook(["code", "await Promise.resolve(1);"])));
    const run = await checkNotebooks([bad, good]);
    equal(run.ok, false);
    const [badResult, goodResult] = run.results;
    equal(badResult.ok, false);
    equal(badResult.codeCells, 2);
    match(badResult.output, /bad\.ipynb cell 3, line 2:7/);
    match(badResult.output, /TS2322/);
    equal(goodResult.ok, true, goodResult.output);
    deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["bad.ipynb", "good.ipynb"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
