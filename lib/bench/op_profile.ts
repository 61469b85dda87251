/**
 * Where a step's time goes, op by op: a backend wrapped so that each of its calls is timed
 * and the bytes of the buffers it is handed are counted. The native kernels run to completion
 * inside the call, so the clock around it measures the kernel. The bytes are a floor on the
 * memory traffic of a memory-bound op (each buffer it touches read or written once), which,
 * over a measured bandwidth, gives the least time the non-GEMM work could take. Each call's
 * process CPU time (every thread) is taken beside its wall time: on a machine shared with other
 * jobs a kernel's CPU time moves less than its wall time, which counts the time other
 * processes held the cores. GEMMs are kept apart by shape (`matmulForward 2048x768->3072`:
 * N x C -> OC), so that each of a model's Linear layers has its own line.
 *
 * @module
 */

import process from "node:process";
import type { Backend, DeviceBuffer, MatmulDims } from "../backend.ts";
import type { GPTConfig } from "../model/gpt.ts";
import { stepRunner } from "./step.ts";

/** The backend methods that are matrix products. */
export const GEMM_OPS: ReadonlySet<string> = new Set([
  "matmulForward",
  "matmulGeluForward",
  "matmulBackward",
  "gemm",
]);

/** One op's calls in a profile. */
export interface OpTotals {
  calls: number;
  ms: number;
  /** Process CPU time of its calls (every thread), ms. */
  cpuMs: number;
  /** Bytes of the buffers passed to it, summed over its calls. */
  bytes: number;
}

/**
 * Per-op totals, by backend method name; a GEMM's name is followed by its shape (see
 * {@linkcode opKey}).
 */
export type OpProfile = Map<string, OpTotals>;

/** Process CPU time so far, user and system, every thread, ms. */
export function cpuTimeMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * The profile's key of a call: the method's name, and for the matmuls of {@linkcode GEMM_OPS}
 * that take `MatmulDims` last, its shape, "N x C -> OC" (e.g. `matmulBackward 2048x768->3072`).
 */
export function opKey(op: string, args: readonly unknown[]): string {
  const dims = args[args.length - 1] as Partial<MatmulDims> | undefined;
  if (op.startsWith("matmul") && typeof dims?.N === "number" && typeof dims.OC === "number") {
    return `${op} ${dims.N}x${dims.C}->${dims.OC}`;
  }
  return op;
}

/** The backend method of a profile key (the key up to its shape). */
export function opName(key: string): string {
  const space = key.indexOf(" ");
  return space < 0 ? key : key.slice(0, space);
}

/** Calls that are bookkeeping, not work (their time is not a kernel's). */
const SKIPPED = new Set([
  "hostView",
  "describe",
  "alloc",
  "recycle",
  "upload",
  "wrapHost",
  "peakFlops",
]);

/**
 * `backend` seen through a proxy that adds each call's milliseconds and buffer bytes to
 * `profile`; bookkeeping (allocation, views) passes through untimed.
 */
export function profiledBackend<B extends Backend>(backend: B, profile: OpProfile): B {
  return new Proxy(backend, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function" || typeof prop !== "string" || SKIPPED.has(prop)) {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return (...args: unknown[]) => {
        const t0 = performance.now(), cpu0 = cpuTimeMs();
        // an async method's work runs before its first await (the native kernels do): the
        // clock stops when the call returns, not when its promise settles
        const result = value.apply(target, args);
        const ms = performance.now() - t0, cpuMs = cpuTimeMs() - cpu0;
        const key = opKey(prop, args);
        const entry = profile.get(key) ?? { calls: 0, ms: 0, cpuMs: 0, bytes: 0 };
        entry.calls++;
        entry.ms += ms;
        entry.cpuMs += cpuMs;
        entry.bytes += opBytes(prop, args);
        profile.set(key, entry);
        return result;
      };
    },
  });
}

/**
 * Bytes of the device buffers among `args` (4 bytes an element, f32 or i32), except that an
 * embedding op touches only the N rows of C it looks up, not its whole table.
 */
export function opBytes(op: string, args: readonly unknown[]): number {
  let bytes = 0;
  const table = op === "embeddingForward" ? 2 : op === "embeddingBackward" ? 0 : -1;
  args.forEach((a, i) => {
    if (!isBuffer(a)) return;
    bytes += i === table ? 4 * (args[3] as number) * (args[4] as number) : 4 * a.length;
  });
  return bytes;
}

function isBuffer(a: unknown): a is DeviceBuffer {
  return typeof a === "object" && a !== null && "dtype" in a && "length" in a &&
    typeof (a as DeviceBuffer).length === "number";
}

/**
 * A profile split into the GEMMs and the rest, each op (a GEMM: each op and shape) by time,
 * slowest first.
 */
export interface ProfileSplit {
  gemmMs: number;
  gemmCpuMs: number;
  restMs: number;
  restCpuMs: number;
  restBytes: number;
  gemms: [string, OpTotals][];
  rest: [string, OpTotals][];
}

/** Splits `profile` into GEMM time and the rest (see {@linkcode GEMM_OPS}). */
export function splitProfile(profile: OpProfile): ProfileSplit {
  let gemmMs = 0, gemmCpuMs = 0, restMs = 0, restCpuMs = 0, restBytes = 0;
  const gemms: [string, OpTotals][] = [], rest: [string, OpTotals][] = [];
  for (const [name, t] of profile) {
    if (GEMM_OPS.has(opName(name))) {
      gemmMs += t.ms;
      gemmCpuMs += t.cpuMs;
      gemms.push([name, t]);
    } else {
      restMs += t.ms;
      restCpuMs += t.cpuMs;
      restBytes += t.bytes;
      rest.push([name, t]);
    }
  }
  gemms.sort((a, b) => b[1].ms - a[1].ms);
  rest.sort((a, b) => b[1].ms - a[1].ms);
  return { gemmMs, gemmCpuMs, restMs, restCpuMs, restBytes, gemms, rest };
}

/**
 * Memory bandwidth of `backend`'s element-wise kernels, bytes per second: the median of 5
 * `accumulate` calls (dst += src: two reads and a write of each element) over arrays of
 * `elements` floats, far past the caches.
 */
export function measureBandwidth(backend: Backend, elements = 32 << 20): number {
  const dst = backend.alloc(elements, "f32"), src = backend.alloc(elements, "f32");
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    backend.accumulate(dst, src, elements, elements);
    if (i > 0) times.push(performance.now() - t0); // the first touches the pages
  }
  times.sort((a, b) => a - b);
  return (3 * 4 * elements) / (times[2] / 1000);
}

/** Options of {@linkcode profileTrainingStep}. */
export interface ProfileStepOptions {
  B: number;
  T: number;
  /** Untimed steps first (default 2). */
  warmup?: number;
  /** Profiled steps, averaged (default 3). */
  steps?: number;
}

/** A training step's profile, per step: wall and CPU time, the split, and the ops' totals. */
export interface StepProfile extends ProfileSplit {
  wallMs: number;
  /** Process CPU time of the step (every thread), ms. */
  cpuMs: number;
}

/**
 * Profiles GPT-2 training steps (those of `stepRunner`) on `backend` op by op: the mean per
 * step of each op's time and bytes over `steps` steps after `warmup`.
 */
export async function profileTrainingStep(
  backend: Backend,
  config: GPTConfig,
  o: ProfileStepOptions,
): Promise<StepProfile> {
  const profile: OpProfile = new Map();
  const steps = o.steps ?? 3;
  const step = stepRunner(profiledBackend(backend, profile), config, { mode: "train", ...o });
  for (let i = 0; i < (o.warmup ?? 2); i++) await step();
  profile.clear();
  let wallMs = 0;
  const cpu0 = cpuTimeMs();
  for (let i = 0; i < steps; i++) wallMs += await step();
  const cpuMs = cpuTimeMs() - cpu0;
  for (const t of profile.values()) {
    t.calls /= steps;
    t.ms /= steps;
    t.cpuMs /= steps;
    t.bytes /= steps;
  }
  return { wallMs: wallMs / steps, cpuMs: cpuMs / steps, ...splitProfile(profile) };
}

/** The profile as lines of text, with the least time the rest's bytes take at `bandwidth`. */
export function formatStepProfile(p: StepProfile, bandwidth: number, top = 6): string {
  const pct = (ms: number) => `${(100 * ms / p.wallMs).toFixed(0)}%`;
  const floorMs = p.restBytes / bandwidth * 1000;
  const other = p.wallMs - p.gemmMs - p.restMs;
  const lines = [
    `  wall ${p.wallMs.toFixed(0)} ms: GEMMs ${p.gemmMs.toFixed(0)} ms (${pct(p.gemmMs)}), ` +
    `other kernels ${p.restMs.toFixed(0)} ms (${pct(p.restMs)}), ` +
    `outside the kernels ${other.toFixed(0)} ms (${pct(other)})`,
    `  the other kernels touch ${(p.restBytes / 1e9).toFixed(2)} GB: at least ${
      floorMs.toFixed(0)
    } ms at the measured ${(bandwidth / 1e9).toFixed(1)} GB/s (${
      (p.restMs / Math.max(floorMs, 1e-9)).toFixed(1)
    }x that floor)`,
    "  slowest of them: " +
    p.rest.slice(0, top).map(([name, t]) =>
      `${name} ${t.ms.toFixed(0)} ms (${(t.bytes / 1e6).toFixed(0)} MB, ${
        (t.bytes / (t.ms / 1000) / 1e9).toFixed(1)
      } GB/s)`
    ).join(", "),
    `  process CPU time (every thread): step ${p.cpuMs.toFixed(0)} ms, GEMMs ${
      p.gemmCpuMs.toFixed(0)
    } ms, other kernels ${p.restCpuMs.toFixed(0)} ms, outside the kernels ${
      (p.cpuMs - p.gemmCpuMs - p.restCpuMs).toFixed(0)
    } ms`,
    "  GEMMs by op and shape (N x C -> OC), wall ms / CPU ms a step: " +
    p.gemms.map(([name, t]) => `${name} ${t.ms.toFixed(0)} / ${t.cpuMs.toFixed(0)}`).join(", "),
  ];
  return lines.join("\n");
}
