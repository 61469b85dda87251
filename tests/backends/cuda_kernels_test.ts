// Every kernel of the CUDA backend against the reference CPU backend in f32 (matmuls
// through cuBLASLt with TF32 off), forward and backward, on shapes that are not multiples
// of the kernels' block sizes and on GPT-2 124M's full-size rows: attention at T = 1024 with
// heads of 64, cross-entropy over 50304 columns, AdamW over millions of elements
// (kernel_suite.ts). Ignored, with the reason printed, where no GPU is usable.
import {
  createCudaBackend,
  type CudaBackend,
  cudaUnavailable,
} from "../../lib/backends/cuda/mod.ts";
import { kernelSuite } from "./kernel_suite.ts";

const reason = await cudaUnavailable();
if (reason !== null) {
  console.log(`cuda: skipped: ${reason}`);
  Deno.test({ name: "cuda kernels (no usable GPU here)", ignore: true, fn() {} });
} else {
  let made: Promise<CudaBackend> | null = null;
  kernelSuite("cuda", async () => {
    const backend = await (made ??= createCudaBackend({ quiet: true }));
    backend.setMatmulPrecision("f32");
    return backend;
  });
}
