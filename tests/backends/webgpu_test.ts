// Every kernel of the WebGPU backend against the reference CPU backend, on random inputs
// and shapes that are not multiples of the tile sizes (32 x 32 matmul tiles, 64-wide
// workgroups). Each case runs twice: on the adapter's own binding limits, and on a backend
// whose bindings are capped at a few KiB with 256-byte offset alignment, which forces the
// sliced paths that wte (154.5 MB, over llvmpipe's 128 MiB) takes at full size.
// Backward kernels are checked to ACCUMULATE: gradient buffers start from random values.
// Skipped, with a notice, only when this Deno finds no WebGPU adapter at all.
import { deepStrictEqual as assertEquals, rejects, throws } from "node:assert/strict";
import type { Backend, DeviceBuffer } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  createWebGpuBackend,
  hasWebGpuAdapter,
  type WebGpuBackend,
  type WebGpuOptions,
} from "../../lib/backends/webgpu/mod.ts";
import { assertClose } from "../support.ts";
import { compareWithReference as compare, ids, randn } from "./kernel_suite.ts";

const cpu = new CpuBackend();

const capped = { maxBindingBytes: 8192 };
const naive = {
  matmul: "naive",
  attention: "materialized",
  fusedElementwise: false,
  adamw: "elementwise",
} as const;
const variants: [string, WebGpuOptions, boolean][] = [
  ["webgpu", {}, true],
  ["webgpu (bindings capped at 8 KiB)", capped, false],
  ["webgpu tiled", { kernels: { matmul: "tiled" } }, true],
  ["webgpu tiled (capped)", { ...capped, kernels: { matmul: "tiled" } }, false],
  ["webgpu register-blocked", { kernels: { matmul: "register" } }, false],
  ["webgpu naive", { kernels: naive }, true],
  ["webgpu naive (capped)", { ...capped, kernels: naive }, false],
];

Deno.test("webgpu: a clear error when no adapter exists", async () => {
  const gpu = navigator.gpu as GPU & { requestAdapter: GPU["requestAdapter"] };
  const original = gpu.requestAdapter;
  gpu.requestAdapter = () => Promise.resolve(null);
  try {
    await rejects(createWebGpuBackend({ quiet: true }), /^Error: No WebGPU adapter found/);
    assertEquals(await hasWebGpuAdapter(), false);
  } finally {
    gpu.requestAdapter = original;
  }
});

if (!(await hasWebGpuAdapter())) {
  console.log(
    "webgpu_test: SKIPPED: no WebGPU adapter (on Debian, mesa-vulkan-drivers gives a software one)",
  );
  Deno.test({ name: "webgpu kernels (no WebGPU adapter)", ignore: true, fn() {} });
} else {
  for (const [label, options, big] of variants) {
    let made: Promise<WebGpuBackend> | null = null;
    const backend = () => made ??= createWebGpuBackend({ quiet: true, ...options });
    registerKernelTests(label, backend, big);
  }
  registerF16Tests();
}

/**
 * f16 matmul precision: the GPU's result equals the reference's on operands rounded to
 * half precision (sums in f32 in both), and differs from the unrounded f32 product.
 */
function registerF16Tests(): void {
  Deno.test("webgpu f16 matmuls: operands rounded to half precision, sums in f32", async () => {
    const gpu = await createWebGpuBackend({ quiet: true });
    if (!gpu.hasF16) {
      assertEquals(gpu.matmulPrecision, "f32");
      throws(() => gpu.setMatmulPrecision("f16"), /lacks/);
      console.log("webgpu f16: this adapter has no shader-f16; checked the error only");
      return;
    }
    gpu.setMatmulPrecision("f16");
    const half = (x: Float32Array) => x.map(Math.f16round);
    for (const [N, C, OC] of [[37, 64, 70], [5, 7, 3], [130, 96, 66]]) {
      const x = randn(N * C), w = randn(OC * C, 0.3), b = randn(OC), dout = randn(N * OC);
      const [dx0, dw0] = [randn(N * C), randn(OC * C)];
      const fwd = (be: Backend, [out, xb, wb, bb]: DeviceBuffer[]) =>
        be.matmulForward(out, xb, wb, bb, { N, C, OC });
      const bwd = (be: Backend, [dx, dw, db, d, xb, wb]: DeviceBuffer[]) =>
        be.matmulBackward({ dinp: dx, dweight: dw, dbias: db }, d, xb, wb, { N, C, OC });
      const tag = `f16 matmul N=${N} C=${C} OC=${OC}`;
      const tol = { rtol: 1e-4, atol: 5e-7 * Math.max(N, C, OC, 200) };
      // the GPU rounds; the reference gets pre-rounded operands (bias and the accumulated
      // gradients stay f32 on both)
      const gb = [new Float32Array(N * OC), x, w, b].map((v) => gpu.upload(v));
      fwd(gpu, gb);
      const cb = [new Float32Array(N * OC), half(x), half(w), b].map((v) => cpu.upload(v));
      fwd(cpu, cb);
      const actual = (await gpu.read(gb[0])) as Float32Array;
      assertClose(`${tag} forward`, actual, (await cpu.read(cb[0])) as Float32Array, tol);
      const exact = [new Float32Array(N * OC), x, w, b].map((v) => cpu.upload(v));
      fwd(cpu, exact);
      const f32 = (await cpu.read(exact[0])) as Float32Array;
      const worst = actual.reduce((m, v, i) => Math.max(m, Math.abs(v - f32[i])), 0);
      assertEquals(worst > 1e-4, true, `${tag}: no f16 rounding seen (max diff ${worst})`);
      const gd = [dx0, dw0, randn(OC), dout, x, w].map((v) => gpu.upload(v));
      bwd(gpu, gd);
      // (the bias gradient, an f32 sum of unrounded dout, is not a matmul: not compared)
      const cdb = [dx0, dw0, randn(OC), half(dout), half(x), half(w)].map((v) => cpu.upload(v));
      bwd(cpu, cdb);
      for (const i of [0, 1]) {
        assertClose(
          `${tag} backward buffer ${i}`,
          (await gpu.read(gd[i])) as Float32Array,
          (await cpu.read(cdb[i])) as Float32Array,
          tol,
        );
      }
    }
  });
}

function registerKernelTests(
  label: string,
  backend: () => Promise<WebGpuBackend>,
  big: boolean,
): void {
  const sizes = <T>(small: T[], large: T[]): T[] => big ? [...small, ...large] : small;

  Deno.test(`${label}: matmul forward and backward, odd shapes, with and without bias`, async () => {
    const gpu = await backend();
    for (
      const [N, C, OC] of sizes([[5, 7, 3], [37, 64, 192], [70, 128, 64], [1, 33, 70]], [[
        64,
        96,
        130,
      ], [40, 768, 2304]])
    ) {
      for (const withBias of [true, false]) {
        const tag = `matmul N=${N} C=${C} OC=${OC} bias=${withBias}`;
        await compare(
          gpu,
          `${tag} forward`,
          [randn(N * OC), randn(N * C), randn(OC * C), randn(OC)],
          [0],
          (be, [out, x, w, b]) => be.matmulForward(out, x, w, withBias ? b : null, { N, C, OC }),
          { rtol: 1e-4, atol: 5e-7 * C }, // f32 dot products of length C against f64 sums
        );
        await compare(
          gpu,
          `${tag} backward`,
          [randn(N * C), randn(OC * C), randn(OC), randn(N * OC), randn(N * C), randn(OC * C)],
          [0, 1, 2],
          (be, [dx, dw, db, dout, x, w]) =>
            be.matmulBackward(
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
    const gpu = await backend();
    const [N, C, OC] = [9, 6, 11];
    await compare(
      gpu,
      "matmul dweight only",
      [randn(OC * C), randn(N * OC), randn(N * C), randn(OC * C)],
      [0],
      (be, [dw, dout, x, w]) =>
        be.matmulBackward({ dinp: null, dweight: dw, dbias: null }, dout, x, w, { N, C, OC }),
    );
  });

  Deno.test(`${label}: layernorm forward and backward`, async () => {
    const gpu = await backend();
    for (const [N, C] of sizes([[7, 9], [13, 64], [130, 5]], [[33, 768]])) {
      const x = randn(N * C, 2).map((v) => v + 0.5), w = randn(C, 0.3).map((v) => v + 1);
      const b = randn(C, 0.3);
      await compare(
        gpu,
        `layernorm N=${N} C=${C}`,
        [new Float32Array(N * C), new Float32Array(N), new Float32Array(N), x, w, b],
        [0, 1, 2],
        (be, [out, mean, rstd, xb, wb, bb]) =>
          be.layernormForward(out, mean, rstd, xb, wb, bb, { N, C }),
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
      await compare(
        gpu,
        `layernorm backward N=${N} C=${C}`,
        [randn(N * C), randn(C), randn(C), randn(N * C), x, w, mu, rs],
        [0, 1, 2],
        (be, [dx, dw, db, dout, xb, wb, m, r]) =>
          be.layernormBackward({ dinp: dx, dweight: dw, dbias: db }, dout, {
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
    const gpu = await backend();
    const n = big ? 1001 : 5000;
    const x = randn(n, 3);
    x.set([-40, -15, -8, 0, 8, 15, 40], 0);
    await compare(
      gpu,
      "gelu",
      [new Float32Array(n), x],
      [0],
      (be, [o, i]) => be.geluForward(o, i, n),
    );
    await compare(
      gpu,
      "gelu backward",
      [randn(n), x, randn(n)],
      [0],
      (be, [di, i, d]) => be.geluBackward(di, i, d, n),
    );
  });

  Deno.test(`${label}: residual add (broadcast), accumulate, scale`, async () => {
    const gpu = await backend();
    const [B, T, C] = big ? [3, 5, 7] : [7, 16, 32], n = B * T * C, nb = T * C;
    await compare(
      gpu,
      "add broadcast",
      [new Float32Array(n), randn(n), randn(nb)],
      [0],
      (be, [o, a, b]) => be.addForward(o, a, b, n, nb),
    );
    await compare(
      gpu,
      "add same shape",
      [new Float32Array(n), randn(n), randn(n)],
      [0],
      (be, [o, a, b]) => be.addForward(o, a, b, n, n),
    );
    await compare(
      gpu,
      "accumulate",
      [randn(n), randn(n)],
      [0],
      (be, [d, s]) => be.accumulate(d, s, n, n),
    );
    await compare(
      gpu,
      "accumulate broadcast",
      [randn(nb), randn(n)],
      [0],
      (be, [d, s]) => be.accumulate(d, s, n, nb),
    );
    for (const acc of [false, true]) {
      await compare(
        gpu,
        `scale acc=${acc}`,
        [randn(n), randn(n)],
        [0],
        (be, [o, i]) => be.scale(o, i, -0.37, n, acc),
      );
      await compare(
        gpu,
        `scale in place acc=${acc}`,
        [randn(n)],
        [0],
        (be, [x]) => be.scale(x, x, 0.3, n, acc),
      );
    }
  });

  Deno.test(`${label}: embedding forward and backward (repeated ids, deterministic)`, async () => {
    const gpu = await backend();
    for (const [N, V, C] of sizes([[50, 13, 10], [7, 300, 12], [130, 3, 5], [40, 1000, 16]], [])) {
      const idx = ids(N, V);
      await compare(
        gpu,
        `embedding N=${N} V=${V} C=${C}`,
        [new Float32Array(N * C), idx, randn(V * C)],
        [0],
        (be, [o, i, w]) => be.embeddingForward(o, i, w, N, C),
        { rtol: 0, atol: 0 },
      );
      await compare(
        gpu,
        `embedding backward N=${N} V=${V} C=${C}`,
        [randn(V * C), randn(N * C), idx],
        [0],
        (be, [dw, d, i]) => be.embeddingBackward(dw, d, i, N, C),
        { rtol: 1e-6, atol: 1e-6 },
      );
    }
  });

  Deno.test(`${label}: causal attention forward and backward, T up to 1024`, async () => {
    const gpu = await backend();
    for (
      const [B, T, C, NH] of sizes([[2, 5, 18, 3], [5, 16, 32, 2]], [
        [3, 33, 24, 2],
        [1, 1024, 64, 1],
      ])
    ) {
      const dims = { B, T, C, NH };
      const qkv = randn(B * T * 3 * C);
      const outs: Record<string, Float32Array> = {};
      for (const [name, be] of [["cpu", cpu], ["gpu", gpu]] as const) {
        const x = be.upload(qkv), out = be.alloc(B * T * C, "f32");
        const saved = be.attentionForward(out, x, dims);
        const dqkv = be.upload(outs.dqkv0 ??= randn(B * T * 3 * C));
        be.attentionBackward(dqkv, be.upload(outs.dout ??= randn(B * T * C)), x, saved, dims);
        outs[`${name}.out`] = (await be.read(out)) as Float32Array;
        outs[`${name}.dqkv`] = (await be.read(dqkv)) as Float32Array;
      }
      const tag = `attention B=${B} T=${T} C=${C} NH=${NH}`;
      assertClose(`${tag} out`, outs["gpu.out"], outs["cpu.out"], { rtol: 1e-4, atol: 1e-5 });
      assertClose(`${tag} dqkv`, outs["gpu.dqkv"], outs["cpu.dqkv"], { rtol: 1e-3, atol: 1e-4 });
    }
  });

  Deno.test(`${label}: cross-entropy forward and backward, V = 50304 included`, async () => {
    const gpu = await backend();
    for (const [N, V] of sizes([[6, 11], [70, 129]], [[4, 50304]])) {
      const z = randn(N * V, 3), y = ids(N, V);
      await compare(
        gpu,
        `cross-entropy N=${N} V=${V}`,
        [new Float32Array(1), z, y],
        [0],
        (be, [loss, zb, yb]) => be.crossEntropyForward(loss, zb, yb, N, V),
        { rtol: 1e-5, atol: 1e-6 },
      );
      await compare(
        gpu,
        `cross-entropy backward N=${N} V=${V}`,
        [randn(N * V, 0.01), new Float32Array([0.7]), z, y],
        [0],
        (be, [dz, dl, zb, yb]) => be.crossEntropyBackward(dz, dl, zb, yb, N, V),
        { rtol: 1e-4, atol: 1e-7 },
      );
    }
  });

  Deno.test(`${label}: sum of squares and AdamW`, async () => {
    const gpu = await backend();
    for (const n of [1, 100, 4097, 200_003]) {
      const x = randn(n + 5);
      const expected = await cpu.sumOfSquares(cpu.upload(x), n);
      assertClose(`sum of squares n=${n}`, [await gpu.sumOfSquares(gpu.upload(x), n)], [expected], {
        rtol: 1e-5,
      });
    }
    const xs = [randn(7), randn(5000), randn(300_001)], ns = [7, 4999, 300_001];
    const sums = await gpu.sumsOfSquares(xs.map((x) => gpu.upload(x)), ns);
    for (const [k, x] of xs.entries()) {
      const expected = await cpu.sumOfSquares(cpu.upload(x), ns[k]);
      assertClose(`sums of squares, buffer ${k}`, [sums[k]], [expected], { rtol: 1e-5 });
    }
    for (const step of [1, 3]) {
      const n = big ? 1003 : 5003;
      const hp = { lr: 6e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step };
      await compare(
        gpu,
        `adamw step ${step}`,
        [randn(n), randn(n), randn(n, 0.1), randn(n, 0.1).map(Math.abs)],
        [0, 2, 3],
        (be, [p, g, m, v]) => be.adamw(p, g, m, v, n, hp),
        { rtol: 1e-5, atol: 1e-6 },
      );
    }
  });

  Deno.test(`${label}: buffers: upload, write, read, zeroed alloc, type checks`, async () => {
    const gpu = await backend();
    const f = Float32Array.from([1.5, -2, 3]), i = Int32Array.from([7, -1, 2, 9]);
    assertEquals(await gpu.read(gpu.upload(f)), f);
    const ib = gpu.upload(i);
    assertEquals(await gpu.read(ib), i);
    gpu.write(ib, Int32Array.from([0, 1, 2, 3]));
    assertEquals(await gpu.read(ib), Int32Array.from([0, 1, 2, 3]));
    assertEquals(await gpu.read(gpu.alloc(5, "f32")), new Float32Array(5));
    let threw = false;
    try {
      gpu.write(ib, new Float32Array(4));
    } catch {
      threw = true;
    }
    assertEquals(threw, true);
  });
}
