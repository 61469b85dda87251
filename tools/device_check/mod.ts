/**
 * `deno task device-check`: the one command that proves the CUDA backend on a GPU machine.
 *
 * - `deno task device-check --prepare` (here, with a network): fills the git-ignored `.gpu/`
 *   and `.gl/` with what the check needs there (tools/device_check/prepare.ts) and prints the
 *   command to run.
 * - `bash .gpu/run.sh OUTDIR` (there, no network): unpacks Deno and the packages, then runs
 *   this file with OUTDIR, which runs in at most `--minutes` (default 8): the environment
 *   (nvidia-smi), the CUDA suites (the nvcc build, every kernel against the reference
 *   backend, the PyTorch reference suite and the 124M hash check, TF32/bf16), a 20-step bf16
 *   training run of GPT-2 124M beside an fp32 one on the same data, the benchmark
 *   (`deno task bench --backend cuda --peer torch`), and the WebGPU suites on the NVIDIA
 *   adapter through Vulkan. Every step runs even when one before failed; each writes a log,
 *   and `results.json` and `results.md` in OUTDIR say what passed, with the tables.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { REPO_ROOT } from "../../lib/data/datasets.ts";
import { GPU_DIR, prepareDeviceCheck } from "./prepare.ts";
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

const HELP = `deno task device-check --prepare        (here: fill .gpu/ and .gl/ for a GPU machine)
deno task device-check OUTDIR [flags]   (there, or bash .gpu/run.sh OUTDIR [flags])

  --only LIST     run only these steps: env, cuda, train, bench, webgpu (default all)
  --minutes M     the whole check's time limit (default 8); each step has a share
  -h, --help      this text

Writes results.json, results.md and one log per step into OUTDIR.`;

/** The child Deno's flags: no type check (CI does it) and node_modules as carried. */
const DENO_RUN = ["run", "--allow-all", "--no-check", "--node-modules-dir=manual"];
const DENO_TEST = ["test", "--allow-all", "--no-check", "--node-modules-dir=manual"];

/** The training comparison's run: GPT-2 124M on Tiny Shakespeare, B=4, T=256, 20 steps. */
const TRAIN_STEPS = 20;
const TRAIN_FLAGS = [
  "--backend=cuda",
  "--model=gpt2",
  "-B",
  "4",
  "-T",
  "256",
  "--total-batch-size=1024",
  `--steps=${TRAIN_STEPS}`,
  "--eval-every=0",
  "--hellaswag=0",
  "--seed=1337",
  "--log-dir=",
];

/** A step: its name for --only, its title, its most seconds, and what it does. */
interface Step {
  name: string;
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
  exec: (cmd: string[], limitS: number) => Promise<ExecResult>;
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
async function execInto(log: Deno.FsFile, cmd: string[], limitS: number): Promise<ExecResult> {
  const enc = new TextEncoder();
  await writeAll(log, enc.encode(`\n$ ${cmd.join(" ")}\n`));
  const full = ["timeout", "-k", "10", String(Math.max(1, Math.floor(limitS))), ...cmd];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(full[0], {
      args: full.slice(1),
      cwd: REPO_ROOT,
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
  const smi = await ctx.exec(["nvidia-smi"], 20);
  await ctx.exec(["nvidia-smi", "-L"], 10);
  await ctx.exec(["nvcc", "--version"], 10);
  await ctx.exec([Deno.execPath(), "--version"], 10);
  await ctx.exec(["bash", "-c", "ldconfig -p | grep -E 'libcuda|libvulkan|libnccl|libcublas'"], 10);
  await ctx.exec(["bash", "-c", "uname -a; nproc; free -g | head -2"], 10);
  if (smi.code !== 0) {
    return { status: "failed", summary: `nvidia-smi: ${exitNote(smi, 20)}: no NVIDIA driver here` };
  }
  const gpu = smi.output.match(/\|\s+\d+\s+(NVIDIA[^|]*?)\s{2,}/)?.[1]?.trim() ?? "a GPU";
  const driver = smi.output.match(/Driver Version:\s*([\d.]+)/)?.[1] ?? "?";
  const cuda = smi.output.match(/CUDA Version:\s*([\d.]+)/)?.[1] ?? "?";
  return { status: "passed", summary: `${gpu}, driver ${driver}, CUDA ${cuda}` };
}

/** Runs test files and reads deno test's summary; `skipMark` says the tests skipped themselves. */
async function testStep(
  ctx: StepContext,
  files: string[],
  skipMark: RegExp,
): Promise<StepOutcome> {
  const r = await ctx.exec([Deno.execPath(), ...DENO_TEST, ...files], ctx.limitS);
  const summary = parseTestSummary(r.output);
  const skip = r.output.match(skipMark)?.[0];
  const counts = summary
    ? `${summary.passed} passed, ${summary.failed} failed, ${summary.ignored} ignored`
    : "no test summary";
  const details = { files, ...summary, exitCode: r.code, timedOut: r.timedOut };
  const failures = summary?.failures.length ? `; failed: ${summary.failures.join("; ")}` : "";
  if (r.code === 0 && summary && summary.failed === 0 && !skip) {
    return { status: "passed", summary: counts, details };
  }
  if (skip && summary?.failed === 0) {
    return { status: "skipped", summary: `${skip.trim()} (${counts})`, details };
  }
  return { status: "failed", summary: `${counts}, ${exitNote(r, ctx.limitS)}${failures}`, details };
}

/**
 * The nvcc build, every kernel, the reference suite and the 124M check on cuda, and the bf16
 * tensor-core attention against its model and the reference.
 */
function cudaStep(ctx: StepContext): Promise<StepOutcome> {
  return testStep(ctx, [
    "tests/backends/cuda_build_test.ts",
    "tests/backends/cuda_test.ts",
    "tests/backends/cuda_kernels_test.ts",
    "tests/backends/cuda_attention_bf16_test.ts",
  ], /cuda(?: build| bf16 attention \(GPU\))?: skipped: .*/);
}

/** 20 steps of GPT-2 124M in fp32 and in bf16 on the same data; the losses must agree. */
async function trainStep(ctx: StepContext): Promise<StepOutcome> {
  const losses: Record<string, number[]> = {}, notes: string[] = [];
  for (const precision of ["f32", "bf16"]) {
    const limit = ctx.limitS / 2;
    const r = await ctx.exec([
      Deno.execPath(),
      ...DENO_RUN,
      "lib/cli/train.ts",
      ...TRAIN_FLAGS,
      `--precision=${precision}`,
    ], limit);
    losses[precision] = parseLosses(r.output);
    if (r.code !== 0) notes.push(`${precision} run: ${exitNote(r, limit)}`);
  }
  const { f32, bf16 } = losses;
  const mismatch = compareLosses(f32, bf16, TRAIN_STEPS);
  const details = { flags: TRAIN_FLAGS, f32, bf16, tolerance: LOSS_TOLERANCE };
  const section = `## Training: GPT-2 124M, B=4, T=256, ${TRAIN_STEPS} steps, fp32 and bf16\n\n` +
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
  const last = TRAIN_STEPS - 1;
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
  const json = join(Deno.env.get("TMPDIR") ?? "/tmp", `device_check_bench_${Deno.pid}.json`);
  const r = await ctx.exec([
    Deno.execPath(),
    ...DENO_RUN,
    "lib/cli/bench.ts",
    "--backend=cuda",
    "--peer=torch",
    `--json=${json}`,
  ], ctx.limitS);
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
  const details = { report, exitCode: r.code, timedOut: r.timedOut };
  if (r.code !== 0 || rows.length === 0 || failedRows > 0) {
    const why = r.code !== 0
      ? exitNote(r, ctx.limitS)
      : `${failedRows} of ${rows.length} rows failed: ${errorLine(r.output)}`;
    return { status: "failed", summary: why, details, section };
  }
  return { status: "passed", summary: `${rows.length} rows timed`, details, section };
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
    return { status: "failed", summary: `no WebGPU adapter: ${why.trim().slice(0, 300)}` };
  }
  const { adapter, software } = JSON.parse(line) as { adapter: string; software: boolean };
  if (software || !/nvidia/i.test(adapter)) {
    ctx.note(`WEBGPU IS NOT ON THE NVIDIA GPU: the adapter is ${adapter}; its suites are not run`);
    return { status: "failed", summary: `WebGPU's adapter is not the NVIDIA GPU: ${adapter}` };
  }
  ctx.note(`WebGPU adapter: ${adapter}`);
  const r = await testStep(ctx, [
    "tests/backends/webgpu_test.ts",
    "tests/backends/webgpu_reference_test.ts",
  ], /SKIPPED: no WebGPU adapter/);
  return { ...r, summary: `${adapter}: ${r.summary}`, details: { adapter, ...r.details } };
}

/** The steps in the order they run: the CUDA proof first, WebGPU (the extra) last. */
const STEPS: Step[] = [
  { name: "env", title: "environment (nvidia-smi)", budgetS: 40, run: envStep },
  { name: "cuda", title: "CUDA suites", budgetS: 170, run: cudaStep },
  { name: "train", title: "bf16 beside fp32 training", budgetS: 90, run: trainStep },
  { name: "bench", title: "benchmark beside PyTorch", budgetS: 210, run: benchStep },
  { name: "webgpu", title: "WebGPU suites on Vulkan", budgetS: 150, run: webGpuStep },
];

/** Runs the steps into `outDir` within `minutes`; returns whether every step passed. */
async function runDeviceCheck(
  outDir: string,
  only: string[] | null,
  minutes: number,
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
  for (const step of STEPS.filter((s) => !only || only.includes(s.name))) {
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
        outcome = await step.run({ outDir, limitS, exec: (cmd, s) => execInto(log, cmd, s), note });
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
      const only = values.only?.split(",").map((s) => s.trim()) ?? null;
      const unknown = only?.filter((s) => !STEPS.some((step) => step.name === s)) ?? [];
      if (unknown.length) {
        throw new Error(
          `--only expects steps of ${STEPS.map((s) => s.name).join(", ")}, found ${
            unknown.join(", ")
          }`,
        );
      }
      const minutes = Number(values.minutes ?? 8);
      if (!(minutes > 0)) {
        throw new Error(`--minutes expects a positive number, found "${values.minutes}"`);
      }
      if (!existsSync(GPU_DIR)) {
        console.log("device-check: no .gpu/ here (deno task device-check --prepare makes it)");
      }
      Deno.exitCode = (await runDeviceCheck(positionals[0], only, minutes)) ? 0 : 1;
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exitCode = 1;
  }
}
