// Dynamic loss scaling (f16 mixed precision): GradScaler's schedule, clipping with unscaling,
// and the training loop with it: same losses as without, overflows skipped, exact resume,
// and --precision f16 refused where there are no f16 matmuls.
import {
  deepStrictEqual as assertEquals,
  ok,
  rejects,
  strictEqual,
  throws,
} from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend, CpuBuffer } from "../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../lib/backends/native/mod.ts";
import { loadCheckpoint, readCheckpointState } from "../lib/train/checkpoint.ts";
import { type DistEnv, initProcessGroup, type ProcessGroup } from "../lib/ddp/process_group.ts";
import { GPT } from "../lib/model/gpt.ts";
import { GradScaler } from "../lib/train/grad_scaler.ts";
import { clipGradNorm } from "../lib/train/optim.ts";
import { Tensor } from "../lib/model/tensor.ts";
import { type Precision, runCheckpoints, train } from "../lib/train/train.ts";
import { assertClose, smallRecipe } from "./support.ts";

const small = { n_layer: 1, n_head: 2, n_embd: 16, block_size: 32, vocab_size: 50304 };

const recipe = smallRecipe;

/** Runs `fn` with console.log captured; returns the lines. */
async function captureLog<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    return { result: await fn(), lines };
  } finally {
    console.log = original;
  }
}

/**
 * Asserts two float32 arrays are equal bit for bit (NaN included), naming the first element
 * that differs (node's deepStrictEqual would spend minutes diffing a million elements).
 */
function assertSameBits(name: string, actual: Float32Array, expected: Float32Array): void {
  strictEqual(actual.length, expected.length, `${name}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      throw new Error(`${name}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// GradScaler

Deno.test("GradScaler: PyTorch's defaults; grows after growthInterval clean steps, halves on overflow", () => {
  const d = new GradScaler();
  strictEqual(d.scale, 2 ** 16);
  strictEqual(d.growthFactor, 2);
  strictEqual(d.backoffFactor, 0.5);
  strictEqual(d.growthInterval, 2000);
  for (let i = 0; i < 1999; i++) d.update(false);
  strictEqual(d.scale, 2 ** 16);
  strictEqual(d.growthTracker, 1999);
  d.update(false);
  strictEqual(d.scale, 2 ** 17);
  strictEqual(d.growthTracker, 0);

  const s = new GradScaler({ initScale: 1024, growthInterval: 3 });
  const trace: [number, number][] = [];
  for (const inf of [false, false, false, false, true, false, false, true, true, false]) {
    s.update(inf);
    trace.push([s.scale, s.growthTracker]);
  }
  assertEquals(trace, [
    [1024, 1],
    [1024, 2],
    [2048, 0], // the third clean step in a row grows
    [2048, 1],
    [1024, 0], // overflow: halved, the count restarts
    [1024, 1],
    [1024, 2],
    [512, 0], // an overflow one step short of growth resets the count
    [256, 0],
    [256, 1],
  ]);

  const f = new GradScaler({
    initScale: 10,
    growthFactor: 4,
    backoffFactor: 0.25,
    growthInterval: 1,
  });
  f.update(false);
  strictEqual(f.scale, 40);
  f.update(true);
  strictEqual(f.scale, 10);
});

Deno.test("GradScaler: never grows out of float32's range, never backs off to 0", () => {
  const s = new GradScaler({ initScale: 2 ** 127, growthInterval: 1 });
  s.update(false);
  strictEqual(s.scale, 2 ** 127); // 2**128 is inf in float32: stays
  strictEqual(s.growthTracker, 0);
  const t = new GradScaler({ initScale: 2 ** -125 });
  for (let i = 0; i < 10; i++) t.update(true);
  strictEqual(t.scale, 2 ** -126);
});

Deno.test("GradScaler: state() and load() round-trip; bad options and states are refused by name", () => {
  const a = new GradScaler({ growthInterval: 2 });
  a.update(false);
  a.update(false);
  a.update(false);
  assertEquals(a.state(), { scale: 2 ** 17, growthTracker: 1 });
  const b = new GradScaler({ growthInterval: 2 });
  b.load(a.state());
  assertEquals(b.state(), a.state());
  b.update(false);
  strictEqual(b.scale, 2 ** 18); // the count went on from 1
  throws(() => new GradScaler({ initScale: 0 }), /initScale must be a positive number/);
  throws(() => new GradScaler({ initScale: 2 ** 128 }), /initScale .* float32's range/);
  throws(() => new GradScaler({ growthFactor: 1 }), /growthFactor must be a finite number > 1/);
  throws(() => new GradScaler({ backoffFactor: 1 }), /backoffFactor must be in \(0, 1\)/);
  throws(() => new GradScaler({ growthInterval: 0.5 }), /growthInterval must be an integer/);
  throws(() => b.load({ scale: NaN, growthTracker: 0 }), /state\.scale must be a positive/);
  throws(() => b.load({ scale: 2, growthTracker: -1 }), /state\.growthTracker must be/);
  assertEquals(b.state(), { scale: 2 ** 18, growthTracker: 0 }); // untouched by the refusals
});

// ---------------------------------------------------------------------------------------
// clipGradNorm with unscaling

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

// ---------------------------------------------------------------------------------------
// The training loop

Deno.test("train: loss scaling on gives the losses, norms and weights of a run without it", async () => {
  const off = await train(recipe());
  const on = await train(recipe({ lossScaling: true }));
  strictEqual(off.gradScaler, null);
  assertEquals(on.gradScaler, { scale: 2 ** 16, growthTracker: 4 });
  strictEqual(off.history[0].lossScale, undefined);
  on.history.forEach((s, i) => {
    const o = off.history[i];
    strictEqual(s.lossScale, 2 ** 16);
    strictEqual(s.skipped, false);
    ok(Math.abs(s.loss - o.loss) <= 1e-5, `step ${i}: loss ${s.loss} vs ${o.loss}`);
    ok(Math.abs(s.norm - o.norm) <= 1e-5 * o.norm, `step ${i}: norm ${s.norm} vs ${o.norm}`);
  });
  ok(off.history[3].loss < off.history[0].loss); // it trained
  const wa = await off.model.stateDict(), wb = await on.model.stateDict();
  for (const [name, t] of wa) assertClose(name, wb.get(name)!.data, t.data, { rtol: 1e-5 });
});

/**
 * The CPU backend with f16's range emulated where an f16 matmul would overflow: gradients the
 * matmul backward pass writes beyond +-65504 become +-inf, as they would in f16.
 */
class F16RangeCpu extends CpuBackend {
  override matmulBackward(...args: Parameters<CpuBackend["matmulBackward"]>): void {
    super.matmulBackward(...args);
    const { dinp, dweight, dbias } = args[0];
    for (const buf of [dinp, dweight, dbias]) {
      if (!buf) continue;
      const d = (buf as CpuBuffer).data as Float32Array;
      for (let i = 0; i < d.length; i++) {
        if (Math.abs(d[i]) > 65504) d[i] = Math.sign(d[i]) * Infinity;
      }
    }
  }
}

Deno.test("train: a gradient overflow skips the step (weights and AdamW untouched), halves the scale, says so", async () => {
  const logDir = await Deno.makeTempDir();
  const be = new F16RangeCpu();
  const { result, lines } = await captureLog(() =>
    train(
      recipe({
        backend: be,
        logDir,
        steps: 1,
        lossScaling: true,
        gradScaler: { initScale: 2 ** 24 },
      }),
    )
  );
  const [s] = result.history;
  strictEqual(s.skipped, true);
  strictEqual(s.lossScale, 2 ** 24);
  ok(!Number.isFinite(s.norm), `norm ${s.norm}`);
  ok(Number.isFinite(s.loss) && Math.abs(s.loss - Math.log(50304)) < 0.3, `loss ${s.loss}`);
  assertEquals(result.gradScaler, { scale: 2 ** 23, growthTracker: 0 });
  ok(
    lines.includes(
      "step 0 | gradient overflow at loss scale 16777216: step skipped, scale -> 8388608",
    ),
    lines.join("\n"),
  );
  // the weights are the initial ones, bit for bit
  const fresh = await new GPT(be, small, { seed: 1337 }).stateDict();
  const trained = await result.model.stateDict();
  for (const [name, t] of fresh) assertSameBits(name, trained.get(name)!.data, t.data);
  // log.txt: the train line as ever, and the overflow in a stream of its own
  const log = (await Deno.readTextFile(join(logDir, "log.txt"))).trimEnd().split("\n");
  assertEquals(log, [`0 train ${s.loss.toFixed(6)}`, "0 overflow 16777216"]);
  // the checkpoint: AdamW never stepped, the scale backed off
  const state = await readCheckpointState(result.checkpoint!);
  strictEqual(state.optimizer.stepCount, 0);
  assertEquals(state.gradScaler, { scale: 2 ** 23, growthTracker: 0 });
});

Deno.test("train: overflows back the scale off until the gradients fit, then it trains", async () => {
  const logDir = await Deno.makeTempDir();
  const { result } = await captureLog(() =>
    train(
      recipe({
        backend: new F16RangeCpu(),
        logDir,
        steps: 8,
        lossScaling: true,
        gradScaler: { initScale: 2 ** 20 },
      }),
    )
  );
  const skipped = result.history.filter((s) => s.skipped).length;
  ok(skipped >= 1 && skipped < 8, `${skipped} steps skipped`);
  result.history.forEach((s, i) => {
    // the skipped steps come first, each at half the scale of the one before; then it holds
    strictEqual(s.skipped, i < skipped, `step ${i}`);
    strictEqual(s.lossScale, 2 ** (20 - Math.min(i, skipped)), `step ${i}`);
    strictEqual(Number.isFinite(s.norm), i >= skipped, `step ${i}: norm ${s.norm}`);
  });
  const state = await readCheckpointState(result.checkpoint!);
  strictEqual(state.optimizer.stepCount, 8 - skipped);
  assertEquals(state.gradScaler, { scale: 2 ** (20 - skipped), growthTracker: 8 - skipped });
});

Deno.test("train under DDP: an overflow on one rank skips the step on every rank alike", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const env = (rank: number): DistEnv => ({
    rank,
    localRank: rank,
    worldSize: 2,
    localWorldSize: 2,
    nodeRank: 0,
    masterAddr: "127.0.0.1",
    masterPort: port,
  });
  const groups: ProcessGroup[] = await Promise.all(
    [0, 1].map((r) => initProcessGroup(env(r), { timeoutMs: 60_000, transport: "tcp" })),
  );
  try {
    // only rank 1's matmuls overflow; the average of its inf and rank 0's finite gradients is
    // inf on both, so both skip
    const { result: runs } = await captureLog(() =>
      Promise.all(groups.map((group, r) =>
        train(recipe({
          backend: r === 1 ? new F16RangeCpu() : new CpuBackend(),
          group,
          totalBatchSize: 64, // 2 ranks x B=2 x T=16: no accumulation
          steps: 8,
          lossScaling: true,
          gradScaler: { initScale: 2 ** 20 },
        }))
      ))
    );
    const [r0, r1] = runs;
    const skipped = r0.history.filter((s) => s.skipped).length;
    ok(skipped >= 1 && skipped < 8, `${skipped} steps skipped`);
    assertEquals(r1.history.map((s) => s.skipped), r0.history.map((s) => s.skipped));
    assertEquals(r1.history.map((s) => s.lossScale), r0.history.map((s) => s.lossScale));
    assertEquals(r1.gradScaler, r0.gradScaler);
    const w0 = await r0.model.stateDict(), w1 = await r1.model.stateDict();
    for (const [name, t] of w0) assertSameBits(name, w1.get(name)!.data, t.data);
  } finally {
    for (const g of groups) g.close();
  }
});

Deno.test("train: a truly non-finite loss still stops the run with loss scaling on", async () => {
  class NaNLossCpu extends CpuBackend {
    calls = 0;
    override crossEntropyForward(...args: Parameters<CpuBackend["crossEntropyForward"]>): void {
      super.crossEntropyForward(...args);
      if (++this.calls === 3) ((args[0] as CpuBuffer).data as Float32Array)[0] = NaN; // step 1
    }
  }
  await rejects(
    train(recipe({ backend: new NaNLossCpu(), lossScaling: true })),
    /Loss became NaN at step 1: stopping without updating the weights/,
  );
});

Deno.test("train: resuming restores the loss scale and growth count, and continues exactly", async () => {
  const a = await Deno.makeTempDir(), b = await Deno.makeTempDir();
  // the scale doubles every 2 clean steps, so it has moved by the checkpoint at step 3
  const opts = {
    lossScaling: true,
    gradScaler: { initScale: 2 ** 10, growthInterval: 2 },
    steps: 5,
    checkpointEvery: 3,
  };
  const full = await train(recipe({ ...opts, logDir: a }));
  assertEquals(full.history.map((s) => s.lossScale), [2 ** 10, 2 ** 10, 2 ** 11, 2 ** 11, 2 ** 12]);
  const at3 = join(a, "checkpoints", "step_000003");
  const ckpt = await loadCheckpoint(new CpuBackend(), at3);
  assertEquals(ckpt.state.gradScaler, { scale: 2 ** 11, growthTracker: 1 });
  strictEqual(ckpt.state.run.lossScaling, true);
  strictEqual(ckpt.state.run.precision, "f32");

  const resumed = await train(recipe({ ...opts, logDir: b, resume: at3 }));
  assertEquals(resumed.history.map((s) => s.step), [3, 4]);
  assertEquals(resumed.history.map((s) => s.lossScale), [2 ** 11, 2 ** 12]);
  assertEquals(resumed.history.map((s) => s.loss), full.history.slice(3).map((s) => s.loss));
  assertEquals(resumed.history.map((s) => s.norm), full.history.slice(3).map((s) => s.norm));
  assertEquals(resumed.gradScaler, full.gradScaler);
  const wa = await full.model.stateDict(), wb = await resumed.model.stateDict();
  for (const [name, t] of wa) assertSameBits(name, wb.get(name)!.data, t.data);
});

Deno.test("train: a checkpoint without a scaler (an f32 run, an older one) resumes with a fresh scaler", async () => {
  const a = await Deno.makeTempDir();
  await train(recipe({ logDir: a, steps: 2, checkpointEvery: 1 }));
  const [first] = await runCheckpoints(a);
  const state = await readCheckpointState(first.path);
  ok(!("gradScaler" in state), "an f32 run's state.json has no gradScaler");
  const resumed = await train(
    recipe({ logDir: await Deno.makeTempDir(), steps: 2, lossScaling: true, resume: first.path }),
  );
  assertEquals(resumed.history.map((s) => s.lossScale), [2 ** 16]);
  // and with loss scaling off, a checkpoint's scaler state is ignored
  const c = await Deno.makeTempDir();
  await train(recipe({ logDir: c, steps: 2, checkpointEvery: 1, lossScaling: true }));
  const [withScaler] = await runCheckpoints(c);
  const plain = await train(recipe({ logDir: null, steps: 2, resume: withScaler.path }));
  strictEqual(plain.history[0].lossScale, undefined);
  strictEqual(plain.gradScaler, null);
});

// ---------------------------------------------------------------------------------------
// --precision

const NEEDS = /--precision f16 needs --backend webgpu on an adapter with shader-f16/;

Deno.test("train: precision f16 on the CPU backend is refused, saying what it needs", async () => {
  await rejects(train(recipe({ precision: "f16" })), NEEDS);
  await rejects(
    train(recipe({ precision: "bf16" as Precision })),
    /--precision expects one of f32, f16/,
  );
});

/** A backend with WebGPU's precision switch (its matmuls stay f32: the switch is what is tested). */
class SwitchableCpu extends CpuBackend {
  matmulPrecision: Precision = "f32";
  calls: Precision[] = [];
  setMatmulPrecision(p: Precision): void {
    this.calls.push(p);
    this.matmulPrecision = p;
  }
}

Deno.test("train: precision f16 switches a backend that can, turns loss scaling on, and switches back", async () => {
  const be = new SwitchableCpu();
  const seen: Precision[] = [];
  const r = await train(
    recipe({
      backend: be,
      precision: "f16",
      steps: 2,
      onStep: () => seen.push(be.matmulPrecision),
    }),
  );
  assertEquals(seen, ["f16", "f16"]);
  assertEquals(be.calls, ["f16", "f32"]);
  strictEqual(be.matmulPrecision, "f32");
  assertEquals(r.history.map((s) => s.lossScale), [2 ** 16, 2 ** 16]);
  // lossScaling: false turns it off even with f16
  const off = await train(recipe({ backend: be, precision: "f16", steps: 1, lossScaling: false }));
  strictEqual(off.gradScaler, null);

  class NoF16 extends SwitchableCpu {
    override setMatmulPrecision(p: Precision): void {
      if (p === "f16") throw new Error("this adapter has no shader-f16");
      super.setMatmulPrecision(p);
    }
  }
  await rejects(
    train(recipe({ backend: new NoF16(), precision: "f16" })),
    (e: Error) => NEEDS.test(e.message) && e.message.endsWith("this adapter has no shader-f16"),
  );
});

Deno.test("train task: --precision is validated and named, and in --help", async () => {
  const run = async (args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "lib/cli/train.ts", ...args],
      cwd: join(import.meta.dirname!, ".."),
      env: { NO_COLOR: "1" },
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  };
  const help = await run(["--help"]);
  strictEqual(help.code, 0);
  ok(/--precision P\s+f32 or f16/.test(help.stdout), help.stdout);
  const bad = await run(["--precision", "bf16"]);
  strictEqual(bad.code, 1);
  ok(bad.stderr.includes('--precision expects one of f32, f16, found "bf16"'), bad.stderr);
  const cpu = await run(["--precision", "f16", "--backend", "cpu"]);
  strictEqual(cpu.code, 1);
  ok(NEEDS.test(cpu.stderr), cpu.stderr);
});
