// deno task device-check: what it reads from deno test and the training runs, its loss
// comparison, its steps' time budgets against the remote GPU runner's calls, each step's own
// command line run here scaled down (so a flag the trainer or the bench rejects fails here,
// not on a GPU), and a run without a GPU, which must report each step as failed or skipped
// with a reason, write results.json and results.md, and not crash.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  compareLosses,
  errorLine,
  parseLosses,
  parseTestSummary,
  type StepResult,
} from "../../tools/device_check/report.ts";
import {
  BENCH_NO_GPU,
  benchArgv,
  DEFAULT_MINUTES,
  DENO_TEST,
  DEVICE_CALLS,
  OUT_FILE_LIMIT,
  REHEARSAL_CUDA_ENV,
  REHEARSAL_CUDA_NULL_ENV,
  REHEARSAL_EMULATED_SUITES,
  REHEARSAL_TRAIN_STEPS,
  rehearsalArgv,
  rehearsalSuiteEnv,
  STEP_BUDGET_S,
  STEP_NAMES,
  SUITE_FILES,
  testArgv,
  trainArgv,
  WEBGPU_FILES,
} from "../../tools/device_check/commands.ts";
import { pruneCache, resourceTableFile } from "../../tools/device_check/prepare.ts";
import {
  copyFiles,
  HIDDEN_PROGRAMS,
  pathWithout,
  travellingFiles,
} from "../../tools/device_check/rehearse.ts";
import { emulatorEnv } from "../cuda_emulator/ffi.ts";
import { ncclEmulatorEnv } from "../cuda_emulator/nccl_ffi.ts";
import { hasCxx, repoRoot, runTask } from "../support.ts";

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
  assertEquals(compareLosses(flat, flat, 20, { requireFall: false }), null);
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

/** The files under `dir`, relative to it. */
function filesUnder(dir: string, prefix = ""): string[] {
  return [...Deno.readDirSync(join(dir, prefix))].flatMap((e) =>
    e.isDirectory ? filesUnder(dir, join(prefix, e.name)) : [join(prefix, e.name)]
  );
}

/** OUTDIR holds only what the remote GPU runner brings back: few files, plainly named, shallow. */
function assertBroughtBack(dir: string): void {
  const files = filesUnder(dir);
  ok(files.length <= OUT_FILE_LIMIT, `${files.length} files in OUTDIR: ${files.join(" ")}`);
  for (const file of files) {
    ok(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+){0,2}$/.test(file), file);
    ok(Deno.statSync(join(dir, file)).size <= 16 * 2 ** 20, file);
  }
}

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
    const r = await runTask(["tools/device_check/mod.ts", out, "--only", "train"]);
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
    // the trainer got past its flags: what stopped it was the GPU
    ok(/CUDA|libcuda/.test(steps[1].summary), steps[1].summary);
    for (const log of ["env.log", "train.log"]) ok((await Deno.stat(join(out, log))).size > 0);
    assertBroughtBack(out);
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
  ok(bad.stderr.includes("--only expects steps of env, suites, train, bench, webgpu, found gpu"));
});

Deno.test("device-check: each call's steps fit its time, and a call fits the remote GPU runner's 10 minutes with a machine start", () => {
  const machineStartS = 180, unpackS = 30;
  ok(DEFAULT_MINUTES * 60 + machineStartS + unpackS <= 600, `--minutes ${DEFAULT_MINUTES}`);
  // results.json, results.md, a log per step and bench.json: all of them come back
  ok(STEP_NAMES.length + 3 <= OUT_FILE_LIMIT);
  const called = new Set(DEVICE_CALLS.flat());
  for (const name of STEP_NAMES) ok(name === "env" || called.has(name), `${name} is in no call`);
  for (const call of DEVICE_CALLS) {
    const sum = STEP_BUDGET_S.env + call.reduce((t, name) => t + STEP_BUDGET_S[name], 0);
    ok(sum <= DEFAULT_MINUTES * 60 - 10, `--only ${call.join(",")}: ${sum} s of budgets`);
  }
});

Deno.test("device-check: the command lines: a log folder of its own per training run, every test file there", () => {
  const out = "/tmp/out";
  for (const precision of ["f32", "bf16"] as const) {
    const argv = trainArgv(precision, out);
    const logDir = argv.find((a) => a.startsWith("--log-dir="))?.slice("--log-dir=".length);
    assertEquals(logDir, join(out, `train_${precision}`));
    const scaled = rehearsalArgv(argv);
    ok(scaled.includes("--backend=native") && !scaled.includes("--backend=cuda"), scaled.join(" "));
    ok(!scaled.includes("--model=gpt2") && scaled.includes(`--steps=${REHEARSAL_TRAIN_STEPS}`));
    // every flag but the sizes and the backend is the real command's
    for (const a of argv) {
      if (!/^(--model|--steps|--total-batch-size|--backend|-B|-T|4|256)\b/.test(a)) {
        ok(scaled.includes(a), `${a} is lost in ${scaled.join(" ")}`);
      }
    }
  }
  assertEquals(rehearsalArgv(benchArgv("/tmp/b.json")), benchArgv("/tmp/b.json"));
  for (const file of [...SUITE_FILES, ...WEBGPU_FILES]) {
    ok(Deno.statSync(join(repoRoot, file)).isFile, `${file} is missing`);
    assertEquals(testArgv(file), [...DENO_TEST, file]);
  }
});

/** Runs `deno ARGV` in the repository, as the device check runs its steps. */
async function deno(argv: string[]): Promise<{ code: number; output: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: argv,
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, output: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

Deno.test("device-check: each training run's command line, scaled down, trains here, again into the same folder", async () => {
  const out = await Deno.makeTempDir({ prefix: "device_check_train_" });
  try {
    for (const precision of ["f32", "bf16"] as const) {
      for (const run of [1, 2]) {
        const r = await deno(rehearsalArgv(trainArgv(precision, out)));
        assertEquals(r.code, 0, `run ${run}: ${r.output}`);
        assertEquals(parseLosses(r.output).length, REHEARSAL_TRAIN_STEPS, r.output);
        ok(Deno.statSync(join(out, `train_${precision}`, "log.txt")).isFile);
      }
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test({
  name: "device-check: the bench's command line reads every flag, then stops only at the GPU",
  ignore: await hasNvidiaSmi(),
  async fn() {
    const r = await deno(benchArgv("/tmp/device_check_never_written.json"));
    assertEquals(r.code, 1, r.output);
    ok(BENCH_NO_GPU.test(r.output), r.output);
    // a flag the bench rejects is told apart from the missing GPU
    const bad = await deno([...benchArgv("/tmp/x.json"), "--torch-compile-batch=0"]);
    assertEquals(bad.code, 1, bad.output);
    ok(!BENCH_NO_GPU.test(bad.output) && /--torch-compile-batch/.test(bad.output), bad.output);
  },
});

Deno.test({
  name:
    "device-check: scaled down with the CUDA emulator's library, the training runs go through --backend cuda and the bench runs every row on the null device",
  ignore: (await hasNvidiaSmi()) || !(await hasCxx()),
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "device_check_emulator_" });
    try {
      const env = {
        NO_COLOR: "1",
        [REHEARSAL_CUDA_ENV]: JSON.stringify(await emulatorEnv()),
        [REHEARSAL_CUDA_NULL_ENV]: JSON.stringify(await emulatorEnv({ nullDevice: true })),
      };
      const r = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "tools/device_check/mod.ts",
          out,
          "--scaled-down",
          "--only",
          "train,bench",
        ],
        cwd: repoRoot,
        env,
      }).output();
      const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
      const results = JSON.parse(await Deno.readTextFile(join(out, "results.json")));
      const steps = results.steps as StepResult[];
      assertEquals(steps.map((s) => [s.name, s.status]), [["env", "passed"], ["train", "passed"], [
        "bench",
        "passed",
      ]], text);
      assertEquals(r.code, 0, text);
      const train = await Deno.readTextFile(join(out, "train.log"));
      ok(
        train.includes("--backend=cuda") &&
          train.includes("CUDA emulator on the CPU (through FFI)"),
        train,
      );
      ok(steps[1].summary.startsWith("losses agree"), steps[1].summary);
      ok(/null device.*6 rows timed/.test(steps[2].summary), steps[2].summary);
      // the training runs' log folders stayed off OUTDIR: what the remote GPU runner brings back
      assertBroughtBack(out);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("device-check: deno test takes the suites' command lines (flags and module graphs)", async () => {
  const r = await deno([...DENO_TEST, "--no-run", ...SUITE_FILES]);
  assertEquals(r.code, 0, r.output);
});

Deno.test({
  name:
    "device-check: scaled down, the one-rank NCCL communicator and the CUDA fence run on the emulator's libraries through the real FFI",
  ignore: (await hasNvidiaSmi()) || !(await hasCxx()),
  async fn() {
    const emulator = { ...await emulatorEnv(), ...await ncclEmulatorEnv() };
    ok(REHEARSAL_EMULATED_SUITES.includes("tests/backends/cuda_nccl_test.ts"));
    for (const file of SUITE_FILES) {
      const env = rehearsalSuiteEnv(file, emulator);
      assertEquals(env !== undefined, REHEARSAL_EMULATED_SUITES.includes(file), file);
      assertEquals(rehearsalSuiteEnv(file, null), undefined);
    }
    for (const file of REHEARSAL_EMULATED_SUITES) {
      const r = await new Deno.Command(Deno.execPath(), {
        args: testArgv(file),
        cwd: repoRoot,
        env: { NO_COLOR: "1", ...rehearsalSuiteEnv(file, emulator) },
      }).output();
      const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
      assertEquals(r.code, 0, text);
      ok(!/skipped:/.test(text), text);
      const summary = parseTestSummary(text);
      ok(summary && summary.passed >= 2 && summary.failed === 0 && summary.ignored === 0, text);
    }
  },
});

Deno.test("device-check: a rehearsal runs from a copy of what travels (no node_modules, no .git), with no xz on its PATH", async () => {
  const dir = await Deno.makeTempDir({ prefix: "device_check_travel_" });
  try {
    const git = (...args: string[]) =>
      new Deno.Command("git", { args, cwd: dir, stdout: "null", stderr: "null" }).output();
    await git("init", "-q");
    const write = (path: string, text: string) => {
      Deno.mkdirSync(join(dir, path, ".."), { recursive: true });
      Deno.writeTextFileSync(join(dir, path), text);
    };
    write(".gitignore", "node_modules/\n.gpu/\n.gl/\n");
    write("lib/a.ts", "a");
    write("tests/new_test.ts", "untracked, not ignored");
    write("node_modules/x/index.js", "ignored");
    write(".gpu/run.sh", "#!/usr/bin/env bash\n");
    Deno.chmodSync(join(dir, ".gpu/run.sh"), 0o755);
    write(".gpu/shared/data/input.txt", "carried");
    write(".gl/libvulkan1.deb", "carried");
    await git("add", ".gitignore", "lib/a.ts");
    const files = await travellingFiles(dir);
    assertEquals(files, [
      ".gitignore",
      ".gl/libvulkan1.deb",
      ".gpu/run.sh",
      ".gpu/shared/data/input.txt",
      "lib/a.ts",
      "tests/new_test.ts",
    ]);
    const copy = join(dir, "..", `${dir.split("/").at(-1)}_copy`);
    try {
      copyFiles(files, dir, copy);
      assertEquals(Deno.readTextFileSync(join(copy, ".gpu/shared/data/input.txt")), "carried");
      ok((Deno.statSync(join(copy, ".gpu/run.sh")).mode! & 0o111) !== 0, "run.sh kept executable");
      ok(!existsSync(join(copy, "node_modules")) && !existsSync(join(copy, ".git")));
    } finally {
      await Deno.remove(copy, { recursive: true });
    }
    const bin = pathWithout(Deno.env.get("PATH") ?? "", HIDDEN_PROGRAMS, join(dir, "bin"));
    const names = [...Deno.readDirSync(bin)].map((e) => e.name);
    ok(names.includes("bash") && names.includes("tar"), names.join(" "));
    for (const hidden of ["xz", "unxz", "xzcat"]) ok(!names.includes(hidden), hidden);
    const r = await new Deno.Command("bash", {
      args: ["-c", "command -v xz || echo none; command -v tar"],
      env: { PATH: bin },
      stdout: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(r.stdout).split("\n")[0], "none");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("device-check: --prepare keeps in .gpu/cache only the kernels and the resource table of the sources now", () => {
  const dir = Deno.makeTempDirSync({ prefix: "device_check_cache_" });
  try {
    const table = { arch: "sm_90", kernels: { gelu_forward: { registers: 16 } } };
    Deno.writeTextFileSync(join(dir, "kernels-old.fatbin"), "earlier sources");
    Deno.writeTextFileSync(join(dir, "kernels-new.fatbin"), "these sources");
    Deno.writeTextFileSync(join(dir, "resources-old.json"), JSON.stringify({ arch: "sm_80" }));
    Deno.writeTextFileSync(join(dir, "resources-new.json"), JSON.stringify(table, null, 2));
    Deno.writeTextFileSync(join(dir, "resources-broken.json"), "{");
    assertEquals(resourceTableFile(dir, table), "resources-new.json");
    assertEquals(resourceTableFile(dir, { arch: "sm_75" }), null);
    const removed = pruneCache(dir, ["kernels-new.fatbin", "resources-new.json"]);
    assertEquals(removed, ["kernels-old.fatbin", "resources-broken.json", "resources-old.json"]);
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["kernels-new.fatbin", "resources-new.json"],
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
