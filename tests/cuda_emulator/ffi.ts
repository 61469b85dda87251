/**
 * The CPU emulator behind the real FFI: builds `libcuda_emu.so` (libcuda_emu.cpp, with the
 * system C++ compiler, cached by a hash of its source) and the emulator's kernel library
 * (kernel_library.ts), writes the launch checks (kernels.ts's signatures and nvcc's resource
 * table), and sets the variables that make lib/backends/cuda open them as it opens
 * libcuda.so.1 and libcublasLt.so: `GPT2_CUDA_DRIVER_LIB`, `GPT2_CUBLASLT_LIB`,
 * `GPT2_CUDA_EMU_KERNELS` and `GPT2_CUDA_EMU_CHECKS`, with `GPT2_CUDA_EMU_NULL` for the null
 * device (nothing runs, allocations accounted against 80 GiB) and `GPT2_CUDA_EMU_MEMORY` for the
 * budget. Then `createCudaBackend`, `cudaUnavailable` and a child `deno task train --backend
 * cuda` all go through driver.ts, cublaslt.ts and `Deno.dlopen`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KERNELS } from "../../lib/backends/cuda/kernels.ts";
import { createCudaBackend, type CudaBackend } from "../../lib/backends/cuda/mod.ts";
import {
  kernelResources,
  REGISTERS_PER_BLOCK,
  RESOURCE_ARCHES,
  type ResourceTable,
  SHARED_OPTIN_BYTES,
} from "../../lib/backends/cuda/resources.ts";
import { cacheDir } from "../../lib/io/cache.ts";
import { buildCachedLibrary } from "./cxx_library.ts";
import { buildEmulator } from "./kernel_library.ts";

const SOURCE = fileURLToPath(new URL("libcuda_emu.cpp", import.meta.url));
const FLAGS = ["-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall"];

/** `libcuda_emu.so`, built now or found in the cache. */
export function buildEmulatorLibrary(): Promise<string> {
  return buildCachedLibrary(SOURCE, FLAGS, ["-ldl"]);
}

/** `to`, a copy of `from` made now unless it exists. */
async function copyOnce(from: string, to: string): Promise<string> {
  try {
    if (Deno.statSync(to).isFile) return to;
  } catch {
    // not copied yet
  }
  const tmp = `${to}.${Deno.pid}.tmp`;
  await Deno.copyFile(from, tmp);
  await Deno.rename(tmp, to);
  return to;
}

/** The variables that point the backend at the emulator's library. */
export interface EmulatorEnv {
  GPT2_CUDA_DRIVER_LIB: string;
  GPT2_CUBLASLT_LIB: string;
  GPT2_CUDA_EMU_KERNELS: string;
  GPT2_CUDA_EMU_CHECKS: string;
  GPT2_CUDA_EMU_NULL?: string;
  GPT2_CUDA_EMU_MEMORY?: string;
}

/** How the emulator's library is opened. */
export interface EmulatorOptions {
  /** The null device: nothing runs, allocations accounted against 80 GiB. */
  nullDevice?: boolean;
  /** The emulated device's memory in bytes (default 4 GiB): cuMemAlloc fails past it. */
  memoryBytes?: number;
  /**
   * The kernels' resources to check launches against: default `kernelResources()` (nvcc's,
   * cached), null to launch unchecked (as without nvcc).
   */
  resources?: ResourceTable | null;
  /**
   * A copy of the library of its own (its own memory budget and state, as a second device
   * would have): dlopen keeps one instance a file, so backends opened without it share one.
   */
  ownInstance?: boolean;
  /** No line saying that launches go unchecked where there is no nvcc. */
  quiet?: boolean;
}

let measured: Promise<ResourceTable | null> | null = null;
let saidUnchecked = false;
let instances = 0;
/** The backend being opened, which the next waits for. */
let opening: Promise<unknown> = Promise.resolve();

/** nvcc's table, measured once a process (a cache hit after the first). */
function defaultResources(): Promise<ResourceTable | null> {
  return measured ??= kernelResources({ quiet: true }).catch((e) => {
    measured = null; // a failed nvcc run is an error every time, not a silent "unchecked"
    throw e;
  });
}

/**
 * The launch checks libcuda_emu.cpp reads (`GPT2_CUDA_EMU_CHECKS`, one tab-separated line
 * each): every kernel's parameter list from kernels.ts, compared with the compiled .cu's when
 * the kernel is looked up, and, with a resource table, each kernel's limits on sm_80 and
 * sm_90 in that order (launchRefusal's), naming the limit as its refusal does.
 */
export function launchChecks(resources: ResourceTable | null): string {
  const lines = Object.entries(KERNELS).map(([name, types]) =>
    `signature\t${name}\t${types.join(",")}`
  );
  for (const arch of resources ? RESOURCE_ARCHES : []) {
    for (const [name, k] of Object.entries(resources!.kernels[arch])) {
      const why = k.limitedBy === "registers"
        ? `registers: ${k.registers} per thread, ${REGISTERS_PER_BLOCK} per block`
        : k.limitedBy;
      const reason = k.limitedBy === "registers" ? "registers" : "block";
      lines.push(
        [
          "limit",
          name,
          arch,
          k.maxThreads,
          reason,
          k.registers,
          k.staticSharedBytes,
          SHARED_OPTIN_BYTES[arch],
          why,
        ].join("\t"),
      );
    }
  }
  return lines.join("\n") + "\n";
}

/** `launchChecks(resources)` in the cache, named by its hash. */
async function writeLaunchChecks(resources: ResourceTable | null): Promise<string> {
  const text = launchChecks(resources);
  const key = createHash("sha256").update(text).digest("hex").slice(0, 16);
  const dir = cacheDir("cuda");
  const path = join(dir, `launch-checks-${key}.tsv`);
  try {
    if (Deno.statSync(path).isFile) return path;
  } catch {
    // not written yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
  return path;
}

/**
 * Builds both libraries, writes the launch checks and returns the variables for them (for a
 * child process's env, or `useEmulatorLibrary` in this one). Without nvcc, launches go
 * unchecked against the kernels' resources, said once a process (on stderr) unless `quiet`.
 */
export async function emulatorEnv(o: EmulatorOptions = {}): Promise<EmulatorEnv> {
  const [built, kernels, resources] = await Promise.all([
    buildEmulatorLibrary(),
    buildEmulator(),
    o.resources !== undefined ? o.resources : defaultResources(),
  ]);
  if (!resources && o.resources === undefined && !saidUnchecked && !o.quiet) {
    saidUnchecked = true;
    console.error(
      "cuda (emulated): no nvcc, so launches are not checked against the kernels' registers, " +
        "shared memory and __launch_bounds__",
    );
  }
  // the null device, and an own instance, in a copy of the library: dlopen keeps one instance
  // per file, so backends opened from different copies do not share the library's state
  const copy = o.ownInstance ? `-own${++instances}` : o.nullDevice ? "-null" : "";
  const driver = copy ? await copyOnce(built, built.replace(/\.so$/, `${copy}.so`)) : built;
  const env: EmulatorEnv = {
    GPT2_CUDA_DRIVER_LIB: driver,
    GPT2_CUBLASLT_LIB: driver,
    GPT2_CUDA_EMU_KERNELS: kernels,
    GPT2_CUDA_EMU_CHECKS: await writeLaunchChecks(resources),
  };
  if (o.nullDevice) env.GPT2_CUDA_EMU_NULL = "1";
  if (o.memoryBytes) env.GPT2_CUDA_EMU_MEMORY = String(o.memoryBytes);
  return env;
}

/** Sets `emulatorEnv(o)` in this process (read when the backend opens the libraries). */
export async function useEmulatorLibrary(o: EmulatorOptions = {}): Promise<EmulatorEnv> {
  const env = await emulatorEnv(o);
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  return env;
}

/** The variables `useEmulatorLibrary` sets. */
export const EMULATOR_VARIABLES = [
  "GPT2_CUDA_DRIVER_LIB",
  "GPT2_CUBLASLT_LIB",
  "GPT2_CUDA_EMU_KERNELS",
  "GPT2_CUDA_EMU_CHECKS",
  "GPT2_CUDA_EMU_NULL",
  "GPT2_CUDA_EMU_MEMORY",
] as const;

/**
 * A CUDA backend over the emulator's library, opened by `createCudaBackend` through
 * driver.ts, cublaslt.ts and `Deno.dlopen`, with the variables set only while it opens (the
 * library reads them then), so the test files after this one in the same process do not take
 * the emulator for a GPU. Opens one backend at a time: the variables are the process's.
 */
export function openEmulatorLibraryBackend(o: EmulatorOptions = {}): Promise<CudaBackend> {
  const open = opening.catch(() => {}).then(async () => {
    const before = EMULATOR_VARIABLES.map((k) => [k, Deno.env.get(k)] as const);
    try {
      await useEmulatorLibrary(o);
      return await createCudaBackend({ quiet: true });
    } finally {
      for (const [k, v] of before) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
  });
  opening = open;
  return open;
}

// `deno run -A tests/cuda_emulator/ffi.ts [--null-device]`: builds both libraries and prints
// their variables as JSON (what `deno task bench --backend cuda --null-device` sets)
if (import.meta.main) {
  console.log(
    JSON.stringify(await emulatorEnv({ nullDevice: Deno.args.includes("--null-device") })),
  );
}
