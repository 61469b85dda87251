// GPT-2's init drawn on the device (init.cu's init_normal, lib/model/device_init.ts), run by
// the CPU emulator's library through the real FFI: the same law as the host's
// Generator.fillNormal (mean, standard deviation, tails, and a two-sample Kolmogorov-Smirnov
// distance against the host's numbers), the same numbers for the same key and others for
// another, and a GPT-2 whose every parameter has the host init's standard deviation (the
// residual projections scaled, biases 0, LayerNorm 1 and 0). Ignored, saying so, without a
// C++ compiler or where a GPU is usable.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { createCudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { initOnDevice } from "../../lib/model/device_init.ts";
import { GPT, type GPTConfig } from "../../lib/model/gpt.ts";
import { Generator } from "../../lib/model/random.ts";
import { EMULATOR_VARIABLES, useEmulatorLibrary } from "../cuda_emulator/ffi.ts";
import { hasCxx } from "../support.ts";

const gpu = (await cudaUnavailable()) === null && !Deno.env.get("GPT2_CUDA_DRIVER_LIB");
const why = gpu
  ? "a usable GPU is here"
  : !(await hasCxx())
  ? "no C++ compiler (c++ or $CXX)"
  : null;
if (why) console.log(`cuda (FFI emulator) device init: skipped: ${why}`);

/** Runs `fn` on a backend over the emulator's library, the variables put back afterwards. */
async function onEmulator(fn: (b: Awaited<ReturnType<typeof createCudaBackend>>) => Promise<void>) {
  const before = EMULATOR_VARIABLES.map((k) => [k, Deno.env.get(k)] as const);
  try {
    await useEmulatorLibrary({ memoryBytes: 2 ** 30 });
    const backend = await createCudaBackend({ quiet: true });
    try {
      await fn(backend);
    } finally {
      backend.destroy();
    }
  } finally {
    for (const [k, v] of before) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

function stats(x: Float32Array): { mean: number; std: number; within1: number; within2: number } {
  let s = 0, s2 = 0, w1 = 0, w2 = 0;
  for (const v of x) s += v;
  const mean = s / x.length;
  for (const v of x) s2 += (v - mean) ** 2;
  const std = Math.sqrt(s2 / x.length);
  for (const v of x) {
    if (Math.abs(v) < std) w1++;
    if (Math.abs(v) < 2 * std) w2++;
  }
  return { mean, std, within1: w1 / x.length, within2: w2 / x.length };
}

/** The largest distance between the two samples' empirical distribution functions. */
function ksDistance(a: Float32Array, b: Float32Array): number {
  const x = a.slice().sort(), y = b.slice().sort();
  let i = 0, j = 0, d = 0;
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i], y[j]);
    while (i < x.length && x[i] === v) i++;
    while (j < y.length && y[j] === v) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  return d;
}

Deno.test({
  name:
    "cuda (FFI emulator): init_normal draws N(0, std^2) as the host's generator does, the same for the same key",
  ignore: why !== null,
  async fn() {
    await onEmulator(async (backend) => {
      const n = 200_001; // odd: the last pair's second half is dropped
      const std = 0.02;
      const draw = async (seed: number, stream: number) => {
        const buf = backend.alloc(n, "f32");
        backend.initNormal(buf, std, seed, stream);
        return (await backend.read(buf)) as Float32Array;
      };
      const device = await draw(1337, 3);
      const host = new Generator(1337).fillNormal(new Float32Array(n), 0, std);
      const d = stats(device), h = stats(host);
      // the mean's standard error is std / sqrt(n) = 4.5e-5; the std's about std / sqrt(2n)
      ok(Math.abs(d.mean) < 5 * std / Math.sqrt(n), `mean ${d.mean}`);
      ok(Math.abs(d.std / std - 1) < 5 / Math.sqrt(2 * n), `std ${d.std}`);
      ok(Math.abs(d.within1 - 0.6827) < 0.005, `within 1 std: ${d.within1}`);
      ok(Math.abs(d.within2 - 0.9545) < 0.003, `within 2 std: ${d.within2}`);
      ok(Math.abs(h.within1 - 0.6827) < 0.005, `host within 1 std: ${h.within1}`);
      // two samples of one law: the KS distance stays below 1.95 sqrt(2/n) (p = 0.001)
      const ks = ksDistance(device, host), bound = 1.95 * Math.sqrt(2 / n);
      ok(ks < bound, `KS distance ${ks} against ${bound}`);
      // a sample of another law is told apart: the host's numbers scaled by 1.05
      const wider = host.map((v) => 1.05 * v);
      ok(ksDistance(device, wider) > bound, "a 5% wider normal passes as the same law");
      assertEquals(await draw(1337, 3), device, "the same key draws the same numbers");
      const other = await draw(1337, 4);
      ok(other.some((v, i) => v !== device[i]), "another stream draws other numbers");
      ok(device.every(Number.isFinite));
    });
  },
});

Deno.test({
  name:
    "cuda (FFI emulator): a GPT-2 initialised on the device has the host init's standard deviations",
  ignore: why !== null,
  async fn() {
    await onEmulator(async (backend) => {
      const config: GPTConfig = {
        n_layer: 2,
        n_head: 2,
        n_embd: 64,
        block_size: 32,
        vocab_size: 512,
      };
      const model = new GPT(backend, config, { skipInit: true });
      ok(initOnDevice(model, 7));
      for (const [name, p] of model.namedParameters()) {
        const values = (await p.toArray()) as Float32Array;
        const std = model.initStd(name);
        if (std === null) {
          const want = name.endsWith(".weight") ? 1 : 0;
          ok(values.every((v) => v === want), `${name}: LayerNorm left at ${want}`);
        } else if (std === 0) {
          ok(values.every((v) => v === 0), `${name}: zero`);
        } else {
          const s = stats(values);
          ok(
            Math.abs(s.std / std - 1) < 6 / Math.sqrt(2 * values.length),
            `${name}: std ${s.std}, expected ${std}`,
          );
        }
      }
    });
  },
});
