// lib/backends/native/naive_attention.ts, the speedup ladder's attention below the flash rung:
// its output and gradients against the reference backend's attention (which also stores the
// probabilities) on shapes off the GEMM's tile sizes, the (B, NH, T, T) probabilities it keeps,
// causal rows that sum to one; and that the ladder's rungs (lib/backends/native/ladder.ts) run
// it below flash attention and the C kernel from the flash rung on.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import type { AttentionDims } from "../../lib/backend.ts";
import { CpuBackend, CpuBuffer } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { LADDER, rungBackend } from "../../lib/backends/native/ladder.ts";
import {
  naiveAttentionBackward,
  naiveAttentionForward,
} from "../../lib/backends/native/naive_attention.ts";
import { Generator } from "../../lib/model/random.ts";

const native = await NativeBackend.create();
const reference = new CpuBackend();
const rng = new Generator(3);

const host = (n: number, random = false) =>
  new CpuBuffer(random ? rng.fillNormal(new Float32Array(n), 0, 1) : new Float32Array(n), "f32");

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const dims of [{ B: 2, T: 37, C: 24, NH: 3 }, { B: 1, T: 130, C: 128, NH: 2 }]) {
  const { B, T, C, NH } = dims;
  Deno.test(`naive attention at B=${B}, T=${T}, C=${C}, NH=${NH} matches the reference`, () => {
    const qkv = host(B * T * 3 * C, true), dout = host(B * T * C, true);
    const out = host(B * T * C), outRef = host(B * T * C);
    const saved = naiveAttentionForward(native, out, qkv, dims);
    const savedRef = reference.attentionForward(outRef, qkv, dims);
    ok(maxDiff(out.data as Float32Array, outRef.data as Float32Array) < 1e-5);
    // the same probabilities as the reference keeps: rows over 0..t summing to one, zero after
    const p = (saved as CpuBuffer).data as Float32Array;
    assertEquals(p.length, B * NH * T * T);
    ok(maxDiff(p, (savedRef as CpuBuffer).data as Float32Array) < 1e-6);
    const row = p.subarray(5 * T, 6 * T);
    ok(Math.abs(row.subarray(0, 6).reduce((a, b) => a + b, 0) - 1) < 1e-6);
    ok(row.subarray(6).every((x) => x === 0));
    // gradients accumulate into dqkv, as every backend's attentionBackward does
    const start = rng.fillNormal(new Float32Array(B * T * 3 * C), 0, 1);
    const dqkv = new CpuBuffer(start.slice(), "f32"), dqkvRef = new CpuBuffer(start.slice(), "f32");
    naiveAttentionBackward(native, dqkv, dout, qkv, saved, dims);
    reference.attentionBackward(dqkvRef, dout, qkv, savedRef, dims);
    const d = dqkv.data as Float32Array, dRef = dqkvRef.data as Float32Array;
    ok(maxDiff(d, dRef) < 2e-5, `max difference ${maxDiff(d, dRef)}`);
    ok(maxDiff(d, start) > 0.1); // it did add something
  });
}

Deno.test("naive attention's backward refuses saved probabilities of another shape", () => {
  const dims: AttentionDims = { B: 1, T: 8, C: 8, NH: 2 };
  throws(
    () => naiveAttentionBackward(native, host(8 * 24), host(64), host(8 * 24), host(64), dims),
    /expected 128 saved probabilities, found 64/,
  );
});

Deno.test("the ladder's rungs run naive attention below the flash rung, the C kernel from it on", () => {
  const dims: AttentionDims = { B: 1, T: 16, C: 16, NH: 2 };
  const flashAt = LADDER.findIndex((r) => r.name === "flash attention");
  ok(flashAt > 1);
  for (const [i, rung] of LADDER.entries()) {
    if (rung.reference === "all") continue;
    const saved = rungBackend(native, rung).attentionForward(
      host(16 * 16),
      host(16 * 48, true),
      dims,
    );
    // naive keeps (B, NH, T, T) probabilities; flash keeps out and one statistic per row
    const expected = i < flashAt ? 2 * 16 * 16 : 16 * 16 + 2 * 16;
    assertEquals([rung.name, saved.length], [rung.name, expected]);
  }
});
