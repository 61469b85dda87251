/**
 * The backends, one row each: a name as `--backend` takes it, how to open it, how to tell
 * cheaply whether it can run here, and its place in `auto`'s order. `createBackend("auto")`
 * takes the first row that opens. A new backend is a folder plus one row here (see
 * docs/architecture.md); what benchmarks need of it (kernel choices, its speedup ladder) it
 * declares itself, as capabilities of lib/backend.ts.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { CpuBackend } from "./cpu/mod.ts";
import { createCudaBackend, cudaUnavailable } from "./cuda/mod.ts";
import { NativeBackend } from "./native/mod.ts";
import { createWebGpuBackend, hasWebGpuAdapter } from "./webgpu/mod.ts";

/** Options of a row's `create`. */
export interface CreateOptions {
  /** The GPU of this process: DDP's `LOCAL_RANK`, else 0. */
  device: number;
  /** Print nothing about the device while opening it. */
  quiet?: boolean;
}

/** One backend's row. */
export interface BackendRow {
  /** As `--backend` takes it. */
  readonly name: string;
  /** Its name in sentences: "CUDA", "WebGPU". */
  readonly title: string;
  /** Opens it. @throws {Error} saying what is missing */
  create(options: CreateOptions): Promise<Backend>;
  /**
   * Why it cannot run here, found without opening it (a dlopen, an adapter request), or
   * null; `forAuto`: as `auto` counts it (WebGPU: a real GPU, not a software adapter).
   */
  unavailable(forAuto: boolean): Promise<string | null>;
  /** How `auto`'s reason names it when taken. */
  takenAs(backend: Backend): string;
  /** How `auto`'s reason notes it when skipped, or null to say nothing. */
  skippedAs(why: string): string | null;
}

/**
 * Every backend, in `auto`'s order: CUDA (tensor cores, bf16), a real GPU through WebGPU,
 * the native C kernels, the reference (always there, slow).
 */
export const BACKENDS: readonly BackendRow[] = [
  {
    name: "cuda",
    title: "CUDA",
    create: (o) => createCudaBackend(o),
    unavailable: () => cudaUnavailable(), // one dlopen where there is no driver
    takenAs: (b) => `CUDA on ${b.describe()}`,
    skippedAs: (why) => `CUDA skipped: ${fewWords(why)}`,
  },
  {
    name: "webgpu",
    title: "WebGPU",
    create: (o) => createWebGpuBackend({ quiet: o.quiet }),
    // a real GPU beats every CPU backend; a software (fallback) adapter does not
    unavailable: async (forAuto) =>
      await hasWebGpuAdapter({ excludeFallback: forAuto })
        ? null
        : forAuto
        ? "No WebGPU adapter on a GPU"
        : "No WebGPU adapter",
    takenAs: (b) => `WebGPU on ${b.describe()}`,
    skippedAs: () => null,
  },
  {
    name: "native",
    title: "native",
    create: () => NativeBackend.create(),
    unavailable: () => Promise.resolve(null), // a C compiler is found by trying
    takenAs: (b) => b.describe(),
    skippedAs: (why) => `the native backend is unavailable (${why.split("\n")[0]})`,
  },
  {
    name: "cpu",
    title: "reference",
    create: () => Promise.resolve(new CpuBackend()),
    unavailable: () => Promise.resolve(null),
    takenAs: (b) => `${b.describe()}, slow`,
    skippedAs: () => null,
  },
];

/** Backend names `--backend` accepts. */
export const BACKEND_NAMES: readonly string[] = ["auto", ...BACKENDS.map((r) => r.name)];

/** The chosen backend and why it was chosen. */
export interface BackendChoice {
  backend: Backend;
  reason: string;
}

/** The row of `name`. @throws {Error} for a name no row has */
export function backendRow(name: string): BackendRow {
  const row = BACKENDS.find((r) => r.name === name);
  if (!row) {
    throw new Error(`Unknown --backend "${name}", expected one of ${BACKEND_NAMES.join(", ")}`);
  }
  return row;
}

/**
 * The backend for `--backend NAME`. "auto" takes the first row of `BACKENDS` that is
 * available and opens, saying why and what it skipped. CUDA takes GPU `LOCAL_RANK` (DDP's
 * rank on this node), else 0.
 */
export async function createBackend(
  name = "auto",
  options: { quiet?: boolean } = {},
): Promise<BackendChoice> {
  const o = { device: cudaDevice(), quiet: options.quiet };
  if (name !== "auto") {
    const backend = await backendRow(name).create(o);
    return { backend, reason: `--backend ${name}: ${backend.describe()}` };
  }
  const notes: string[] = [];
  for (const row of BACKENDS) {
    let why = await row.unavailable(true);
    if (why === null) {
      try {
        const backend = await row.create(o);
        const skipped = notes.length ? ` (${notes.join("; ")})` : "";
        return { backend, reason: `auto: ${row.takenAs(backend)}${skipped}` };
      } catch (e) {
        why = (e as Error).message;
      }
    }
    const note = row.skippedAs(why);
    if (note !== null) notes.unshift(note);
  }
  throw new Error(`No backend opened here: ${notes.join("; ")}`);
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
