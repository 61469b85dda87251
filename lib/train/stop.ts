/**
 * When a run stops early: Ctrl-C or SIGTERM, or its parent process gone (the `deno task train`
 * wrapper or the DDP launcher killed, even with SIGKILL). Either is remembered, so the loop
 * finishes the step, saves a checkpoint and returns: nothing is lost, and no trainer or rank
 * runs on unattended. The parent is checked every second and at every step.
 *
 * @module
 */

import { parentPid } from "../ddp/libc.ts";

/** What the loop asks once per step, and what ends the watch. */
export interface StopWatch {
  /** Why the run should stop after this step (the first cause), else null. */
  stopSignal: () => string | null;
  /** Removes the signal handlers and the parent check (the run's end). */
  dispose: () => void;
}

/** Watches for Ctrl-C, SIGTERM and the parent's death; `enabled` false watches nothing. */
export function catchStopSignals(rank: number, enabled: boolean): StopWatch {
  let signalled: string | null = null;
  const stop = (why: string): void => {
    if (!signalled) console.error(`rank ${rank}: ${why}: stopping after this step`);
    signalled ??= why;
  };
  const handlers: [Deno.Signal, () => void][] = enabled
    ? [["SIGINT", () => stop("SIGINT")], ["SIGTERM", () => stop("SIGTERM")]]
    : [];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  const checkParent = enabled ? parentWatch(stop) : () => {};
  // between the awaits of a step too, so a long step still notices within a second
  const timer = enabled ? setInterval(checkParent, 1000) : undefined;
  if (timer !== undefined) Deno.unrefTimer(timer);
  return {
    stopSignal: () => {
      checkParent();
      return signalled;
    },
    dispose: () => {
      clearInterval(timer);
      for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    },
  };
}

/**
 * A check that calls `stop` once the parent has died: its pid changes when the process is
 * reparented (to init or a subreaper). Where libc cannot be reached (no FFI permission), none.
 */
function parentWatch(stop: (why: string) => void): () => void {
  let parent: number;
  try {
    parent = parentPid();
  } catch {
    return () => {};
  }
  return () => {
    if (parentPid() !== parent) stop(`the parent process (pid ${parent}) is gone`);
  };
}
