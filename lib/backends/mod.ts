/**
 * Picks a backend by name: `createBackend("auto")` takes the fastest one present. The
 * reference `cpu` backend is always there; `native` needs a C compiler; `webgpu` an adapter;
 * `cuda` an NVIDIA GPU with its driver and cuBLASLt. A new backend registers here (see
 * docs/architecture.md).
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { CpuBackend } from "./cpu/mod.ts";
import { createCudaBackend, cudaUnavailable } from "./cuda/mod.ts";
import { NativeBackend } from "./native/mod.ts";
import { createWebGpuBackend, hasWebGpuAdapter } from "./webgpu/mod.ts";

/** Backend names `--backend` accepts. */
export const BACKEND_NAMES = ["auto", "cuda", "native", "webgpu", "cpu"] as const;

/** The chosen backend and why it was chosen. */
export interface BackendChoice {
  backend: Backend;
  reason: string;
}

/**
 * The backend for `--backend NAME`. "auto" takes CUDA where a GPU is usable, else a real GPU
 * through WebGPU (not a software adapter), else the native C backend, else the reference
 * backend, saying why. CUDA takes GPU `LOCAL_RANK` (DDP's rank on this node), else 0.
 */
export async function createBackend(name = "auto"): Promise<BackendChoice> {
  switch (name) {
    case "auto":
      return await createAuto();
    case "cuda": {
      const backend = await createCudaBackend({ device: cudaDevice() });
      return { backend, reason: `--backend cuda: ${backend.describe()}` };
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

async function createAuto(): Promise<BackendChoice> {
  // CUDA first: tensor cores, bf16; cudaUnavailable is one dlopen where there is no driver
  let skipped = await cudaUnavailable();
  if (skipped === null) {
    try {
      const backend = await createCudaBackend({ device: cudaDevice() });
      return { backend, reason: `auto: CUDA on ${backend.describe()}` };
    } catch (e) {
      skipped = (e as Error).message;
    }
  }
  const cuda = `CUDA skipped: ${fewWords(skipped)}`;
  // a real GPU beats every CPU backend; a software (fallback) adapter does not
  if (await hasWebGpuAdapter({ excludeFallback: true })) {
    const backend = await createWebGpuBackend();
    return { backend, reason: `auto: WebGPU on ${backend.describe()} (${cuda})` };
  }
  try {
    const backend = await NativeBackend.create();
    return { backend, reason: `auto: ${backend.describe()} (${cuda})` };
  } catch (e) {
    const backend = new CpuBackend();
    return {
      backend,
      reason: `auto: the native backend is unavailable (${
        (e as Error).message.split("\n")[0]
      }), so ${backend.describe()}, slow (${cuda})`,
    };
  }
}

/** The CUDA device of this process: LOCAL_RANK under DDP, else 0. */
function cudaDevice(): number {
  const raw = Deno.env.get("LOCAL_RANK");
  const n = Number(raw);
  return raw !== undefined && raw.trim() !== "" && Number.isInteger(n) && n >= 0 ? n : 0;
}

/** A message's headline: "No NVIDIA driver: libcuda.so.1 not found (...)" -> "no NVIDIA driver". */
function fewWords(message: string): string {
  const head = message.split("\n")[0].split(":")[0].trim();
  return head.charAt(0).toLowerCase() + head.slice(1);
}

/**
 * Whether `backend` trains GPT-2 124M in minutes: the reference backend needs over a minute
 * per step at B=4, T=64, and WebGPU on a software adapter about 25 s, so they do not.
 */
export function trainsGpt2InMinutes(backend: Backend): boolean {
  return !backend.isReference && !backend.isSoftwareAdapter;
}
