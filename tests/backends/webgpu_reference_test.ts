// The WebGPU backend on the PyTorch reference suite (tiny GPT-2: logits, loss, every
// gradient, gradient accumulation, greedy generation, top-k, three AdamW steps, GELU), on
// the full-size GPT-2 124M check with hashed weights (its wte, 154.5 MB, and its logits
// cross llvmpipe's 128 MiB binding limit), and five training steps against the reference
// CPU backend with every choice of kernels (and close to it with f16 matmuls). Skipped,
// with a notice, only when no WebGPU adapter exists at all.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  createWebGpuBackend,
  hasWebGpuAdapter,
  type WebGpuKernels,
} from "../../lib/backends/webgpu/mod.ts";
import { train } from "../../lib/train/train.ts";
import { gpt2HashSuite } from "./gpt2_124m_suite.ts";
import { referenceSuite } from "./reference_suite.ts";
import { assertSameRun, trainSteps } from "./train_steps.ts";
import { assertClose, smallRecipe } from "../support.ts";

if (!(await hasWebGpuAdapter())) {
  console.log(
    "webgpu_reference_test: SKIPPED: no WebGPU adapter (on Debian, mesa-vulkan-drivers gives a software one)",
  );
  Deno.test({ name: "webgpu: reference suite (no WebGPU adapter)", ignore: true, fn() {} });
} else {
  referenceSuite("webgpu", () => createWebGpuBackend({ quiet: true }));
  gpt2HashSuite("webgpu", () => createWebGpuBackend());
  // the adapter's kernels, the other tiles, and the speedup ladder's naive rung
  const kernelChoices: [string, Partial<WebGpuKernels>][] = [
    ["", {}],
    [" (tiled matmul)", { matmul: "tiled" }],
    [" (register-blocked matmul)", { matmul: "register" }],
    [" (the ladder's naive kernels)", {
      matmul: "naive",
      attention: "materialized",
      fusedElementwise: false,
      adamw: "elementwise",
    }],
  ];
  let cpuRun: ReturnType<typeof trainSteps> | null = null;
  for (const [label, kernels] of kernelChoices) {
    Deno.test(`webgpu${label}: five training steps equal the reference CPU backend's`, async () => {
      const gpu = await createWebGpuBackend({ quiet: true, kernels });
      const cpu = await (cpuRun ??= trainSteps(new CpuBackend())), web = await trainSteps(gpu);
      assertSameRun(web, cpu);
    });
  }
  Deno.test("webgpu f16 matmuls: five training steps close to the CPU's f32 ones", async () => {
    const gpu = await createWebGpuBackend({ quiet: true });
    if (!gpu.hasF16) {
      console.log("webgpu f16: no shader-f16 on this adapter: nothing to train");
      return;
    }
    gpu.setMatmulPrecision("f16");
    const cpu = await (cpuRun ??= trainSteps(new CpuBackend())), web = await trainSteps(gpu);
    // half-precision operands: about 3 significant digits per product
    assertClose("losses", web.losses, cpu.losses, { rtol: 2e-3 });
    assertClose("pre-clip norms", web.norms, cpu.norms, { rtol: 3e-2 });
    const diff = Math.max(...web.losses.map((l, i) => Math.abs(l - cpu.losses[i])));
    if (!(diff > 0)) throw new Error("f16 losses are bit-identical to f32: f16 is not in use");
  });
  Deno.test("webgpu: train --precision f16 (loss scaling) follows the f32 run", async () => {
    const gpu = await createWebGpuBackend({ quiet: true });
    if (!gpu.hasF16) {
      console.log("webgpu f16: no shader-f16 on this adapter: nothing to train");
      return;
    }
    const recipe = (precision: "f32" | "f16") =>
      smallRecipe({
        backend: gpu,
        config: { n_layer: 1, n_head: 2, n_embd: 32, block_size: 32, vocab_size: 50304 },
        T: 32,
        totalBatchSize: 128, // two micro-steps
        maxLr: 6e-3,
        minLr: 6e-4,
        precision,
      });
    const f32 = await train(recipe("f32")), f16 = await train(recipe("f16"));
    assertEquals(gpu.matmulPrecision, "f32"); // put back after the run
    const losses = (r: typeof f32) => r.history.map((s) => s.loss);
    assertClose("f16 losses", losses(f16), losses(f32), { rtol: 2e-3 });
    assertEquals(f16.history.map((s) => s.skipped), [false, false, false, false]);
    assertEquals(f16.gradScaler?.scale, 2 ** 16);
    assertEquals(f32.gradScaler, null);
  });
}
