// Generation's KV cache on the WebGPU backend (kv_cache_suite.ts): kernels/wgsl/
// attention_decode.wgsl against the reference backend on odd shapes, also with bindings
// capped below the caches' size (the batch-chunked path), and generation with the cache
// equal to generation without it on the tiny reference GPT-2s. Skipped, with a notice, only
// when this Deno finds no WebGPU adapter at all.
import { createWebGpuBackend, hasWebGpuAdapter } from "../../lib/backends/webgpu/mod.ts";
import { checkKVCacheCase, kvCacheSuite } from "./kv_cache_suite.ts";

if (!(await hasWebGpuAdapter())) {
  console.log(
    "webgpu_kv_cache_test: SKIPPED: no WebGPU adapter (on Debian, mesa-vulkan-drivers gives a software one)",
  );
  Deno.test({ name: "webgpu: KV cache (no WebGPU adapter)", ignore: true, fn() {} });
} else {
  kvCacheSuite("webgpu", () => createWebGpuBackend({ quiet: true }));
  Deno.test("webgpu (bindings capped at 12 KiB): the KV-cache kernels in batch chunks", async () => {
    // a sequence's cache is 14 x 48 floats (2688 bytes): 256-byte offsets allow chunks of
    // 4 sequences, so 5 sequences (13440 bytes) bind as [0, 4) and [4, 5)
    const capped = await createWebGpuBackend({
      quiet: true,
      maxBindingBytes: 12288,
      minOffsetAlignment: 256,
    });
    await checkKVCacheCase(capped, { B: 5, pos: 6, T: 3, NH: 3, hs: 16, spare: 5 });
  });
}
