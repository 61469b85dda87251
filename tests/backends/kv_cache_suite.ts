/**
 * Generation's KV cache on one backend, written once and run on every backend: the
 * `kvCacheAppend` and `attentionDecode` kernels against the reference backend, and against
 * the training path's `attentionForward` over the whole prefix, on odd shapes (new positions
 * T = 1 .. 37 after 0 .. 36 cached ones, head sizes 16 and 64, caches not full); then on the
 * tiny reference GPT-2s, generation with the cache equal to generation without it: greedy
 * token for token (past the block size too, where the context is cropped), top-k
 * probabilities within 1e-5, and seeded top-k sampling.
 *
 * @module
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join } from "node:path";
import type { Backend, KVCacheDims } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { KVCache } from "../../lib/model/kv_cache.ts";
import { Generator } from "../../lib/model/random.ts";
import { generate, softmax, topK } from "../../lib/model/sample.ts";
import { noGrad, Tensor } from "../../lib/model/tensor.ts";
import { assertClose, referenceDir } from "../support.ts";

const cpu = new CpuBackend();
const rng = new Generator(7);

function randn(n: number): Float32Array {
  return rng.fillNormal(new Float32Array(n), 0, 1);
}

/** Options of `kvCacheSuite`. */
export interface KVCacheSuiteOptions {
  /**
   * Fewer kernel shapes and generated tokens, for slow stand-ins (WebGPU on a software
   * adapter, the CUDA emulator); default false.
   */
  small?: boolean;
}

/** One kernel case: B sequences, `pos` cached positions, T new ones, heads of `hs`. */
export interface KVCacheCase {
  B: number;
  pos: number;
  T: number;
  NH: number;
  hs: number;
  /** Free positions left in the cache after the new ones. */
  spare: number;
}

const CASES: KVCacheCase[] = [
  { B: 1, pos: 0, T: 1, NH: 1, hs: 16, spare: 0 },
  { B: 2, pos: 0, T: 37, NH: 3, hs: 16, spare: 5 },
  { B: 1, pos: 36, T: 1, NH: 2, hs: 64, spare: 0 },
  { B: 3, pos: 5, T: 7, NH: 3, hs: 16, spare: 2 },
  { B: 2, pos: 20, T: 13, NH: 2, hs: 64, spare: 3 },
  { B: 1, pos: 1, T: 2, NH: 5, hs: 64, spare: 30 },
  { B: 2, pos: 30, T: 1, NH: 4, hs: 8, spare: 1 },
];
const SMALL_CASES = [CASES[0], CASES[2], CASES[3], CASES[4]];

/** Registers the KV-cache tests for the backend `makeBackend` makes (once, on first use). */
export function kvCacheSuite(
  label: string,
  makeBackend: () => Backend | Promise<Backend>,
  { small = false }: KVCacheSuiteOptions = {},
): void {
  let made: Promise<Backend> | null = null;
  const backend = (): Promise<Backend> => made ??= Promise.resolve(makeBackend());
  registerKernelTests(label, backend, small ? SMALL_CASES : CASES);
  registerGenerationTests(label, backend, small);
}

function registerKernelTests(
  label: string,
  backend: () => Promise<Backend>,
  cases: KVCacheCase[],
): void {
  Deno.test(`${label}: kvCacheAppend and attentionDecode equal the reference's and attentionForward's rows`, async () => {
    const be = await backend();
    for (const c of cases) await checkKVCacheCase(be, c);
  });

  Deno.test(`${label}: attentionDecode one position at a time equals attentionForward's rows`, async () => {
    const be = await backend();
    const [B, T, NH, hs] = [2, 19, 3, 16], C = NH * hs;
    const qkv = randn(B * T * 3 * C);
    const expected = await fullAttention(qkv, { B, T, C, NH });
    const k = be.alloc(B * T * C, "f32"), v = be.alloc(B * T * C, "f32");
    for (let t = 0; t < T; t++) {
      const dims = { B, T: 1, C, NH, pos: t, maxT: T };
      const row = be.upload(rows(qkv, B, T, 3 * C, t, 1));
      const out = be.alloc(B * C, "f32");
      be.kvCacheAppend(k, v, row, dims);
      be.attentionDecode(out, row, k, v, dims);
      assertClose(
        `step ${t}`,
        await be.read(out),
        rows(expected, B, T, C, t, 1),
        { rtol: 1e-5, atol: 1e-5 },
      );
    }
  });
}

/**
 * One kernel case on `be`: the prefix appended in one call, the new positions in a second, then decoded;
 * the caches must equal the reference's exactly (they are copies), the output the
 * reference's decode and the rows pos .. pos + T - 1 of attentionForward over everything.
 */
export async function checkKVCacheCase(
  be: Backend,
  { B, pos, T, NH, hs, spare }: KVCacheCase,
): Promise<void> {
  const C = NH * hs, total = pos + T, maxT = total + spare;
  const tag = `B=${B} pos=${pos} T=${T} NH=${NH} hs=${hs} maxT=${maxT}`;
  const qkv = randn(B * total * 3 * C);
  const prefix = rows(qkv, B, total, 3 * C, 0, pos), fresh = rows(qkv, B, total, 3 * C, pos, T);
  const run = async (b: Backend) => {
    const k = b.alloc(B * maxT * C, "f32"), v = b.alloc(B * maxT * C, "f32");
    if (pos > 0) b.kvCacheAppend(k, v, b.upload(prefix), { B, T: pos, C, NH, pos: 0, maxT });
    const dims: KVCacheDims = { B, T, C, NH, pos, maxT };
    const x = b.upload(fresh), out = b.alloc(B * T * C, "f32");
    b.kvCacheAppend(k, v, x, dims);
    b.attentionDecode(out, x, k, v, dims);
    return { k: await b.read(k), v: await b.read(v), out: await b.read(out) };
  };
  const ref = await run(cpu), got = await run(be);
  assertClose(`${tag}: key cache`, got.k, ref.k, { rtol: 0, atol: 0 });
  assertClose(`${tag}: value cache`, got.v, ref.v, { rtol: 0, atol: 0 });
  assertClose(`${tag}: out`, got.out, ref.out, { rtol: 1e-5, atol: 1e-5 });
  const full = await fullAttention(qkv, { B, T: total, C, NH });
  assertClose(`${tag}: out against attentionForward`, got.out, rows(full, B, total, C, pos, T), {
    rtol: 1e-5,
    atol: 1e-5,
  });
}

/** The reference's attentionForward over the whole sequences. */
async function fullAttention(
  qkv: Float32Array,
  dims: { B: number; T: number; C: number; NH: number },
): Promise<Float32Array> {
  const out = cpu.alloc(dims.B * dims.T * dims.C, "f32");
  cpu.attentionForward(out, cpu.upload(qkv), dims);
  return (await cpu.read(out)) as Float32Array;
}

/** Positions t0 .. t0 + n - 1 of every sequence of x (B, T, width). */
function rows(
  x: Float32Array,
  B: number,
  T: number,
  width: number,
  t0: number,
  n: number,
): Float32Array {
  const out = new Float32Array(B * n * width);
  for (let b = 0; b < B; b++) {
    out.set(x.subarray((b * T + t0) * width, (b * T + t0 + n) * width), b * n * width);
  }
  return out;
}

function registerGenerationTests(
  label: string,
  backend: () => Promise<Backend>,
  small: boolean,
): void {
  const tiny = join(referenceDir, "tiny-gpt2"); // block size 16, vocab 64
  const prompts = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]];

  Deno.test(`${label}: tiny GPT-2: greedy generation with the KV cache equals it without, past the block size too`, async () => {
    const model = await fromPretrained(await backend(), tiny);
    // 12: inside the block; 16: the cache's end exactly; past it the context is cropped
    for (const maxLength of small ? [12, 20] : [12, 16, 17, 30]) {
      const cached = await generate(model, prompts, { maxLength, greedy: true });
      const plain = await generate(model, prompts, { maxLength, greedy: true, kvCache: false });
      assertEquals(cached, plain, `maxLength ${maxLength}`);
    }
  });

  Deno.test(`${label}: tiny GPT-2: top-50 probabilities through the KV cache within 1e-5 of the full forward's`, async () => {
    const model = await fromPretrained(await backend(), tiny);
    const seq = [3, 14, 15, 9, 26, 53, 58, 9, 7, 9, 32, 38];
    const B = 1, V = model.config.vocab_size, promptLength = 4;
    await noGrad(async () => {
      const cache = new KVCache(model.backend, model.config, B);
      const decode = async (tokens: number[]) =>
        (await model.forwardDecode(
          Tensor.from(model.backend, Int32Array.from(tokens), [B, tokens.length]),
          cache,
        ).toArray()) as Float32Array;
      let logits = await decode(seq.slice(0, promptLength));
      for (let L = promptLength; L <= seq.length; L++) {
        if (L > promptLength) logits = await decode([seq[L - 1]]);
        const full = (await model.forward(
          Tensor.from(model.backend, Int32Array.from(seq.slice(0, L)), [B, L]),
        ).logits.toArray()) as Float32Array;
        const got = topK(softmax(logits.subarray(logits.length - V)), 50);
        const want = topK(softmax(full.subarray(full.length - V)), 50);
        assertEquals(got.indices, want.indices, `length ${L}: top-50 tokens`);
        assertClose(`length ${L}: top-50 probabilities`, got.probs, want.probs, {
          rtol: 0,
          atol: 1e-5,
        });
      }
    });
  });

  Deno.test(`${label}: tiny GPT-2 (vocab 50257): seeded top-k sampling with the KV cache equals it without`, async () => {
    const model = await fromPretrained(
      await backend(),
      join(referenceDir, "tiny-gpt2-vocab50257"),
    );
    const maxLength = small ? 12 : 24;
    const sample = (kvCache: boolean) =>
      generate(model, prompts, { maxLength, generator: new Generator(42), kvCache });
    assertEquals(await sample(true), await sample(false));
  });
}
