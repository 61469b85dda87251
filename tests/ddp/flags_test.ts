// `deno task ddp`'s numeric flags are bounded: a number out of range fails before any rank
// starts, with a message naming the flag and the range.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { launch } from "../../lib/ddp/launcher.ts";
import { runTask } from "../support.ts";

Deno.test("ddp task: numbers out of range name the flag and the range, and start no rank", async () => {
  const cases: [string[], string][] = [
    [
      ["--nproc-per-node", "100000"],
      '--nproc-per-node expects an integer in [1, 64], found "100000"',
    ],
    [["--nproc-per-node", "0"], '--nproc-per-node expects an integer in [1, 64], found "0"'],
    [
      ["--nproc-per-node", "2", "--nnodes", "1e9"],
      '--nnodes expects an integer in [1, 1024], found "1e9"',
    ],
    [
      ["--nproc-per-node", "2", "--master-port", "70000"],
      '--master-port expects an integer in [1, 65535], found "70000"',
    ],
    [
      ["--nproc-per-node", "2", "--timeout", "1e12"],
      '--timeout expects a number in [0.1, 86400], found "1e12"',
    ],
    [
      ["--nproc-per-node", "2", "--timeout", "0"],
      '--timeout expects a number in [0.1, 86400], found "0"',
    ],
    [
      ["--nproc-per-node", "2", "--stop-grace=-1"],
      '--stop-grace expects a number in [0, 86400], found "-1"',
    ],
  ];
  for (const [args, message] of cases) {
    const r = await runTask(["lib/cli/ddp.ts", ...args, "--", "--steps", "1"]);
    assertEquals(r.code, 1, r.stderr);
    ok(r.stderr.includes(`error: ${message}`), r.stderr);
    ok(!r.stdout.includes("[launcher] rank"), r.stdout);
  }
});

Deno.test("ddp launcher: launch() itself refuses out-of-range numbers", async () => {
  const base = { script: "unused.ts", args: [] };
  const refuse = async (o: Parameters<typeof launch>[0], pattern: RegExp): Promise<void> => {
    let message = "";
    try {
      await launch(o);
    } catch (e) {
      message = (e as Error).message;
    }
    ok(pattern.test(message), message);
  };
  await refuse({ ...base, nprocPerNode: 65 }, /--nproc-per-node expects an integer in \[1, 64\]/);
  await refuse({ ...base, nprocPerNode: 1, nnodes: 2000 }, /--nnodes expects an integer in/);
  await refuse({ ...base, nprocPerNode: 1, timeoutS: 1e9 }, /--timeout expects a number in/);
  await refuse({ ...base, nprocPerNode: 1, nnodes: 2, nodeRank: 2 }, /--node-rank 2 must be/);
  await refuse({ ...base, nprocPerNode: 1, stopGraceS: 1e9 }, /--stop-grace expects a number in/);
});
