// lib/train/optim.ts: clipGradNorm with a loss scale (the true norm, the same gradients as without,
// non-finite gradients left untouched), on the reference and the native backend.
import { ok, rejects } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { clipGradNorm } from "../../lib/train/optim.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose, assertSameBits } from "../support.ts";

/** Parameters with the given gradients (a few shapes, to cross tensors). */
function withGrads(be: CpuBackend, grads: Float32Array[]): Tensor[] {
  return grads.map((g) => {
    const p = Tensor.from(be, new Float32Array(g.length), [g.length], true);
    p.grad = Tensor.from(be, g, [g.length]);
    return p;
  });
}

function randomGrads(seed: number, sizes: number[], magnitude: number): Float32Array[] {
  let s = seed;
  const next = () => { // a small LCG: reproducible, no dependency on the model
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  };
  return sizes.map((n) => Float32Array.from({ length: n }, () => next() * magnitude));
}

async function gradsOf(params: Tensor[]): Promise<Float32Array[]> {
  return await Promise.all(params.map(async (p) => (await p.grad!.toArray()) as Float32Array));
}

Deno.test("clipGradNorm: with a scale, the true norm and the same gradients as without", async () => {
  const be = new CpuBackend();
  for (const maxNorm of [0.1, 1e3]) { // clipping, and not
    for (const scale of [2 ** 16, 1000, 1]) {
      const g = randomGrads(7, [300, 17, 64], 0.2);
      const plain = withGrads(be, g);
      const scaled = withGrads(be, g.map((a) => a.map((v) => v * scale)));
      const n0 = await clipGradNorm(plain, maxNorm);
      const n1 = await clipGradNorm(scaled, maxNorm, scale);
      ok(Math.abs(n1 - n0) <= 1e-6 * n0, `scale ${scale}, max ${maxNorm}: norm ${n1} vs ${n0}`);
      const [a, b] = [await gradsOf(plain), await gradsOf(scaled)];
      a.forEach((x, i) => assertClose(`grad ${i} (scale ${scale})`, b[i], x, { rtol: 1e-6 }));
    }
  }
  // without a scale, nothing changed: the norm of the raw gradients, clipped to maxNorm
  const g = randomGrads(3, [50], 1);
  const raw = Math.sqrt(g[0].reduce((s, v) => s + v * v, 0));
  const p = withGrads(be, g);
  ok(Math.abs((await clipGradNorm(p, 0.5)) - raw) < 1e-9 * raw);
  const after = (await gradsOf(p))[0];
  ok(Math.abs(Math.sqrt(after.reduce((s, v) => s + v * v, 0)) - 0.5) < 1e-5);
});

const native = await NativeBackend.create().catch(() => null);

Deno.test({
  name: "clipGradNorm (native, batched sumsOfSquares): with a scale, the same as without",
  ignore: native === null,
  async fn() {
    const be = native!;
    const make = (grads: Float32Array[]) =>
      grads.map((g) => {
        const p = Tensor.from(be, new Float32Array(g.length), [g.length], true);
        p.grad = Tensor.from(be, g, [g.length]);
        return p;
      });
    const g = randomGrads(11, [1000, 33, 7], 0.3);
    const plain = make(g), scaled = make(g.map((a) => a.map((v) => v * 2 ** 16)));
    const n0 = await clipGradNorm(plain, 1.0), n1 = await clipGradNorm(scaled, 1.0, 2 ** 16);
    ok(Math.abs(n1 - n0) <= 1e-6 * n0, `${n1} vs ${n0}`);
    const [a, b] = [await gradsOf(plain), await gradsOf(scaled)];
    a.forEach((x, i) => assertClose(`grad ${i}`, b[i], x, { rtol: 1e-6 }));
  },
});

Deno.test("clipGradNorm: with a scale, an inf or NaN gradient returns a non-finite norm and touches nothing", async () => {
  const be = new CpuBackend();
  for (const bad of [Infinity, -Infinity, NaN]) {
    const g = randomGrads(5, [40, 9], 1e4);
    g[1][3] = bad;
    const params = withGrads(be, g);
    const norm = await clipGradNorm(params, 1.0, 2 ** 16);
    ok(!Number.isFinite(norm), `norm ${norm} with a ${bad}`);
    const after = await gradsOf(params);
    after.forEach((a, i) => assertSameBits(`grad ${i}`, a, g[i]));
  }
  await rejects(clipGradNorm(withGrads(be, [new Float32Array(2)]), 1, 0), /scale must be/);
});
