// keepOutputInCells (lib/notebook/output.ts): console output collected and printed once per
// burst, stdout and stderr each in one call, in order within a stream.
import { deepStrictEqual as assertEquals, strictEqual } from "node:assert/strict";
import { inJupyterKernel, keepOutputInCells } from "../../lib/notebook/output.ts";

Deno.test("keepOutputInCells: outside a kernel it leaves the console alone", () => {
  strictEqual(inJupyterKernel(), false);
  const log = console.log;
  strictEqual(keepOutputInCells(), false);
  strictEqual(console.log, log);
});

Deno.test("keepOutputInCells: a burst of calls reaches the console as one call per stream", async () => {
  const calls: [string, string][] = [];
  const { log, error } = console;
  console.log = (text: string) => calls.push(["stdout", text]);
  console.error = (text: string) => calls.push(["stderr", text]);
  try {
    strictEqual(keepOutputInCells({ force: true }), true);
    console.log("step", 1, { loss: 2.5 });
    console.warn("careful");
    console.info("step 2");
    assertEquals(calls, [], "nothing printed before the task ends");
    await Promise.resolve();
    assertEquals(calls, [["stdout", "step 1 { loss: 2.5 }\nstep 2"], ["stderr", "careful"]]);
    console.log("after an await");
    await new Promise((resolve) => setTimeout(resolve, 0));
    assertEquals(calls.at(-1), ["stdout", "after an await"]);
  } finally {
    console.log = log;
    console.error = error;
  }
});
