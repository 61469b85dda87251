// lib/io/llmc.ts: llm.c's GPT-2 model files. Files written here field by field from llm.c's
// published layout (train_gpt2.py's write_model: 256 int32, magic 20240326, version 3 fp32 or 5
// bf16, then the parameters kind by kind, wte padded) are read back value by value; the tiny
// reference model goes through writeLlmcModel and readLlmcModel unchanged to the bit, with
// PyTorch's logits; bad files fail naming the file, what was expected and what was found.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  decodeLlmcModel,
  readLlmcModel,
  writeLlmcModel,
  writeLlmcWeights,
} from "../../lib/io/llmc.ts";
import { readSafetensors, toFloat32, toInt32 } from "../../lib/io/safetensors.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose, assertSameBits, loadReference, referenceDir } from "../support.ts";

const tinyDir = join(referenceDir, "tiny-gpt2");

/** A small GPT-2's shape: 2 layers, 2 heads, 4 channels, block 3, vocabulary 5 padded to 8. */
const SMALL = { block_size: 3, vocab_size: 5, n_layer: 2, n_head: 2, n_embd: 4, padded: 8 };

/**
 * llm.c's parameter kinds in file order, with the model's name (`{i}` the layer) and the values
 * in one of them (one layer's), for {@linkcode SMALL}: from write_model's list, not the reader's.
 */
function smallKinds(): { name: string; size: number; perLayer: boolean }[] {
  const C = SMALL.n_embd, layer = (name: string, size: number) => ({ name, size, perLayer: true });
  return [
    { name: "transformer.wte.weight", size: SMALL.padded * C, perLayer: false }, // (Vp, C)
    { name: "transformer.wpe.weight", size: SMALL.block_size * C, perLayer: false }, // (maxT, C)
    layer("ln_1.weight", C),
    layer("ln_1.bias", C),
    layer("attn.c_attn.weight", 3 * C * C), // (3C, C)
    layer("attn.c_attn.bias", 3 * C),
    layer("attn.c_proj.weight", C * C),
    layer("attn.c_proj.bias", C),
    layer("ln_2.weight", C),
    layer("ln_2.bias", C),
    layer("mlp.c_fc.weight", 4 * C * C), // (4C, C)
    layer("mlp.c_fc.bias", 4 * C),
    layer("mlp.c_proj.weight", C * 4 * C), // (C, 4C)
    layer("mlp.c_proj.bias", C),
    { name: "transformer.ln_f.weight", size: C, perLayer: false },
    { name: "transformer.ln_f.bias", size: C, perLayer: false },
  ];
}

/** The value the test files hold at element `e` of kind `k`, layer `l`: distinct, exact in f32. */
function value(k: number, l: number, e: number): number {
  return (k + 1) * 1000 + l * 100 + e + 0.25;
}

/** Header fields to write instead of the right ones, to make bad files. */
type HeaderEdit = Partial<Record<number, number>>;

/**
 * An llm.c model file for {@linkcode SMALL}, written with DataView: each tensor filled with
 * {@linkcode value}, wte's padding rows zero; fp32 (version 3) or bf16 (version 5, the top
 * half of each fp32: llm.c rounds, the reader only widens).
 */
function smallModelBytes(dtype: "fp32" | "bf16", edit: HeaderEdit = {}, extra = 0): Uint8Array {
  const width = dtype === "fp32" ? 4 : 2;
  const values: number[] = [];
  smallKinds().forEach((kind, k) => {
    for (let l = 0; l < (kind.perLayer ? SMALL.n_layer : 1); l++) {
      for (let e = 0; e < kind.size; e++) {
        const padding = k === 0 && e >= SMALL.vocab_size * SMALL.n_embd;
        values.push(padding ? 0 : value(k, l, e));
      }
    }
  });
  const bytes = new Uint8Array(1024 + values.length * width + extra);
  const view = new DataView(bytes.buffer);
  const header = [20240326, dtype === "fp32" ? 3 : 5, 3, 5, 2, 2, 4, 8];
  for (const [i, v] of Object.entries(edit)) header[Number(i)] = v!;
  header.forEach((v, i) => view.setInt32(4 * i, v, true));
  const f32 = new DataView(new ArrayBuffer(4));
  values.forEach((v, i) => {
    if (dtype === "fp32") view.setFloat32(1024 + 4 * i, v, true);
    else {
      f32.setFloat32(0, v, true);
      view.setUint16(1024 + 2 * i, f32.getUint16(2, true), true); // the high half
    }
  });
  return bytes;
}

/** `v` with its low 16 bits dropped, as a bf16 file holds it. */
function bf16Of(v: number): number {
  const f = new DataView(new ArrayBuffer(4));
  f.setFloat32(0, v, true);
  f.setUint16(0, 0, true);
  return f.getFloat32(0, true);
}

async function tempFile(bytes: Uint8Array, name = "model.bin"): Promise<string> {
  const path = join(await Deno.makeTempDir(), name);
  await Deno.writeFile(path, bytes);
  return path;
}

for (const dtype of ["fp32", "bf16"] as const) {
  Deno.test(`readLlmcModel: a ${dtype} file written from llm.c's layout, value by value`, async () => {
    const path = await tempFile(smallModelBytes(dtype));
    const m = await readLlmcModel(path);
    assertEquals(m.config, { block_size: 3, vocab_size: 5, n_layer: 2, n_head: 2, n_embd: 4 });
    assertEquals(m.paddedVocabSize, 8);
    assertEquals(m.dtype, dtype === "fp32" ? "float32" : "bfloat16");
    smallKinds().forEach((kind, k) => {
      for (let l = 0; l < (kind.perLayer ? SMALL.n_layer : 1); l++) {
        const name = kind.perLayer ? `transformer.h.${l}.${kind.name}` : kind.name;
        const data = m.weights.get(name);
        ok(data, `${name} is read`);
        // wte keeps its vocab_size rows only; every other tensor all of its values
        const size = k === 0 ? SMALL.vocab_size * SMALL.n_embd : kind.size;
        assertEquals(data.length, size, name);
        for (let e = 0; e < size; e++) {
          const expected = dtype === "fp32" ? value(k, l, e) : bf16Of(value(k, l, e));
          if (data[e] !== expected) {
            throw new Error(`${name}[${e}] is ${data[e]}, expected ${expected}`);
          }
        }
      }
    });
    // in the order of PyTorch's named_parameters: layer by layer
    const perLayer = smallKinds().filter((k) => k.perLayer).map((k) => k.name);
    assertEquals([...m.weights.keys()], [
      "transformer.wte.weight",
      "transformer.wpe.weight",
      ...perLayer.map((n) => `transformer.h.0.${n}`),
      ...perLayer.map((n) => `transformer.h.1.${n}`),
      "transformer.ln_f.weight",
      "transformer.ln_f.bias",
    ]);
  });
}

Deno.test("readLlmcModel: the file loads into GPT with loadStateDict, wte tied to lm_head", async () => {
  const path = await tempFile(smallModelBytes("fp32"));
  const { config, weights } = await readLlmcModel(path);
  const model = new GPT(new CpuBackend(), config, { skipInit: true });
  model.loadStateDict(weights, path);
  const wte = (await model.lm_head.weight.toArray()) as Float32Array;
  assertEquals(Array.from(wte.subarray(0, 3)), [1000.25, 1001.25, 1002.25]);
  assertEquals(wte.length, 5 * 4);
});

Deno.test("readLlmcModel: bad files fail naming the file, what was expected and what was found", async () => {
  const cases: [string, Uint8Array, string][] = [
    [
      "magic",
      smallModelBytes("fp32", { 0: 20240520 }),
      "expected the llm.c GPT-2 model magic 20240326, found 20240520 (an llm.c GPT-2 token shard)",
    ],
    [
      "version",
      smallModelBytes("fp32", { 1: 4 }),
      "expected llm.c model version 3 (fp32) or 5 (bf16), found 4",
    ],
    [
      "truncated",
      smallModelBytes("fp32").subarray(0, 2000),
      "the model file is truncated: expected 3184 bytes for 540 float32 parameters of " +
      '{"n_layer":2,"n_head":2,"n_embd":4,"block_size":3,"vocab_size":5,"padded_vocab_size":8}, ' +
      "found 2000",
    ],
    [
      "longer",
      smallModelBytes("bf16", {}, 6),
      "the model file is longer than its header says: expected 2104 bytes for 540 bfloat16 " +
      'parameters of {"n_layer":2,"n_head":2,"n_embd":4,"block_size":3,"vocab_size":5,' +
      '"padded_vocab_size":8}, found 2110',
    ],
    [
      "heads",
      smallModelBytes("fp32", { 5: 3 }),
      "expected n_embd divisible by n_head, found n_embd 4 and n_head 3",
    ],
    [
      "padding",
      smallModelBytes("fp32", { 7: 4 }),
      "expected padded_vocab_size (header[7]) >= vocab_size 5, found 4",
    ],
    [
      "zero",
      smallModelBytes("fp32", { 4: 0 }),
      "expected a positive n_layer (header[4]), found 0",
    ],
    [
      "short",
      new Uint8Array(10),
      "expected an llm.c model file of at least 1024 bytes (its header), found 10",
    ],
  ];
  for (const [label, bytes, message] of cases) {
    const path = await tempFile(bytes, `${label}.bin`);
    await rejects(readLlmcModel(path), { message: `${path}: ${message}` }, label);
  }
  await rejects(
    readLlmcModel("/nonexistent/gpt2_124M.bin"),
    /^Error: Cannot read the llm\.c model file \/nonexistent\/gpt2_124M\.bin: /,
  );
});

Deno.test("writeLlmcModel: the tiny reference model round-trips to the bit, with PyTorch's logits", async () => {
  const backend = new CpuBackend();
  const original = await fromPretrained(backend, tinyDir);
  const path = join(await Deno.makeTempDir(), "tiny.bin");
  await writeLlmcModel(path, original);

  // the header and layout, read here with DataView: vocab 64 padded to 128 with zero rows
  const bytes = await Deno.readFile(path);
  const view = new DataView(bytes.buffer);
  const header = Array.from({ length: 8 }, (_, i) => view.getInt32(4 * i, true));
  assertEquals(header, [20240326, 3, 16, 64, 2, 4, 32, 128]);
  ok(Array.from({ length: 248 }, (_, i) => view.getInt32(32 + 4 * i, true)).every((v) => v === 0));
  const C = 32, params = 28032; // the reference's num_params, wte counted once at 64 rows
  assertEquals(bytes.length, 1024 + 4 * (params + 64 * C));
  const float = (i: number) => view.getFloat32(1024 + 4 * i, true);
  ok(Array.from({ length: 64 * C }, (_, i) => float(64 * C + i)).every((v) => v === 0));
  // c_attn of layer 0 comes after wte, wpe and both layers' ln_1: [out, in], where the
  // safetensors file (Conv1D) holds it [in, out]
  const st = await readSafetensors(join(tinyDir, "model.safetensors"));
  const conv1d = toFloat32(st.tensors.get("h.0.attn.c_attn.weight")!); // [32, 96]
  const cAttn = (128 + 16) * C + 2 * 2 * C;
  for (let r = 0; r < 3 * C; r++) {
    for (let c = 0; c < C; c++) {
      const found = float(cAttn + r * C + c), expected = conv1d[c * 3 * C + r];
      if (found !== expected) {
        throw new Error(`c_attn[${r}][${c}] is ${found}, expected ${expected}`);
      }
    }
  }

  const read = await readLlmcModel(path);
  assertEquals(read.config, original.config);
  const state = await original.stateDict();
  assertEquals([...read.weights.keys()], [...state.keys()]);
  for (const [name, t] of state) assertSameBits(name, read.weights.get(name)!, t.data);

  const loaded = new GPT(backend, read.config, { skipInit: true });
  loaded.loadStateDict(read.weights, path);
  const ref = await loadReference();
  const idxStored = ref.tensors.get("input.idx")!;
  const idx = Tensor.from(backend, toInt32(idxStored), idxStored.shape);
  const a = (await original.forward(idx).logits.toArray()) as Float32Array;
  const b = (await loaded.forward(idx).logits.toArray()) as Float32Array;
  assertSameBits("logits", b, a);
  assertClose("logits", b, toFloat32(ref.tensors.get("expected.logits")!), {
    rtol: 1e-5,
    atol: 1e-5,
  });
});

Deno.test("writeLlmcWeights: missing, unexpected and mis-sized tensors are errors, nothing written", async () => {
  const { config, weights } = decodeLlmcModel(smallModelBytes("fp32"), "small");
  const dir = await Deno.makeTempDir();
  const path = join(dir, "out.bin");
  const edited = (edit: (w: Map<string, Float32Array>) => void) => {
    const w = new Map(weights);
    edit(w);
    return w;
  };
  await rejects(
    writeLlmcWeights(path, config, edited((w) => w.delete("transformer.h.1.ln_2.bias"))),
    {
      message:
        "Expected the tensors of a GPT-2 for an llm.c model file: missing transformer.h.1.ln_2.bias",
    },
  );
  await rejects(
    writeLlmcWeights(path, config, edited((w) => w.set("lm_head.weight", new Float32Array(20)))),
    {
      message: "Expected the tensors of a GPT-2 for an llm.c model file: unexpected lm_head.weight",
    },
  );
  await rejects(
    writeLlmcWeights(
      path,
      config,
      edited((w) => w.set("transformer.wpe.weight", new Float32Array(8))),
    ),
    { message: 'Expected 12 values in tensor "transformer.wpe.weight", found 8' },
  );
  assertEquals([...Deno.readDirSync(dir)], []);
  // and the tensors as read write the same tensors, wte padded to 128 rows as llm.c pads
  await writeLlmcWeights(path, config, weights);
  const again = await readLlmcModel(path);
  assertEquals(again.paddedVocabSize, 128);
  assertEquals(again.weights, weights);
  assertEquals((await Deno.stat(path)).size, 1024 + 4 * (540 - 8 * 4 + 128 * 4));
});

Deno.test("writeLlmcWeights: a model with the speedrun's options is refused, naming them", async () => {
  const { writeLlmcWeights } = await import("../../lib/io/llmc.ts");
  const config = { block_size: 8, vocab_size: 16, n_layer: 1, n_head: 1, n_embd: 4 };
  for (
    const [options, named] of [
      [{ pos: "rotary" }, "pos rotary"],
      [{ qk_norm: true, mlp: "relu2" }, "mlp relu2, qk_norm"],
      [{ untie_head: true }, "untie_head"],
    ] as const
  ) {
    const path = await Deno.makeTempFile({ suffix: ".bin" });
    await rejects(
      writeLlmcWeights(path, { ...config, ...options }, new Map()),
      new RegExp(`GPT-2 as the lecture builds it; this model has ${named}$`),
    );
    await Deno.remove(path);
  }
});
