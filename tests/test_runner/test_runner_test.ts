/**
 * The test runner of `deno task test` (`tools/test_runner/`): each file's wall time from deno
 * test's output, and deno test's summary line kept last, below the table, with its exit code.
 *
 * @module
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  FileTimer,
  isSummary,
  maybeSummary,
  timeTable,
} from "../../tools/test_runner/file_times.ts";

const TEST_TS: string = fileURLToPath(new URL("../../tools/test_runner/mod.ts", import.meta.url));

Deno.test("test runner: a file's time runs from the previous file's last result to its own", () => {
  const timer = new FileTimer(0);
  const feed: [number, string][] = [
    [100, "Check tests/a_test.ts"],
    [3000, "running 2 tests from ./tests/a_test.ts"],
    [3500, "a one ... ok (500ms)"],
    [3600, "a two ... \x1b[0m\x1b[31mFAILED\x1b[0m (100ms)"],
    [5000, "running 1 test from ./tests/b_test.ts"], // b's module took 1.4 s to load
    [5100, "------- output -------"],
    [5200, "b ... ok (300ms)"],
    [5300, "\x1b[0m\x1b[32mok\x1b[0m | 3 passed | 1 failed (5s)"],
  ];
  for (const [at, line] of feed) timer.line(line, at);
  equal(timer.beforeFirstMs, 3000);
  deepEqual(timer.times(), [
    { file: "./tests/b_test.ts", ms: 1600, failed: false },
    { file: "./tests/a_test.ts", ms: 600, failed: true },
  ]);
  deepEqual(timeTable(timer.times(), timer.beforeFirstMs).split("\n"), [
    "Time per test file (wall, slowest first):",
    "  1.6 s  ./tests/b_test.ts",
    "  0.6 s  ./tests/a_test.ts  FAILED",
    "  2.2 s in 2 files, after 3.0 s of type check and start",
  ]);
});

Deno.test("test runner: the summary line is told apart, also while it is still coming", () => {
  ok(isSummary("ok | 12 passed | 0 failed (3s)"));
  ok(isSummary("\x1b[0m\x1b[31mFAILED\x1b[0m | 1 passed | 2 failed (1s)"));
  ok(!isSummary("ok | looks like it"));
  ok(!isSummary("test ok | 1 passed"));
  for (const partial of ["", "o", "ok", "ok |", "FAIL", "FAILED | 3", "\x1b[0m\x1b[3"]) {
    ok(maybeSummary(partial), `Expected "${partial}" held back`);
  }
  for (const partial of ["name ...", "okay", "FAILURES", "running 1 test"]) {
    ok(!maybeSummary(partial), `Expected "${partial}" shown at once`);
  }
});

Deno.test("test runner, end to end: the per-file table, then deno test's summary last, and its exit code; a run that dies is failed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "test_runner_test_" });
  try {
    await Deno.writeTextFile(join(dir, "a_test.ts"), 'Deno.test("a passes", () => {});\n');
    await Deno.writeTextFile(
      join(dir, "b_test.ts"),
      'Deno.test("b fails", () => {\n  throw new Error("b failed on purpose");\n});\n',
    );
    const run = async (files: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", TEST_TS, "--no-check", ...files],
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const decoder = new TextDecoder();
      return {
        code: out.code,
        stdout: decoder.decode(out.stdout),
        stderr: decoder.decode(out.stderr),
      };
    };
    const passing = await run(["a_test.ts"]);
    equal(passing.code, 0, passing.stdout);
    const lines = passing.stdout.trimEnd().split("\n");
    ok(/^ok \| 1 passed \| 0 failed/.test(lines.at(-1)!), passing.stdout);
    const table = lines.indexOf("Time per test file (wall, slowest first):");
    ok(table > 0, passing.stdout);
    ok(/^ {2}\d+\.\d s {2}\.\/a_test\.ts$/.test(lines[table + 1]), passing.stdout);

    const failing = await run(["a_test.ts", "b_test.ts"]);
    equal(failing.code, 1, failing.stdout);
    const last = failing.stdout.trimEnd().split("\n").at(-1)!;
    ok(/^FAILED \| 1 passed \| 1 failed/.test(last), failing.stdout);
    ok(/\.\/b_test\.ts {2}FAILED\n/.test(failing.stdout), failing.stdout);
    ok(failing.stdout.indexOf("b failed on purpose") < failing.stdout.indexOf("Time per test"));

    // a test run that dies has no summary line: said so, and never exit code 0
    await Deno.writeTextFile(
      join(dir, "c_test.ts"),
      'Deno.test("c dies", () => {\n  Deno.kill(Deno.pid, "SIGKILL");\n});\n',
    );
    const killed = await run(["c_test.ts"]);
    equal(killed.code, 137, killed.stderr);
    ok(
      killed.stderr.includes("deno test ended before its summary line (signal SIGKILL"),
      killed.stderr,
    );
    ok(/\nTime per test file/.test(killed.stdout), killed.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
