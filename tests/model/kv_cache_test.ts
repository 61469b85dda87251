// lib/model/kv_cache.ts and GPT.forwardDecode on the reference backend and the tiny reference
// GPT-2 (block size 16, vocab 64): the prompt's logits through the cache equal the full
// forward's at every position, each decoded token's too; the cache's bounds and errors;
// generate's prompt checks; benchGeneration (lib/bench/generation.ts); and `deno task sample`
// with and without the cache. Every backend's kernels and generation: tests/backends/
// *_kv_cache_test.ts (kv_cache_suite.ts).
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { benchGeneration, generationTable } from "../../lib/bench/generation.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { KVCache } from "../../lib/model/kv_cache.ts";
import { generate } from "../../lib/model/sample.ts";
import { noGrad, Tensor } from "../../lib/model/tensor.ts";
import { assertClose, referenceDir, runTask } from "../support.ts";

const backend = new CpuBackend();
const tinyDir = join(referenceDir, "tiny-gpt2");
const model = await fromPretrained(backend, tinyDir);
const V = model.config.vocab_size;

function ids(tokens: number[][]): Tensor {
  return Tensor.from(backend, Int32Array.from(tokens.flat()), [tokens.length, tokens[0].length]);
}

async function fullLogits(tokens: number[][]): Promise<Float32Array> {
  return (await noGrad(() => model.forward(ids(tokens)).logits.toArray())) as Float32Array;
}

Deno.test("forwardDecode: the prompt's logits equal forward's at every position, for each sequence", async () => {
  const prompts = [[3, 14, 15, 9, 26, 53, 58], [2, 7, 1, 8, 28, 18, 28]];
  const cache = new KVCache(backend, model.config, 2);
  const got = await noGrad(() => model.forwardDecode(ids(prompts), cache).toArray());
  assertEquals(cache.pos, 7);
  assertClose("prompt logits", got, await fullLogits(prompts), { rtol: 1e-5, atol: 1e-5 });
});

Deno.test("forwardDecode: one token at a time after the prompt, each step's logits equal forward's last row", async () => {
  const seq = [[5, 40, 8, 43, 11, 46, 14, 49, 17, 52, 20, 55, 23, 58, 26, 61]]; // 16: the block
  const cache = new KVCache(backend, model.config, 1);
  await noGrad(async () => {
    await model.forwardDecode(ids([seq[0].slice(0, 3)]), cache).toArray();
    for (let L = 4; L <= seq[0].length; L++) {
      const step = await model.forwardDecode(ids([[seq[0][L - 1]]]), cache).toArray();
      const full = await fullLogits([seq[0].slice(0, L)]);
      assertClose(`length ${L}`, step, full.subarray((L - 1) * V), { rtol: 1e-5, atol: 1e-5 });
    }
  });
  assertEquals([cache.pos, cache.free], [16, 0]);
});

Deno.test("KVCache: a full cache refuses more positions, saying how many it holds; reset starts over", async () => {
  const cache = new KVCache(backend, model.config, 1, 6);
  await noGrad(async () => {
    const first = await model.forwardDecode(ids([[1, 2, 3, 4, 5]]), cache).toArray();
    throws(
      () => model.forwardDecode(ids([[6, 7]]), cache),
      new RangeError(
        "KV cache: cannot add 2 positions: 5 of its 6 are filled (reset it, or crop the context)",
      ),
    );
    assertEquals(cache.pos, 5); // nothing half-done
    cache.reset();
    assertEquals([cache.pos, cache.free], [0, 6]);
    const again = await model.forwardDecode(ids([[1, 2, 3, 4, 5]]), cache).toArray();
    assertEquals(again, first);
  });
});

Deno.test("KVCache: sizes outside the model's are refused, naming the bound", async () => {
  throws(
    () => new KVCache(backend, model.config, 1, 17),
    new RangeError("KV cache: expected a capacity in [1, 16] (the block size), found 17"),
  );
  throws(
    () => new KVCache(backend, model.config, 0),
    new RangeError("KV cache: expected a batch of at least 1 sequence, found 0"),
  );
  const cache = new KVCache(backend, model.config, 2);
  assertEquals(cache.layers.length, model.config.n_layer);
  assertEquals(cache.layers[0].k.length, 2 * 16 * model.config.n_embd);
  await noGrad(() => {
    throws(
      () => model.forwardDecode(ids([[1, 2]]), cache),
      new RangeError("KV cache: expected a batch of 2 sequences, found 1"),
    );
  });
});

Deno.test("forwardDecode: refused with gradients on, since the cached attention has no backward", () => {
  const cache = new KVCache(backend, model.config, 1);
  throws(
    () => model.forwardDecode(ids([[1, 2]]), cache),
    new Error("forwardDecode has no backward: call it inside noGrad()"),
  );
});

Deno.test("generate: empty prompts and prompts of different lengths are errors, with or without the cache", async () => {
  for (const kvCache of [true, false]) {
    await rejects(
      generate(model, [[]], { maxLength: 4, greedy: true, kvCache }),
      new Error("Expected prompts of at least one token, found none"),
    );
    await rejects(
      generate(model, [[1, 2], [1, 2, 3]], { maxLength: 4, greedy: true, kvCache }),
      new Error("Expected prompts of the same length, found 2 and 3 tokens"),
    );
  }
  // a prompt already at maxLength comes back as it is
  assertEquals(await generate(model, [[1, 2, 3]], { maxLength: 3, greedy: true }), [[1, 2, 3]]);
});

Deno.test("generate: a prompt longer than the block size is cropped to its last block, with the cache as without", async () => {
  const prompt = Array.from({ length: 20 }, (_, i) => (i * 11 + 3) % V); // block size 16
  const options = { maxLength: 25, greedy: true };
  const cached = await generate(model, [prompt], options);
  assertEquals(cached, await generate(model, [prompt], { ...options, kvCache: false }));
  assertEquals(cached[0].length, 25);
  assertEquals(cached[0].slice(0, 20), prompt);
});

Deno.test("benchGeneration: times both paths on the given model; both produce the same tokens", async () => {
  const seen: [boolean, number][] = [];
  const r = await benchGeneration(backend, {
    model,
    tokens: 20, // past the block size of 16: the cache starts over there
    promptLength: 3,
    batch: 2,
    warmupTokens: 1,
    onToken: (kvCache, length) => seen.push([kvCache, length]),
  });
  assertEquals(r.sameTokens, true);
  assertEquals([r.withCache.kvCache, r.withoutCache.kvCache], [true, false]);
  assertEquals([r.withCache.tokens, r.withoutCache.tokens], [40, 40]);
  assertEquals(seen.length, 40); // 20 timed tokens per run, per step (both sequences at once)
  assertEquals(seen[0], [true, 4]);
  assertEquals(seen[39], [false, 23]);
  ok(r.withCache.tokensPerSec > 0 && r.withoutCache.tokensPerSec > 0);
  const table = generationTable(r);
  ok(table.includes("| on | 40 |") && table.includes("| off | 40 |"), table);
  ok(table.includes("same tokens: yes"), table);
});

Deno.test("sample task: the same text with --no-kv-cache, and tokens per second on the last line", async () => {
  const run = (...extra: string[]) =>
    runTask([
      "lib/cli/sample.ts",
      "--weights",
      tinyDir,
      "--backend",
      "cpu",
      "--prompt-ids",
      "5,40,8",
      "--max-length",
      "20",
      "--num-return-sequences",
      "2",
      "--json",
      ...extra,
    ]);
  const [cached, plain] = await Promise.all([run(), run("--no-kv-cache")]);
  assertEquals(cached.code, 0, cached.stderr);
  assertEquals(plain.code, 0, plain.stderr);
  assertEquals(cached.stdout, plain.stdout);
  assertEquals(cached.stdout.trim().split("\n").length, 2);
  const last = (s: string) => s.trim().split("\n").at(-1)!;
  ok(
    /^generated 34 tokens in [\d.]+ s: [\d.]+ tokens\/s \(KV cache on\)$/.test(last(cached.stderr)),
    cached.stderr,
  );
  ok(
    /^generated 34 tokens in [\d.]+ s: [\d.]+ tokens\/s \(KV cache off, --no-kv-cache\)$/.test(
      last(plain.stderr),
    ),
    plain.stderr,
  );
});
