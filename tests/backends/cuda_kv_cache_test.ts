// Generation's KV cache on the CUDA backend on a GPU (kv_cache_suite.ts): attention_decode.cu
// against the reference backend on odd shapes, and generation with the cache equal to
// generation without it on the tiny reference GPT-2s, in f32 matmuls. Ignored, with the
// reason printed, where no GPU is usable (cuda_emulator_kv_cache_test.ts runs the kernels on
// the CPU then).
import { createCudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { kvCacheSuite } from "./kv_cache_suite.ts";

const reason = await cudaUnavailable();
if (reason !== null) {
  console.log(`cuda: skipped: ${reason}`);
  Deno.test({ name: "cuda: KV cache (no usable GPU here)", ignore: true, fn() {} });
} else {
  kvCacheSuite("cuda", async () => {
    const backend = await createCudaBackend({ quiet: true });
    backend.setMatmulPrecision("f32");
    return backend;
  });
}
