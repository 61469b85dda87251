// lib/model/tensor.ts forwardScope with GPT.forward: a forward's activations go back to the
// backend (at once without gradients, after backward with them), never the outputs, the
// parameters or their gradients, and training on recycled buffers gives the same numbers.
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import type { DeviceBuffer } from "../../lib/backend.ts";
import { GPT, type GPTConfig } from "../../lib/model/gpt.ts";
import { noGrad, Tensor } from "../../lib/model/tensor.ts";

const CONFIG: GPTConfig = { n_layer: 2, n_head: 2, n_embd: 16, block_size: 8, vocab_size: 40 };

/**
 * A cpu backend that notes what it is given back, and fills it with NaN there, so a read of a
 * buffer after it went back shows in every number downstream.
 */
class RecordingBackend extends CpuBackend {
  readonly recycled: DeviceBuffer[] = [];
  override recycle(buf: DeviceBuffer): void {
    this.recycled.push(buf);
    this.hostView(buf).fill(NaN);
    super.recycle(buf);
  }
}

/** A cpu backend that takes nothing back: every tensor gets fresh memory. */
class FreshBackend extends CpuBackend {
  override recycle(): void {}
}

function batch(be: CpuBackend, k: number): [Tensor, Tensor] {
  const ids = (m: number) => Int32Array.from({ length: 2 * 7 }, (_, i) => (i * m + k) % 40);
  return [Tensor.from(be, ids(7), [2, 7]), Tensor.from(be, ids(11), [2, 7])];
}

Deno.test("forwardScope: without gradients the activations go back at once, the logits stay", async () => {
  const be = new RecordingBackend();
  const model = new GPT(be, CONFIG, { seed: 1 });
  const [x] = batch(be, 0);
  const logits = await noGrad(() => model.forward(x).logits);
  ok(be.recycled.length > 10, `expected the blocks' activations back, got ${be.recycled.length}`);
  ok(!be.recycled.includes(logits.buffer), "the logits are the caller's");
  const params = new Set(model.parameters().map((p) => p.buffer));
  ok(be.recycled.every((b) => !params.has(b)), "no parameter is recycled");
});

Deno.test("forwardScope: with gradients, backward gives back the activations, not outputs or grads", () => {
  const be = new RecordingBackend();
  const model = new GPT(be, CONFIG, { seed: 1 });
  const [x, y] = batch(be, 0);
  const { logits, loss } = model.forward(x, y);
  equal(be.recycled.length, 0, "nothing goes back before backward");
  loss!.backward();
  ok(
    be.recycled.length > 20,
    `expected activations and their gradients, got ${be.recycled.length}`,
  );
  ok(!be.recycled.includes(logits.buffer) && !be.recycled.includes(loss!.buffer));
  const kept = new Set(model.parameters().flatMap((p) => [p.buffer, p.grad!.buffer]));
  ok(be.recycled.every((b) => !kept.has(b)), "parameters and their gradients stay");
});

Deno.test("forwardScope: three training steps on recycled buffers equal those on fresh memory", async () => {
  const run = async (be: CpuBackend): Promise<number[][]> => {
    const model = new GPT(be, CONFIG, { seed: 1 });
    const out: number[][] = [];
    for (let step = 0; step < 3; step++) {
      for (const p of model.parameters()) p.grad && be.zero(p.grad.buffer);
      const [x, y] = batch(be, step);
      const { loss } = model.forward(x, y);
      loss!.backward();
      out.push([await loss!.item()]);
      for (const p of model.parameters()) out.push([...await p.grad!.toArray()]);
      await noGrad(() => model.forward(x)); // an evaluation between steps, recycled at once
    }
    return out;
  };
  const recycling = new RecordingBackend();
  const [reused, fresh] = [await run(recycling), await run(new FreshBackend())];
  ok(recycling.recycled.length > 0);
  deepStrictEqual(reused, fresh);
});
