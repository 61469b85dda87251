// lib/bench/op_profile.ts: each backend call counted and timed with the bytes it is handed,
// GEMMs split from the rest, and a training step's profile.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  formatStepProfile,
  opBytes,
  type OpProfile,
  profiledBackend,
  profileTrainingStep,
  splitProfile,
} from "../../lib/bench/op_profile.ts";
import type { GPTConfig } from "../../lib/model/gpt.ts";

const CONFIG: GPTConfig = { n_layer: 2, n_head: 2, n_embd: 8, block_size: 8, vocab_size: 50304 };

Deno.test("opBytes: 4 bytes an element of each buffer; an embedding only its N rows of C", () => {
  const be = new CpuBackend();
  const [a, b, out] = [be.alloc(10, "f32"), be.alloc(5, "f32"), be.alloc(10, "f32")];
  assertEquals(opBytes("addForward", [out, a, b, 10, 5]), 4 * 25);
  const table = be.alloc(1000 * 4, "f32"), idx = be.alloc(3, "i32"), rows = be.alloc(12, "f32");
  assertEquals(opBytes("embeddingForward", [rows, idx, table, 3, 4]), 4 * (12 + 3 + 12));
  assertEquals(opBytes("embeddingBackward", [table, rows, idx, 3, 4]), 4 * (12 + 12 + 3));
});

Deno.test("profiledBackend: counts each call with its bytes, results unchanged", () => {
  const be = new CpuBackend(), profile: OpProfile = new Map();
  const p = profiledBackend(be, profile);
  const [a, b, out] = [
    p.upload(new Float32Array([1, 2])),
    p.upload(new Float32Array([3, 4])),
    p.alloc(2, "f32"),
  ];
  p.addForward(out, a, b, 2, 2);
  p.addForward(out, a, b, 2, 2);
  assertEquals([...be.hostView(out)], [4, 6]);
  const add = profile.get("addForward")!;
  assertEquals([add.calls, add.bytes], [2, 2 * 3 * 8]);
  ok(add.ms >= 0);
  ok(!profile.has("alloc") && !profile.has("upload"), "bookkeeping is not profiled");
});

Deno.test("splitProfile: GEMMs apart, the rest slowest first", () => {
  const profile: OpProfile = new Map([
    ["matmulForward", { calls: 2, ms: 10, bytes: 100 }],
    ["geluForward", { calls: 1, ms: 1, bytes: 40 }],
    ["adamw", { calls: 3, ms: 4, bytes: 400 }],
    ["matmulBackward", { calls: 2, ms: 20, bytes: 200 }],
  ]);
  const s = splitProfile(profile);
  assertEquals([s.gemmMs, s.restMs, s.restBytes], [30, 5, 440]);
  assertEquals(s.rest.map(([n]) => n), ["adamw", "geluForward"]);
});

Deno.test("profileTrainingStep: a step's calls per step, GEMMs and the rest within the wall time", async () => {
  const p = await profileTrainingStep(new CpuBackend(), CONFIG, {
    B: 2,
    T: 4,
    warmup: 1,
    steps: 2,
  });
  ok(p.gemmMs > 0 && p.restMs > 0 && p.gemmMs + p.restMs <= p.wallMs * 1.01);
  const calls = new Map(p.rest.map(([n, t]) => [n, t.calls]));
  // per step: AdamW once per parameter tensor (2 layers x 12 + wte, wpe, ln_f weight and bias)
  assertEquals(calls.get("adamw"), 2 * 12 + 4);
  assertEquals(calls.get("layernormForward"), 2 * 2 + 1);
  ok(/GEMMs .* ms \(\d+%\), other kernels/.test(formatStepProfile(p, 1e10)));
});
