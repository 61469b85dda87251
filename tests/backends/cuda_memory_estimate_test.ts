// The CUDA backend's estimate of a training step's peak memory
// (lib/backends/cuda/memory_estimate.ts): GPT-2 124M at B = 64, T = 1024 in bf16 fits an
// 80 GB card with dlogits written over the logits and not without; a batch that cannot fit
// is refused before the run with a message naming B, T, the estimate and a B that fits; and
// on the CPU emulator through the real FFI (tests/cuda_emulator/: libcuda_emu.cpp opened by
// driver.ts), the estimate bounds what a step really holds, closely.
import { equal, ok, throws } from "node:assert/strict";
import {
  checkTrainingFits,
  estimateTrainingMemory,
} from "../../lib/backends/cuda/memory_estimate.ts";
import { sizeClass } from "../../lib/backends/cuda/memory.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import { hasCxx } from "../support.ts";

const GPT2_124M = { n_layer: 12, n_head: 12, n_embd: 768, vocab_size: 50304, block_size: 1024 };
const GIB = 2 ** 30;

Deno.test("estimateTrainingMemory: GPT-2 124M at B=64, T=1024 in bf16 fits 80 GiB with the logits overwritten", () => {
  const shape = { config: GPT2_124M, B: 64, T: 1024, precision: "bf16" } as const;
  const inPlace = estimateTrainingMemory(shape);
  ok(inPlace.total < 80 * GIB, `estimate ${inPlace.total / GIB} GiB`);
  ok(inPlace.total > 60 * GIB, `estimate ${inPlace.total / GIB} GiB: too small to be true`);
  const twoBuffers = estimateTrainingMemory({ ...shape, overwriteLogits: false });
  equal(twoBuffers.total - inPlace.total, sizeClass(64 * 1024 * 50304 * 4), "one logits buffer");
  ok(twoBuffers.total > 80 * GIB, "logits and dlogits apart do not fit 80 GiB");
  const f32 = estimateTrainingMemory({ ...shape, precision: "f32" });
  ok(f32.total < inPlace.total, "f32 keeps no bf16 copies");
});

Deno.test("checkTrainingFits: an absurd B is refused, naming B, T, the estimate and a B that fits", () => {
  const shape = { config: GPT2_124M, B: 4096, T: 1024, precision: "bf16" } as const;
  throws(
    () => checkTrainingFits(shape, 79 * GIB, 80 * GIB),
    (e: Error) =>
      /B = 4096, T = 1024 \(bf16\) needs about [\d.]+ GiB/.test(e.message) &&
      /79\.0 GiB free of 80\.0 GiB/.test(e.message) && /--batch-size 64 or less/.test(e.message),
  );
  throws(
    () => checkTrainingFits({ ...shape, B: 1 }, GIB, GIB),
    /even B = 1 does not fit/,
  );
  equal(checkTrainingFits({ ...shape, B: 64 }, 79 * GIB, 80 * GIB).total < 79 * GIB, true);
});

if (!(await hasCxx())) {
  console.log("cuda (emulated) memory estimate: skipped: no C++ compiler (c++ or $CXX)");
  Deno.test({ name: "cuda (emulated): memory estimate (no C++ compiler)", ignore: true, fn() {} });
} else {
  Deno.test("cuda (emulated): a bf16 training step holds no more than the estimate, and most of it; a step too large is refused", async () => {
    const backend = await createEmulatedCudaBackend({ quiet: true, memoryBytes: GIB });
    try {
      const config = { n_layer: 2, n_head: 2, n_embd: 128, vocab_size: 1031, block_size: 64 };
      const [B, T] = [4, 64];
      backend.setMatmulPrecision("bf16");
      backend.checkTrainingMemory({ config, B, T, overwriteLogits: true });
      const before = backend.heldMemoryBytes(); // the workspace and the fault word
      const model = new GPT(backend, config, { seed: 5 });
      const tokens = Int32Array.from({ length: B * T + 1 }, (_, i) => (i * 577) % 1031);
      const x = Tensor.from(backend, tokens.slice(0, B * T), [B, T]);
      const y = Tensor.from(backend, tokens.slice(1), [B, T]);
      const { loss } = model.forward(x, y, { overwriteLogits: true });
      loss!.backward();
      await loss!.item();
      const held = backend.peakMemoryBytes() - before;
      const { total, workspace } = estimateTrainingMemory({
        config,
        B,
        T,
        precision: "bf16",
      });
      const estimate = total - workspace; // the workspace is in `before`
      ok(held <= estimate, `held ${held} bytes at the peak, estimated ${estimate}`);
      ok(held >= 0.6 * estimate, `held ${held} bytes at the peak, estimated ${estimate}`);
      throws(
        () => backend.checkTrainingMemory({ config, B: 4096, T, overwriteLogits: true }),
        /B = 4096, T = 64 \(bf16\) needs about/,
      );
    } finally {
      backend.destroy();
    }
  });
}
