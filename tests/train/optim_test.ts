// lib/train/optim.ts: clipGradNorm with a loss scale (the true norm, the same gradients as without,
// non-finite gradients left untouched), on the reference and the native backend; and
// AdamW.clipGradNorm, the clipping folded into the optimizer's step, against clipping in place.
import { ok, rejects } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { AdamW, clipGradNorm, MuonAndAdamW } from "../../lib/train/optim.ts";
import { Muon } from "../../lib/speedrun/muon.ts";
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

/** Parameters of the given shapes, random weights and gradients, the same for every seed. */
function paramsOf(be: CpuBackend, shapes: number[][], seed: number): Tensor[] {
  const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const weights = randomGrads(seed, sizes, 2), grads = randomGrads(seed + 1, sizes, 0.5);
  return shapes.map((shape, i) => {
    const p = Tensor.from(be, weights[i], shape, true);
    p.grad = Tensor.from(be, grads[i], shape);
    return p;
  });
}

/** AdamW (decay on the 2-D ones), or Muon for the 2-D ones and AdamW for the rest. */
function optimizerOf(params: Tensor[], kind: "adamw" | "muon"): AdamW {
  const twoD = params.filter((p) => p.shape.length === 2);
  const rest = params.filter((p) => p.shape.length !== 2);
  const options = { lr: 1e-3, betas: [0.9, 0.95] as [number, number], eps: 1e-8 };
  if (kind === "adamw") {
    return new AdamW(
      [{ params: twoD, weightDecay: 0.1 }, { params: rest, weightDecay: 0 }],
      options,
    );
  }
  return new MuonAndAdamW([{ params: rest, weightDecay: 0 }], options, new Muon(twoD), 20);
}

for (
  const [name, make] of [["reference", () => new CpuBackend()], ["native", () => native]] as const
) {
  Deno.test({
    name:
      `AdamW.clipGradNorm (${name}): folded into the step, the same weights to the bit as clipping in place first`,
    ignore: make() === null,
    async fn() {
      const be = make()!;
      const shapes = [[12, 7], [7], [5, 12], [33]];
      for (const kind of ["adamw", "muon"] as const) {
        for (const [maxNorm, scale] of [[0.05], [1e3], [0.05, 2 ** 12]] as [number, number?][]) {
          const tag = `${kind}, max ${maxNorm}, scale ${scale}`;
          const inPlace = paramsOf(be, shapes, 5), folded = paramsOf(be, shapes, 5);
          const a = optimizerOf(inPlace, kind), b = optimizerOf(folded, kind);
          for (let step = 0; step < 2; step++) {
            // each step's gradients fresh, as a backward pass leaves them
            const grads = randomGrads(20 + step, folded.map((p) => p.size), 0.5);
            for (const [i, g] of grads.entries()) {
              inPlace[i].grad = Tensor.from(be, g, inPlace[i].shape);
              folded[i].grad = Tensor.from(be, g, folded[i].shape);
            }
            const n0 = await clipGradNorm(a.parameters(), maxNorm, scale);
            const n1 = await b.clipGradNorm(maxNorm, scale);
            ok(n0 === n1, `${tag}: norm ${n1} vs ${n0}`);
            a.step();
            b.step();
            ok(b.gradScale === 1, `${tag}: the factor is used once`);
            if (kind === "adamw") {
              // clipping in place scaled the gradients; folding left them as they were
              const after = await gradsOf(folded);
              after.forEach((g, i) => assertSameBits(`${tag}: grad ${i} untouched`, g, grads[i]));
            }
          }
          for (const [i, p] of folded.entries()) {
            const expected = (await inPlace[i].toArray()) as Float32Array;
            assertSameBits(`${tag}: weight ${i}`, (await p.toArray()) as Float32Array, expected);
          }
        }
      }
    },
  });
}

Deno.test("AdamW.clipGradNorm: an overflow under loss scaling leaves the factor at 1; zeroGrad resets it", async () => {
  const be = new CpuBackend();
  const params = paramsOf(be, [[4, 3], [3]], 9);
  const opt = optimizerOf(params, "adamw");
  const g = (await params[1].grad!.toArray()) as Float32Array;
  g[2] = Infinity;
  params[1].grad = Tensor.from(be, g, [3]);
  ok(!Number.isFinite(await opt.clipGradNorm(1.0, 2 ** 16)));
  ok(opt.gradScale === 1, `factor ${opt.gradScale} after an overflow`);
  params[1].grad = Tensor.from(be, new Float32Array([1, 2, 3]), [3]);
  await opt.clipGradNorm(1e-3);
  ok(opt.gradScale < 1, `factor ${opt.gradScale} with clipping`);
  opt.zeroGrad();
  ok(opt.gradScale === 1, `factor ${opt.gradScale} after zeroGrad`);
});
