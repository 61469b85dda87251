/**
 * Every kernel of a backend against the reference CPU backend, forward and backward, on
 * random inputs and shapes that are not multiples of block or tile sizes, with the full-size
 * rows of GPT-2 124M (C = 768, V = 50304, T = 1024 with heads of 64) included. Backward
 * kernels are checked to ACCUMULATE: gradient buffers start from random values. Written for
 * the CUDA backend on the model of webgpu_test.ts, for any backend whose matmuls are f32.
 *
 * @module
 */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import type { Backend, DeviceBuffer } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { Generator } from "../../lib/model/random.ts";
import { assertClose } from "../support.ts";

const cpu = new CpuBackend();
const rng = new Generator(42);

/** n normal samples with standard deviation `std`. */
export function randn(n: number, std = 1): Float32Array {
  return rng.fillNormal(new Float32Array(n), 0, std);
}

/** n token ids below `vocab`. */
export function ids(n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rng.random() * vocab));
}

/** Tolerances of `assertClose`. */
export interface Tolerance {
  rtol?: number;
  atol?: number;
}

/**
 * Runs `f` on the reference backend and on `other` with the same inputs and compares the
 * buffers named in `outputs` (indices into `inputs`) afterwards.
 */
export async function compareWithReference(
  other: Backend,
  label: string,
  inputs: (Float32Array | Int32Array)[],
  outputs: number[],
  f: (be: Backend, bufs: DeviceBuffer[]) => DeviceBuffer | void,
  tol: Tolerance = { rtol: 1e-5, atol: 1e-5 },
): Promise<void> {
  const cb = inputs.map((x) => cpu.upload(x)), ob = inputs.map((x) => other.upload(x));
  f(cpu, cb);
  f(other, ob);
  for (const i of outputs) {
    const expected = await cpu.read(cb[i]), actual = await other.read(ob[i]);
    assertClose(`${label}: buffer ${i}`, actual, expected, tol);
  }
}

/** Options of `kernelSuite`. */
export interface KernelSuiteOptions {
  /**
   * Include GPT-2 124M's full-size rows (C 768 to 3072, V 50304, T 1024, millions of AdamW
   * elements); default true. False keeps the small odd shapes, for slow stand-ins such as a
   * CPU emulator.
   */
  fullSize?: boolean;
  /**
   * The small attention shapes ([B, T, C, NH]) instead of the suite's own, for a backend that
   * cannot take them all (WebGPU with its bindings capped to a few KiB binds the qkv of one
   * batch row, T * 3C floats, at a time)
   */
  attentionShapes?: number[][];
}

/** Registers the kernel-by-kernel comparisons for the backend `backend()` makes. */
export function kernelSuite(
  label: string,
  backend: () => Promise<Backend>,
  { fullSize = true, attentionShapes }: KernelSuiteOptions = {},
): void {
  const sizes: Sizes = (small, large) => fullSize ? [...small, ...large] : small;
  sizes.full = fullSize;
  registerMatmulTests(label, backend, sizes);
  registerRowTests(label, backend, sizes);
  registerAttentionTests(label, backend, sizes, attentionShapes);
  registerOptimizerTests(label, backend, sizes);
}

/** The small shapes, and the full-size ones too unless the suite was told to skip them. */
interface Sizes {
  <T>(small: T[], large: T[]): T[];
  /** Whether the full-size shapes are in (for the tests' names). */
  full?: boolean;
}

/** Matmuls, forward and backward, and backward with some gradients only. */
function registerMatmulTests(label: string, backend: () => Promise<Backend>, sizes: Sizes): void {
  Deno.test(`${label}: matmul forward and backward, odd shapes, with and without bias`, async () => {
    const be = await backend();
    const shapes = sizes(
      [[5, 7, 3], [37, 64, 192], [70, 128, 64], [1, 33, 70], [64, 96, 130]],
      [[40, 768, 2304], [257, 768, 3072], [65, 3072, 768]],
    );
    for (const [N, C, OC] of shapes) {
      for (const withBias of [true, false]) {
        const tag = `matmul N=${N} C=${C} OC=${OC} bias=${withBias}`;
        await compareWithReference(
          be,
          `${tag} forward`,
          [randn(N * OC), randn(N * C), randn(OC * C), randn(OC)],
          [0],
          (b, [out, x, w, bias]) =>
            b.matmulForward(out, x, w, withBias ? bias : null, { N, C, OC }),
          { rtol: 1e-4, atol: 5e-7 * C }, // f32 dot products of length C against f64 sums
        );
        await compareWithReference(
          be,
          `${tag} backward`,
          [randn(N * C), randn(OC * C), randn(OC), randn(N * OC), randn(N * C), randn(OC * C)],
          [0, 1, 2],
          (b, [dx, dw, db, dout, x, w]) =>
            b.matmulBackward(
              { dinp: dx, dweight: dw, dbias: withBias ? db : null },
              dout,
              x,
              w,
              { N, C, OC },
            ),
          { rtol: 1e-4, atol: 5e-7 * Math.max(N, OC, 200) },
        );
      }
    }
  });

  Deno.test(`${label}: matmul backward with only some gradients`, async () => {
    const be = await backend();
    const [N, C, OC] = [9, 6, 11];
    await compareWithReference(
      be,
      "matmul dweight only",
      [randn(OC * C), randn(N * OC), randn(N * C), randn(OC * C)],
      [0],
      (b, [dw, dout, x, w]) =>
        b.matmulBackward({ dinp: null, dweight: dw, dbias: null }, dout, x, w, { N, C, OC }),
    );
    await compareWithReference(
      be,
      "matmul dinp and dbias only",
      [randn(N * C), randn(OC), randn(N * OC), randn(N * C), randn(OC * C)],
      [0, 1],
      (b, [dx, db, dout, x, w]) =>
        b.matmulBackward({ dinp: dx, dweight: null, dbias: db }, dout, x, w, { N, C, OC }),
    );
  });
}

/** LayerNorm, GELU, the residual add, accumulate and scale. */
function registerRowTests(label: string, backend: () => Promise<Backend>, sizes: Sizes): void {
  Deno.test(`${label}: layernorm forward and backward`, async () => {
    const be = await backend();
    for (const [N, C] of sizes([[7, 9], [13, 64], [130, 5]], [[33, 768], [1025, 768]])) {
      const x = randn(N * C, 2).map((v) => v + 0.5), w = randn(C, 0.3).map((v) => v + 1);
      const b = randn(C, 0.3);
      await compareWithReference(
        be,
        `layernorm N=${N} C=${C}`,
        [new Float32Array(N * C), new Float32Array(N), new Float32Array(N), x, w, b],
        [0, 1, 2],
        (k, [out, mean, rstd, xb, wb, bb]) =>
          k.layernormForward(out, mean, rstd, xb, wb, bb, { N, C }),
      );
      const saved = [cpu.alloc(N, "f32"), cpu.alloc(N, "f32")];
      cpu.layernormForward(
        cpu.alloc(N * C, "f32"),
        saved[0],
        saved[1],
        cpu.upload(x),
        cpu.upload(w),
        cpu.upload(b),
        { N, C },
      );
      const mu = (await cpu.read(saved[0])) as Float32Array;
      const rs = (await cpu.read(saved[1])) as Float32Array;
      await compareWithReference(
        be,
        `layernorm backward N=${N} C=${C}`,
        [randn(N * C), randn(C), randn(C), randn(N * C), x, w, mu, rs],
        [0, 1, 2],
        (k, [dx, dw, db, dout, xb, wb, m, r]) =>
          k.layernormBackward({ dinp: dx, dweight: dw, dbias: db }, dout, {
            inp: xb,
            weight: wb,
            mean: m,
            rstd: r,
          }, { N, C }),
        { rtol: 1e-4, atol: 1e-4 },
      );
    }
  });

  Deno.test(`${label}: gelu forward and backward, large arguments included`, async () => {
    const be = await backend();
    for (const n of sizes([1001, 5000], [3 * 1024 * 1024 + 7])) {
      const x = randn(n, 3);
      x.set([-40, -15, -8, 0, 8, 15, 40], 0);
      await compareWithReference(
        be,
        `gelu n=${n}`,
        [new Float32Array(n), x],
        [0],
        (k, [o, i]) => k.geluForward(o, i, n),
      );
      await compareWithReference(
        be,
        `gelu backward n=${n}`,
        [randn(n), x, randn(n)],
        [0],
        (k, [di, i, d]) => k.geluBackward(di, i, d, n),
      );
    }
  });

  Deno.test(`${label}: residual add (broadcast), accumulate, scale`, async () => {
    const be = await backend();
    for (const [B, T, C] of sizes([[3, 5, 7], [7, 16, 32]], [[2, 1024, 768]])) {
      const n = B * T * C, nb = T * C;
      await compareWithReference(
        be,
        "add broadcast",
        [new Float32Array(n), randn(n), randn(nb)],
        [0],
        (k, [o, a, b]) => k.addForward(o, a, b, n, nb),
      );
      await compareWithReference(
        be,
        "add same shape",
        [new Float32Array(n), randn(n), randn(n)],
        [0],
        (k, [o, a, b]) => k.addForward(o, a, b, n, n),
      );
      await compareWithReference(
        be,
        "accumulate",
        [randn(n), randn(n)],
        [0],
        (k, [d, s]) => k.accumulate(d, s, n, n),
      );
      await compareWithReference(
        be,
        "accumulate broadcast",
        [randn(nb), randn(n)],
        [0],
        (k, [d, s]) => k.accumulate(d, s, n, nb),
      );
      for (const acc of [false, true]) {
        await compareWithReference(
          be,
          `scale acc=${acc}`,
          [randn(n), randn(n)],
          [0],
          (k, [o, i]) => k.scale(o, i, -0.37, n, acc),
        );
        await compareWithReference(
          be,
          `scale in place acc=${acc}`,
          [randn(n)],
          [0],
          (k, [x]) => k.scale(x, x, 0.3, n, acc),
        );
      }
    }
  });
}

/** The embedding, attention and the classifier. */
function registerAttentionTests(
  label: string,
  backend: () => Promise<Backend>,
  sizes: Sizes,
  attentionShapes: number[][] = [[2, 5, 18, 3], [5, 16, 32, 2], [3, 33, 24, 2], [1, 65, 64, 4]],
): void {
  Deno.test(`${label}: embedding forward and backward (repeated ids)`, async () => {
    const be = await backend();
    for (
      const [N, V, C] of sizes([[50, 13, 10], [7, 300, 12], [130, 3, 5], [40, 1000, 16]], [[
        2048,
        50304,
        768,
      ]])
    ) {
      const idx = ids(N, V);
      await compareWithReference(
        be,
        `embedding N=${N} V=${V} C=${C}`,
        [new Float32Array(N * C), idx, randn(V * C)],
        [0],
        (k, [o, i, w]) => k.embeddingForward(o, i, w, N, C),
        { rtol: 0, atol: 0 },
      );
      await compareWithReference(
        be,
        `embedding backward N=${N} V=${V} C=${C}`,
        [randn(V * C), randn(N * C), idx],
        [0],
        (k, [dw, d, i]) => k.embeddingBackward(dw, d, i, N, C),
        { rtol: 1e-5, atol: 1e-5 },
      );
    }
  });

  const long = sizes.full ? ", T = 1024 with heads of 64" : "";
  Deno.test(`${label}: causal attention forward and backward${long}`, async () => {
    const be = await backend();
    for (
      const [B, T, C, NH] of sizes(
        attentionShapes,
        [
          [1, 1024, 64, 1],
          [2, 1024, 128, 2],
          [1, 1000, 192, 3],
        ],
      )
    ) {
      const dims = { B, T, C, NH };
      const qkv = randn(B * T * 3 * C);
      const dqkv0 = randn(B * T * 3 * C), dout = randn(B * T * C);
      const outs: Record<string, Float32Array> = {};
      for (const [name, k] of [["cpu", cpu], ["other", be]] as const) {
        const x = k.upload(qkv), out = k.alloc(B * T * C, "f32");
        const saved = k.attentionForward(out, x, dims);
        const dqkv = k.upload(dqkv0);
        k.attentionBackward(dqkv, k.upload(dout), x, saved, dims);
        outs[`${name}.out`] = (await k.read(out)) as Float32Array;
        outs[`${name}.dqkv`] = (await k.read(dqkv)) as Float32Array;
      }
      const tag = `attention B=${B} T=${T} C=${C} NH=${NH}`;
      assertClose(`${tag} out`, outs["other.out"], outs["cpu.out"], { rtol: 1e-4, atol: 1e-5 });
      assertClose(`${tag} dqkv`, outs["other.dqkv"], outs["cpu.dqkv"], {
        rtol: 1e-3,
        atol: 1e-4,
      });
    }
  });

  const wide = sizes.full ? ", V = 50304 included" : "";
  Deno.test(`${label}: cross-entropy forward and backward${wide}`, async () => {
    const be = await backend();
    for (const [N, V] of sizes([[6, 11], [70, 129]], [[4, 50304], [33, 50257]])) {
      const z = randn(N * V, 3), y = ids(N, V);
      await compareWithReference(
        be,
        `cross-entropy N=${N} V=${V}`,
        [new Float32Array(1), z, y],
        [0],
        (k, [loss, zb, yb]) => k.crossEntropyForward(loss, zb, yb, N, V),
        { rtol: 1e-5, atol: 1e-6 },
      );
      await compareWithReference(
        be,
        `cross-entropy backward N=${N} V=${V}`,
        [randn(N * V, 0.01), new Float32Array([0.7]), z, y],
        [0],
        (k, [dz, dl, zb, yb]) => k.crossEntropyBackward(dz, dl, zb, yb, N, V),
        { rtol: 1e-4, atol: 1e-7 },
      );
    }
  });
}

/** The sums of squares, AdamW and the buffer calls. */
function registerOptimizerTests(
  label: string,
  backend: () => Promise<Backend>,
  sizes: Sizes,
): void {
  Deno.test(`${label}: sum of squares and AdamW`, async () => {
    const be = await backend();
    for (const n of sizes([1, 100, 4097, 200_003], [38_597_376])) {
      const x = randn(n + 5);
      const expected = await cpu.sumOfSquares(cpu.upload(x), n);
      assertClose(`sum of squares n=${n}`, [await be.sumOfSquares(be.upload(x), n)], [expected], {
        rtol: 1e-5,
      });
    }
    if (be.sumsOfSquares) {
      const xs = [randn(7), randn(5000), randn(300_001)], ns = [7, 4999, 300_001];
      const sums = await be.sumsOfSquares(xs.map((x) => be.upload(x)), ns);
      for (const [k, x] of xs.entries()) {
        const expected = await cpu.sumOfSquares(cpu.upload(x), ns[k]);
        assertClose(`sums of squares, buffer ${k}`, [sums[k]], [expected], { rtol: 1e-5 });
      }
    }
    // step 3 with clipping's factor folded in (the gradient, buffer 1, must stay as it was)
    for (const [step, gradScale] of [[1, 1], [3, 1], [3, 0.37]]) {
      for (const n of sizes([1003, 5003], [2_359_297])) {
        const hp = {
          lr: 6e-4,
          beta1: 0.9,
          beta2: 0.95,
          eps: 1e-8,
          weightDecay: 0.1,
          step,
          gradScale,
        };
        await compareWithReference(
          be,
          `adamw n=${n} step ${step} gradScale ${gradScale}`,
          [randn(n), randn(n), randn(n, 0.1), randn(n, 0.1).map(Math.abs)],
          [0, 1, 2, 3],
          (k, [p, g, m, v]) => k.adamw(p, g, m, v, n, hp),
          { rtol: 1e-5, atol: 1e-6 },
        );
      }
    }
  });

  Deno.test(`${label}: buffers: upload, write, read, zeroed alloc, zero, type checks`, async () => {
    const be = await backend();
    const f = Float32Array.from([1.5, -2, 3]), i = Int32Array.from([7, -1, 2, 9]);
    assertEquals(await be.read(be.upload(f)), f);
    const ib = be.upload(i);
    assertEquals(await be.read(ib), i);
    be.write(ib, Int32Array.from([0, 1, 2, 3]));
    assertEquals(await be.read(ib), Int32Array.from([0, 1, 2, 3]));
    assertEquals(await be.read(be.alloc(5, "f32")), new Float32Array(5));
    const fb = be.upload(randn(1000));
    be.zero(fb);
    assertEquals(await be.read(fb), new Float32Array(1000));
    throws(() => be.write(ib, new Float32Array(4)));
  });
}
