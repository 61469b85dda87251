// lib/bench/ladder.ts: how timeRungs times rungs (one rung after another, or interleaved in
// rounds), with the median and spread of each rung's steps; and the CPU ladder's rungs
// (lib/backends/native/ladder.ts) timed by runLadder.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import type { AttentionDims, DeviceBuffer, DType } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { LADDER } from "../../lib/backends/native/ladder.ts";
import { rungTable, runLadder, timeRungs } from "../../lib/bench/ladder.ts";
import type { GPTConfig } from "../../lib/model/gpt.ts";

/** One layer, 8 channels; each rung sets the vocabulary (at least 50257: the steps' ids). */
const CONFIG: GPTConfig = { n_layer: 1, n_head: 2, n_embd: 8, block_size: 8, vocab_size: 0 };
const RUNGS = [{ name: "a", vocabSize: 50257 }, { name: "b", vocabSize: 50304 }];

/**
 * A reference backend for one rung that counts its kernel calls made while another rung was
 * the one set up last (`state.active`), and records the sizes it allocated.
 */
class WatchedBackend extends CpuBackend {
  readonly allocated = new Set<number>();
  calledWhileInactive = 0;
  constructor(readonly label: string, readonly state: { active: string }) {
    super();
  }
  override alloc(length: number, dtype: DType): DeviceBuffer {
    this.allocated.add(length);
    return super.alloc(length, dtype);
  }
  override attentionForward(out: DeviceBuffer, qkv: DeviceBuffer, dims: AttentionDims) {
    if (this.state.active !== this.label) this.calledWhileInactive++;
    return super.attentionForward(out, qkv, dims);
  }
}

/** Backends for RUNGS, and a `prepare` that logs which rung it set up. */
function watched(): {
  prepare: (rung: { name: string }) => WatchedBackend;
  backends: Record<string, WatchedBackend>;
  log: string[];
} {
  const state = { active: "" }, log: string[] = [];
  const backends = Object.fromEntries(
    RUNGS.map((r) => [r.name, new WatchedBackend(r.name, state)]),
  );
  const prepare = (rung: { name: string }) => {
    state.active = rung.name;
    log.push(rung.name);
    return backends[rung.name];
  };
  return { prepare, backends, log };
}

Deno.test("timeRungs times each rung's steps after its warm-up: median, min, max, speedup", async () => {
  const { prepare, backends, log } = watched();
  const seen: string[] = [];
  const results = await timeRungs(RUNGS, prepare, CONFIG, {
    B: 1,
    T: 4,
    warmup: 1,
    iters: 5,
    onRung: (r) => seen.push(r.rung.name),
  });
  assertEquals(log, ["a", "b"]); // one rung after the other
  assertEquals(seen, ["a", "b"]);
  assertEquals(results.map((r) => r.rung.name), ["a", "b"]);
  for (const r of results) {
    assertEquals(r.iters, 5);
    ok(0 < r.minMs && r.minMs <= r.ms && r.ms <= r.maxMs, JSON.stringify(r));
    assertEquals(r.tokensPerSec, 4 / (r.ms / 1000));
  }
  assertEquals(results[0].speedup, 1);
  assertEquals(results[1].speedup, results[0].ms / results[1].ms);
  // each rung's model has the rung's vocabulary (wte: vocab x 8)
  ok(backends.a.allocated.has(50257 * 8) && !backends.a.allocated.has(50304 * 8));
  ok(backends.b.allocated.has(50304 * 8) && !backends.b.allocated.has(50257 * 8));
});

Deno.test("timeRungs interleaved: one step of every rung per round, each set up before its step", async () => {
  const { prepare, backends, log } = watched();
  let stepsDoneAtFirstResult = -1;
  const results = await timeRungs(RUNGS, prepare, CONFIG, {
    B: 1,
    T: 4,
    warmup: 1,
    iters: 5,
    interleave: true,
    onRung: () => {
      if (stepsDoneAtFirstResult < 0) stepsDoneAtFirstResult = log.length;
    },
  });
  // built a, b; then six rounds (one warm-up, five timed) of a, b
  assertEquals(log, ["a", "b", ...Array(6).fill(["a", "b"]).flat()]);
  assertEquals(stepsDoneAtFirstResult, log.length); // results come once every round is done
  assertEquals(backends.a.calledWhileInactive + backends.b.calledWhileInactive, 0);
  assertEquals(results.map((r) => [r.rung.name, r.iters]), [["a", 5], ["b", 5]]);
  ok(results.every((r) => r.minMs <= r.ms && r.ms <= r.maxMs));
});

Deno.test("timeRungs refuses to time no step", async () => {
  const { prepare } = watched();
  await rejects(
    timeRungs(RUNGS, prepare, CONFIG, { B: 1, T: 4, warmup: 1, iters: 0 }),
    /Expected at least 1 timed step per rung, found 0/,
  );
});

Deno.test("LADDER switches on one thing per rung, from the reference to every native piece", () => {
  assertEquals(LADDER[0].reference, "all");
  const top = LADDER.at(-1)!;
  assertEquals([top.reference, top.blas, top.vocabSize], [[], true, 50304]);
  for (let i = 2; i < LADDER.length; i++) {
    const [before, rung] = [LADDER[i - 1], LADDER[i]];
    const fromReference = (r: typeof rung) => new Set(r.reference === "all" ? [] : r.reference);
    const dropped = [...fromReference(before)].filter((k) => !fromReference(rung).has(k));
    const added = [...fromReference(rung)].filter((k) => !fromReference(before).has(k));
    const changes = (dropped.length > 0 ? 1 : 0) + (rung.blas !== before.blas ? 1 : 0) +
      (rung.vocabSize !== before.vocabSize ? 1 : 0);
    assertEquals(added, [], `${rung.name} takes a kernel back from the reference`);
    assertEquals(changes, 1, `${rung.name} changes ${changes} things from ${before.name}`);
  }
});

Deno.test("runLadder times every rung on the native backend and leaves the GEMM as it found it", async () => {
  const native = await NativeBackend.create();
  for (const before of [false, native.library.blas !== null]) {
    native.useBlas(before);
    const results = await runLadder(native, CONFIG, { B: 1, T: 4, warmup: 0, iters: 1 });
    assertEquals(results.map((r) => r.rung.name), LADDER.map((r) => r.name));
    ok(results.every((r) => r.iters === 1 && r.ms > 0));
    // the BLAS rungs switched GEMMs between the two kernels; afterwards the choice is restored
    assertEquals(native.usesBlas, before);
  }
  native.useBlas(false);
});

Deno.test("rungTable: the median with the fastest and slowest step, tok/s and speedup", () => {
  const rung = (name: string) => ({ name, change: `${name} on`, vocabSize: 50257 });
  const table = rungTable([
    {
      rung: rung("a"),
      ms: 400,
      minMs: 380.4,
      maxMs: 452.6,
      iters: 5,
      tokensPerSec: 640,
      speedup: 1,
    },
    { rung: rung("b"), ms: 100, minMs: 99.6, maxMs: 130, iters: 5, tokensPerSec: 2560, speedup: 4 },
  ]);
  assertEquals(table.split("\n"), [
    "| rung | change | ms/step (median) | fastest–slowest ms | tok/s | speedup |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
    "| a | a on | 400 | 380–453 (5 steps) | 640.0 | 1.0x |",
    "| b | b on | 100 | 100–130 (5 steps) | 2560.0 | 4.0x |",
  ]);
});
