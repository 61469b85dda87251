// The CUDA backend's host-side costs per training step, on the CPU emulator
// (tests/cuda_emulator/): a forward enqueues no zero fill (its outputs are `empty`, and the
// emulator's fresh blocks are NaN, so an output a kernel left unwritten would show in the
// loss), and the embedding's bucketed backward equals the reference's bit for bit. Ignored,
// saying so, without a C++ compiler.
import { equal, ok } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import type { CudaBackend } from "../../lib/backends/cuda/mod.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import { assertClose, hasCxx } from "../support.ts";
import { randn } from "./kernel_suite.ts";
import { TRAIN_STEPS_CONFIG } from "./train_steps.ts";

const open = (): Promise<CudaBackend> =>
  createEmulatedCudaBackend({ quiet: true, memoryBytes: 2 ** 30 });

if (!(await hasCxx())) {
  console.log("cuda (emulated) host costs: skipped: no C++ compiler (c++ or $CXX)");
  Deno.test({ name: "cuda (emulated): host costs (no C++ compiler)", ignore: true, fn() {} });
} else {
  let made: Promise<CudaBackend> | null = null;
  const shared = () => made ??= open();

  Deno.test("cuda (emulated): a forward enqueues no zero fill; its loss equals the CPU's", async () => {
    const backend = await shared();
    const [B, T] = [2, 16];
    const tokens = Int32Array.from({ length: B * T + 1 }, (_, i) => (i * 37) % 101);
    const losses: number[] = [];
    for (const be of [backend, new CpuBackend()]) {
      const model = new GPT(be, TRAIN_STEPS_CONFIG, { seed: 5 });
      const x = Tensor.from(be, tokens.slice(0, B * T), [B, T]);
      const y = Tensor.from(be, tokens.slice(1), [B, T]);
      const before = be === backend ? backend.zeroFills : 0;
      const { loss } = model.forward(x, y);
      if (be === backend) equal(backend.zeroFills - before, 0, "zero fills in a forward");
      losses.push(await loss!.item());
    }
    assertClose("loss", [losses[0]], [losses[1]], { rtol: 2e-5 });
  });

  Deno.test("cuda (emulated): the embedding backward's buckets equal the reference", async () => {
    const backend = await shared(), cpu = new CpuBackend();
    const [N, C, V] = [300, 40, 23];
    const ids = Int32Array.from({ length: N }, (_, n) => (n * n + 3 * n) % V);
    const dout = randn(N * C), dw0 = randn(V * C);
    const got: Float32Array[] = [];
    for (const be of [backend, cpu]) {
      const dw = be.upload(dw0), d = be.upload(dout), idx = be.upload(ids);
      be.embeddingBackward(dw, d, idx, N, C);
      got.push((await be.read(dw)) as Float32Array);
    }
    assertClose("dweight", got[0], got[1], { rtol: 0, atol: 0 });
  });
}
