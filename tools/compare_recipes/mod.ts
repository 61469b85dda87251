/**
 * `deno task compare-recipes`: the lecture's recipe against the speedrun's, measured here. Tiny
 * Shakespeare's paragraphs go through `deno task fineweb --input` into `.npy` shards; then a
 * ladder of runs (tools/compare_recipes/ladder.ts: the lecture's recipe, one change a row, the last
 * row `--preset speedrun-shakespeare`), each seed in turn, are trained by `deno task train` as
 * subprocesses; each run's val curve and step times are read back (tools/compare_recipes/results.ts)
 * and L*, the steps to reach it and the step-time ratios written as results.json, table.md and
 * figure.png. The results are rewritten after every run, so a stopped comparison keeps what it
 * measured.
 *
 * @module
 */

import { join, relative, resolve } from "node:path";
import { logger as vegaLogger, None, parse as parseVega, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { REPO_ROOT, resolveTinyShakespeare } from "../../lib/data/datasets.ts";
import { npyUint16Length } from "../../lib/io/npy.ts";
import { svgToPng } from "../../lib/plot/svg.ts";
import {
  DEFAULT_RUN_SHAPE,
  type PlannedRun,
  planRuns,
  recipeLadder,
  type RecipeRow,
  selectRows,
} from "./ladder.ts";
import { recipeChartSpec } from "./chart.ts";
import {
  crossingStep,
  formatTable,
  medianStepMs,
  parseStepTimes,
  parseValCurve,
  type RunResult,
  summarizeRows,
  targetLoss,
} from "./results.ts";
import { listFlag, numberFlag, parseFlags, runMain, stringFlag } from "../../lib/cli/flags.ts";

const DEFAULT_OUT = "notebooks/runs/speedrun-vs-lecture";
const DEFAULT_SCRATCH = ".scratch/compare-recipes";

const HELP = `deno task compare-recipes [flags]

Trains the lecture's recipe and the speedrun's, and the ladder between them (one change a row),
on Tiny Shakespeare's paragraphs sharded as FineWeb (.npy shards), the tiny model, B=8, T=128,
several seeds each; reports L* (the lecture recipe's final val loss, mean of its seeds), the steps
each row needs to reach it, and each row's step time against the lecture's.

Rows: ${recipeLadder().map((r) => r.id).join(", ")}

  --seeds LIST        comma-separated seeds (default 1337,1338,1339)
  --steps N           optimizer steps per run (default ${DEFAULT_RUN_SHAPE.steps})
  --eval-every N      val loss every N steps (default ${DEFAULT_RUN_SHAPE.evalEvery})
  --val-batches N     batches per val loss (default ${DEFAULT_RUN_SHAPE.valBatches})
  --rows LIST         comma-separated row ids, a subset (default all); lecture among them,
                      since L* comes from it
  --backend NAME      the train task's --backend (default ${DEFAULT_RUN_SHAPE.backend})
  --shard-size N      tokens per shard (default 32768; shard 0, about 10%, is val)
  --out DIR           results.json, table.md, figure.png (default ${DEFAULT_OUT})
  --scratch DIR       shards and the runs' folders, never committed (default ${DEFAULT_SCRATCH})
  --resume            read the runs an earlier comparison finished in --scratch instead of
                      training them again (same flags); train the rest
  --note TEXT         a line for results.json's notes and table.md (repeatable), e.g. which
                      code the runs were trained with
  -h, --help          this text`;

/** The run of `deno` with `args` from the repository root; its stdout to `onLine` by line. */
async function runDeno(
  args: string[],
  onLine: (line: string) => void,
): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderrText = new Response(child.stderr).text();
  let rest = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    rest += decoder.decode(chunk, { stream: true });
    const lines = rest.split("\n");
    rest = lines.pop()!;
    for (const line of lines) onLine(line);
  }
  if (rest !== "") onLine(rest);
  const { code } = await child.status;
  return { code, stderr: await stderrText };
}

function parseList(raw: string | undefined, flag: string): string[] | undefined {
  if (raw === undefined) return undefined;
  const items = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) {
    throw new Error(`--${flag} expects a comma-separated list, found "${raw}"`);
  }
  return items;
}

function parseSeeds(raw: string | undefined): number[] {
  const items = parseList(raw, "seeds") ?? ["1337", "1338", "1339"];
  const seeds = items.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`--seeds expects non-negative integers, found "${s}"`);
    }
    return n;
  });
  if (new Set(seeds).size !== seeds.length) {
    throw new Error(`--seeds expects distinct seeds, found ${seeds.join(",")}`);
  }
  return seeds;
}

/** Tiny Shakespeare's paragraphs as a .jsonl, sharded by the fineweb task; the shards' sizes. */
async function prepareShards(
  scratch: string,
  shardSize: number,
): Promise<{ dir: string; paragraphs: number; valTokens: number; trainTokens: number }> {
  const input = await resolveTinyShakespeare(undefined, { quiet: true });
  const text = await Deno.readTextFile(input);
  const paragraphs = text.split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p !== "");
  await Deno.mkdir(scratch, { recursive: true });
  const jsonl = join(scratch, "tinyshakespeare_paragraphs.jsonl");
  await Deno.writeTextFile(
    jsonl,
    paragraphs.map((p) => JSON.stringify({ text: p })).join("\n") + "\n",
  );
  const dir = join(scratch, "shards");
  console.log(`shards: ${paragraphs.length} paragraphs of ${input} -> ${jsonl}`);
  const args = [
    "run",
    "-A",
    "lib/cli/fineweb.ts",
    "--input",
    jsonl,
    "--out",
    dir,
    "--shard-size",
    String(shardSize),
    "--restart",
  ];
  console.log(`shards: deno ${args.join(" ")}`);
  const { code, stderr } = await runDeno(args, (line) => console.log(`  fineweb: ${line}`));
  if (code !== 0) {
    throw new Error(`Expected deno task fineweb to succeed, it exited ${code}: ${stderr.trim()}`);
  }
  let valTokens = 0, trainTokens = 0, valShards = 0;
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith(".npy")) continue;
    const n = await npyUint16Length(join(dir, e.name));
    if (e.name.includes("_val_")) [valTokens, valShards] = [valTokens + n, valShards + 1];
    else if (e.name.includes("_train_")) trainTokens += n;
  }
  if (valShards === 0 || trainTokens === 0) {
    throw new Error(
      `Expected a val shard and train shards in ${dir}, found ${valShards} val shard(s) and ` +
        `${trainTokens} train tokens; pass a smaller --shard-size`,
    );
  }
  console.log(
    `shards: val ${valTokens.toLocaleString("en-US")} tokens, train ${
      trainTokens.toLocaleString("en-US")
    } tokens in ${dir}`,
  );
  return { dir, paragraphs: paragraphs.length, valTokens, trainTokens };
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  return m > 0 ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
}

/** One run: trains it, keeps its stdout beside log.txt, reads its curve and step times. */
async function trainOne(
  run: PlannedRun,
  steps: number,
  progress: (step: number) => void,
): Promise<Omit<RunResult, "crossing">> {
  const logDir = run.args[run.args.length - 1];
  const started = performance.now();
  const stdout: string[] = [];
  const { code, stderr } = await runDeno(["run", "-A", "lib/cli/train.ts", ...run.args], (line) => {
    stdout.push(line);
    const m = /^step\s+(\d+)\s+\|/.exec(line);
    if (m) progress(Number(m[1]));
  });
  const wallS = (performance.now() - started) / 1000;
  await Deno.writeTextFile(join(logDir, "stdout.txt"), stdout.join("\n") + "\n");
  await Deno.writeTextFile(join(logDir, "stderr.txt"), stderr);
  // the weights are not needed afterwards: a checkpoint per run would fill the disk
  for (const sub of ["checkpoints", "model"]) {
    await Deno.remove(join(logDir, sub), { recursive: true }).catch(() => {});
  }
  if (code !== 0) {
    console.log(
      `  ${run.name}: exited ${code}: ${stderr.trim().split("\n").slice(-3).join(" / ")}`,
    );
  }
  return await readRun(run, steps, stdout.join("\n"), wallS, code !== 0);
}

/** A run's result from its log.txt and the stdout it printed. */
async function readRun(
  run: PlannedRun,
  steps: number,
  stdout: string,
  wallS: number,
  failed: boolean,
): Promise<Omit<RunResult, "crossing">> {
  const logDir = run.args[run.args.length - 1];
  let val = { steps: [] as number[], values: [] as number[] };
  try {
    val = parseValCurve(await Deno.readTextFile(join(logDir, "log.txt")));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const last = val.steps.length - 1;
  const finalVal = last >= 0 && val.steps[last] === steps - 1 ? val.values[last] : NaN;
  return {
    seed: run.seed,
    val,
    stepMs: medianStepMs(parseStepTimes(stdout), val.steps),
    wallS,
    finalVal,
    diverged: failed || val.values.some((v) => !Number.isFinite(v)),
  };
}

/**
 * With --resume: the result of a run an earlier comparison finished in the same folder (its
 * stdout.txt ends with the train task's finished summary), or null to train it.
 */
async function finishedRun(
  run: PlannedRun,
  steps: number,
): Promise<Omit<RunResult, "crossing"> | null> {
  const logDir = run.args[run.args.length - 1];
  let stdout: string;
  try {
    stdout = await Deno.readTextFile(join(logDir, "stdout.txt"));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  if (!stdout.includes("run summary (finished)")) return null;
  const wall = /wall time\s+\S+\s+\(([\d.]+) s\)/.exec(stdout);
  const result = await readRun(run, steps, stdout, wall ? Number(wall[1]) : NaN, false);
  return Number.isFinite(result.finalVal) ? result : null;
}

function gitRev(): string {
  try {
    const out = new Deno.Command("git", { args: ["rev-parse", "HEAD"], cwd: REPO_ROOT })
      .outputSync();
    return new TextDecoder().decode(out.stdout).trim() || "unknown";
  } catch {
    return "unknown";
  }
}

function machine(): Record<string, unknown> {
  let cpu = "unknown";
  try {
    cpu = /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? cpu;
  } catch { /* not Linux */ }
  return {
    os: `${Deno.build.os} ${Deno.build.arch}`,
    cpu,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
  };
}

async function renderFigure(spec: Record<string, unknown>): Promise<Uint8Array> {
  const quiet = vegaLogger(None);
  const { spec: vegaSpec } = compile(spec as unknown as TopLevelSpec, { logger: quiet });
  const view = new View(parseVega(vegaSpec), { renderer: "none", logger: quiet });
  try {
    return svgToPng(await view.toSVG());
  } finally {
    view.finalize();
  }
}

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    seeds: { type: "string" },
    steps: { type: "string" },
    "eval-every": { type: "string" },
    "val-batches": { type: "string" },
    rows: { type: "string" },
    backend: { type: "string" },
    "shard-size": { type: "string" },
    out: { type: "string" },
    scratch: { type: "string" },
    resume: { type: "boolean" },
    note: { type: "string", multiple: true },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const seeds = parseSeeds(stringFlag(f, "seeds"));
  const steps = numberFlag(f, "steps", DEFAULT_RUN_SHAPE.steps, { integer: true, min: 2 });
  const evalEvery = numberFlag(f, "eval-every", DEFAULT_RUN_SHAPE.evalEvery, {
    integer: true,
    min: 1,
  });
  const valBatches = numberFlag(f, "val-batches", DEFAULT_RUN_SHAPE.valBatches, {
    integer: true,
    min: 1,
  });
  const shardSize = numberFlag(f, "shard-size", 32768, { integer: true, min: 1024 });
  const rows: RecipeRow[] = selectRows(recipeLadder(), parseList(stringFlag(f, "rows"), "rows"));
  if (rows[0].id !== "lecture") {
    throw new Error(
      `--rows expects lecture among the rows (L* is its final loss), found ${
        rows.map((r) => r.id).join(",")
      }`,
    );
  }
  const backend = stringFlag(f, "backend", DEFAULT_RUN_SHAPE.backend);
  const out = resolve(stringFlag(f, "out", join(REPO_ROOT, DEFAULT_OUT)));
  const scratch = resolve(stringFlag(f, "scratch", join(REPO_ROOT, DEFAULT_SCRATCH)));
  const command = ["deno", "task", "compare-recipes", ...Deno.args].join(" ");
  const startedAt = new Date();
  const rev = gitRev(); // once: others may commit while the runs go on
  const userNotes = listFlag(f, "note") ?? [];

  const shards = await prepareShards(scratch, shardSize);
  const shape = { data: shards.dir, steps, evalEvery, valBatches, backend };
  const runs = planRuns(rows, seeds, shape, join(scratch, "runs"));
  console.log(
    `compare-recipes: ${rows.length} rows x ${seeds.length} seeds = ${runs.length} runs of ` +
      `${steps} steps (tiny, B=8, T=128, --backend ${backend}), seed-major`,
  );
  rows.forEach((r, i) => console.log(`  row ${i} ${r.id}: ${r.change}`));

  const results: RunResult[][] = rows.map(() => []);
  const runWall: number[] = [];
  /** The runs --resume read rather than trained. */
  const resumed: string[] = [];
  await Deno.mkdir(out, { recursive: true });

  const write = async (finished: boolean): Promise<string> => {
    const lStar = results[0].length > 0 ? targetLoss(results[0]) : NaN;
    const withCrossing = results.map((rs) =>
      rs.map((r) => ({
        ...r,
        crossing: Number.isFinite(lStar) ? crossingStep(r.val, lStar) : null,
      }))
    );
    const summaries = summarizeRows(
      rows.map((row, i) => ({ id: row.id, change: row.change, runs: withCrossing[i] })),
      steps - 1,
    );
    const table = formatTable(summaries, lStar);
    const doc = {
      command,
      gitRev: rev,
      startedAt: startedAt.toISOString(),
      writtenAt: new Date().toISOString(),
      finished,
      resumedRuns: resumed,
      machine: machine(),
      data: {
        source:
          "Tiny Shakespeare's paragraphs (blank-line separated) through deno task fineweb --input",
        paragraphs: shards.paragraphs,
        shardSize,
        valTokens: shards.valTokens,
        trainTokens: shards.trainTokens,
      },
      shape: { model: "tiny", B: 8, T: 128, steps, evalEvery, valBatches, backend, seeds },
      notes: [
        "A val loss logged at step s is the model after s updates; the last evaluation is at " +
        `step ${steps - 1}.`,
        "L* is the mean over seeds of the lecture row's last val loss.",
        "Steps to L*: the first evaluation at or below L*, interpolated linearly between it and " +
        "the evaluation before; fraction = mean steps to L* / the step of the last evaluation.",
        "Step ms: each run's median dt of its training steps, step 0 and the steps with an " +
        "evaluation left out; the row's value is the median over seeds (one run slowed by " +
        "other work on the machine does not move it), the ratio that over the lecture row's.",
        ...userNotes,
      ],
      lStar,
      rows: rows.map((row, i) => ({
        id: row.id,
        change: row.change,
        settings: row.settings,
        runs: withCrossing[i],
        summary: summaries[i],
      })),
    };
    await Deno.writeTextFile(join(out, "results.json"), JSON.stringify(doc, null, 1) + "\n");
    await Deno.writeTextFile(
      join(out, "table.md"),
      `Measured by \`${command}\` (git ${doc.gitRev.slice(0, 10)}, ${doc.writtenAt}, ` +
        `${doc.machine.cpu}, ${doc.machine.cores} cores)${finished ? "" : ", unfinished"}: ` +
        `${seeds.length} seeds, ${steps} steps, L* = ${lStar.toFixed(4)}.\n\n${table}` +
        userNotes.map((n) => `\n${n}\n`).join(""),
    );
    const spec = recipeChartSpec(
      rows.map((row, i) => ({ id: row.id, curves: results[i].map((r) => r.val) })),
      Number.isFinite(lStar) ? lStar : null,
      `Tiny Shakespeare, tiny model, mean of ${seeds.length} seeds`,
    );
    await Deno.writeFile(join(out, "figure.png"), await renderFigure(spec));
    return table;
  };

  for (const [k, run] of runs.entries()) {
    const mean = runWall.length > 0 ? runWall.reduce((a, b) => a + b, 0) / runWall.length : NaN;
    const label = `[${k + 1}/${runs.length}] row ${run.rowIndex} ${run.row.id}, seed ${run.seed}`;
    const earlier = f.resume ? await finishedRun(run, steps) : null;
    if (earlier) {
      results[run.rowIndex].push({ ...earlier, crossing: null });
      resumed.push(run.name);
      console.log(
        `${label}: read from ${relative(REPO_ROOT, run.args[run.args.length - 1])} (--resume)`,
      );
      continue;
    }
    console.log(`${label}: training (ETA all ${formatDuration(mean * (runs.length - k))})`);
    const started = performance.now();
    let shown = -1;
    const result = await trainOne(run, steps, (step) => {
      const tenth = Math.floor((step + 1) * 10 / steps);
      if (tenth === shown) return;
      shown = tenth;
      const elapsed = (performance.now() - started) / 1000;
      const eta = elapsed / (step + 1) * (steps - step - 1);
      console.log(
        `  ${label}: step ${step + 1}/${steps}, ${formatDuration(elapsed)}, this run's ETA ${
          formatDuration(eta)
        }`,
      );
    });
    runWall.push(result.wallS);
    results[run.rowIndex].push({ ...result, crossing: null });
    console.log(
      `${label}: final val ${result.finalVal.toFixed(4)}, median step ${
        result.stepMs.toFixed(1)
      } ms, ` +
        `${formatDuration(result.wallS)}${result.diverged ? ", DIVERGED" : ""}`,
    );
    await write(false);
  }
  const table = await write(true);
  console.log(`\n${table}`);
  console.log(
    `compare-recipes: wrote ${relative(REPO_ROOT, out)}/{results.json,table.md,figure.png} in ${
      formatDuration((Date.now() - startedAt.getTime()) / 1000)
    }`,
  );
});
