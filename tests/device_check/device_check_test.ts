// deno task device-check: what it reads from deno test and the training runs, its loss
// comparison, and a rehearsal of its run without a GPU, which must report each step as
// failed or skipped with a reason, write results.json and results.md, and not crash.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import {
  compareLosses,
  errorLine,
  parseLosses,
  parseTestSummary,
  type StepResult,
} from "../../tools/device_check/report.ts";
import { runTask } from "../support.ts";

Deno.test("device-check: deno test's summary and failures are read", () => {
  const out = [
    "running 3 tests from ./tests/backends/cuda_test.ts",
    " ERRORS ",
    " FAILURES ",
    "",
    "cuda: matmul forward => ./tests/backends/kernel_suite.ts:62:8",
    "cuda: attention => ./tests/backends/kernel_suite.ts:250:8",
    "",
    "FAILED | 40 passed | 2 failed | 1 ignored (12s)",
  ].join("\n");
  assertEquals(parseTestSummary(out), {
    passed: 40,
    failed: 2,
    ignored: 1,
    failures: ["cuda: matmul forward", "cuda: attention"],
  });
  assertEquals(parseTestSummary("ok | 7 passed | 0 failed (3s)"), {
    passed: 7,
    failed: 0,
    ignored: 0,
    failures: [],
  });
  assertEquals(parseTestSummary("error: Module not found"), null);
});

Deno.test("device-check: training losses are read and compared", () => {
  const log = "step     0 | loss: 10.950000 | lr 6e-5\nrank 0 sample\nstep     1 | loss: 9.5 | lr";
  assertEquals(parseLosses(log), [10.95, 9.5]);
  const f32 = Array.from({ length: 20 }, (_, i) => 11 - 0.2 * i);
  assertEquals(compareLosses(f32, f32.map((l) => l * 1.005), 20), null);
  ok(compareLosses(f32, f32.map((l) => l * 1.02), 20)?.startsWith("step 0:"));
  ok(compareLosses(f32, f32.map((l, i) => i === 7 ? l * 1.05 : l), 20)?.startsWith("step 7:"));
  ok(compareLosses(f32, f32.slice(0, 5), 20)?.includes("found 20 (fp32) and 5 (bf16)"));
  const flat = f32.map(() => 11);
  ok(compareLosses(flat, flat, 20)?.includes("did not fall"));
  ok(compareLosses(f32, f32.map(() => NaN), 20)?.startsWith("step 0:"));
});

Deno.test("device-check: a failed command's error line", () => {
  assertEquals(
    errorLine(
      'x\nerror: Module not found "a.ts".\n    at b.ts:1:2\n\nStack backtrace:\n   0: <unknown>',
    ),
    'error: Module not found "a.ts".',
  );
  assertEquals(errorLine("one\nlast words\nStack backtrace:\n   0: <unknown>\n"), "last words");
});

/** Whether this machine has an NVIDIA driver (then the no-GPU rehearsal does not apply). */
async function hasNvidiaSmi(): Promise<boolean> {
  try {
    return (await new Deno.Command("nvidia-smi", { args: ["-L"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "device-check: without a GPU every step says why it did not pass, and results are written",
  ignore: await hasNvidiaSmi(),
  fn: rehearseWithoutGpu,
});

async function rehearseWithoutGpu(): Promise<void> {
  const out = await Deno.makeTempDir({ prefix: "device_check_" });
  try {
    const r = await runTask(["tools/device_check/mod.ts", out, "--only", "env,train"]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    const results = JSON.parse(await Deno.readTextFile(join(out, "results.json")));
    const steps = results.steps as StepResult[];
    assertEquals(steps.map((s) => s.name), ["env", "train"]);
    for (const s of steps) {
      ok(s.status !== "passed", `${s.name} passed without a GPU`);
      ok(s.summary.length > 10, `${s.name}: ${s.summary}`);
    }
    const md = await Deno.readTextFile(join(out, "results.md"));
    ok(md.includes("| environment (nvidia-smi) | failed |"), md);
    ok(md.includes("## Training: GPT-2 124M"), md);
    for (const log of ["env.log", "train.log"]) ok((await Deno.stat(join(out, log))).size > 0);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

Deno.test("device-check: the help, and an unknown step is an error", async () => {
  const help = await runTask(["tools/device_check/mod.ts", "--help"]);
  assertEquals(help.code, 0);
  ok(help.stdout.includes("--prepare"));
  const bad = await runTask(["tools/device_check/mod.ts", "/tmp/x", "--only", "gpu"]);
  assertEquals(bad.code, 1);
  ok(bad.stderr.includes("--only expects steps of env, cuda, train, bench, webgpu, found gpu"));
});
