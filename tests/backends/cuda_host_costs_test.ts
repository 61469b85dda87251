// The CUDA backend's host-side costs per training step, on the CPU emulator through the real
// FFI (tests/cuda_emulator/: libcuda_emu.cpp opened by driver.ts): a forward enqueues no zero fill (its outputs are `empty`, and the
// emulator's fresh blocks are NaN, so an output a kernel left unwritten would show in the
// loss), ids and targets held on the host are range-checked there after each write, and the
// embedding's bucketed backward equals the reference's bit for bit. Ignored,
// saying so, without a C++ compiler.
import { equal, ok, throws } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import type { CudaBackend } from "../../lib/backends/cuda/mod.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import { assertClose, hasCxx } from "../support.ts";
import { randn } from "./kernel_suite.ts";
import { TRAIN_STEPS_CONFIG } from "./train_steps.ts";

const open = (): Promise<CudaBackend> =>
  createEmulatedCudaBackend({ quiet: true, memoryBytes: 2 ** 30 });

if (!(await hasCxx())) {
  console.log("cuda (emulated) host costs: skipped: no C++ compiler (c++ or $CXX)");
  Deno.test({ name: "cuda (emulated): host costs (no C++ compiler)", ignore: true, fn() {} });
} else {
  let made: Promise<CudaBackend> | null = null;
  const shared = () => made ??= open();

  Deno.test("cuda (emulated): a forward enqueues no zero fill; its loss equals the CPU's", async () => {
    const backend = await shared();
    const [B, T] = [2, 16];
    const tokens = Int32Array.from({ length: B * T + 1 }, (_, i) => (i * 37) % 101);
    const losses: number[] = [];
    for (const be of [backend, new CpuBackend()]) {
      const model = new GPT(be, TRAIN_STEPS_CONFIG, { seed: 5 });
      const x = Tensor.from(be, tokens.slice(0, B * T), [B, T]);
      const y = Tensor.from(be, tokens.slice(1), [B, T]);
      // the first forward fills the parameters whose zeros are still pending (LayerNorm's
      // biases: alloc's fill waits for a buffer's first use); the one counted reads them again
      if (be === backend) model.forward(x, y);
      const before = be === backend ? backend.zeroFills : 0;
      const { loss } = model.forward(x, y);
      if (be === backend) equal(backend.zeroFills - before, 0, "zero fills in a forward");
      losses.push(await loss!.item());
    }
    assertClose("loss", [losses[0]], [losses[1]], { rtol: 2e-5 });
  });

  Deno.test("cuda (emulated): a backward writes a gradient's first contribution instead of filling it with zeros", async () => {
    const backend = await shared();
    const [B, T] = [2, 16];
    const tokens = Int32Array.from({ length: B * T + 1 }, (_, i) => (i * 37) % 101);
    const model = new GPT(backend, TRAIN_STEPS_CONFIG, { seed: 5 });
    const x = Tensor.from(backend, tokens.slice(0, B * T), [B, T]);
    const y = Tensor.from(backend, tokens.slice(1), [B, T]);
    const step = () => model.forward(x, y).loss!.backward();
    step();
    const params = model.parameters();
    for (const p of params) backend.zero(p.grad!.buffer); // zero_grad, as the optimizer's
    const before = backend.zeroFills;
    step();
    const fills = backend.zeroFills - before;
    // every weight's gradient comes from a GEMM, the residual stream's first from a copy, GELU's
    // input's from its kernel, the biases' and LayerNorms' from their column sums, the last
    // LayerNorm's input's from its kernel, attention's qkv from its flash kernels, wpe's (every
    // row has a position) and its broadcast sum's from their sums; still filled: the logits'
    // gradient (written over the logits in training instead)
    ok(
      fills <= 1 && fills < params.length,
      `Expected at most 1 zero fill in a step of ${params.length} parameters, found ${fills}`,
    );
    for (const p of params) ok((await p.grad!.toArray()).every(Number.isFinite));
  });

  Deno.test("cuda (emulated): ids and targets the host holds are checked on the host, each write anew", async () => {
    const backend = await shared();
    const [N, C, V] = [6, 4, 5];
    const weight = backend.upload(randn(V * C)), out = backend.empty(N * C, "f32");
    const idx = backend.upload(Int32Array.from([0, 1, 2, 3, 4, 0]));
    backend.embeddingForward(out, idx, weight, N, C); // in range: remembered
    backend.write(idx, Int32Array.from([0, 1, 2, 5, 4, 0]));
    throws(
      () => backend.embeddingForward(out, idx, weight, N, C),
      (e: Error) => e instanceof RangeError && /Token id 5 at position 3/.test(e.message),
    );
    // an id out of range past the first N is none of this call's
    backend.write(idx, Int32Array.from([0, 1, 2, 3, 4, -1]));
    backend.embeddingForward(out, idx, weight, N - 1, C);
    const logits = backend.upload(randn(N * V)), loss = backend.empty(1, "f32");
    const targets = backend.upload(Int32Array.from([4, 3, 2, 1, 0, 4]));
    backend.crossEntropyForward(loss, logits, targets, N, V);
    backend.write(targets, Int32Array.from([4, 3, -2, 1, 0, 4]));
    throws(
      () => backend.crossEntropyForward(loss, logits, targets, N, V),
      (e: Error) => e instanceof RangeError && /Target -2 at position 2/.test(e.message),
    );
    ok(Number.isFinite((await backend.read(out))[0]));
  });

  Deno.test("cuda (emulated): the embedding backward's buckets equal the reference", async () => {
    const backend = await shared(), cpu = new CpuBackend();
    const [N, C, V] = [300, 40, 23];
    const ids = Int32Array.from({ length: N }, (_, n) => (n * n + 3 * n) % V);
    const dout = randn(N * C), dw0 = randn(V * C);
    const got: Float32Array[] = [];
    for (const be of [backend, cpu]) {
      const dw = be.upload(dw0), d = be.upload(dout), idx = be.upload(ids);
      be.embeddingBackward(dw, d, idx, N, C);
      got.push((await be.read(dw)) as Float32Array);
    }
    assertClose("dweight", got[0], got[1], { rtol: 0, atol: 0 });
  });
}

if (await hasCxx()) {
  let made: Promise<CudaBackend> | null = null;
  const shared = () => made ??= open();

  Deno.test("cuda (emulated): the in-place classifier backward equals the accumulating one into zeros", async () => {
    const backend = await shared();
    const [N, V] = [7, 1030]; // a row wider than a block
    const logits = randn(N * V, 3), dloss = new Float32Array([0.7]);
    const targets = Int32Array.from({ length: N }, (_, n) => (n * 149) % V);
    const l = backend.upload(logits), d = backend.upload(dloss), t = backend.upload(targets);
    const dlogits = backend.alloc(N * V, "f32");
    backend.crossEntropyBackward(dlogits, d, l, t, N, V);
    backend.crossEntropyBackwardInPlace(l, d, t, N, V);
    assertClose("in place", await backend.read(l), await backend.read(dlogits), {
      rtol: 0,
      atol: 0,
    });
  });

  Deno.test("cuda (emulated): a training step with the logits overwritten equals one without, in less memory", async () => {
    const backend = await shared();
    const config = { ...TRAIN_STEPS_CONFIG, vocab_size: 4099 }; // the classifier dominates
    const [B, T] = [3, 16];
    const tokens = Int32Array.from({ length: B * T + 1 }, (_, i) => (i * 977) % 4099);
    const step = async (overwriteLogits: boolean) => {
      const model = new GPT(backend, config, { seed: 5 });
      const x = Tensor.from(backend, tokens.slice(0, B * T), [B, T]);
      const y = Tensor.from(backend, tokens.slice(1), [B, T]);
      const held = backend.heldMemoryBytes();
      const { loss } = model.forward(x, y, { overwriteLogits });
      loss!.backward();
      const grew = backend.heldMemoryBytes() - held;
      const grads: number[] = [];
      for (const p of model.parameters()) {
        for (const g of await p.grad!.toArray()) grads.push(g);
      }
      backend.trimMemory(); // the next run starts from an empty pool
      return { grads: Float32Array.from(grads), grew };
    };
    backend.trimMemory();
    const kept = await step(false), overwritten = await step(true);
    assertClose("gradients", overwritten.grads, kept.grads, { rtol: 0, atol: 0 });
    const logitsBytes = B * T * config.vocab_size * 4;
    ok(
      overwritten.grew <= kept.grew - logitsBytes,
      `Expected the step to take one logits-sized buffer (${logitsBytes} bytes) less, it took ` +
        `${overwritten.grew} against ${kept.grew}`,
    );
  });

  Deno.test("cuda (emulated): a recycled buffer's bf16 copy goes back to the pool with it", async () => {
    const backend = await shared();
    backend.setMatmulPrecision("bf16");
    try {
      const [N, C, OC] = [64, 256, 32];
      const w = backend.upload(randn(OC * C, 0.1));
      const inputs = [];
      backend.trimMemory();
      const held = backend.heldMemoryBytes();
      for (let i = 0; i < 8; i++) {
        const x = backend.upload(randn(N * C)), out = backend.alloc(N * OC, "f32");
        backend.matmulForward(out, x, w, null, { N, C, OC }); // makes x's bf16 copy
        inputs.push(x); // x stays reachable: only recycle can free its copy
        backend.recycle(x);
        backend.recycle(out);
      }
      await backend.sync();
      const grew = backend.heldMemoryBytes() - held;
      // one input, its copy, one output and w's copy; without the copies dropped, eight copies
      const bound = N * C * 4 + N * C * 2 + N * OC * 4 + OC * C * 2 + 4096;
      ok(grew <= bound, `Expected at most ${bound} bytes held, found ${grew}`);
      equal(inputs.length, 8);
    } finally {
      backend.setMatmulPrecision("f32");
    }
  });
}
