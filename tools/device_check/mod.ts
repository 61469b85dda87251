/**
 * `deno task device-check`: the one command that proves the CUDA backend on a GPU machine.
 *
 * - `deno task device-check --prepare` (here, with a network): fills the git-ignored `.gpu/`
 *   and `.gl/` with what the check needs there (tools/device_check/prepare.ts) and prints the
 *   command to run.
 * - `bash .gpu/run.sh OUTDIR --only suites,train`, then `--only bench` (there, no network;
 *   two calls of the remote GPU runner, each within `--minutes`): unpacks Deno and the packages,
 *   then runs this file with OUTDIR: the environment (nvidia-smi, always), the CUDA suites
 *   (each test file in a process of its own: the PyTorch reference suite and the 124M hash
 *   check, every kernel against the reference backend, TF32/bf16, a one-rank NCCL
 *   communicator and the CUDA fence, then the nvcc build), a 20-step bf16 training run of
 *   GPT-2 124M beside an fp32 one on the same data, the benchmark (`deno task bench --backend
 *   cuda --peer torch`), and the WebGPU suites on the NVIDIA adapter through Vulkan. Every
 *   step runs even when one before failed; each writes a log, and `results.json` and
 *   `results.md` in OUTDIR say what passed, with the tables.
 * - `deno task device-check --rehearse OUTDIR` (here, no GPU): every step's command line run
 *   by the prepared `.gpu/run.sh` from a copy of what travels, offline, without xz, scaled
 *   down (commands.ts: `rehearsalArgv`; rehearse.ts), where a step passes when all it lacked
 *   was the GPU.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { REPO_ROOT } from "../../lib/data/datasets.ts";
import {
  BENCH_NO_GPU,
  benchArgv,
  DEFAULT_MINUTES,
  DENO_RUN,
  DENO_TEST,
  REHEARSAL_CUDA_ENV,
  REHEARSAL_CUDA_NULL_ENV,
  REHEARSAL_TRAIN_STEPS,
  rehearsalArgv,
  rehearsalSuiteEnv,
  STEP_BUDGET_S,
  STEP_NAMES,
  type StepName,
  SUITE_FILES,
  testArgv,
  TRAIN_STEPS,
  trainArgv,
  WEBGPU_FILES,
} from "./commands.ts";
import { GPU_DIR, prepareDeviceCheck } from "./prepare.ts";
import { rehearse } from "./rehearse.ts";
import {
  compareLosses,
  errorLine,
  LOSS_TOLERANCE,
  lossTable,
  parseLosses,
  parseTestSummary,
  resultsMarkdown,
  type StepResult,
  type StepStatus,
} from "./report.ts";

const HELP =
  `deno task device-check --prepare          (here: fill .gpu/ and .gl/ for a GPU machine)
deno task device-check OUTDIR [flags]     (there, or bash .gpu/run.sh OUTDIR [flags])
deno task device-check --rehearse OUTDIR  (here: every step's command, scaled down, no GPU)

  --only LIST     run only these steps: suites, train, bench, webgpu (env always runs);
                  on a GPU: --only suites,train in one call, --only bench in another
  --minutes M     the whole check's time limit (default ${DEFAULT_MINUTES}); each step has a share
  -h, --help      this text

Writes results.json, results.md and one log per step into OUTDIR.`;

/** A step: its name for --only, its title, its most seconds, and what it does. */
interface Step {
  name: StepName;
  title: string;
  budgetS: number;
  run: (ctx: StepContext) => Promise<StepOutcome>;
}

/** What a step's run returns; the runner adds the name, time and log. */
interface StepOutcome {
  status: StepStatus;
  summary: string;
  details?: Record<string, unknown>;
  /** A section for results.md. */
  section?: string;
}

/** What a step gets: its log, its time limit, and a way to run a command into the log. */
interface StepContext {
  outDir: string;
  limitS: number;
  /** A rehearsal without a GPU: commands scaled down, the GPU's absence is no failure. */
  rehearse: boolean;
  /** Runs `cmd` within `limitS`, with `env` added to this process's variables. */
  exec: (cmd: string[], limitS: number, env?: Record<string, string>) => Promise<ExecResult>;
  note: (line: string) => void;
}

/** A finished command. */
interface ExecResult {
  code: number;
  timedOut: boolean;
  output: string;
}

/** Output kept in memory per command (the log has all of it). */
const KEEP_CHARS = 4_000_000;

/** Something bytes are written to (a file, stdout), perhaps a part at a time. */
interface Sink {
  write(p: Uint8Array): Promise<number>;
}

/** Writes all of `data` to `sink`. */
async function writeAll(sink: Sink, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await sink.write(data.subarray(done));
}

/** Runs `cmd` with a time limit (GNU timeout kills its whole process group), teeing into `log`. */
async function execInto(
  log: Deno.FsFile,
  cmd: string[],
  limitS: number,
  env?: Record<string, string>,
): Promise<ExecResult> {
  const enc = new TextEncoder();
  await writeAll(log, enc.encode(`\n$ ${cmd.join(" ")}\n`));
  const full = ["timeout", "-k", "10", String(Math.max(1, Math.floor(limitS))), ...cmd];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(full[0], {
      args: full.slice(1),
      cwd: REPO_ROOT,
      env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    const output = `could not start ${cmd[0]}: ${(e as Error).message}`;
    await writeAll(log, enc.encode(output + "\n"));
    return { code: 127, timedOut: false, output };
  }
  let output = "";
  const pump = async (stream: ReadableStream<Uint8Array>, echo: Sink): Promise<void> => {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      await writeAll(log, chunk);
      await writeAll(echo, chunk);
      output += dec.decode(chunk, { stream: true });
      if (output.length > KEEP_CHARS) output = output.slice(-KEEP_CHARS / 2);
    }
  };
  const [status] = await Promise.all([
    child.status,
    pump(child.stdout, Deno.stdout),
    pump(child.stderr, Deno.stderr),
  ]);
  const timedOut = status.code === 124 || status.code === 137;
  if (timedOut) await writeAll(log, enc.encode(`\n(stopped at the time limit of ${limitS} s)\n`));
  return { code: status.code, timedOut, output };
}

/** A line for a command that did not finish cleanly: why, and its error line. */
function exitNote(r: ExecResult, limitS: number): string {
  if (r.timedOut) return `stopped at its time limit (${Math.floor(limitS)} s)`;
  if (r.code === 127) return r.output.split("\n")[0];
  return `exit code ${r.code}: ${errorLine(r.output)}`;
}

/** The GPU, the driver, nvcc, Deno, and the loaders the backends need. */
async function envStep(ctx: StepContext): Promise<StepOutcome> {
  const smi = await ctx.exec(["nvidia-smi"], 10);
  await ctx.exec(["nvidia-smi", "-L"], 5);
  await ctx.exec(["nvcc", "--version"], 5);
  const deno = await ctx.exec([Deno.execPath(), "--version"], 5);
  await ctx.exec(["bash", "-c", "ldconfig -p | grep -E 'libcuda|libvulkan|libnccl|libcublas'"], 5);
  await ctx.exec(["bash", "-c", "uname -a; nproc; free -g | head -2"], 5);
  if (smi.code !== 0) {
    const why = `nvidia-smi: ${exitNote(smi, 10)}: no NVIDIA driver here`;
    if (ctx.rehearse && deno.code === 0) return { status: "passed", summary: `rehearsal: ${why}` };
    return { status: "failed", summary: why };
  }
  const gpu = smi.output.match(/\|\s+\d+\s+(NVIDIA[^|]*?)\s{2,}/)?.[1]?.trim() ?? "a GPU";
  const driver = smi.output.match(/Driver Version:\s*([\d.]+)/)?.[1] ?? "?";
  const cuda = smi.output.match(/CUDA Version:\s*([\d.]+)/)?.[1] ?? "?";
  return { status: "passed", summary: `${gpu}, driver ${driver}, CUDA ${cuda}` };
}

/** One test file's outcome, from its own process. */
interface FileOutcome {
  file: string;
  status: StepStatus;
  summary: string;
  passed: number;
  failed: number;
  ignored: number;
  failures: string[];
  exitCode: number;
  timedOut: boolean;
}

/**
 * Runs each test file in a process of its own, within the step's time, and reads deno test's
 * summary; `skipMark` says a file skipped itself (no GPU, no adapter): a failure on a GPU
 * machine, a pass in a rehearsal, which only proves the command runs.
 */
async function testStep(
  ctx: StepContext,
  files: readonly string[],
  skipMark: RegExp,
  envOf: (file: string) => Record<string, string> | undefined = () => undefined,
): Promise<StepOutcome> {
  const start = performance.now(), outcomes: FileOutcome[] = [];
  for (const file of files) {
    const left = ctx.limitS - (performance.now() - start) / 1000;
    if (left < 5) {
      outcomes.push({
        file,
        status: "skipped",
        summary: "out of the step's time",
        passed: 0,
        failed: 0,
        ignored: 0,
        failures: [],
        exitCode: -1,
        timedOut: true,
      });
      continue;
    }
    const r = await ctx.exec([Deno.execPath(), ...testArgv(file)], left, envOf(file));
    const summary = parseTestSummary(r.output);
    const skip = r.output.match(skipMark)?.[0]?.trim();
    const counts = summary
      ? `${summary.passed} passed, ${summary.failed} failed, ${summary.ignored} ignored`
      : "no test summary";
    const clean = r.code === 0 && summary !== null && summary.failed === 0;
    const status: StepStatus = clean && !skip ? "passed" : clean && skip ? "skipped" : "failed";
    const failures = summary?.failures.length ? `; failed: ${summary.failures.join("; ")}` : "";
    outcomes.push({
      file,
      status,
      summary: status === "failed"
        ? `${counts}, ${exitNote(r, left)}${failures}`
        : skip
        ? `${skip} (${counts})`
        : counts,
      passed: summary?.passed ?? 0,
      failed: summary?.failed ?? 0,
      ignored: summary?.ignored ?? 0,
      failures: summary?.failures ?? [],
      exitCode: r.code,
      timedOut: r.timedOut,
    });
    ctx.note(`${file}: ${status}: ${outcomes.at(-1)!.summary}`);
  }
  const sum = (k: "passed" | "failed" | "ignored") => outcomes.reduce((t, o) => t + o[k], 0);
  const counts = `${sum("passed")} passed, ${sum("failed")} failed, ${sum("ignored")} ignored`;
  const details = { files: outcomes };
  const failed = outcomes.filter((o) => o.status === "failed");
  const skipped = outcomes.filter((o) => o.status === "skipped");
  const name = (o: FileOutcome) => o.file.split("/").at(-1);
  if (failed.length) {
    const why = failed.map((o) => `${name(o)}: ${o.summary}`).join("; ");
    return { status: "failed", summary: `${counts}; ${why}`, details };
  }
  if (skipped.length && !ctx.rehearse) {
    const why = skipped.map((o) => `${name(o)}: ${o.summary}`).join("; ");
    return { status: "skipped", summary: `${counts}; ${why}`, details };
  }
  const note = skipped.length ? ` (rehearsal: ${skipped.length} files skipped themselves)` : "";
  return { status: "passed", summary: `${counts} in ${outcomes.length} files${note}`, details };
}

/**
 * The CUDA suites, a file a process: the reference suite and the 124M check, every kernel,
 * the bf16 tensor-core attention, a one-rank NCCL communicator and the CUDA fence, then the
 * nvcc build. A rehearsal runs the NCCL one on the emulator's libraries where --rehearse
 * built them.
 */
function suitesStep(ctx: StepContext): Promise<StepOutcome> {
  const emulator = ctx.rehearse ? rehearsalEnv(REHEARSAL_CUDA_ENV) : null;
  return testStep(
    ctx,
    SUITE_FILES,
    /(?:cuda|cuda build|cuda bf16 attention \(GPU\)|cuda nccl): skipped: .*/,
    (file) => rehearsalSuiteEnv(file, emulator),
  );
}

/** 20 steps of GPT-2 124M in fp32 and in bf16 on the same data; the losses must agree. */
async function trainStep(ctx: StepContext): Promise<StepOutcome> {
  const losses: Record<string, number[]> = {}, notes: string[] = [], commands: string[][] = [];
  const steps = ctx.rehearse ? REHEARSAL_TRAIN_STEPS : TRAIN_STEPS;
  // a rehearsal trains --backend cuda on the CPU emulator's library where --rehearse built it
  const emulator = ctx.rehearse ? rehearsalEnv(REHEARSAL_CUDA_ENV) : null;
  // the runs' log folders (weights and checkpoints: GBs at 124M; a report, a record) stay off
  // OUTDIR, of which the remote GPU runner brings back OUT_FILE_LIMIT files: train.log has their output
  const scratch = await Deno.makeTempDir({ prefix: "device_check_train_" });
  try {
    for (const precision of ["f32", "bf16"] as const) {
      // the emulator runs the kernels on the CPU: a rehearsal on it gets four times the time
      const limit = (emulator ? 4 : 1) * ctx.limitS / 2;
      const argv = trainArgv(precision, scratch);
      const cmd = ctx.rehearse ? rehearsalArgv(argv, { cuda: emulator !== null }) : argv;
      commands.push(cmd);
      const r = await ctx.exec([Deno.execPath(), ...cmd], limit, emulator ?? undefined);
      losses[precision] = parseLosses(r.output);
      if (r.code !== 0) notes.push(`${precision} run: ${exitNote(r, limit)}`);
    }
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  const { f32, bf16 } = losses;
  // a tiny model's loss over two steps of a warm-up need not fall: the rehearsal compares only
  const mismatch = compareLosses(f32, bf16, steps, { requireFall: !ctx.rehearse });
  const details = { commands, f32, bf16, tolerance: LOSS_TOLERANCE };
  const what = !ctx.rehearse
    ? "GPT-2 124M, B=4, T=256"
    : `rehearsal: a tiny GPT-2 on ${emulator ? "the CUDA emulator's library" : "native"}`;
  const section = `## Training: ${what}, ${steps} steps, fp32 and bf16\n\n` +
    `Tolerance: the bf16 loss within ${100 * LOSS_TOLERANCE.first}% of the fp32 one at step 0 ` +
    `and ${
      100 * LOSS_TOLERANCE.every
    }% at every step (tools/device_check/report.ts says why).\n\n` +
    lossTable(f32, bf16);
  if (notes.length || mismatch) {
    return {
      status: "failed",
      summary: [...notes, mismatch].filter(Boolean).join("; "),
      details,
      section,
    };
  }
  const last = steps - 1;
  return {
    status: "passed",
    summary: `losses agree: fp32 ${f32[0].toFixed(3)} to ${f32[last].toFixed(3)}, bf16 ${
      bf16[0].toFixed(3)
    } to ${bf16[last].toFixed(3)}`,
    details,
    section,
  };
}

/** The bench's table from its JSON (saved row by row, so a run stopped early has one too). */
async function benchTable(report: object): Promise<string> {
  try {
    const { cudaBenchTable } = await import("../../lib/bench/cuda.ts");
    return cudaBenchTable(report as Parameters<typeof cudaBenchTable>[0]);
  } catch (e) {
    return `(no table: ${(e as Error).message.split("\n")[0]}; results.json has the numbers)`;
  }
}

/** `deno task bench --backend cuda --peer torch`, its JSON and its table. */
async function benchStep(ctx: StepContext): Promise<StepOutcome> {
  const json = join(ctx.outDir, "bench.json");
  const argv = benchArgv(json);
  // a rehearsal runs the whole bench on the emulator's null device where --rehearse built it
  const nullDevice = ctx.rehearse ? rehearsalEnv(REHEARSAL_CUDA_NULL_ENV) : null;
  const r = await ctx.exec(
    [Deno.execPath(), ...(ctx.rehearse ? rehearsalArgv(argv) : argv)],
    ctx.limitS,
    nullDevice ?? undefined,
  );
  if (ctx.rehearse && r.code !== 0 && BENCH_NO_GPU.test(r.output)) {
    return {
      status: "passed",
      summary: "rehearsal: every flag read, then stopped at the GPU as it must here",
      details: { command: argv, exitCode: r.code },
    };
  }
  let report: { rows?: { ours: object }[] } | null = null;
  try {
    report = JSON.parse(await Deno.readTextFile(json));
  } catch {
    // no JSON: the bench failed before its first row
  }
  const rows = report?.rows ?? [];
  const section = `## Benchmark: deno task bench --backend cuda --peer torch\n\n${
    rows.length ? await benchTable(report!) : "(no table: see bench.log)"
  }${r.timedOut ? "\n\n(stopped at its time limit: the rows it finished)" : ""}`;
  const failedRows = rows.filter((row) => "failed" in row.ours).length;
  const details = { command: argv, report, exitCode: r.code, timedOut: r.timedOut };
  if (r.code !== 0 || rows.length === 0 || failedRows > 0) {
    const why = r.code !== 0
      ? exitNote(r, ctx.limitS)
      : `${failedRows} of ${rows.length} rows failed: ${errorLine(r.output)}`;
    return { status: "failed", summary: why, details, section };
  }
  const where = nullDevice ? "rehearsal: on the CUDA null device (host side only), " : "";
  return { status: "passed", summary: `${where}${rows.length} rows timed`, details, section };
}

/** Prints the WebGPU adapter as one JSON line (run by the webgpu step in a child). */
async function printWebGpuAdapter(): Promise<void> {
  const { createWebGpuBackend } = await import("../../lib/backends/webgpu/mod.ts");
  const backend = await createWebGpuBackend({ quiet: true });
  console.log(
    JSON.stringify({ adapter: backend.adapterSummary, software: backend.isSoftwareAdapter }),
  );
}

/** The WebGPU suites, on the NVIDIA adapter only (loudly failed on any other). */
async function webGpuStep(ctx: StepContext): Promise<StepOutcome> {
  const probe = await ctx.exec([
    Deno.execPath(),
    ...DENO_RUN,
    "tools/device_check/mod.ts",
    "--webgpu-adapter",
  ], 60);
  const line = probe.output.split("\n").find((l) => l.startsWith('{"adapter"'));
  if (!line) {
    const why = probe.output.split("\n").find((l) => /error/i.test(l)) ?? exitNote(probe, 60);
    const summary = `no WebGPU adapter: ${why.trim().slice(0, 300)}`;
    if (ctx.rehearse) return { status: "passed", summary: `rehearsal: ${summary}` };
    return { status: "failed", summary };
  }
  const { adapter, software } = JSON.parse(line) as { adapter: string; software: boolean };
  if (ctx.rehearse) {
    // the suites take many minutes on a software adapter: their command loads, nothing runs
    const r = await ctx.exec([Deno.execPath(), ...DENO_TEST, "--no-run", ...WEBGPU_FILES], 60);
    const summary = `rehearsal on ${adapter}: the suites' command loaded ${WEBGPU_FILES.length} ` +
      `files (not run on this adapter)`;
    if (r.code === 0) return { status: "passed", summary };
    return { status: "failed", summary: `rehearsal: ${exitNote(r, 60)}` };
  }
  if (software || !/nvidia/i.test(adapter)) {
    ctx.note(`WEBGPU IS NOT ON THE NVIDIA GPU: the adapter is ${adapter}; its suites are not run`);
    return { status: "failed", summary: `WebGPU's adapter is not the NVIDIA GPU: ${adapter}` };
  }
  ctx.note(`WebGPU adapter: ${adapter}`);
  const r = await testStep(ctx, WEBGPU_FILES, /SKIPPED: no WebGPU adapter/);
  return { ...r, summary: `${adapter}: ${r.summary}`, details: { adapter, ...r.details } };
}

/** The steps in the order they run: the CUDA proof first, WebGPU (the extra) last. */
const STEP_RUNS: Record<StepName, Omit<Step, "name" | "budgetS">> = {
  env: { title: "environment (nvidia-smi)", run: envStep },
  suites: { title: "CUDA suites", run: suitesStep },
  train: { title: "bf16 beside fp32 training", run: trainStep },
  bench: { title: "benchmark beside PyTorch", run: benchStep },
  webgpu: { title: "WebGPU suites on Vulkan", run: webGpuStep },
};
const STEPS: Step[] = STEP_NAMES.map((name) => ({
  name,
  budgetS: STEP_BUDGET_S[name],
  ...STEP_RUNS[name],
}));

/** A rehearsal's emulator variables (`REHEARSAL_CUDA_ENV`), or null where none were given. */
function rehearsalEnv(name: string): Record<string, string> | null {
  const text = Deno.env.get(name);
  return text ? JSON.parse(text) as Record<string, string> : null;
}

/** Runs the steps into `outDir` within `minutes`; returns whether every step passed. */
async function runDeviceCheck(
  outDir: string,
  only: string[] | null,
  minutes: number,
  rehearse: boolean,
): Promise<boolean> {
  Deno.mkdirSync(outDir, { recursive: true });
  const t0 = performance.now(), deadline = t0 + minutes * 60_000;
  const startedAt = new Date().toISOString();
  const results: StepResult[] = [], sections: string[] = [];
  const write = async (): Promise<void> => {
    const header = {
      startedAt,
      commit: readManifest().commit ?? "unknown",
      gpu: results.find((s) => s.name === "env")?.summary ?? "not looked at",
      seconds: (performance.now() - t0) / 1000,
    };
    await Deno.writeTextFile(
      join(outDir, "results.json"),
      JSON.stringify({ ...header, steps: results }, null, 2) + "\n",
    );
    await Deno.writeTextFile(
      join(outDir, "results.md"),
      resultsMarkdown(header, results, sections),
    );
  };
  for (const step of STEPS.filter((s) => !only || s.name === "env" || only.includes(s.name))) {
    const left = (deadline - performance.now()) / 1000 - 5;
    const limitS = Math.min(step.budgetS, left), logName = `${step.name}.log`;
    const started = performance.now();
    console.log(`\n=== device-check: ${step.title} (at most ${Math.floor(limitS)} s) ===`);
    let outcome: StepOutcome;
    if (limitS < 15) {
      outcome = {
        status: "skipped",
        summary: `out of time (${Math.floor(left)} s left of ${minutes} min)`,
      };
    } else {
      const log = await Deno.open(join(outDir, logName), {
        write: true,
        create: true,
        truncate: true,
      });
      const note = (line: string) => {
        console.log(`device-check: ${line}`);
        log.writeSync(new TextEncoder().encode(`device-check: ${line}\n`));
      };
      try {
        outcome = await step.run({
          outDir,
          limitS,
          rehearse,
          exec: (cmd, s, env) => execInto(log, cmd, s, env),
          note,
        });
      } catch (e) {
        outcome = {
          status: "failed",
          summary: `the step crashed: ${(e as Error).message.split("\n")[0]}`,
        };
      } finally {
        log.close();
      }
    }
    const seconds = (performance.now() - started) / 1000;
    results.push({
      name: step.name,
      title: step.title,
      status: outcome.status,
      seconds,
      summary: outcome.summary,
      log: logName,
      details: outcome.details,
    });
    if (outcome.section) sections.push(outcome.section);
    console.log(
      `=== ${step.title}: ${outcome.status.toUpperCase()} in ${
        seconds.toFixed(0)
      } s: ${outcome.summary}`,
    );
    await write();
  }
  console.log(`\ndevice-check: results in ${resolve(outDir)}/results.md and results.json`);
  for (const r of results) console.log(`  ${r.status.padEnd(7)} ${r.title}: ${r.summary}`);
  return results.every((r) => r.status === "passed");
}

/** `.gpu/manifest.json` as prepared, or nothing. */
function readManifest(): { commit?: string } {
  try {
    return JSON.parse(Deno.readTextFileSync(join(GPU_DIR, "manifest.json")));
  } catch {
    return {};
  }
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      prepare: { type: "boolean" },
      rehearse: { type: "boolean" },
      "scaled-down": { type: "boolean" },
      only: { type: "string" },
      minutes: { type: "string" },
      "webgpu-adapter": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  try {
    if (values.help) {
      console.log(HELP);
    } else if (values["webgpu-adapter"]) {
      await printWebGpuAdapter();
    } else if (values.prepare) {
      if (positionals.length) {
        throw new Error(`--prepare takes no folder, found ${positionals.join(" ")}`);
      }
      await prepareDeviceCheck();
    } else {
      if (positionals.length !== 1) {
        throw new Error(
          `Expected one output folder (or --prepare), found ${positionals.length} arguments (see --help)`,
        );
      }
      const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean) ?? null;
      const unknown = only?.filter((s) => !(STEP_NAMES as readonly string[]).includes(s)) ?? [];
      if (unknown.length) {
        throw new Error(
          `--only expects steps of ${STEP_NAMES.join(", ")}, found ${unknown.join(", ")}`,
        );
      }
      const minutes = Number(values.minutes ?? DEFAULT_MINUTES);
      if (!(minutes > 0)) {
        throw new Error(`--minutes expects a positive number, found "${values.minutes}"`);
      }
      if (values.rehearse) {
        Deno.exitCode = (await rehearse(positionals[0], values.only)) ? 0 : 1;
      } else {
        if (!existsSync(GPU_DIR)) {
          console.log("device-check: no .gpu/ here (deno task device-check --prepare makes it)");
        }
        const scaled = values["scaled-down"] ?? false;
        Deno.exitCode = (await runDeviceCheck(positionals[0], only, minutes, scaled)) ? 0 : 1;
      }
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exitCode = 1;
  }
}
