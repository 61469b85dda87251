/**
 * The CPU emulator behind the real FFI: builds `libcuda_emu.so` (libcuda_emu.cpp, with the
 * system C++ compiler, cached by a hash of its source) and the emulator's kernel library
 * (mod.ts's `buildEmulator`), and sets the variables that make lib/backends/cuda open them as
 * it opens libcuda.so.1 and libcublasLt.so: `GPT2_CUDA_DRIVER_LIB`, `GPT2_CUBLASLT_LIB` and
 * `GPT2_CUDA_EMU_KERNELS`, with `GPT2_CUDA_EMU_NULL` for the null device (nothing runs,
 * allocations accounted against 80 GiB) and `GPT2_CUDA_EMU_MEMORY` for the budget. Then
 * `createCudaBackend`, `cudaUnavailable` and a child `deno task train --backend cuda` all go
 * through driver.ts, cublaslt.ts and `Deno.dlopen`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCudaBackend, type CudaBackend } from "../../lib/backends/cuda/mod.ts";
import { cacheDir } from "../../lib/io/cache.ts";
import { buildEmulator } from "./mod.ts";

const SOURCE = fileURLToPath(new URL("libcuda_emu.cpp", import.meta.url));
const FLAGS = ["-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall"];

/** `libcuda_emu.so`, built now or found in the cache. */
export async function buildEmulatorLibrary(): Promise<string> {
  const source = await Deno.readTextFile(SOURCE);
  const cxx = Deno.env.get("CXX") ?? "c++";
  const key = createHash("sha256").update(source).update(FLAGS.join(" ")).update(cxx).digest("hex")
    .slice(0, 16);
  const dir = cacheDir("cuda");
  const path = join(dir, `libcuda_emu-${key}.so`);
  try {
    if (Deno.statSync(path).isFile) return path;
  } catch {
    // not built yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  const r = await new Deno.Command(cxx, {
    args: [...FLAGS, "-o", tmp, SOURCE, "-ldl"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) {
    throw new Error(
      `Compiling ${SOURCE} with ${cxx} failed:\n${new TextDecoder().decode(r.stderr)}`,
    );
  }
  await Deno.rename(tmp, path);
  return path;
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
  GPT2_CUDA_EMU_NULL?: string;
  GPT2_CUDA_EMU_MEMORY?: string;
}

/**
 * Builds both libraries and returns the variables for them (for a child process's env, or
 * `useEmulatorLibrary` in this one): `nullDevice` runs nothing, `memoryBytes` is the budget.
 */
export async function emulatorEnv(
  o: { nullDevice?: boolean; memoryBytes?: number } = {},
): Promise<EmulatorEnv> {
  const [built, kernels] = await Promise.all([buildEmulatorLibrary(), buildEmulator()]);
  // the null device in a copy of its own: dlopen keeps one instance per file, so a null device
  // and an emulated one opened in one process do not share the library's state
  const driver = o.nullDevice ? await copyOnce(built, built.replace(/\.so$/, "-null.so")) : built;
  const env: EmulatorEnv = {
    GPT2_CUDA_DRIVER_LIB: driver,
    GPT2_CUBLASLT_LIB: driver,
    GPT2_CUDA_EMU_KERNELS: kernels,
  };
  if (o.nullDevice) env.GPT2_CUDA_EMU_NULL = "1";
  if (o.memoryBytes) env.GPT2_CUDA_EMU_MEMORY = String(o.memoryBytes);
  return env;
}

/** Sets `emulatorEnv(o)` in this process (read when the backend opens the libraries). */
export async function useEmulatorLibrary(
  o: { nullDevice?: boolean; memoryBytes?: number } = {},
): Promise<EmulatorEnv> {
  const env = await emulatorEnv(o);
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  return env;
}

/** The variables `useEmulatorLibrary` sets. */
export const EMULATOR_VARIABLES = [
  "GPT2_CUDA_DRIVER_LIB",
  "GPT2_CUBLASLT_LIB",
  "GPT2_CUDA_EMU_KERNELS",
  "GPT2_CUDA_EMU_NULL",
  "GPT2_CUDA_EMU_MEMORY",
] as const;

/**
 * A CUDA backend over the emulator's library, opened by `createCudaBackend` through
 * driver.ts, cublaslt.ts and `Deno.dlopen`, with the variables set only while it opens (the
 * library reads them then), so the test files after this one in the same process do not take
 * the emulator for a GPU.
 */
export async function openEmulatorLibraryBackend(
  o: { nullDevice?: boolean; memoryBytes?: number } = {},
): Promise<CudaBackend> {
  const before = EMULATOR_VARIABLES.map((k) => [k, Deno.env.get(k)] as const);
  try {
    await useEmulatorLibrary(o);
    return await createCudaBackend({ quiet: true });
  } finally {
    for (const [k, v] of before) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

// `deno run -A tests/cuda_emulator/ffi.ts [--null-device]`: builds both libraries and prints
// their variables as JSON (what `deno task bench --backend cuda --null-device` sets)
if (import.meta.main) {
  console.log(
    JSON.stringify(await emulatorEnv({ nullDevice: Deno.args.includes("--null-device") })),
  );
}
