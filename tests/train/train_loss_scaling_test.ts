// lib/train/train.ts with dynamic loss scaling (f16 mixed precision): the same losses as without,
// overflows skipped (under DDP too), exact resume with the scaler's state, and --precision f16
// refused where there are no f16 matmuls. GradScaler itself: grad_scaler_test.ts.
import { deepStrictEqual as assertEquals, ok, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend, CpuBuffer } from "../../lib/backends/cpu/mod.ts";
import { loadCheckpoint, readCheckpointState } from "../../lib/train/checkpoint.ts";
import { type DistEnv, initProcessGroup, type ProcessGroup } from "../../lib/ddp/process_group.ts";
import { GPT } from "../../lib/model/gpt.ts";
import type { Precision } from "../../lib/train/precision.ts";
import { train } from "../../lib/train/train.ts";
import { assertClose, assertSameBits, runCheckpoints, smallRecipe } from "../support.ts";

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

const NEEDS = /--precision f16 needs --backend webgpu on an adapter with shader-f16/;

Deno.test("train: precision f16 on the CPU backend is refused, saying what it needs", async () => {
  await rejects(train(recipe({ precision: "f16" })), NEEDS);
  await rejects(
    train(recipe({ precision: "fp8" as Precision })),
    /--precision expects one of f32, f16, tf32, bf16/,
  );
  await rejects(train(recipe({ precision: "bf16" })), /--precision bf16 needs --backend cuda/);
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
