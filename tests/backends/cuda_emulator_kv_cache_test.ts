// Generation's KV cache on the CUDA backend run by the CPU emulator
// (tests/cuda_emulator/mod.ts: kernels/cuda compiled as C++, threads as fibers):
// attention_decode.cu against the reference backend on odd shapes, and generation with the
// cache equal to generation without it on the tiny reference GPT-2s (kv_cache_suite.ts, its
// small variant: the emulator is slow). On a GPU, cuda_kv_cache_test.ts runs the whole suite.
// Ignored, saying so, without a C++ compiler.
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import { kvCacheSuite } from "./kv_cache_suite.ts";
import { hasCxx } from "../support.ts";

if (!(await hasCxx())) {
  console.log("cuda (emulated): skipped: no C++ compiler (c++ or $CXX) to build the emulator");
  Deno.test({ name: "cuda (emulated): KV cache (no C++ compiler)", ignore: true, fn() {} });
} else {
  kvCacheSuite("cuda (emulated)", async () => {
    const backend = await createEmulatedCudaBackend({ quiet: true });
    backend.setMatmulPrecision("f32");
    return backend;
  }, { small: true });
}
