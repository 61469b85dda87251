// The CUDA backend's suites on the CPU emulator (tests/cuda_emulator/mod.ts: the same
// kernels compiled as C++, stand-ins for the driver and cuBLASLt), so CI checks the backend's
// code and kernels without a GPU: the reference suite, training, the TF32/bf16 bounds and
// the device calls (cuda_suite.ts, without the 124M check, minutes here), and every kernel
// against the reference on the small odd shapes (kernel_suite.ts). Ignored, saying so,
// without a C++ compiler.
import type { CudaBackend } from "../../lib/backends/cuda/mod.ts";
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import { cudaSuite } from "./cuda_suite.ts";
import { kernelSuite } from "./kernel_suite.ts";
import { hasCxx } from "../support.ts";

const open = (): Promise<CudaBackend> =>
  createEmulatedCudaBackend({ quiet: true, memoryBytes: 4 * 2 ** 30 });

if (!(await hasCxx())) {
  console.log("cuda (emulated): skipped: no C++ compiler (c++ or $CXX) to build the emulator");
  Deno.test({ name: "cuda (emulated): suites (no C++ compiler)", ignore: true, fn() {} });
} else {
  cudaSuite("cuda (emulated)", open, { hashCheck: false });
  let made: Promise<CudaBackend> | null = null;
  kernelSuite("cuda (emulated)", async () => {
    const backend = await (made ??= open());
    backend.setMatmulPrecision("f32");
    return backend;
  }, { fullSize: false });
}
