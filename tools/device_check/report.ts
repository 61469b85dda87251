/**
 * The device check's results: what each step's output says (deno test's summary, the
 * training losses), the comparison of the bf16 and fp32 runs, and `results.md`.
 *
 * @module
 */

/** How a step ended. */
export type StepStatus = "passed" | "failed" | "skipped";

/** One step of the device check, as `results.json` holds it. */
export interface StepResult {
  /** The step's name for `--only`: env, cuda, train, bench, webgpu. */
  name: string;
  title: string;
  status: StepStatus;
  seconds: number;
  /** One line: counts, the reason for a failure or a skip. */
  summary: string;
  /** The step's log file in the output folder. */
  log: string;
  /** Step-specific numbers: test counts and failures, losses, the benchmark's report. */
  details?: Record<string, unknown>;
}

/** What `deno test` printed at the end. */
export interface TestSummary {
  passed: number;
  failed: number;
  ignored: number;
  /** The names of the failed tests, from its FAILURES section. */
  failures: string[];
}

/** The counts of deno test's last `ok | N passed | ...` or `FAILED | ...` line, or null. */
export function parseTestSummary(output: string): TestSummary | null {
  const lines = output.split("\n");
  const last = lines.findLast((l) => /^(ok|FAILED) \| \d+ passed/.test(l.trim()));
  if (!last) return null;
  const count = (what: string) => Number(last.match(new RegExp(`(\\d+) ${what}`))?.[1] ?? 0);
  const start = lines.findLastIndex((l) => l.trim() === "FAILURES");
  const failures = start < 0 ? [] : lines.slice(start + 1).map((l) => l.trim())
    .filter((l) => / => \S+:\d+:\d+$/.test(l)).map((l) => l.replace(/ => \S+$/, ""));
  return { passed: count("passed"), failed: count("failed"), ignored: count("ignored"), failures };
}

/** The first `error: ...` line of a command's output, else its last line that says something. */
export function errorLine(output: string): string {
  const lines = output.split("\n").map((l) => l.trim()).filter(Boolean);
  const error = lines.find((l) => /^(error|Error)\b/.test(l));
  const last = lines.findLast((l) => !/^(Stack backtrace:|\d+: <unknown>|at )/.test(l));
  return (error ?? last ?? "no output").slice(0, 300);
}

/** The `step N | loss: X` lines of a training run, in order. */
export function parseLosses(output: string): number[] {
  return [...output.matchAll(/^step\s+\d+ \| loss: (-?[\d.]+|NaN|Infinity)/gm)].map((m) =>
    Number(m[1])
  );
}

/**
 * How close the bf16 losses must stay to the fp32 ones, relative to the fp32 loss: the first
 * step is one forward pass whose matmul operands are rounded to bf16 (a relative 2^-8 each,
 * with f32 sums, LayerNorm and softmax statistics), so its loss agrees to well under 1%;
 * afterwards the two runs' weights drift apart a little each step, as PyTorch's bf16 autocast
 * and fp32 runs do, so later steps are allowed 3%.
 */
export const LOSS_TOLERANCE = { first: 0.01, every: 0.03 } as const;

/**
 * The bf16 run's losses against the fp32 run's: null when they agree (and, with
 * `requireFall`, both fell from the first step to the last), else why not.
 */
export function compareLosses(
  f32: number[],
  bf16: number[],
  steps: number,
  { requireFall = true }: { requireFall?: boolean } = {},
): string | null {
  if (f32.length !== steps || bf16.length !== steps) {
    return `expected ${steps} losses from each run, found ${f32.length} (fp32) and ${bf16.length} (bf16)`;
  }
  for (let i = 0; i < steps; i++) {
    const tol = i === 0 ? LOSS_TOLERANCE.first : LOSS_TOLERANCE.every;
    const rel = Math.abs(bf16[i] - f32[i]) / Math.abs(f32[i]);
    if (!(rel <= tol)) {
      return `step ${i}: bf16 loss ${bf16[i]} against fp32 ${f32[i]} (${
        (100 * rel).toFixed(2)
      }%, over ${100 * tol}%)`;
    }
  }
  if (requireFall && (!(f32[steps - 1] < f32[0]) || !(bf16[steps - 1] < bf16[0]))) {
    return `the loss did not fall over ${steps} steps (fp32 ${f32[0]} to ${f32[steps - 1]}, bf16 ${
      bf16[0]
    } to ${bf16[steps - 1]})`;
  }
  return null;
}

/** The losses side by side, as Markdown. */
export function lossTable(f32: number[], bf16: number[]): string {
  const rows = ["| step | fp32 loss | bf16 loss | difference |", "| --- | --- | --- | --- |"];
  for (let i = 0; i < Math.max(f32.length, bf16.length); i++) {
    const a = f32[i], b = bf16[i];
    const diff = a === undefined || b === undefined
      ? "-"
      : `${(100 * (b - a) / Math.abs(a)).toFixed(2)}%`;
    rows.push(`| ${i} | ${a?.toFixed(4) ?? "-"} | ${b?.toFixed(4) ?? "-"} | ${diff} |`);
  }
  return rows.join("\n");
}

/** What `results.md` starts with. */
export interface RunHeader {
  startedAt: string;
  commit: string;
  gpu: string;
  seconds: number;
}

/** `results.md`: the steps' table, then each step's details. */
export function resultsMarkdown(
  header: RunHeader,
  steps: StepResult[],
  sections: string[],
): string {
  const failed = steps.filter((s) => s.status !== "passed").length;
  const lines = [
    `# Device check, ${header.startedAt}`,
    "",
    `GPU: ${header.gpu}; commit ${header.commit}; ${header.seconds.toFixed(0)} s in all; ${
      failed === 0 ? "every step passed" : `${failed} of ${steps.length} steps did not pass`
    }.`,
    "",
    "| step | status | seconds | summary | log |",
    "| --- | --- | --- | --- | --- |",
    ...steps.map((s) =>
      `| ${s.title} | ${s.status} | ${s.seconds.toFixed(0)} | ${
        s.summary.replaceAll("|", "\\|").replaceAll("\n", " ")
      } | ${s.log} |`
    ),
  ];
  for (const section of sections) lines.push("", section);
  return lines.join("\n") + "\n";
}
