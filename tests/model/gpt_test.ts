// lib/model/gpt.ts: Hugging Face GPT-2 folders in and out (the errors bad ones give), GPT-2's
// parameter counts and initialisation, and gradients accumulating over micro-batches.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  countNonFinite,
  GPT,
  gptConfig,
  nonFiniteWarning,
  savePretrained,
} from "../../lib/model/gpt.ts";
import * as ops from "../../lib/model/ops.ts";
import { readSafetensors, toFloat32, writeSafetensors } from "../../lib/io/safetensors.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose, referenceDir } from "../support.ts";

const backend = new CpuBackend();
const tinyDir = join(referenceDir, "tiny-gpt2");

async function tinyCopy(
  edit: (t: Map<string, { data: Float32Array; shape: number[] }>) => void,
): Promise<string> {
  const src = await readSafetensors(join(tinyDir, "model.safetensors"));
  const tensors = new Map<string, { data: Float32Array; shape: number[] }>();
  for (const [k, t] of src.tensors) tensors.set(k, { data: toFloat32(t).slice(), shape: t.shape });
  edit(tensors);
  const dir = await Deno.makeTempDir();
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
  await Deno.copyFile(join(tinyDir, "config.json"), join(dir, "config.json"));
  return dir;
}

Deno.test("fromPretrained: keys with the transformer. prefix load the same weights", async () => {
  const dir = await tinyCopy((t) => {
    for (const [k, v] of [...t]) {
      t.delete(k);
      t.set(`transformer.${k}`, v);
    }
  });
  const a = await GPT.fromPretrained(backend, tinyDir), b = await GPT.fromPretrained(backend, dir);
  for (const [[n, p], [, q]] of a.namedParameters().map((x, i) => [x, b.namedParameters()[i]])) {
    assertEquals(await p.toArray(), await q.toArray(), n);
  }
});

Deno.test("fromPretrained: missing, unexpected and mis-shaped tensors are named", async () => {
  const missing = await tinyCopy((t) => t.delete("h.1.mlp.c_fc.bias"));
  await rejects(GPT.fromPretrained(backend, missing), /missing transformer\.h\.1\.mlp\.c_fc\.bias/);
  const unexpected = await tinyCopy((t) =>
    t.set("h.0.extra.weight", { data: new Float32Array(2), shape: [2] })
  );
  await rejects(GPT.fromPretrained(backend, unexpected), /unexpected tensor "h\.0\.extra\.weight"/);
  const misshaped = await tinyCopy((t) => {
    const w = t.get("h.0.attn.c_attn.weight")!; // stored [in=32, out=96]
    t.set("h.0.attn.c_attn.weight", { data: w.data, shape: [96, 32] }); // not transposed
  });
  await rejects(
    GPT.fromPretrained(backend, misshaped),
    /"h\.0\.attn\.c_attn\.weight" has shape \[32,96\] after the Conv1D transpose, expected \[96,32\]/,
  );
  await rejects(GPT.fromPretrained(backend, "/nonexistent-dir/gpt2"), /gpt2|hub|model/i);
});

Deno.test("fromPretrained: a folder that is not there, or a file, says a folder or a model type was expected", async () => {
  const types = "gpt2, gpt2-medium, gpt2-large, gpt2-xl";
  await rejects(GPT.fromPretrained(backend, "/nonexistent-dir/gpt2"), {
    message: "Expected a folder holding config.json and model.safetensors, or a GPT-2 model " +
      `type (${types}), found no folder at /nonexistent-dir/gpt2`,
  });
  const file = join(tinyDir, "config.json");
  await rejects(GPT.fromPretrained(backend, file), {
    message: "Expected a folder holding config.json and model.safetensors, or a GPT-2 model " +
      `type (${types}), found a file at ${file}`,
  });
});

Deno.test("fromPretrained: a config.json holding null, a missing size or n_embd not divisible by n_head names the file and field", async () => {
  const dir = await tinyCopy(() => {});
  const path = join(dir, "config.json");
  const config = JSON.parse(await Deno.readTextFile(path));
  const write = (value: unknown) => Deno.writeTextFile(path, JSON.stringify(value));
  try {
    await write(null);
    await rejects(GPT.fromPretrained(backend, dir), {
      message: `${path}: expected a JSON object (GPT2Config), found null`,
    });
    await write({ ...config, n_embd: 30 }); // n_head 4
    await rejects(GPT.fromPretrained(backend, dir), {
      message: `${path}: expected n_embd divisible by n_head, found n_embd 30 and n_head 4`,
    });
    await write({ ...config, n_head: null });
    await rejects(GPT.fromPretrained(backend, dir), {
      message: `${path}: expected a positive integer for n_head, found null`,
    });
    const { n_positions: _, n_ctx: __, ...noLength } = config;
    await write(noLength);
    await rejects(GPT.fromPretrained(backend, dir), {
      message: `${path}: expected a positive integer for n_ctx, found no such field`,
    });
    await write({ ...config, n_positions: "16" });
    await rejects(GPT.fromPretrained(backend, dir), {
      message: `${path}: expected a positive integer for n_positions, found "16"`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fromPretrained: weights with NaN or infinite values load, with a warning naming the tensors", async () => {
  const dir = await tinyCopy((t) => {
    t.get("wte.weight")!.data.fill(NaN, 0, 5);
    t.get("h.0.attn.c_attn.weight")!.data[7] = Infinity;
    t.get("h.1.ln_2.bias")!.data[0] = -Infinity;
    t.get("ln_f.weight")!.data[1] = NaN;
  });
  try {
    const warnings: string[] = [];
    const model = await GPT.fromPretrained(backend, dir, { warn: (l) => warnings.push(l) });
    // in the file's order, the first three and the count
    assertEquals(warnings, [
      `warning: ${dir}/model.safetensors: 4 tensors hold NaN or infinite values: ` +
      "h.0.attn.c_attn.weight (1 of 3072), h.1.ln_2.bias (1 of 32), ln_f.weight (1 of 32), " +
      "and 1 more; what this model computes will not mean anything",
    ]);
    const wte = (await new Map(model.namedParameters()).get("transformer.wte.weight")!
      .toArray()) as Float32Array;
    ok(Number.isNaN(wte[0]), "the weights are loaded as they are");
    // finite weights: no warning
    await GPT.fromPretrained(backend, tinyDir, { warn: (l) => warnings.push(l) });
    assertEquals(warnings.length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("countNonFinite and nonFiniteWarning", () => {
  assertEquals(countNonFinite(Float32Array.of(0, -0, 1e38, NaN, Infinity, -Infinity, 3)), 3);
  assertEquals(
    nonFiniteWarning("m.safetensors", [{ name: "wte.weight", count: 2, size: 10 }]),
    "warning: m.safetensors: 1 tensor holds NaN or infinite values: wte.weight (2 of 10); " +
      "what this model computes will not mean anything",
  );
});

Deno.test("savePretrained writes a folder fromPretrained reads back identically", async () => {
  const model = await GPT.fromPretrained(backend, tinyDir);
  const dir = await Deno.makeTempDir();
  await savePretrained(model, dir);
  const original = await readSafetensors(join(tinyDir, "model.safetensors"));
  const saved = await readSafetensors(join(dir, "model.safetensors"));
  for (const [k, t] of saved.tensors) {
    assertEquals(t.shape, original.tensors.get(k)!.shape, k); // Conv1D [in, out] again
    assertEquals(toFloat32(t), toFloat32(original.tensors.get(k)!), k);
  }
  const again = await GPT.fromPretrained(backend, dir);
  const x = Tensor.from(backend, Int32Array.from([1, 2, 3, 4]), [1, 4]);
  assertEquals(await again.forward(x).logits.toArray(), await model.forward(x).logits.toArray());
});

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
