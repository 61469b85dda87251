/**
 * Picks a backend by name. The reference `cpu` backend is always present; the native CPU,
 * WebGPU and CUDA backends plug in here as they land.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { CpuBackend } from "./cpu.ts";

/** Backend names `--backend` accepts. */
export const BACKEND_NAMES = ["auto", "cpu"] as const;

/** The chosen backend and why it was chosen. */
export interface BackendChoice {
  backend: Backend;
  reason: string;
}

/** The backend for `--backend NAME`; "auto" takes the fastest one present. */
export function selectBackend(name = "auto"): BackendChoice {
  switch (name) {
    case "auto":
      return {
        backend: new CpuBackend(),
        reason: "auto: the reference CPU backend (plain TypeScript) is the only one in this build",
      };
    case "cpu":
      return { backend: new CpuBackend(), reason: "--backend cpu: the reference CPU backend" };
    default:
      throw new Error(`Unknown --backend "${name}", expected one of ${BACKEND_NAMES.join(", ")}`);
  }
}

/**
 * Whether `backend` trains GPT-2 124M in minutes: the reference backend needs over a
 * minute per step at B=4, T=64, so it does not.
 */
export function trainsGpt2InMinutes(backend: Backend): boolean {
  return backend.name !== "cpu";
}
