/**
 * Interrupts for long loops: Jupyter's Kernel > Interrupt, and Ctrl-C where a command asks for
 * it. Jupyter interrupts a kernel by sending it SIGINT (the kernel spec's `interrupt_mode:
 * "signal"`); Deno's kernel neither stops nor dies on it, so a loop would run to its end. Here a
 * listener counts the signals, and each long loop (training steps, the speedup ladders,
 * evaluation, sampling, downloads) takes a {@linkcode LoopGuard} when it starts and asks it
 * between iterations: only a signal that arrived after the loop began stops it, so an interrupt
 * sent while nothing ran does not end the next cell's loop at once.
 *
 * A signal is delivered by the event loop, so a loop of synchronous kernels must yield to it:
 * {@linkcode LoopGuard.interrupted} does that (one macrotask turn, well under a millisecond)
 * before it answers.
 *
 * @module
 */

let signals = 0;
let listening = false;

/**
 * Starts counting SIGINT (idempotent). Called once by the notebooks' first cell (through
 * `keepOutputInCells`); a command-line program that wants Ctrl-C to end a loop cleanly may
 * call it too. Without it, {@linkcode LoopGuard.interrupted} is always false.
 */
export function listenForInterrupts(): void {
  if (listening) return;
  listening = true;
  Deno.addSignalListener("SIGINT", () => {
    signals++;
  });
}

/** Counts one interrupt as if SIGINT had arrived (for tests, and for callers with a button). */
export function requestInterrupt(): void {
  signals++;
}

/** What a long loop asks between iterations. */
export interface LoopGuard {
  /**
   * Whether an interrupt arrived since the guard was made. Yields to the event loop first, so
   * a signal sent during a synchronous step is seen.
   */
  interrupted(): Promise<boolean>;
  /** The same answer without yielding: for loops that already awaited this iteration. */
  interruptedNow(): boolean;
}

/** A guard for a loop starting now: interrupts before this call do not count. */
export function loopGuard(): LoopGuard {
  const start = signals;
  return {
    interrupted: async () => {
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      return signals !== start;
    },
    interruptedNow: () => signals !== start,
  };
}

/** The line a loop prints when an interrupt ended it early. */
export function interruptedLine(what: string, at: number, of?: number): string {
  return `interrupted: ${what} stopped at ${at}${of === undefined ? "" : ` of ${of}`}`;
}
