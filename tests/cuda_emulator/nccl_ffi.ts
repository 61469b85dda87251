/**
 * NCCL for the CPU emulator behind the real FFI: builds `libnccl_emu.so` (libnccl_emu.cpp, with
 * the system C++ compiler, cached by a hash of its source) and names it in `GPT2_NCCL_LIB`, the
 * setting that makes lib/backends/cuda/nccl.ts open it as it opens libnccl.so.2. With
 * ffi.ts's variables beside it, a one-rank NCCL process group over the emulator's CUDA backend
 * and `CudaFence` go through nccl.ts, driver.ts and `Deno.dlopen` on a machine without a GPU.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { buildCachedLibrary } from "./cxx_library.ts";

const SOURCE = fileURLToPath(new URL("libnccl_emu.cpp", import.meta.url));
const FLAGS = ["-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Werror"];

/** `libnccl_emu.so`, built now or found in the cache. */
export function buildNcclEmulatorLibrary(): Promise<string> {
  return buildCachedLibrary(SOURCE, FLAGS);
}

/** The variable that points NCCL at the emulator's library. */
export interface NcclEmulatorEnv {
  GPT2_NCCL_LIB: string;
}

/** Builds the library and returns its variable (for a child's env, or `Deno.env`). */
export async function ncclEmulatorEnv(): Promise<NcclEmulatorEnv> {
  return { GPT2_NCCL_LIB: await buildNcclEmulatorLibrary() };
}

// `deno run -A tests/cuda_emulator/nccl_ffi.ts`: builds the library and prints its variable as
// JSON (what `deno task device-check --rehearse` adds to the emulator's variables)
if (import.meta.main) {
  console.log(JSON.stringify(await ncclEmulatorEnv()));
}
