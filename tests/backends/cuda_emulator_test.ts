// The CUDA backend's suites on the CPU emulator, so CI checks the backend's code and kernels
// without a GPU: the reference suite, training, the TF32/bf16 bounds and the device calls
// (cuda_suite.ts, without the 124M check, minutes here) through the real FFI on the
// emulator's library (tests/cuda_emulator/libcuda_emu.cpp: driver.ts, cublaslt.ts and
// Deno.dlopen as on a GPU), then its backend closed with every byte of device memory
// returned; and every kernel against the reference on the small odd shapes (kernel_suite.ts)
// on a copy of the library of its own (tests/cuda_emulator/mod.ts). The library checks every
// kernel's signature against kernels.ts as it loads, and every launch against nvcc's
// resources where nvcc is. Ignored, saying so, without a C++ compiler or where a GPU is usable.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type CudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { openEmulatorLibraryBackend } from "../cuda_emulator/ffi.ts";
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import { cudaSuite } from "./cuda_suite.ts";
import { kernelSuite } from "./kernel_suite.ts";
import { hasCxx } from "../support.ts";

const gpu = (await cudaUnavailable()) === null && !Deno.env.get("GPT2_CUDA_DRIVER_LIB");

if (!(await hasCxx())) {
  console.log("cuda (emulated): skipped: no C++ compiler (c++ or $CXX) to build the emulator");
  Deno.test({ name: "cuda (emulated): suites (no C++ compiler)", ignore: true, fn() {} });
} else if (gpu) {
  console.log(
    "cuda (emulated): skipped: a usable GPU is here (cuda_test.ts runs the suites on it)",
  );
  Deno.test({ name: "cuda (emulated): suites (a GPU is here)", ignore: true, fn() {} });
} else {
  let opened: Promise<CudaBackend> | null = null;
  const open = () => opened ??= openEmulatorLibraryBackend({ memoryBytes: 4 * 2 ** 30 });
  cudaSuite("cuda (FFI emulator)", open, { hashCheck: false });
  Deno.test("cuda (FFI emulator): the suites' backend closes and returns all its device memory", async () => {
    const backend = await open();
    backend.destroy(); // the library then reads its variables again at the next cuInit
    // a second backend over the same library sees what the first left held: nothing
    const again = await openEmulatorLibraryBackend({ memoryBytes: 4 * 2 ** 30 });
    try {
      const { total } = again.driver.memoryInfo();
      assertEquals(total, 4 * 2 ** 30);
      again.trimMemory();
      assertEquals(again.driver.memoryInfo().free, total - again.heldMemoryBytes());
    } finally {
      again.destroy();
    }
  });
  let made: Promise<CudaBackend> | null = null;
  kernelSuite("cuda (emulated)", async () => {
    const backend =
      await (made ??= createEmulatedCudaBackend({ quiet: true, memoryBytes: 4 * 2 ** 30 }));
    backend.setMatmulPrecision("f32");
    return backend;
  }, { fullSize: false });
}
