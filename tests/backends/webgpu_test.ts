// Every kernel of the WebGPU backend against the reference CPU backend (kernel_suite.ts:
// random inputs, shapes that are not multiples of the tile sizes, backward kernels checked
// to ACCUMULATE), once per kernel variant, and each on the adapter's own binding limits and
// on a backend whose bindings are capped at 8 KiB, which forces the sliced paths that wte
// (154.5 MB, over llvmpipe's 128 MiB) takes at full size. Also: the error without an
// adapter, f16 matmuls. Skipped, with a notice, only when this Deno finds no WebGPU adapter.
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
import { kernelSuite, randn } from "./kernel_suite.ts";

const cpu = new CpuBackend();

const capped = { maxBindingBytes: 8192 };
// (the capped bindings hold the qkv of one batch row, T * 3C floats, of these only)
const cappedAttention = [[2, 5, 18, 3], [5, 16, 32, 2], [3, 7, 40, 4]];
const naive = {
  matmul: "naive",
  attention: "materialized",
  fusedElementwise: false,
  adamw: "elementwise",
} as const;
// the default kernels on GPT-2's full-size rows too (wte's 154.5 MB embedding goes through
// the sliced bindings on llvmpipe); the other variants on the small odd shapes
const variants: [string, WebGpuOptions, boolean][] = [
  ["webgpu", {}, true],
  ["webgpu (bindings capped at 8 KiB)", capped, false],
  ["webgpu tiled", { kernels: { matmul: "tiled" } }, false],
  ["webgpu tiled (capped)", { ...capped, kernels: { matmul: "tiled" } }, false],
  ["webgpu register-blocked", { kernels: { matmul: "register" } }, false],
  ["webgpu naive", { kernels: naive }, false],
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
    const attentionShapes = options.maxBindingBytes ? cappedAttention : undefined;
    kernelSuite(label, backend, { fullSize: big, attentionShapes });
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
