// Run by webgpu_gc_test.ts with --v8-flags=--expose-gc: trains a small GPT-2 for four
// steps on the reference and the WebGPU backends, collecting garbage between forward and
// backward and after every step, so that buffers freed by the finalizers return to the
// pool and are handed out again while the graph that used them may still be alive.
// Prints one JSON line: both backends' losses and how many buffers were reused.
import type { Backend } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { createWebGpuBackend } from "../../lib/backends/webgpu/mod.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { clipGradNorm, configureOptimizers } from "../../lib/train/optim.ts";
import { Tensor } from "../../lib/model/tensor.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("Run with --v8-flags=--expose-gc");

/** Collects garbage and lets the finalizers run. */
async function collect(): Promise<void> {
  gc!();
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc!();
  await new Promise((resolve) => setTimeout(resolve, 0));
}

async function losses(backend: Backend): Promise<number[]> {
  const config = { n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, vocab_size: 101 };
  const model = new GPT(backend, config, { seed: 3 });
  const optimizer = configureOptimizers(model, { weightDecay: 0.1, learningRate: 1e-3 });
  const ids = Int32Array.from({ length: 2 * 16 + 1 }, (_, i) => (i * 37 + 11) % 101);
  const x = Tensor.from(backend, ids.slice(0, 32), [2, 16]);
  const y = Tensor.from(backend, ids.slice(1), [2, 16]);
  const out: number[] = [];
  for (let step = 0; step < 4; step++) {
    optimizer.zeroGrad();
    const { loss } = model.forward(x, y);
    await collect(); // forward's temporaries that nothing holds go back to the pool
    loss!.backward();
    await clipGradNorm(model.parameters(), 1.0);
    optimizer.step();
    out.push(await loss!.item());
    await collect();
  }
  return out;
}

const gpu = await createWebGpuBackend({ quiet: true });
const result = { cpu: await losses(new CpuBackend()), gpu: await losses(gpu) };
console.log(JSON.stringify({ ...result, reused: gpu.reusedBuffers }));
