/**
 * The CUDA backend on the CPU, for checking lib/backends/cuda and kernels/cuda without a GPU,
 * through the real bindings: libcuda_emu.cpp exports the driver API and cuBLASLt with their C
 * prototypes, and the backend opens it through driver.ts, cublaslt.ts and `Deno.dlopen` as it
 * opens libcuda.so.1 (ffi.ts builds it and sets the variables). The kernels are the same .cu
 * files compiled as C++ (kernel_library.ts, with this folder's headers: a block's threads are
 * fibers, barriers and warp shuffles checked); device memory is host memory with guard bytes
 * around each block; cuBLASLt is a column-major GEMM that checks the layouts it is given.
 *
 * Launches are checked against what each kernel takes on a GPU (resources.ts: nvcc's
 * registers, static shared memory and `__launch_bounds__` for sm_80 and sm_90, which the C++
 * build defines away): a block or shared memory too large for either is refused with the
 * CUresult a driver returns, and each kernel's parameter list in kernels.ts is checked against
 * the compiled .cu's as it loads. Without nvcc the resource check is off, said once.
 *
 * What it cannot check: timing and concurrency (one thread at a time, in order), the real
 * libraries' behaviour, and GPU-only arithmetic (FMA contraction, fast intrinsics).
 *
 * @module
 */

import type { CudaBackend } from "../../lib/backends/cuda/mod.ts";
import { type EmulatorOptions, openEmulatorLibraryBackend } from "./ffi.ts";

export { buildEmulator } from "./kernel_library.ts";
export {
  type EmulatorEnv,
  emulatorEnv,
  type EmulatorOptions,
  openEmulatorLibraryBackend,
  useEmulatorLibrary,
} from "./ffi.ts";

/**
 * A CUDA backend over a copy of the emulator's library of its own (its own memory, 1 GiB
 * unless `memoryBytes` says otherwise, as a device of its own would be), opened through the
 * real FFI; says what it opened unless `quiet`.
 */
export async function createEmulatedCudaBackend(
  options: Omit<EmulatorOptions, "ownInstance" | "nullDevice"> = {},
): Promise<CudaBackend> {
  const backend = await openEmulatorLibraryBackend({
    ...options,
    memoryBytes: options.memoryBytes ?? 2 ** 30,
    ownInstance: true,
  });
  if (!options.quiet) console.log(`cuda (emulated): ${backend.describe()}`);
  return backend;
}
