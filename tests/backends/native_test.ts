// The native C backend in its three builds and GEMM choices (own GEMM with OpenBLAS linked,
// GEMMs in OpenBLAS, built without OpenBLAS): every kernel against the reference backend on
// odd shapes, then the PyTorch reference suite; how the GEMM is chosen (options, GPT2_GEMM,
// GPT2_NO_BLAS). The full-size GPT-2 124M check on each: gpt2_124m_test.ts.
import { deepEqual, equal, match, notDeepEqual, notEqual, ok, rejects } from "node:assert/strict";
import type { Backend, DeviceBuffer } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { Generator } from "../../lib/model/random.ts";
import { referenceSuite } from "./reference_suite.ts";
import { NATIVE_VARIANTS } from "./native_variants.ts";
import { assertClose } from "../support.ts";

const cpu = new CpuBackend();
const rng = new Generator(11);

function randn(n: number, std = 1): Float32Array {
  return rng.fillNormal(new Float32Array(n), 0, std);
}

/** Runs `f` on the reference and `native` over copies of the same inputs; every buffer after. */
async function both(
  native: Backend,
  inputs: (Float32Array | Int32Array)[],
  f: (be: Backend, bufs: DeviceBuffer[]) => DeviceBuffer | void,
): Promise<{ ref: (Float32Array | Int32Array)[]; got: (Float32Array | Int32Array)[] }> {
  const run = async (be: Backend) => {
    const bufs = inputs.map((x) => be.upload(x));
    const extra = f(be, bufs);
    if (extra) bufs.push(extra);
    return await Promise.all(bufs.map((b) => be.read(b)));
  };
  return { ref: await run(cpu), got: await run(native) };
}

function compare(
  name: string,
  r: { ref: ArrayLike<number>[]; got: ArrayLike<number>[] },
  tol = 1e-5,
): void {
  r.ref.forEach((x, i) =>
    assertClose(`${name} buffer ${i}`, r.got[i], x, { rtol: tol, atol: tol })
  );
}

for (const { label, options, backend } of NATIVE_VARIANTS) {
  Deno.test(`${label}: matmul forward and backward on shapes off the tile sizes`, async () => {
    const native = await backend();
    if (options.linkBlas === false) equal(native.library.blas, null);
    if (options.gemm === "openblas" && native.library.blas === null) {
      console.log("no OpenBLAS on this machine: these GEMMs are the own kernel's");
    }
    equal(native.usesBlas, options.gemm === "openblas" && native.library.blas !== null);
    for (
      const [N, C, OC] of [[1, 1, 1], [7, 13, 5], [37, 70, 19], [64, 96, 288], [130, 33, 17]]
    ) {
      const inputs = [
        randn(N * OC),
        randn(N * C),
        randn(OC * C),
        randn(OC),
        randn(N * C),
        randn(OC * C),
        randn(OC),
        randn(N * OC),
      ];
      compare(
        `matmul ${N}x${C}x${OC}`,
        await both(native, inputs, (be, [out, inp, w, b, dinp, dw, db, dout]) => {
          be.matmulForward(out, inp, w, b, { N, C, OC });
          be.matmulBackward({ dinp, dweight: dw, dbias: db }, dout, inp, w, { N, C, OC });
        }),
        1e-4,
      );
    }
  });

  Deno.test(`${label}: layernorm forward and backward`, async () => {
    const native = await backend();
    for (const [N, C] of [[1, 3], [13, 37], [64, 768]]) {
      const inputs = [
        new Float32Array(N * C),
        new Float32Array(N),
        new Float32Array(N),
        randn(N * C, 2),
        randn(C),
        randn(C),
        randn(N * C),
        randn(C),
        randn(C),
        randn(N * C),
      ];
      compare(
        `layernorm ${N}x${C}`,
        await both(native, inputs, (be, [out, mean, rstd, x, w, b, dx, dw, db, dout]) => {
          be.layernormForward(out, mean, rstd, x, w, b, { N, C });
          be.layernormBackward({ dinp: dx, dweight: dw, dbias: db }, dout, {
            inp: x,
            weight: w,
            mean,
            rstd,
          }, { N, C });
        }),
        1e-4,
      );
    }
  });

  Deno.test(`${label}: gelu, add with broadcast, accumulate, scale`, async () => {
    const native = await backend();
    const n = 1000 + 3, nb = 17 * 59;
    compare(
      "elementwise",
      await both(
        native,
        [randn(n, 3), new Float32Array(n), randn(n), randn(n)],
        (be, [x, out, dx, dout]) => {
          be.geluForward(out, x, n);
          be.geluBackward(dx, x, dout, n);
        },
      ),
      1e-5,
    );
    compare(
      "add/accumulate/scale",
      await both(
        native,
        [randn(3 * nb), randn(nb), new Float32Array(3 * nb), randn(nb), randn(3 * nb)],
        (be, [a, b, out, acc, g]) => {
          be.addForward(out, a, b, 3 * nb, nb);
          be.accumulate(acc, g, 3 * nb, nb);
          be.accumulate(a, g, 3 * nb, 3 * nb);
          be.scale(b, acc, -0.5, nb, true);
          be.scale(g, a, 2, 3 * nb, false);
        },
      ),
    );
  });

  Deno.test(`${label}: embedding forward and deterministic backward with repeated ids`, async () => {
    const native = await backend();
    const V = 50, C = 70, N = 41;
    const idx = Int32Array.from({ length: N }, (_, i) => (i * 7) % 11);
    compare(
      "embedding",
      await both(
        native,
        [randn(V * C), idx, new Float32Array(N * C), randn(V * C), randn(N * C)],
        (be, [w, ix, out, dw, dout]) => {
          be.embeddingForward(out, ix, w, N, C);
          be.embeddingBackward(dw, dout, ix, N, C);
        },
      ),
    );
    let message = "";
    try {
      native.embeddingForward(
        native.alloc(C, "f32"),
        native.upload(Int32Array.from([V])),
        native.upload(randn(V * C)),
        1,
        C,
      );
    } catch (e) {
      message = (e as Error).message;
    }
    ok(message.includes("Token id 50 at position 0 is outside the table of 50 rows"), message);
  });

  Deno.test(`${label}: flash-style attention forward and backward, T up to 1024`, async () => {
    const native = await backend();
    // head sizes 4, 16, 20, 37 (odd, past two vectors) and 64 (GPT-2's): every register path
    for (
      const [B, T, C, NH] of [
        [1, 1, 4, 1],
        [2, 7, 12, 3],
        [1, 65, 64, 4],
        [1, 1024, 32, 2],
        [3, 17, 40, 2],
        [2, 33, 74, 2],
        [1, 50, 192, 3],
      ]
    ) {
      const qkv = randn(B * T * 3 * C), dout = randn(B * T * C);
      const run = async (be: Backend) => {
        const q = be.upload(qkv),
          out = be.alloc(B * T * C, "f32"),
          dq = be.alloc(B * T * 3 * C, "f32");
        const saved = be.attentionForward(out, q, { B, T, C, NH });
        be.attentionBackward(dq, be.upload(dout), q, saved, { B, T, C, NH });
        return [await be.read(out), await be.read(dq)];
      };
      const [r, g] = [await run(cpu), await run(native)];
      assertClose(`attention out ${B},${T},${C},${NH}`, g[0], r[0], { rtol: 1e-4, atol: 1e-5 });
      assertClose(`attention dqkv ${B},${T},${C},${NH}`, g[1], r[1], { rtol: 1e-3, atol: 1e-4 });
    }
  });

  Deno.test(`${label}: cross-entropy forward and backward, V = 50304`, async () => {
    const native = await backend();
    for (const [N, V] of [[3, 7], [33, 50304]]) {
      const targets = Int32Array.from({ length: N }, (_, i) => (i * 7919) % V);
      compare(
        `cross-entropy ${N}x${V}`,
        await both(native, [
          randn(N * V, 3),
          targets,
          new Float32Array(1),
          Float32Array.from([0.7]),
          randn(N * V),
        ], (be, [z, y, loss, dl, dz]) => {
          be.crossEntropyForward(loss, z, y, N, V);
          be.crossEntropyBackward(dz, dl, z, y, N, V);
        }),
        1e-5,
      );
    }
  });

  Deno.test(`${label}: AdamW (with a gradient scale too) and sum of squares`, async () => {
    const native = await backend();
    const n = 4099;
    for (const gradScale of [undefined, 0.37]) {
      const hp = {
        lr: 6e-4,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weightDecay: 0.1,
        step: 3,
        gradScale,
      };
      // (the gradient, buffer 1, compared too: it must be left as it was)
      compare(
        `adamw gradScale ${gradScale}`,
        await both(
          native,
          [randn(n), randn(n), randn(n, 0.1), Float32Array.from(randn(n), (x) => x * x)],
          (be, [p, g, m, v]) => {
            be.adamw(p, g, m, v, n, hp);
          },
        ),
        1e-5,
      );
    }
    const x = randn(n);
    assertClose("sum of squares", [await native.sumOfSquares(native.upload(x), n)], [
      await cpu.sumOfSquares(cpu.upload(x), n),
    ], { rtol: 1e-12 });
  });

  referenceSuite(label, backend);
}

/** Sets environment variables for the length of `f`, then puts them back as they were. */
async function withEnv<T>(
  vars: Record<string, string | undefined>,
  f: () => Promise<T>,
): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const set = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
  };
  set(vars);
  try {
    return await f();
  } finally {
    set(before);
  }
}

Deno.test("native: GEMMs in the own kernel by default, OpenBLAS with GPT2_GEMM=openblas or the gemm option", async () => {
  const linked = (await NATIVE_VARIANTS[0].backend()).library.blas !== null;
  await withEnv({ GPT2_GEMM: undefined }, async () => {
    const own = await NativeBackend.create();
    equal(own.usesBlas, false);
    match(own.describe(), /GEMMs in the project's own kernel \(kernels\/cpu\/gemm\.c/);
    equal((await NativeBackend.create({ gemm: "openblas" })).usesBlas, linked);
    await rejects(
      NativeBackend.create({ gemm: "mkl" as "own" }),
      /The gemm option must be "own" or "openblas", found "mkl"/,
    );
  });
  await withEnv({ GPT2_GEMM: "openblas" }, async () => {
    const blas = await NativeBackend.create();
    equal(blas.usesBlas, linked);
    if (linked) match(blas.describe(), /GEMMs in OpenBLAS \(/);
    equal((await NativeBackend.create({ gemm: "own" })).usesBlas, false, "The option wins");
  });
  await withEnv({ GPT2_GEMM: "mkl" }, async () => {
    await rejects(NativeBackend.create(), /GPT2_GEMM must be "own" or "openblas", found "mkl"/);
  });
});

Deno.test("native: GPT2_NO_BLAS=1 and linkBlas: false build without OpenBLAS, beside the linked build", async () => {
  const linked = await NATIVE_VARIANTS[0].backend();
  const unlinked = await NATIVE_VARIANTS[2].backend();
  equal(unlinked.library.blas, null);
  match(unlinked.describe(), /OpenBLAS not linked/);
  await withEnv({ GPT2_NO_BLAS: "1", GPT2_GEMM: "openblas" }, async () => {
    const fromEnv = await NativeBackend.create();
    equal(fromEnv.library.path, unlinked.library.path);
    equal(fromEnv.usesBlas, false, "No OpenBLAS GEMMs in a build without it");
    equal((await NativeBackend.create({ linkBlas: true })).library.path, linked.library.path);
  });
  if (linked.library.blas !== null) notEqual(linked.library.path, unlinked.library.path);
});

Deno.test("native: backends on one library keep their own GEMM choice when used in turn", async () => {
  const own = await NATIVE_VARIANTS[0].backend();
  const blas = await NATIVE_VARIANTS[1].backend();
  if (blas.library.blas === null) return console.log("no OpenBLAS on this machine: skipped");
  equal(own.library.path, blas.library.path, "Expected both on the linked library");
  // a product long enough that the two GEMMs round differently somewhere
  const [M, N, K] = [33, 65, 1000];
  const a = randn(M * K), b = randn(N * K);
  const product = (be: NativeBackend): Float32Array => {
    const c = new Float32Array(M * N);
    be.gemm(c, a, b, M, N, K);
    return c;
  };
  const bits = (x: Float32Array): Uint32Array => new Uint32Array(x.buffer);
  const first = { own: product(own), blas: product(blas) };
  notDeepEqual(
    bits(first.own),
    bits(first.blas),
    "Expected the own GEMM and OpenBLAS to round differently",
  );
  for (let round = 0; round < 2; round++) {
    deepEqual(bits(product(own)), bits(first.own), `own GEMM, round ${round}`);
    deepEqual(bits(product(blas)), bits(first.blas), `OpenBLAS, round ${round}`);
  }
  own.useBlas(true);
  try {
    equal(own.usesBlas, true);
    deepEqual(bits(product(own)), bits(first.blas), "useBlas(true) on the own-GEMM backend");
    equal(blas.usesBlas, true);
  } finally {
    own.useBlas(false);
  }
});
