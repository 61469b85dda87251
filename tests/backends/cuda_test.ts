// The CUDA backend on a GPU (cuda_suite.ts): the PyTorch reference suite (tiny GPT-2: logits,
// loss, every gradient, accumulation, generation, top-k, three AdamW steps, GELU) and the
// full-size GPT-2 124M hash check in fp32 at the tolerances every backend meets; five
// training steps equal to the reference backend's; TF32 and bf16 matmuls within the bound
// their operand rounding allows, and training with them close to f32; the backend's device
// capabilities. The kernel-by-kernel comparisons are in cuda_kernels_test.ts, the nvcc build
// in cuda_build_test.ts, the same suites on the CPU emulator in cuda_emulator_test.ts.
// Without a usable GPU every test here is ignored, and the reason is printed; only the check
// that --backend cuda then fails fast runs.
import { ok, rejects } from "node:assert/strict";
import { createCudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { cudaSuite } from "./cuda_suite.ts";

const reason = await cudaUnavailable();

if (reason !== null) {
  console.log(`cuda: skipped: ${reason}`);
  Deno.test({
    name: "cuda: reference suite, 124M check, training and precisions (no usable GPU here)",
    ignore: true,
    fn() {},
  });
  Deno.test("cuda: without a usable GPU, createCudaBackend fails within seconds saying why", async () => {
    const t0 = performance.now();
    await rejects(createCudaBackend({ quiet: true }), (e: Error) => {
      ok(/^[A-Z]/.test(e.message), `Expected an error message that starts uppercase: ${e.message}`);
      return true;
    });
    const s = (performance.now() - t0) / 1000;
    ok(s < 5, `Expected the failure within 5 s, it took ${s.toFixed(1)} s`);
  });
} else {
  cudaSuite("cuda", () => createCudaBackend({ quiet: true }));
}
