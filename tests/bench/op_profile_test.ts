// lib/bench/op_profile.ts: each backend call counted and timed with the bytes it is handed,
// GEMMs split from the rest, and a training step's profile.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  formatStepProfile,
  opBytes,
  opKey,
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
  ok(add.ms >= 0 && add.cpuMs >= 0);
  ok(!profile.has("alloc") && !profile.has("upload"), "bookkeeping is not profiled");
});

Deno.test("splitProfile: GEMMs apart, the rest slowest first", () => {
  const profile: OpProfile = new Map([
    ["matmulForward 4x8->16", { calls: 2, ms: 10, cpuMs: 18, bytes: 100 }],
    ["geluForward", { calls: 1, ms: 1, cpuMs: 2, bytes: 40 }],
    ["adamw", { calls: 3, ms: 4, cpuMs: 7, bytes: 400 }],
    ["matmulBackward 4x8->16", { calls: 2, ms: 20, cpuMs: 39, bytes: 200 }],
  ]);
  const s = splitProfile(profile);
  assertEquals([s.gemmMs, s.restMs, s.restBytes], [30, 5, 440]);
  assertEquals([s.gemmCpuMs, s.restCpuMs], [57, 9]);
  assertEquals(s.rest.map(([n]) => n), ["adamw", "geluForward"]);
  assertEquals(s.gemms.map(([n]) => n), ["matmulBackward 4x8->16", "matmulForward 4x8->16"]);
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
  // each Linear's shape apart: N = B * T tokens, C -> OC (the classifier's 8 -> 50304 and
  // c_fc's 8 -> 32, fused with its GELU or not, among them)
  const names = p.gemms.map(([n]) => n);
  ok(names.includes("matmulForward 8x8->50304"), names.join());
  ok(names.some((n) => /^matmul(Gelu)?Forward 8x8->32$/.test(n)), names.join());
  ok(names.includes("matmulBackward 8x8->32"), names.join());
  ok(p.cpuMs > 0 && p.gemmCpuMs + p.restCpuMs <= p.cpuMs * 1.05 + 1);
  ok(/process CPU time .* step \d+ ms, GEMMs \d+ ms/.test(formatStepProfile(p, 1e10)));
});

Deno.test("opKey: a matmul by its shape, N x C -> OC; other ops by name", () => {
  assertEquals(
    opKey("matmulForward", [0, 0, 0, null, { N: 2048, C: 768, OC: 3072 }]),
    "matmulForward 2048x768->3072",
  );
  assertEquals(
    opKey("matmulBackward", [{}, 0, 0, 0, { N: 4, C: 3, OC: 2 }]),
    "matmulBackward 4x3->2",
  );
  assertEquals(opKey("addForward", [0, 0, 0, 10, 5]), "addForward");
});
