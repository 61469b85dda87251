// lib/model/ops.ts: finite-difference gradient checks of every op, reference backend, odd shapes.
// L = sum(out * R) for a fixed random R; dL/dx from backward() against central differences.
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import * as ops from "../../lib/model/ops.ts";
import { Generator } from "../../lib/model/random.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { gradcheck as checkGradients } from "./gradcheck.ts";

const backend = new CpuBackend();
const rng = new Generator(7);

function randn(shape: number[], std = 1, offset = 0): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(backend, rng.fillNormal(new Float32Array(n), offset, std), shape, true);
}

function ids(shape: number[], vocab: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(backend, Int32Array.from({ length: n }, () => rng.nextU32() % vocab), shape);
}

/** The shared finite-difference check (gradcheck.ts) on this file's backend and generator. */
function gradcheck(
  name: string,
  inputs: Tensor[],
  f: (xs: Tensor[]) => Tensor,
  h = 1e-2,
): Promise<void> {
  return checkGradients(name, inputs, f, { backend, rng, h });
}

Deno.test("gradcheck: embedding (repeated ids accumulate)", async () => {
  const idx = Tensor.from(backend, Int32Array.from([3, 1, 3, 0, 4, 3, 2]), [7]);
  await gradcheck("embedding", [randn([5, 6])], ([w]) => ops.embedding(idx, w));
});

Deno.test("gradcheck: add, same shape and broadcast over leading dims", async () => {
  await gradcheck("add", [randn([2, 3, 5]), randn([2, 3, 5])], ([a, b]) => ops.add(a, b));
  await gradcheck("add broadcast", [randn([2, 3, 5]), randn([3, 5])], ([a, b]) => ops.add(a, b));
});

Deno.test("gradcheck: scale", async () => {
  await gradcheck("scale", [randn([7])], ([x]) => ops.scale(x, -0.37));
});

Deno.test("gradcheck: linear with and without bias, rows not a multiple of 4", async () => {
  await gradcheck(
    "linear",
    [randn([2, 3, 7]), randn([5, 7], 0.5), randn([5])],
    ([x, w, b]) => ops.linear(x, w, b),
  );
  await gradcheck(
    "linear no bias",
    [randn([9, 6]), randn([11, 6], 0.5)],
    ([x, w]) => ops.linear(x, w, null),
  );
});

Deno.test("gradcheck: layerNorm", async () => {
  await gradcheck(
    "layernorm",
    [randn([3, 2, 9], 2, 0.5), randn([9], 0.3, 1), randn([9], 0.3)],
    ([x, w, b]) => ops.layerNorm(x, w, b),
  );
});

Deno.test("gradcheck: gelu", async () => {
  await gradcheck("gelu", [randn([4, 5], 2)], ([x]) => ops.gelu(x));
});

Deno.test("gradcheck: causal self-attention, 3 heads, T=5", async () => {
  await gradcheck("attention", [randn([2, 5, 3 * 6])], ([qkv]) => ops.causalSelfAttention(qkv, 3));
});

Deno.test("gradcheck: cross-entropy (mean over positions)", async () => {
  const targets = ids([2, 3], 11);
  await gradcheck("cross-entropy", [randn([2, 3, 11], 2)], ([z]) => ops.crossEntropy(z, targets));
});

Deno.test("gradcheck: view passes gradients through", async () => {
  await gradcheck("view", [randn([2, 6])], ([x]) => ops.gelu(x.view(3, 4)));
});

Deno.test("gradcheck: a small composed graph (tied weights used twice)", async () => {
  const idx = ids([2, 4], 9), targets = ids([2, 4], 9);
  await gradcheck(
    "tied",
    [randn([9, 6], 0.5), randn([6], 0.3, 1), randn([6], 0.3)],
    ([wte, w, b]) => {
      const x = ops.layerNorm(ops.embedding(idx, wte), w, b);
      return ops.crossEntropy(ops.linear(x, wte, null), targets);
    },
  );
});
