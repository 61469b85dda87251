/**
 * Reads `deno test`'s output line by line and works out how long each test file took, for the
 * table `tools/test_runner/mod.ts` prints at the end of a run.
 *
 * Files run one after another (deno test's default, without `--parallel`), each as
 * "running N tests from ./FILE", its tests' result lines ("NAME ... ok (12ms)"), and any output.
 * A file's time runs from the previous file's last result to its own last result, so it holds
 * the loading of its module (top-level awaits) as well as its tests; the first file's runs from
 * its "running" line (the type check before it is shown on its own).
 *
 * @module
 */

/** How long one test file took. */
export interface FileTime {
  /** The file as deno test names it (`./tests/io/npy_test.ts`). */
  file: string;
  /** Wall time in milliseconds. */
  ms: number;
  /** Whether one of its tests failed. */
  failed: boolean;
}

// deno-lint-ignore no-control-regex -- deno test colours its output with these escape codes
const ANSI = /\x1b\[[0-9;]*m/g;
// deno-lint-ignore no-control-regex -- an escape code cut off at the end of a partial line
const CUT_ESCAPE = /\x1b\[?[0-9;]*$/;
const RUNNING = /^running \d+ tests? from (\S+)/;
const RESULT = / \.\.\. (ok|FAILED|ignored)\b/;
const SUMMARY = /^(ok|FAILED) \| \d+ passed/;

/** A line without its colour codes. */
export function plain(line: string): string {
  return line.replace(ANSI, "");
}

/** Whether a line is deno test's final summary (`ok | 12 passed | 0 failed (3s)`). */
export function isSummary(line: string): boolean {
  return SUMMARY.test(plain(line));
}

/** Whether a partial line may still become the summary line, so it must not be shown yet. */
export function maybeSummary(partial: string): boolean {
  const text = plain(partial).replace(CUT_ESCAPE, "");
  if (SUMMARY.test(text)) return true;
  return ["ok | ", "FAILED | "].some((start) =>
    text.length < start.length ? start.startsWith(text) : text.startsWith(start)
  );
}

/** Collects per-file times from output lines fed in the order they came, with their times. */
export class FileTimer {
  readonly #started: number;
  readonly #files = new Map<string, FileTime>();
  #current: FileTime | null = null;
  /** When the last file's last result came (or its "running" line, before any result). */
  #lastEnd: number | null = null;
  /** Time from the start to the first "running" line: the type check and the first load. */
  beforeFirstMs = 0;

  /** `started`: when deno test was started, in the clock of the times given to `line`. */
  constructor(started: number) {
    this.#started = started;
  }

  /** Feeds one complete line of output that came at time `at` (milliseconds). */
  line(text: string, at: number): void {
    const line = plain(text);
    const running = RUNNING.exec(line);
    if (running) {
      if (this.#lastEnd === null) {
        this.beforeFirstMs = at - this.#started;
        this.#lastEnd = at;
      }
      const file = running[1];
      this.#current = this.#files.get(file) ?? { file, ms: 0, failed: false };
      this.#files.set(file, this.#current);
      return;
    }
    const result = RESULT.exec(line);
    if (result && this.#current && this.#lastEnd !== null) {
      this.#current.ms += at - this.#lastEnd;
      this.#lastEnd = at;
      if (result[1] === "FAILED") this.#current.failed = true;
    }
  }

  /** The files seen, slowest first. */
  times(): FileTime[] {
    return [...this.#files.values()].sort((a, b) => b.ms - a.ms || a.file.localeCompare(b.file));
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The table printed at the end of a run: each file's wall time, slowest first, and the sum. */
export function timeTable(times: FileTime[], beforeFirstMs: number): string {
  if (times.length === 0) return "";
  const width = Math.max(...times.map((t) => seconds(t.ms).length));
  const total = times.reduce((sum, t) => sum + t.ms, 0);
  return [
    "Time per test file (wall, slowest first):",
    ...times.map((t) =>
      `  ${seconds(t.ms).padStart(width)}  ${t.file}${t.failed ? "  FAILED" : ""}`
    ),
    `  ${seconds(total)} in ${times.length} files, after ${
      seconds(beforeFirstMs)
    } of type check and start`,
  ].join("\n");
}
