/**
 * Keeps each notebook cell's console output under that cell in Jupyter.
 *
 * Why: Deno's kernel (2.9) forwards console output through a queue that sends one message per
 * `console.log` call, and it reports a cell finished (`execute_reply`, then `status: idle`
 * after a 5 ms pause) without waiting for that queue to empty. Whatever is still queued is sent
 * labelled with the *next* request, so Jupyter shows it under the next cell: measured here, a
 * cell printing 3,000 lines one call at a time had 832 of them under itself and 1,431 under the
 * cell after it. The same 3,000 lines in one `console.log` call arrive whole before the reply.
 *
 * So, in a notebook, {@linkcode keepOutputInCells} makes the console collect what it is given
 * and print it in one call per burst: at the end of the current task (a microtask, which runs
 * before the cell's promise settles, so before the kernel replies). A cell that awaits between
 * prints (a training loop) still shows each line as it comes; a synchronous loop's lines come
 * together when it ends. Outside a Jupyter kernel it does nothing.
 *
 * @module
 */

import { format } from "node:util";

/** The console methods that print, and the stream each one writes to. */
const METHODS = {
  log: "stdout",
  info: "stdout",
  debug: "stdout",
  warn: "stderr",
  error: "stderr",
} as const;

type Method = keyof typeof METHODS;
type Stream = (typeof METHODS)[Method];

/** Lines waiting to be printed, in order, with the stream each goes to. */
interface Pending {
  stream: Stream;
  lines: string[];
}

/**
 * How long the cell waits after each print, in milliseconds, sleeping (not spinning). The kernel
 * forwards console output on another thread and replies 5 ms after the cell ends, so a line
 * printed in a cell's last moment raced that reply: under load in CI the last two lines of a
 * notebook-01 cell came under the next cell. The pause also spaces the prints of a loop that
 * awaits between them, so the kernel's queue never holds more than about one message.
 */
const HANDOFF_MS = 8;

/** Something to sleep on: `Atomics.wait` blocks this thread without using the core. */
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

let installed = false;

/** Whether this code runs inside `deno jupyter`'s kernel. */
export function inJupyterKernel(): boolean {
  try {
    // Deno.jupyter is declared everywhere; outside `deno jupyter` reading it throws
    return typeof Deno.jupyter.broadcast === "function";
  } catch {
    return false;
  }
}

/**
 * In a Jupyter kernel, routes `console.log`/`info`/`debug`/`warn`/`error` through a buffer that
 * prints each burst of calls as one call (see the module's comment for why). Safe to call more
 * than once; returns whether the console is now buffered.
 */
export function keepOutputInCells(options: { force?: boolean } = {}): boolean {
  if (installed) return true;
  if (!options.force && !inJupyterKernel()) return false;
  installed = true;
  const original: Record<Stream, (text: string) => void> = {
    stdout: console.log.bind(console),
    stderr: console.error.bind(console),
  };
  const queue: Pending[] = [];
  let scheduled = false;

  const flush = (): void => {
    scheduled = false;
    // At most one message per stream: interleaved stdout and stderr lines are grouped by
    // stream, as Jupyter's output area merges consecutive stream outputs anyway.
    const lines: Record<Stream, string[]> = { stdout: [], stderr: [] };
    for (const pending of queue.splice(0)) lines[pending.stream].push(...pending.lines);
    for (const stream of ["stdout", "stderr"] as const) {
      if (lines[stream].length > 0) original[stream](lines[stream].join("\n"));
    }
    Atomics.wait(SLEEPER, 0, 0, HANDOFF_MS); // the forwarding thread's turn (see HANDOFF_MS)
  };

  const print = (stream: Stream, args: unknown[]): void => {
    const last = queue.at(-1);
    const line = format(...args);
    if (last?.stream === stream) last.lines.push(line);
    else queue.push({ stream, lines: [line] });
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(flush);
    }
  };

  for (const [method, stream] of Object.entries(METHODS) as [Method, Stream][]) {
    console[method] = (...args: unknown[]): void => print(stream, args);
  }
  return true;
}
