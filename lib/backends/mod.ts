/**
 * Picks a backend by name: `createBackend("auto")` takes the fastest one present. The
 * reference `cpu` backend is always there; `native` needs a C compiler; `webgpu` an adapter.
 * A new backend registers here (see docs/architecture.md).
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
 * The backend for `--backend NAME`. "auto" takes a real GPU (WebGPU, not a software
 * adapter), else the native C backend, else the reference backend, saying why.
 */
export async function createBackend(name = "auto"): Promise<BackendChoice> {
  switch (name) {
    case "auto":
      // a real GPU beats every CPU backend; a software (fallback) adapter does not
      if (await hasWebGpuAdapter({ excludeFallback: true })) {
        const backend = await createWebGpuBackend();
        return { backend, reason: `auto: WebGPU on ${backend.describe()}` };
      }
      try {
        const backend = await NativeBackend.create();
        return { backend, reason: `auto: ${backend.describe()}` };
      } catch (e) {
        const backend = new CpuBackend();
        return {
          backend,
          reason: `auto: the native backend is unavailable (${
            (e as Error).message.split("\n")[0]
          }), so ${backend.describe()}, slow`,
        };
      }
    case "native":
    case "webgpu":
    case "cpu": {
      const backend = name === "native"
        ? await NativeBackend.create()
        : name === "webgpu"
        ? await createWebGpuBackend()
        : new CpuBackend();
      return { backend, reason: `--backend ${name}: ${backend.describe()}` };
    }
    default:
      throw new Error(`Unknown --backend "${name}", expected one of ${BACKEND_NAMES.join(", ")}`);
  }
}

/**
 * Whether `backend` trains GPT-2 124M in minutes: the reference backend needs over a minute
 * per step at B=4, T=64, and WebGPU on a software adapter about 25 s, so they do not.
 */
export function trainsGpt2InMinutes(backend: Backend): boolean {
  return !backend.isReference && !backend.isSoftwareAdapter;
}
