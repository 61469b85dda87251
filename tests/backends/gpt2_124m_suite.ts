/**
 * The one full-size check, run on every backend: GPT-2 124M (vocab 50304) with weights from
 * an integer hash that PyTorch filled the same way
 * (../shared/reference/make_gpt2_124m_hash.py), one (2, 64) batch: loss, logits, every
 * gradient's norm, clipping and one AdamW step. About a minute on the reference backend.
 *
 * @module
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join } from "node:path";
import type { Backend } from "../../lib/backend.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { configureOptimizers } from "../../lib/train/optim.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose, referenceDir } from "../support.ts";

/** The reference's integer hash (all arithmetic wraps at 2^32). */
export function hashU32(p: number, i: number): number {
  let x = (Math.imul(i, 0x9e3779b1) + Math.imul(p, 0x85ebca77) + 0x165667b1) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x2c1b3c6d) >>> 0;
  x = (x ^ (x >>> 12)) >>> 0;
  x = Math.imul(x, 0x297a2d39) >>> 0;
  return (x ^ (x >>> 15)) >>> 0;
}

function hashedValues(p: number, name: string, n: number): Float32Array {
  const out = new Float32Array(n);
  const isLn = name.includes(".ln_") || name.startsWith("transformer.ln_f");
  for (let i = 0; i < n; i++) {
    const u = hashU32(p, i) / 4294967296;
    if (isLn) out[i] = name.endsWith("weight") ? 1 + (u - 0.5) * 0.2 : (u - 0.5) * 0.02;
    else if (name.endsWith(".bias")) out[i] = (u - 0.5) * 0.02;
    else out[i] = (u - 0.5) * 0.04;
  }
  return out;
}

/** Registers the full-size check for one backend. */
export function gpt2HashSuite(label: string, makeBackend: () => Backend | Promise<Backend>): void {
  Deno.test(`${label}: GPT-2 124M with hashed weights matches PyTorch (loss, logits, gradient norms, one AdamW step)`, async () => {
    const ref = JSON.parse(
      await Deno.readTextFile(join(referenceDir, "gpt2_124m_hash_reference.json")),
    );
    const backend = await makeBackend();
    const model = new GPT(backend, ref.config, { skipInit: true });
    assertEquals(model.numParameters(), ref.num_params);
    model.namedParameters().forEach(([name, p], i) =>
      backend.write(p.buffer, hashedValues(i, name, p.size))
    );
    for (const [name, first4] of Object.entries(ref.param_first4 as Record<string, number[]>)) {
      const p = new Map(model.namedParameters()).get(name)!;
      assertClose(`${name} first 4`, ((await p.toArray()) as Float32Array).subarray(0, 4), first4, {
        rtol: 1e-7,
      });
    }

    const { B, T } = ref;
    const idx = Int32Array.from({ length: B * T }, (_, i) => hashU32(1000, i) % 50257);
    const targets = Int32Array.from({ length: B * T }, (_, i) => hashU32(1001, i) % 50257);
    assertEquals([...idx.subarray(0, 8)], ref.idx_first8);
    assertEquals([...targets.subarray(0, 8)], ref.targets_first8);
    const x = Tensor.from(backend, idx, [B, T]), y = Tensor.from(backend, targets, [B, T]);

    const { logits, loss } = model.forward(x, y);
    assertClose("loss", [await loss!.item()], [ref.loss], { rtol: 1e-5 });
    const V = ref.config.vocab_size;
    const all = (await logits.toArray()) as Float32Array;
    assertClose("logits[0, 0, :8]", all.subarray(0, 8), ref.logits_0_0_first8, {
      rtol: 1e-4,
      atol: 1e-5,
    });
    const row = (1 * T + 63) * V;
    assertClose(
      "logits[1, 63, 50249:50257]",
      all.subarray(row + 50249, row + 50257),
      ref.logits_1_63_last8_of_50257,
      {
        rtol: 1e-4,
        atol: 1e-5,
      },
    );

    loss!.backward();
    for (const [name, p] of model.namedParameters()) {
      const norm = Math.sqrt(await backend.sumOfSquares(p.grad!.buffer, p.size));
      assertClose(`grad norm ${name}`, [norm], [ref.grad_norms[name]], { rtol: 1e-3, atol: 1e-8 });
    }
    const optimizer = configureOptimizers(model, { weightDecay: 0.1, learningRate: ref.adamw.lr });
    const norm = await optimizer.clipGradNorm(ref.adamw.clip); // as training clips: in the step
    assertClose("total grad norm", [norm], [ref.total_grad_norm_before_clip], { rtol: 1e-4 });
    optimizer.step();
    const after = model.forward(x, y).loss!;
    assertClose("loss after one AdamW step", [await after.item()], [ref.loss_after_one_step], {
      rtol: 1e-4,
    });
  });
}
