// Kernel fusion on the native backend (`useFusion`): a Linear's bias in its GEMM's epilogue and
// `matmulGeluForward` (GELU written as each tile of the GEMM is finished), against the
// reference backend on shapes off the tile sizes, in fp32 and with bf16 operands, in every
// build; the same numbers with fusion off; and `ops.gelu(ops.linear(...))` running the fused
// kernel only where nothing read the Linear's output first, with the same values and
// gradients either way.
import { equal, ok } from "node:assert/strict";
import type { Backend, DeviceBuffer, MatmulDims } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import * as ops from "../../lib/model/ops.ts";
import { Generator } from "../../lib/model/random.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose } from "../support.ts";
import { NATIVE_VARIANTS } from "./native_variants.ts";

const rng = new Generator(23);

function randn(n: number): Float32Array {
  return rng.fillNormal(new Float32Array(n), 0, 1);
}

// [N, C, OC]: one element; off every tile (6 x 16, 8 x 48); wider than a panel block; K past
// one KC block (768), so the bias goes in with the first block and GELU with the last
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [37, 70, 19],
  [130, 33, 200],
  [13, 1000, 50],
];

/** pre and GELU(pre) from `be`'s fused kernel, or its matmulForward alone (gelu false). */
async function fused(
  be: Backend,
  [x, w, b]: Float32Array[],
  dims: MatmulDims,
  { gelu = true, bias = true } = {},
): Promise<Float32Array[]> {
  const pre = be.alloc(dims.N * dims.OC, "f32"), out = be.alloc(dims.N * dims.OC, "f32");
  const args: [DeviceBuffer, DeviceBuffer, DeviceBuffer | null, MatmulDims] = [
    be.upload(x),
    be.upload(w),
    bias ? be.upload(b) : null,
    dims,
  ];
  if (gelu) {
    be.matmulGeluForward!(pre, out, ...args);
  } else {
    be.matmulForward(pre, ...args);
  }
  return [(await be.read(pre)) as Float32Array, (await be.read(out)) as Float32Array];
}

for (const { label, backend } of NATIVE_VARIANTS) {
  Deno.test(`${label}: fused matmul + bias + GELU against the reference, fusion on and off`, async () => {
    const native = await backend();
    const reference = new CpuBackend();
    equal(native.usesFusion, true, "fusion is on by default");
    try {
      for (const [N, C, OC] of SHAPES) {
        const inputs = [randn(N * C), randn(OC * C), randn(OC)], dims = { N, C, OC };
        for (const bias of [true, false]) {
          const name = `${N}x${C}x${OC}${bias ? "" : " (no bias)"}`;
          const want = await fused(reference, inputs, dims, { bias });
          native.useFusion(true);
          const on = await fused(native, inputs, dims, { bias });
          const linearOn = await fused(native, inputs, dims, { bias, gelu: false });
          native.useFusion(false);
          const off = await fused(native, inputs, dims, { bias });
          assertClose(`pre ${name}`, on[0], want[0], { rtol: 1e-4, atol: 1e-4 });
          assertClose(`gelu ${name}`, on[1], want[1], { rtol: 1e-4, atol: 1e-4 });
          assertClose(`linear ${name}`, linearOn[0], want[0], { rtol: 1e-4, atol: 1e-4 });
          // the same GEMM either way; GELU of the same values, in vector or scalar tanhf
          assertClose(`pre on/off ${name}`, on[0], off[0], { rtol: 0, atol: 0 });
          assertClose(`linear on/off ${name}`, linearOn[0], off[0], { rtol: 0, atol: 0 });
          assertClose(`gelu on/off ${name}`, on[1], off[1], { rtol: 1e-6, atol: 1e-7 });
        }
      }
    } finally {
      native.useFusion(true);
    }
  });
}

Deno.test("native: fused matmul + GELU with bf16 operands against the reference's bf16 model", async () => {
  const native = await NativeBackend.create();
  const model = new CpuBackend({ matmulPrecision: "bf16" });
  native.setMatmulPrecision("bf16");
  try {
    for (const [N, C, OC] of SHAPES) {
      const inputs = [randn(N * C), randn(OC * C), randn(OC)], dims = { N, C, OC };
      const want = await fused(model, inputs, dims);
      const on = await fused(native, inputs, dims);
      native.useFusion(false);
      const off = await fused(native, inputs, dims);
      native.useFusion(true);
      // bf16 products are exact in fp32: only the order of the fp32 sums differs
      assertClose(`bf16 pre ${N}x${C}x${OC}`, on[0], want[0], { rtol: 1e-4, atol: 1e-4 });
      assertClose(`bf16 gelu ${N}x${C}x${OC}`, on[1], want[1], { rtol: 1e-4, atol: 1e-4 });
      assertClose(`bf16 pre on/off ${N}x${C}x${OC}`, on[0], off[0], { rtol: 0, atol: 0 });
      assertClose(`bf16 gelu on/off ${N}x${C}x${OC}`, on[1], off[1], { rtol: 1e-6, atol: 1e-7 });
    }
  } finally {
    native.setMatmulPrecision("f32");
    native.useFusion(true);
  }
});

/** The native backend, counting its fused and unfused forward kernels. */
function counting(native: NativeBackend): { be: Backend; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const be = new Proxy(native, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (typeof key === "string") calls.set(key, (calls.get(key) ?? 0) + 1);
        return value.apply(target, args);
      };
    },
  });
  return { be, calls };
}

/** GELU(x @ w^T + b) and its gradients on `be`; `peek` reads the Linear's output first. */
async function mlpHalf(
  be: Backend,
  [x, w, b, dout]: Float32Array[],
  [N, C, OC]: number[],
  peek: boolean,
): Promise<Float32Array[]> {
  const tx = Tensor.from(be, x, [N, C], true);
  const tw = Tensor.from(be, w, [OC, C], true), tb = Tensor.from(be, b, [OC], true);
  const h = ops.linear(tx, tw, tb);
  const seen = peek ? await h.toArray() : null;
  const y = ops.gelu(h);
  y.backward(Tensor.from(be, dout, [N, OC]));
  const all = [y, h, tx.grad!, tw.grad!, tb.grad!];
  const out = await Promise.all(all.map(async (t) => (await t.toArray()) as Float32Array));
  if (seen) assertClose("h read before gelu", seen as Float32Array, out[1], { rtol: 0, atol: 0 });
  return out;
}

Deno.test("ops: gelu(linear(x)) runs the fused kernel, unless the Linear's output was read first", async () => {
  const native = await NativeBackend.create();
  const shape = [37, 70, 19], [N, C, OC] = shape;
  const inputs = [randn(N * C), randn(OC * C), randn(OC), randn(N * OC)];
  const want = await mlpHalf(new CpuBackend(), inputs, shape, false);
  for (const peek of [false, true]) {
    const { be, calls } = counting(native);
    const got = await mlpHalf(be, inputs, shape, peek);
    const names = ["gelu", "h", "dx", "dw", "db"];
    got.forEach((g, i) =>
      assertClose(`${names[i]}${peek ? " (read first)" : ""}`, g, want[i], {
        rtol: 1e-4,
        atol: 1e-4,
      })
    );
    equal(calls.get("matmulGeluForward") ?? 0, peek ? 0 : 1, "fused kernel calls");
    equal(calls.get("geluForward") ?? 0, peek ? 1 : 0, "separate GELU calls");
    equal(calls.get("matmulForward") ?? 0, peek ? 1 : 0, "separate GEMM calls");
  }
  // a Linear whose output is never given to gelu still computes when read
  const t = ops.linear(
    Tensor.from(native, inputs[0], [N, C]),
    Tensor.from(native, inputs[1], [OC, C]),
    null,
  );
  const h = (await t.toArray()) as Float32Array;
  ok(h.some((v) => v !== 0), "the deferred GEMM ran on read");
});
