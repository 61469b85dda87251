/**
 * Picks a backend by name: `createBackend("auto")` takes the fastest one present. The
 * reference `cpu` backend is always there; `native` needs a C compiler; WebGPU and CUDA plug
 * in here as they land.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { CpuBackend } from "./cpu/mod.ts";
import { NativeBackend } from "./native/mod.ts";
import { createWebGpuBackend, hasWebGpuAdapter } from "./webgpu/mod.ts";

/** Backend names `--backend` accepts. */
export const BACKEND_NAMES = ["auto", "native", "webgpu", "cpu"] as const;

/** The chosen backend and why it was chosen. */
export interface BackendChoice {
  backend: Backend;
  reason: string;
}

/**
 * The backend for `--backend NAME`. "auto" takes the native C backend and falls back to the
 * reference backend, saying why, when it cannot be built (no C compiler).
 */
export async function createBackend(name = "auto"): Promise<BackendChoice> {
  switch (name) {
    case "auto":
      // a real GPU beats every CPU backend; a software (fallback) adapter does not
      if (await hasWebGpuAdapter({ excludeFallback: true })) {
        const backend = await createWebGpuBackend();
        return { backend, reason: `auto: WebGPU on ${backend.adapterSummary}` };
      }
      try {
        const backend = await NativeBackend.create();
        return { backend, reason: `auto: ${backend.describe()}` };
      } catch (e) {
        return {
          backend: new CpuBackend(),
          reason:
            `auto: the native backend is unavailable (${(e as Error).message.split("\n")[0]}), ` +
            "so the reference CPU backend (plain TypeScript, slow)",
        };
      }
    case "native": {
      const backend = await NativeBackend.create();
      return { backend, reason: `--backend native: ${backend.describe()}` };
    }
    case "webgpu": {
      const backend = await createWebGpuBackend();
      return { backend, reason: `--backend webgpu: ${backend.adapterSummary}` };
    }
    case "cpu":
      return {
        backend: new CpuBackend(),
        reason: "--backend cpu: the reference CPU backend (plain TypeScript)",
      };
    default:
      throw new Error(`Unknown --backend "${name}", expected one of ${BACKEND_NAMES.join(", ")}`);
  }
}

/**
 * The reference backend for "cpu" or "auto", synchronously (for code that cannot await);
 * prefer `createBackend`, which finds the fast ones.
 */
export function selectBackend(name = "auto"): BackendChoice {
  if (name !== "auto" && name !== "cpu") {
    throw new Error(`selectBackend only makes the reference backend; use createBackend("${name}")`);
  }
  return { backend: new CpuBackend(), reason: "the reference CPU backend (plain TypeScript)" };
}

/**
 * Whether `backend` trains GPT-2 124M in minutes: the reference backend needs over a minute
 * per step at B=4, T=64, and WebGPU on a software (fallback) adapter about 25 s, so they do not.
 */
export function trainsGpt2InMinutes(backend: Backend): boolean {
  if (backend.name === "cpu") return false;
  return !(backend as { isFallbackAdapter?: boolean }).isFallbackAdapter;
}
