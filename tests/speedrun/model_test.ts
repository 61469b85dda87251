// lib/speedrun/ops.ts (ReLU², QK-norm, rotary) against central differences and against direct
// formulas written here; the model they serve (lib/speedrun/model.ts, config.ts): parameters,
// init, generation with the KV cache, config.json through lib/weights/folder.ts.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { KVCache } from "../../lib/model/kv_cache.ts";
import type { SpeedrunGPTConfig } from "../../lib/speedrun/config.ts";
import { createGPT, SpeedrunGPT } from "../../lib/speedrun/model.ts";
import * as ops from "../../lib/speedrun/ops.ts";
import { loadModelFolder, saveModelFolder } from "../../lib/weights/folder.ts";
import { Generator } from "../../lib/model/random.ts";
import { noGrad, Tensor } from "../../lib/model/tensor.ts";
import { assertClose } from "../support.ts";
import { gradcheck as checkGradients } from "../model/gradcheck.ts";

const backend = new CpuBackend();
const rng = new Generator(11);

function randn(shape: number[], std = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(backend, rng.fillNormal(new Float32Array(n), 0, std), shape, true);
}

/** d(sum(f(x) * R))/dx from backward() against central differences (gradcheck.ts). */
function gradcheck(name: string, x: Tensor, f: (x: Tensor) => Tensor): Promise<void> {
  return checkGradients(name, [x], ([t]) => f(t), { backend, rng, tolerance: 3e-3 });
}

Deno.test("relu2: max(x, 0)² and its gradient", async () => {
  const x = randn([3, 7]);
  const data = (await x.toArray()) as Float32Array;
  const expected = Array.from(data, (v) => Math.max(v, 0) ** 2);
  assertClose("relu2", (await ops.relu2(x).toArray()) as Float32Array, expected);
  await gradcheck("relu2", x, ops.relu2);
});

// B=2, T=3, 2 heads of 4: C = 8, qkv (2, 3, 24)
const [B, T, NH, HD] = [2, 3, 2, 4], C = NH * HD;

Deno.test("qkNorm: each head of q and k over its root mean square (eps 2^-23), v untouched", async () => {
  const qkv = randn([B, T, 3 * C], 2);
  const x = (await qkv.toArray()) as Float32Array;
  const expected = Float64Array.from(x);
  for (let r = 0; r < B * T; r++) {
    for (let h = 0; h < 2 * NH; h++) {
      const o = r * 3 * C + h * HD;
      const head = Array.from(x.subarray(o, o + HD));
      const rms = Math.sqrt(head.reduce((s, v) => s + v * v, 0) / HD + 2 ** -23);
      head.forEach((v, i) => expected[o + i] = v / rms);
    }
  }
  assertClose("qkNorm", (await ops.qkNorm(qkv, NH).toArray()) as Float32Array, expected, {
    rtol: 1e-5,
    atol: 1e-6,
  });
  await gradcheck("qkNorm", qkv, (t) => ops.qkNorm(t, NH));
});

Deno.test("rotary: each pair (i, i + d/2) of q and k turned by -pos * 10000^(-2i/d), v untouched", async () => {
  const qkv = randn([B, T, 3 * C]);
  const pos0 = 5;
  const x = (await qkv.toArray()) as Float32Array;
  const expected = Float64Array.from(x);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < 2 * NH; h++) {
        const o = (b * T + t) * 3 * C + h * HD;
        for (let i = 0; i < HD / 2; i++) {
          // (x1 + i x2) e^{-i theta}, theta = pos / 10000^(2i/d)
          const theta = (pos0 + t) / 10000 ** ((2 * i) / HD);
          const x1 = x[o + i], x2 = x[o + HD / 2 + i];
          expected[o + i] = x1 * Math.cos(theta) + x2 * Math.sin(theta);
          expected[o + HD / 2 + i] = x2 * Math.cos(theta) - x1 * Math.sin(theta);
        }
      }
    }
  }
  const out = (await ops.rotary(qkv, NH, pos0).toArray()) as Float32Array;
  assertClose("rotary", out, expected, { rtol: 1e-5, atol: 1e-6 });
  await gradcheck("rotary", qkv, (t) => ops.rotary(t, NH, 2));
});

Deno.test("rotary: a query-key product depends on the positions' difference only", async () => {
  // one sequence of T = 2: q of position 0 against k of position 1, shifted by 7
  const qkv = randn([1, 2, 3 * C]);
  const dot = async (pos0: number): Promise<number> => {
    const y = (await ops.rotary(qkv, NH, pos0).toArray()) as Float32Array;
    let s = 0;
    for (let i = 0; i < HD; i++) s += y[i] * y[3 * C + C + i]; // head 0: q at t=0, k at t=1
    return s;
  };
  const [at0, at7] = [await dot(0), await dot(7)];
  ok(Math.abs(at0 - at7) < 1e-5 * (1 + Math.abs(at0)), `${at0} vs ${at7}`);
});

Deno.test("speedrun ops: a backend without hostView is refused, naming the option", () => {
  const noHost = Object.assign(Object.create(backend), { hostView: undefined });
  const x = new Tensor(noHost, backend.alloc(4, "f32"), [4]);
  throws(() => ops.relu2(x), /--mlp relu2 runs on backends whose buffers are host memory/);
  const qkv = new Tensor(noHost, backend.alloc(3 * C, "f32"), [1, 1, 3 * C]);
  throws(() => ops.qkNorm(qkv, NH), /--qk-norm runs on backends/);
  throws(() => ops.rotary(qkv, NH), /--pos rotary runs on backends/);
});

const SHAPE = { n_layer: 2, n_head: 2, n_embd: 16, block_size: 16, vocab_size: 64 };
const SPEEDRUN: SpeedrunGPTConfig = {
  ...SHAPE,
  mlp: "relu2",
  qk_norm: true,
  pos: "rotary",
  zero_init_proj: true,
  untie_head: true,
};

Deno.test("GPT options: no wpe with rotary, a separate lm_head, c_proj at zero", async () => {
  const model = new SpeedrunGPT(backend, SPEEDRUN, { seed: 3 });
  const names = model.namedParameters().map(([n]) => n);
  ok(!names.includes("transformer.wpe.weight"), names.join(", "));
  assertEquals(names[names.length - 1], "lm_head.weight");
  ok(model.lm_head.weight !== model.transformer.wte.weight);
  const state = await model.stateDict();
  for (const [name, t] of state) {
    if (name.endsWith("c_proj.weight")) ok(t.data.every((v) => v === 0), name);
  }
  ok(state.get("lm_head.weight")!.data.some((v) => v !== 0));
  // the GPT-2 default keeps wpe, the tie and the scaled c_proj
  const plain = new GPT(backend, SHAPE, { seed: 3 });
  ok(plain.namedParameters().some(([n]) => n === "transformer.wpe.weight"));
  ok(plain.lm_head.weight === plain.transformer.wte.weight);
});

Deno.test("GPT options: generation with the KV cache gives forward's logits (rotary positions)", async () => {
  const model = new SpeedrunGPT(backend, { ...SPEEDRUN, zero_init_proj: false }, { seed: 5 });
  const tokens = Int32Array.from([3, 9, 27, 17, 51, 1]);
  const idx = Tensor.from(backend, tokens, [1, tokens.length]);
  const full = (await noGrad(() => model.forward(idx).logits.toArray())) as Float32Array;
  const cache = new KVCache(backend, model.config, 1);
  const parts: number[] = [];
  await noGrad(async () => {
    const prompt = Tensor.from(backend, tokens.slice(0, 4), [1, 4]);
    parts.push(...(await model.forwardDecode(prompt, cache).toArray()));
    for (let t = 4; t < tokens.length; t++) {
      const one = Tensor.from(backend, tokens.slice(t, t + 1), [1, 1]);
      parts.push(...(await model.forwardDecode(one, cache).toArray()));
    }
  });
  assertClose("decoded logits", parts, full, { rtol: 1e-4, atol: 1e-5 });
});

Deno.test("GPT options: config.json records the options that are on, and they reload", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = new SpeedrunGPT(backend, { ...SPEEDRUN, zero_init_proj: false }, { seed: 7 });
    await saveModelFolder(model, `${dir}/speedrun`);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/speedrun/config.json`));
    assertEquals(
      [config.mlp, config.qk_norm, config.pos, config.untie_head, config.zero_init_proj],
      ["relu2", true, "rotary", true, undefined],
    );
    const back = await loadModelFolder(backend, `${dir}/speedrun`);
    ok(back instanceof SpeedrunGPT, "config.json with the options gives the speedrun's model");
    assertEquals(back.config, {
      ...SHAPE,
      mlp: "relu2",
      qk_norm: true,
      pos: "rotary",
      untie_head: true,
    });
    const idx = Tensor.from(backend, Int32Array.from([1, 2, 3]), [1, 3]);
    const a = await noGrad(() => model.forward(idx).logits.toArray());
    const b = await noGrad(() => back.forward(idx).logits.toArray());
    assertEquals(Array.from(b), Array.from(a));

    await saveModelFolder(new GPT(backend, SHAPE), `${dir}/plain`);
    const plain = JSON.parse(await Deno.readTextFile(`${dir}/plain/config.json`));
    const plainBack = await loadModelFolder(backend, `${dir}/plain`);
    ok(!(plainBack instanceof SpeedrunGPT), "GPT-2's config.json gives the lecture's model");
    for (const field of ["mlp", "qk_norm", "pos", "zero_init_proj", "untie_head"]) {
      ok(!(field in plain), `GPT-2's config.json holds ${field}`);
    }
    const bad = `${dir}/bad`;
    await Deno.mkdir(bad);
    await Deno.writeTextFile(`${bad}/config.json`, JSON.stringify({ ...plain, pos: "alibi" }));
    await Deno.copyFile(`${dir}/plain/model.safetensors`, `${bad}/model.safetensors`);
    await loadModelFolder(backend, bad).then(
      () => ok(false, "a bad pos loaded"),
      (e) =>
        ok(/expected pos to be one of learned, rotary, found "alibi"/.test(e.message), e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("GPT options: the whole recipe trains (a gradient reaches every parameter)", () => {
  const model = new SpeedrunGPT(backend, { ...SPEEDRUN, zero_init_proj: false }, { seed: 9 });
  const idx = Tensor.from(backend, Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
  const targets = Tensor.from(backend, Int32Array.from([2, 3, 4, 5, 6, 7]), [2, 3]);
  const { loss } = model.forward(idx, targets);
  loss!.backward();
  for (const [name, p] of model.namedParameters()) ok(p.grad !== null, `${name} has no gradient`);
});

Deno.test("createGPT: the speedrun's model where an option is on, the lecture's otherwise, same init", async () => {
  ok(createGPT(backend, SPEEDRUN) instanceof SpeedrunGPT);
  ok(createGPT(backend, { ...SHAPE, mlp: "relu2" }) instanceof SpeedrunGPT);
  const plain = createGPT(backend, { ...SHAPE, mlp: "gelu", pos: "learned" }, { seed: 4 });
  ok(!(plain instanceof SpeedrunGPT) && plain instanceof GPT);
  // the options off: the speedrun's classes compute and initialise exactly as the lecture's
  const a = new SpeedrunGPT(backend, SHAPE, { seed: 4 }), b = new GPT(backend, SHAPE, { seed: 4 });
  assertEquals(a.namedParameters().map(([n]) => n), b.namedParameters().map(([n]) => n));
  const idx = Tensor.from(backend, Int32Array.from([5, 6, 7]), [1, 3]);
  const la = await noGrad(() => a.forward(idx).logits.toArray());
  const lb = await noGrad(() => b.forward(idx).logits.toArray());
  assertEquals(Array.from(la), Array.from(lb));
});
