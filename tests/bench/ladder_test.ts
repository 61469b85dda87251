// lib/bench/ladder.ts: how timeRungs times rungs (one rung after another, or interleaved in
// rounds, a rung's own step counts, each rung reported as it is done, an interrupt ending it
// with the rungs done), with the median and spread of each rung's steps; the CPU ladder's rungs
// (lib/backends/native/ladder.ts) in the lecture's order timed by runLadder; and the tables
// beside the lecture's A100 figures.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import type { AttentionDims, DeviceBuffer, DType } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { LADDER } from "../../lib/backends/native/ladder.ts";
import {
  besideLectureTable,
  lectureLadderTable,
  rungTable,
  runLadder,
  timeRungs,
} from "../../lib/bench/ladder.ts";
import type { GPTConfig } from "../../lib/model/gpt.ts";
import { requestInterrupt } from "../../lib/interrupt.ts";

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

Deno.test("timeRungs stops after the step during which an interrupt came, with the rungs done", async () => {
  for (const interleave of [false, true]) {
    const { prepare, log } = watched();
    // an interrupt (Kernel > Interrupt) during rung b's build: a is done, b is not
    const interrupting = (rung: { name: string }) => {
      if (rung.name === "b" && !log.includes("b")) requestInterrupt();
      return prepare(rung);
    };
    const results = await timeRungs(RUNGS, interrupting, CONFIG, {
      B: 1,
      T: 4,
      warmup: 0,
      iters: 2,
      interleave,
      stepsOf: (r) => r.name === "a" ? { warmup: 0, iters: 1 } : undefined,
    });
    assertEquals(results.map((r) => r.rung.name), ["a"], `interleave: ${interleave}`);
    // one rung after another: a's step, then b's first; in rounds: round 1 alone
    assertEquals(log, interleave ? ["a", "b", "a", "b"] : ["a", "b"]);
  }
});

Deno.test("timeRungs refuses to time no step", async () => {
  const { prepare } = watched();
  await rejects(
    timeRungs(RUNGS, prepare, CONFIG, { B: 1, T: 4, warmup: 1, iters: 0 }),
    /Expected at least 1 timed step per rung, found 0/,
  );
});

Deno.test("LADDER: the lecture's order, one change per rung, from the reference to every native piece", () => {
  assertEquals(LADDER[0].reference, "all");
  assertEquals(LADDER.map((r) => r.lecture ?? null), [
    null,
    "fp32 baseline",
    "bfloat16 autocast",
    "torch.compile",
    "flash attention",
    "vocab 50304",
    "fused AdamW",
  ]);
  const top = LADDER.at(-1)!;
  assertEquals([top.reference, top.attention, top.bf16, top.fusion, top.vocabSize], [
    [],
    "flash",
    true,
    true,
    50304,
  ]);
  for (let i = 2; i < LADDER.length; i++) {
    const [before, rung] = [LADDER[i - 1], LADDER[i]];
    const fromReference = (r: typeof rung) => new Set(r.reference === "all" ? [] : r.reference);
    const dropped = [...fromReference(before)].filter((k) => !fromReference(rung).has(k));
    const added = [...fromReference(rung)].filter((k) => !fromReference(before).has(k));
    const switched = (["attention", "bf16", "fusion", "vocabSize"] as const).filter((k) =>
      rung[k] !== before[k]
    );
    const changes = (dropped.length > 0 ? 1 : 0) + switched.length;
    assertEquals(added, [], `${rung.name} takes a kernel back from the reference`);
    assertEquals(changes, 1, `${rung.name} changes ${changes} things from ${before.name}`);
  }
});

Deno.test("runLadder times every rung on the native backend and leaves its switches as found", async () => {
  const native = await NativeBackend.create();
  const seen: { blas: boolean; precision: string; fusion: boolean }[] = [];
  const watch = new Proxy(native, {
    get(target, key) {
      if (key === "speedupLadder") {
        return () => {
          const ladder = target.speedupLadder();
          return {
            ...ladder,
            enter: (rung: (typeof LADDER)[number]) => {
              const backend = ladder.enter(rung);
              seen.push({
                blas: target.usesBlas,
                precision: target.matmulPrecision,
                fusion: target.usesFusion,
              });
              return backend;
            },
          };
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  for (const before of [false, native.library.blas !== null]) {
    native.useBlas(before);
    native.setMatmulPrecision("f32");
    native.useFusion(!before);
    seen.length = 0;
    const results = await runLadder(watch, CONFIG, { B: 1, T: 4, warmup: 0, iters: 1 });
    assertEquals(results.map((r) => r.rung.name), LADDER.map((r) => r.name));
    ok(results.every((r) => r.iters === 1 && r.ms > 0));
    // each rung ran on the own GEMM at its precision and fusion; afterwards all is restored
    assertEquals(
      seen,
      LADDER.map((r) => ({ blas: false, precision: r.bf16 ? "bf16" : "f32", fusion: r.fusion })),
    );
    assertEquals([native.usesBlas, native.matmulPrecision, native.usesFusion], [
      before,
      "f32",
      !before,
    ]);
  }
  native.setMatmulPrecision("bf16");
  await runLadder(native, CONFIG, { B: 1, T: 4, warmup: 0, iters: 1 });
  assertEquals(native.matmulPrecision, "bf16");
  native.setMatmulPrecision("f32");
  native.useBlas(false);
  native.useFusion(true);
});

Deno.test("timeRungs: a rung's own step counts, reported in order as soon as it is done", async () => {
  for (const interleave of [false, true]) {
    const { prepare, log } = watched();
    const events: string[] = [];
    const results = await timeRungs(RUNGS, prepare, CONFIG, {
      B: 1,
      T: 4,
      warmup: 1,
      iters: 3,
      interleave,
      stepsOf: (r) => r.name === "a" ? { warmup: 0, iters: 1 } : undefined,
      onRung: (r) => events.push(`${r.rung.name} after ${log.length}`),
      onRound: (done, rounds) => events.push(`round ${done}/${rounds}`),
    });
    assertEquals(results.map((r) => [r.rung.name, r.iters]), [["a", 1], ["b", 3]]);
    if (interleave) {
      // built a, b; round 1 steps both, rounds 2-4 step b alone; a is reported after round 1
      assertEquals(log, ["a", "b", "a", "b", "b", "b", "b"]);
      assertEquals(events, [
        "a after 4",
        "round 1/4",
        "round 2/4",
        "round 3/4",
        "b after 7",
        "round 4/4",
      ]);
    } else {
      assertEquals(log, ["a", "b"]);
      assertEquals(events, ["a after 1", "b after 2"]);
    }
  }
});

Deno.test("besideLectureTable: our rungs in the lecture's order, its rungs without ours in rows of their own", () => {
  const result = (name: string, ms: number, lecture?: string) => ({
    rung: { name, change: `${name} on`, lecture },
    ms,
    minMs: ms - 1,
    maxMs: ms + 1,
    iters: 3,
    tokensPerSec: 1000 / ms,
    speedup: 1,
  });
  const table = besideLectureTable([
    result("plain", 800),
    result("kernels", 200, "fp32 baseline"),
    result("half", 100, "bfloat16 autocast"),
  ], { TF32: "no TF32 here" });
  assertEquals(table.split("\n").slice(2), [
    "| plain | plain on | 800 | 799–801 (3 steps) | 1.3 | - |  |  |",
    "| kernels | kernels on | 200 | 199–201 (3 steps) | 5.0 | 4.00x | 1000 | - |",
    "| TF32 | no TF32 here | not timed here | | | | 333 | 3.00x |",
    "| half | half on | 100 | 99–101 (3 steps) | 10.0 | 2.00x | 300 | 1.11x |",
    "| torch.compile | no rung of its own here | not timed here | | | | 130 | 2.31x |",
    "| flash attention | no rung of its own here | not timed here | | | | 96 | 1.35x |",
    "| vocab 50304 | no rung of its own here | not timed here | | | | 93 | 1.03x |",
    "| fused AdamW | no rung of its own here | not timed here | | | | 90 | 1.03x |",
  ]);
  throws(
    () => besideLectureTable([result("x", 1, "TF32"), result("y", 1, "fp32 baseline")]),
    /Expected rung y to name a later rung of the lecture's ladder, found "fp32 baseline"/,
  );
});

Deno.test("lectureLadderTable: a rung not timed here says so", () => {
  const table = lectureLadderTable(null, [{ name: "TF32", change: "tf32", vocabSize: 50257 }]);
  ok(table.includes("| TF32 | tf32 | 333 | not timed here | - | - |"), table);
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
