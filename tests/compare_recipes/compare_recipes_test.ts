// deno task compare-recipes: its help names the ladder's rows and flags, and bad flags stop it
// with a message naming the flag before any shard is written or run trained.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { runTask } from "../support.ts";

Deno.test("compare-recipes: --help lists the rows and the flags", async () => {
  const { code, stdout } = await runTask(["tools/compare_recipes/mod.ts", "--help"]);
  assertEquals(code, 0);
  ok(
    stdout.includes("Rows: lecture, +rates, +relu2, +qk-norm, +rotary, +zero-init, +untie, +muon"),
    stdout,
  );
  for (const flag of ["--seeds", "--steps", "--rows", "--out", "--scratch", "--resume"]) {
    ok(stdout.includes(flag), `${flag} in ${stdout}`);
  }
});

Deno.test("compare-recipes: bad flags are errors that name them", async () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus' \(see --help\)/],
    [["--seeds", "1,x"], /--seeds expects non-negative integers, found "x"/],
    [["--seeds", "1,1"], /--seeds expects distinct seeds, found 1,1/],
    [["--seeds", ","], /--seeds expects a comma-separated list, found ","/],
    [["--steps", "1"], /--steps expects an integer >= 2, found "1"/],
    [["--rows", "lecture,+adam"], /Unknown --rows \+adam, expected ids among lecture, \+rates/],
    [
      ["--rows", "+muon"],
      /--rows expects lecture among the rows \(L\* is its final loss\), found \+muon/,
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runTask(["tools/compare_recipes/mod.ts", ...args]);
    assertEquals(code, 1, `${args}: ${stderr}`);
    ok(message.test(stderr), `${args}: ${stderr}`);
  }
});
