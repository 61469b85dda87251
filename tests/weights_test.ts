// safetensors read/write, Hugging Face GPT-2 folders, and the errors bad files give.
import { deepStrictEqual as assertEquals, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../lib/backends/cpu/mod.ts";
import { GPT, gptConfig, savePretrained } from "../lib/model/gpt.ts";
import {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  toFloat32,
  toInt32,
  writeSafetensors,
} from "../lib/io/safetensors.ts";
import { Tensor } from "../lib/model/tensor.ts";
import { referenceDir } from "./support.ts";

const backend = new CpuBackend();
const tinyDir = join(referenceDir, "tiny-gpt2");

Deno.test("safetensors: round trip of f32 and i32 tensors with metadata, data 8-byte aligned", () => {
  const bytes = serializeSafetensors([
    ["a", { data: Float32Array.from([1.5, -2, 3.25]), shape: [3] }],
    ["b.ü", { data: Int32Array.from([7, -8, 9, 10]), shape: [2, 2] }],
  ], { format: "pt" });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals((8 + headerLen) % 8, 0);
  const f = parseSafetensors(bytes, "mem");
  assertEquals([...f.tensors.keys()], ["a", "b.ü"]);
  assertEquals([...toFloat32(f.tensors.get("a")!)], [1.5, -2, 3.25]);
  assertEquals(f.tensors.get("b.ü")!.shape, [2, 2]);
  assertEquals([...toInt32(f.tensors.get("b.ü")!)], [7, -8, 9, 10]);
  assertEquals(f.metadata, { format: "pt" });
});

Deno.test("safetensors: F16, BF16 and I64 convert", () => {
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [2], data_offsets: [0, 4] },
    b: { dtype: "BF16", shape: [1], data_offsets: [4, 6] },
    i: { dtype: "I64", shape: [1], data_offsets: [8, 16] },
  });
  const data = new Uint8Array(16);
  const dv = new DataView(data.buffer);
  dv.setUint16(0, 0x3c00, true); // 1.0
  dv.setUint16(2, 0xc000, true); // -2.0
  dv.setUint16(4, 0x4049, true); // bf16 of 3.140625
  dv.setBigInt64(8, 50256n, true);
  const hb = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + hb.length + 16);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(hb.length), true);
  bytes.set(hb, 8);
  bytes.set(data, 8 + hb.length);
  const f = parseSafetensors(bytes);
  assertEquals([...toFloat32(f.tensors.get("h")!)], [1, -2]);
  assertEquals([...toFloat32(f.tensors.get("b")!)], [3.140625]);
  assertEquals([...toInt32(f.tensors.get("i")!)], [50256]);
});

Deno.test("safetensors: truncated and corrupt files fail naming the file and tensor", async () => {
  const good = await Deno.readFile(join(tinyDir, "model.safetensors"));
  throws(() => parseSafetensors(good.subarray(0, 5), "x.safetensors"), /x\.safetensors: truncated/);
  throws(
    () => parseSafetensors(good.subarray(0, 100), "x.safetensors"),
    /x\.safetensors: truncated or not safetensors/,
  );
  throws(
    () => parseSafetensors(good.subarray(0, good.length - 10), "x.safetensors"),
    /truncated, tensor "[^"]+" ends/,
  );
  const corrupt = good.slice();
  corrupt[9] = 0xff; // break the JSON
  throws(() => parseSafetensors(corrupt, "x.safetensors"), /x\.safetensors: corrupt header/);
  await rejects(
    readSafetensors("/nonexistent/model.safetensors"),
    /Cannot read \/nonexistent\/model\.safetensors/,
  );
});

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
