// lib/train/checkpoint.ts: which buffers hold a NaN or an infinity, on a backend with hostView (a
// scan of its memory) and on one without (CUDA, WebGPU: sums of squares, a non-finite sum
// confirmed by a read, so large finite values that overflow an f32 sum are not reported).
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import type { DeviceBuffer } from "../../lib/backend.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { configureOptimizers } from "../../lib/train/optim.ts";
import {
  listNames,
  nonFiniteArrays,
  nonFiniteBuffers,
  trainingBuffers,
} from "../../lib/train/checkpoint.ts";

/** The reference backend as a device backend sees it: no hostView, sums accumulated in f32. */
class DeviceLikeCpu extends CpuBackend {
  sums = 0;
  reads = 0;
  constructor() {
    super();
    Object.defineProperty(this, "hostView", { value: undefined });
  }
  override sumOfSquares(buf: DeviceBuffer, n: number): Promise<number> {
    this.sums++;
    return this.read(buf).then((a) => {
      this.reads--; // not a confirming read
      let s = 0;
      for (let i = 0; i < n; i++) s = Math.fround(s + Math.fround(a[i] * a[i]));
      return s;
    });
  }
  override read(buf: DeviceBuffer): Promise<Float32Array | Int32Array> {
    this.reads++;
    return super.read(buf);
  }
}

const named = (backend: CpuBackend, name: string, values: number[]) => ({
  name,
  backend,
  buffer: backend.upload(new Float32Array(values)),
  size: values.length,
});

const deviceLike = new DeviceLikeCpu();
for (
  const [kind, backend] of [["with hostView", new CpuBackend()], [
    "without hostView",
    deviceLike,
  ]] as const
) {
  Deno.test(`nonFiniteBuffers (${kind}): NaN and infinities found by name, large finite values not`, async () => {
    const buffers = [
      named(backend, "a", [1, 2, 3]),
      named(backend, "nan", [1, NaN, 3]),
      named(backend, "inf", [-Infinity, 0]),
      named(backend, "huge", [3e38, 3e38, -3e38]), // its f32 sum of squares overflows
    ];
    assertEquals(await nonFiniteBuffers(buffers), ["nan", "inf"]);
    if (backend === deviceLike) {
      assertEquals(deviceLike.sums, 4);
      assertEquals(deviceLike.reads, 3); // a confirming read for each non-finite sum only
    }
  });
}

Deno.test("trainingBuffers names parameters and AdamW's moments as a checkpoint does", () => {
  const backend = new CpuBackend();
  const model = new GPT(backend, {
    n_layer: 1,
    n_head: 1,
    n_embd: 4,
    block_size: 4,
    vocab_size: 8,
  }, { seed: 1 });
  const optimizer = configureOptimizers(model, { weightDecay: 0.1, learningRate: 1e-3 });
  const [name, wte] = model.namedParameters()[0];
  optimizer.state.set(wte, {
    m: backend.alloc(wte.size, "f32"),
    v: backend.alloc(wte.size, "f32"),
  });
  const names = trainingBuffers(model, optimizer).map((b) => b.name);
  assertEquals(names.slice(-2), [`${name}.exp_avg`, `${name}.exp_avg_sq`]);
  assertEquals(names.length, model.namedParameters().length + 2);
});

Deno.test("nonFiniteArrays and listNames", () => {
  assertEquals(
    nonFiniteArrays([["a", new Float32Array([1])], ["b", new Float32Array([NaN])]]),
    ["b"],
  );
  assertEquals(listNames(["a", "b"]), "a, b");
  assertEquals(listNames(["a", "b", "c", "d", "e"]), "a, b, c and 2 more");
});
