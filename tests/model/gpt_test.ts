// lib/model/gpt.ts: GPT-2's parameter counts and initialisation, configure_optimizers' decay
// groups, and gradients accumulating over micro-batches.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { decayGroups, GPT, gptConfig } from "../../lib/model/gpt.ts";
import * as ops from "../../lib/model/ops.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose } from "../support.ts";

const backend = new CpuBackend();

Deno.test("GPT-2 124M parameter counts: 124,439,808 (vocab 50257) and 124,475,904 (50304)", () => {
  assertEquals(
    new GPT(backend, gptConfig("gpt2"), { skipInit: true }).numParameters(),
    124_439_808,
  );
  assertEquals(
    new GPT(backend, gptConfig("gpt2", 50304), { skipInit: true }).numParameters(),
    124_475_904,
  );
});

Deno.test("GPT-2 init: N(0, 0.02), c_proj scaled by 1/sqrt(2 n_layer), zero biases, LayerNorm 1 and 0, tied wte", async () => {
  const config = { n_layer: 3, n_head: 2, n_embd: 64, block_size: 32, vocab_size: 500 };
  const model = new GPT(backend, config, { seed: 1 });
  const stats = async (t: Tensor) => {
    const x = (await t.toArray()) as Float32Array;
    const mean = x.reduce((a, b) => a + b, 0) / x.length;
    return { mean, std: Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length) };
  };
  const p = new Map(model.namedParameters());
  const wte = await stats(p.get("transformer.wte.weight")!);
  if (Math.abs(wte.std - 0.02) > 0.001 || Math.abs(wte.mean) > 0.001) {
    throw new Error(`wte ${JSON.stringify(wte)}`);
  }
  const proj = await stats(p.get("transformer.h.1.mlp.c_proj.weight")!);
  const want = 0.02 / Math.sqrt(2 * 3);
  if (Math.abs(proj.std - want) > 0.0005) {
    throw new Error(`c_proj std ${proj.std}, expected ${want}`);
  }
  const fc = await stats(p.get("transformer.h.1.mlp.c_fc.weight")!);
  if (Math.abs(fc.std - 0.02) > 0.001) throw new Error(`c_fc std ${fc.std}`);
  assertEquals(
    [...(await p.get("transformer.h.0.attn.c_attn.bias")!.toArray())].every((v) => v === 0),
    true,
  );
  assertEquals(
    [...(await p.get("transformer.ln_f.weight")!.toArray())].every((v) => v === 1),
    true,
  );
  assertEquals(model.lm_head.weight, model.transformer.wte.weight);
  assertEquals(p.has("lm_head.weight"), false);
});

Deno.test("gradient accumulation: two micro-batches with the loss halved equal one big batch", async () => {
  const be = new CpuBackend();
  const config = { n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, vocab_size: 512 };
  const B = 4, T = 16;
  const x = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % 512);
  const y = Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 3) % 512);
  const big = new GPT(be, config, { seed: 7 });
  big.forward(Tensor.from(be, x, [B, T]), Tensor.from(be, y, [B, T])).loss!.backward();
  const grads = (m: GPT) => Promise.all(m.parameters().map((p) => p.grad!.toArray()));

  const accumulate = async (scaleLoss: boolean) => {
    const m = new GPT(be, config, { seed: 7 });
    for (let k = 0; k < 2; k++) {
      const rows = (a: Int32Array) => a.slice(k * 2 * T, (k + 1) * 2 * T);
      const { loss } = m.forward(
        Tensor.from(be, rows(x), [2, T]),
        Tensor.from(be, rows(y), [2, T]),
      );
      (scaleLoss ? ops.scale(loss!, 1 / 2) : loss!).backward();
    }
    return await grads(m);
  };
  const expected = await grads(big);
  const names = big.namedParameters().map(([n]) => n);
  const right = await accumulate(true);
  right.forEach((g, i) => assertClose(names[i], g, expected[i], { rtol: 1e-4, atol: 1e-6 }));
  // the lecture's pitfall: without dividing by the steps, the gradient is a sum (2x)
  const wrong = await accumulate(false);
  throws(() => assertClose(names[0], wrong[0], expected[0], { rtol: 1e-4, atol: 1e-6 }));
});

Deno.test("configure_optimizers' groups: the 2-D tensors decay, biases and LayerNorm do not", () => {
  const model = new GPT(backend, {
    n_layer: 2,
    n_head: 2,
    n_embd: 8,
    block_size: 8,
    vocab_size: 16,
  });
  const [decay, noDecay] = decayGroups(model.parameters(), 0.1);
  const names = new Map(model.namedParameters().map(([n, p]) => [p, n]));
  assertEquals(decay.weightDecay, 0.1);
  assertEquals(noDecay.weightDecay, 0);
  // wte (tied to lm_head, once), wpe, and four Linear weights per block
  assertEquals(decay.params.map((p) => names.get(p)), [
    "transformer.wte.weight",
    "transformer.wpe.weight",
    ...[0, 1].flatMap((i) =>
      ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map((m) =>
        `transformer.h.${i}.${m}.weight`
      )
    ),
  ]);
  ok(noDecay.params.every((p) => p.shape.length === 1));
  assertEquals(decay.params.length + noDecay.params.length, model.parameters().length);
});
