// Generation's KV cache on the CUDA backend run by the CPU emulator's library through the
// real FFI (tests/cuda_emulator/libcuda_emu.cpp: driver.ts, cublaslt.ts and Deno.dlopen as on
// a GPU, kernels/cuda compiled as C++, threads as fibers): attention_decode.cu against the
// reference backend on odd shapes, and generation with the cache equal to generation without
// it on the tiny reference GPT-2s (kv_cache_suite.ts, its small variant: the emulator is
// slow); then the backend closed. On a GPU, cuda_kv_cache_test.ts runs the whole suite.
// Ignored, saying so, without a C++ compiler or where a GPU is usable.
import { type CudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { openEmulatorLibraryBackend } from "../cuda_emulator/ffi.ts";
import { kvCacheSuite } from "./kv_cache_suite.ts";
import { hasCxx } from "../support.ts";

const gpu = (await cudaUnavailable()) === null && !Deno.env.get("GPT2_CUDA_DRIVER_LIB");
const why = gpu
  ? "a usable GPU is here (cuda_kv_cache_test.ts runs the suite on it)"
  : !(await hasCxx())
  ? "no C++ compiler (c++ or $CXX) to build the emulator"
  : null;

if (why) {
  console.log(`cuda (FFI emulator): skipped: ${why}`);
  Deno.test({ name: "cuda (FFI emulator): KV cache (skipped)", ignore: true, fn() {} });
} else {
  let opened: Promise<CudaBackend> | null = null;
  const open = () => opened ??= openEmulatorLibraryBackend({ memoryBytes: 2 ** 30 });
  kvCacheSuite("cuda (FFI emulator)", async () => {
    const backend = await open();
    backend.setMatmulPrecision("f32");
    return backend;
  }, { small: true });
  Deno.test("cuda (FFI emulator): the KV cache suite's backend closes", async () => {
    (await open()).destroy(); // the library's memory all returned for the next file's mode
  });
}
