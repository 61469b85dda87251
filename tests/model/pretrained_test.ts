// lib/model/pretrained.ts: Hugging Face GPT-2 folders in and out (the errors bad ones give), and
// the warning weights with NaN or infinite values load with.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  countNonFinite,
  fromPretrained,
  nonFiniteWarning,
  savePretrained,
} from "../../lib/model/pretrained.ts";
import { readSafetensors, toFloat32, writeSafetensors } from "../../lib/io/safetensors.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { referenceDir } from "../support.ts";

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
  const a = await fromPretrained(backend, tinyDir), b = await fromPretrained(backend, dir);
  for (const [[n, p], [, q]] of a.namedParameters().map((x, i) => [x, b.namedParameters()[i]])) {
    assertEquals(await p.toArray(), await q.toArray(), n);
  }
});

Deno.test("fromPretrained: missing, unexpected and mis-shaped tensors are named", async () => {
  const missing = await tinyCopy((t) => t.delete("h.1.mlp.c_fc.bias"));
  await rejects(fromPretrained(backend, missing), /missing transformer\.h\.1\.mlp\.c_fc\.bias/);
  const unexpected = await tinyCopy((t) =>
    t.set("h.0.extra.weight", { data: new Float32Array(2), shape: [2] })
  );
  await rejects(fromPretrained(backend, unexpected), /unexpected tensor "h\.0\.extra\.weight"/);
  const misshaped = await tinyCopy((t) => {
    const w = t.get("h.0.attn.c_attn.weight")!; // stored [in=32, out=96]
    t.set("h.0.attn.c_attn.weight", { data: w.data, shape: [96, 32] }); // not transposed
  });
  await rejects(
    fromPretrained(backend, misshaped),
    /"h\.0\.attn\.c_attn\.weight" has shape \[32,96\] after the Conv1D transpose, expected \[96,32\]/,
  );
  await rejects(fromPretrained(backend, "/nonexistent-dir/gpt2"), /gpt2|hub|model/i);
});

Deno.test("fromPretrained: a config.json holding null, a missing size or n_embd not divisible by n_head names the file and field", async () => {
  const dir = await tinyCopy(() => {});
  const path = join(dir, "config.json");
  const config = JSON.parse(await Deno.readTextFile(path));
  const write = (value: unknown) => Deno.writeTextFile(path, JSON.stringify(value));
  try {
    await write(null);
    await rejects(fromPretrained(backend, dir), {
      message: `${path}: expected a JSON object (GPT2Config), found null`,
    });
    await write({ ...config, n_embd: 30 }); // n_head 4
    await rejects(fromPretrained(backend, dir), {
      message: `${path}: expected n_embd divisible by n_head, found n_embd 30 and n_head 4`,
    });
    await write({ ...config, n_head: null });
    await rejects(fromPretrained(backend, dir), {
      message: `${path}: expected a positive integer for n_head, found null`,
    });
    const { n_positions: _, n_ctx: __, ...noLength } = config;
    await write(noLength);
    await rejects(fromPretrained(backend, dir), {
      message: `${path}: expected a positive integer for n_ctx, found no such field`,
    });
    await write({ ...config, n_positions: "16" });
    await rejects(fromPretrained(backend, dir), {
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
    const model = await fromPretrained(backend, dir, { warn: (l) => warnings.push(l) });
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
    await fromPretrained(backend, tinyDir, { warn: (l) => warnings.push(l) });
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
  const model = await fromPretrained(backend, tinyDir);
  const dir = await Deno.makeTempDir();
  await savePretrained(model, dir);
  const original = await readSafetensors(join(tinyDir, "model.safetensors"));
  const saved = await readSafetensors(join(dir, "model.safetensors"));
  for (const [k, t] of saved.tensors) {
    assertEquals(t.shape, original.tensors.get(k)!.shape, k); // Conv1D [in, out] again
    assertEquals(toFloat32(t), toFloat32(original.tensors.get(k)!), k);
  }
  const again = await fromPretrained(backend, dir);
  const x = Tensor.from(backend, Int32Array.from([1, 2, 3, 4]), [1, 4]);
  assertEquals(await again.forward(x).logits.toArray(), await model.forward(x).logits.toArray());
});
