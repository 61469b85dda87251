// The host-side CUDA benchmark (`deno task bench --backend cuda --null-device`,
// lib/bench/cuda.ts's runCudaHostBench) on the CPU emulator's library in its null mode: the
// backend's counts of launches, GEMMs, copies and memsets equal what reached the library
// (its emu_calls), the table's per-step counts equal the library's over the same steps, and
// the fits column follows the peak. Ignored, saying so, without a C++ compiler or where a GPU
// is usable.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import type { Backend } from "../../lib/backend.ts";
import { createCudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { cudaHostTable, runCudaHostBench } from "../../lib/bench/cuda.ts";
import { stepRunner } from "../../lib/bench/step.ts";
import type { GPTConfig } from "../../lib/model/gpt.ts";
import { EMULATOR_VARIABLES, type EmulatorEnv, useEmulatorLibrary } from "../cuda_emulator/ffi.ts";
import { hasCxx } from "../support.ts";

/** A small GPT-2 with GPT-2's vocabulary (the step's token ids go up to 50256). */
const CONFIG: GPTConfig = { n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, vocab_size: 50304 };
const [B, T] = [2, 16];

const gpu = (await cudaUnavailable()) === null && !Deno.env.get("GPT2_CUDA_DRIVER_LIB");
const why = gpu
  ? "a usable GPU is here"
  : !(await hasCxx())
  ? "no C++ compiler (c++ or $CXX)"
  : null;
if (why) console.log(`cuda (null device) host bench: skipped: ${why}`);

/** Runs `fn` with the null device's variables set, then puts the variables back as they were. */
async function onNullDevice<R>(fn: (env: EmulatorEnv) => Promise<R>): Promise<R> {
  const before = EMULATOR_VARIABLES.map((k) => [k, Deno.env.get(k)] as const);
  try {
    return await fn(await useEmulatorLibrary({ nullDevice: true }));
  } finally {
    for (const [k, v] of before) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

/** The library's own counts: launches, GEMMs, copies and memsets it accepted. */
function libraryCalls(path: string): () => number[] {
  const lib = Deno.dlopen(path, { emu_calls: { parameters: ["buffer"], result: "void" } });
  const out = new BigUint64Array(4);
  return () => {
    lib.symbols.emu_calls(out);
    return [...out].map(Number);
  };
}

function backendCalls(backend: Backend): number[] {
  const c = backend.deviceCalls!();
  return [c.launches, c.gemms, c.copies, c.memsets];
}

Deno.test({
  name: "cuda (null device): the backend's call counts over a training step equal the library's",
  ignore: why !== null,
  async fn() {
    await onNullDevice(async (env) => {
      const library = libraryCalls(env.GPT2_CUDA_DRIVER_LIB);
      const backend = await createCudaBackend({ quiet: true });
      try {
        for (const precision of ["f32", "bf16"] as const) {
          backend.setMatmulPrecision(precision);
          const step = stepRunner(backend, CONFIG, { mode: "train", B, T });
          await step();
          const [ours0, lib0] = [backendCalls(backend), library()];
          await step();
          const ours = backendCalls(backend).map((x, i) => x - ours0[i]);
          const lib = library().map((x, i) => x - lib0[i]);
          assertEquals(ours, lib, `${precision}: launches, GEMMs, copies, memsets`);
          ok(ours[0] > 0 && ours[1] > 0 && ours[2] > 0, `${precision}: ${ours}`);
        }
      } finally {
        backend.destroy();
      }
    });
  },
});

Deno.test({
  name:
    "cuda (null device): the host bench's per-step counts are the library's; fits follows the peak",
  ignore: why !== null,
  async fn() {
    await onNullDevice(async (env) => {
      const library = libraryCalls(env.GPT2_CUDA_DRIVER_LIB);
      const marks: number[][] = [];
      const run = (fitBytes: number) =>
        runCudaHostBench({
          configs: [{ B, T, precision: "fp32" }, { B, T, precision: "bf16" }],
          warmup: 0, // the library's counts between two rows are then the timed steps' alone
          iters: 2,
          fitBytes,
          config: CONFIG,
          // the library's counts before and after each row's timed steps, read through logs
          log: (line) => {
            if (/^\s+(fp32|bf16)/.test(line)) marks.push(library());
          },
        });
      const report = await run(80 * 2 ** 30);
      assertEquals(report.device, "CUDA null device on the CPU (nothing runs)");
      const rows = report.rows.map((r) => {
        if ("failed" in r.result) throw new Error(`${r.precision}: ${r.result.failed}`);
        return r.result;
      });
      for (const r of rows) {
        ok(r.perStep.launches > 0 && r.perStep.gemms > 0, JSON.stringify(r.perStep));
        assertEquals(r.perStep.collections, 0, "a step served from the pool collects nothing");
        ok(r.fits && r.peakMemoryBytes > 0, JSON.stringify(r));
        ok(r.medianMs > 0);
      }
      // bf16 adds the kernels that make the operands' bf16 copies
      ok(rows[1].perStep.launches > rows[0].perStep.launches, JSON.stringify(rows));
      // the bf16 row's counts over its 2 steps, from the library, against the table's
      const bf16Steps = marks[1].map((x, i) => (x - marks[0][i]) / 2);
      const r = rows[1].perStep;
      assertEquals([r.launches, r.gemms, r.copies, r.memsets], bf16Steps);
      const table = cudaHostTable(report);
      ok(table.includes(`| train B=${B} T=${T} | bf16 | `) && table.includes("| yes |"), table);

      const tight = await run(rows[0].peakMemoryBytes - 1);
      const fits = tight.rows.map((x) => "failed" in x.result ? null : x.result.fits);
      assertEquals(fits, [false, rows[1].peakMemoryBytes <= rows[0].peakMemoryBytes - 1]);
      ok(cudaHostTable(tight).includes("| no |"));
    });
  },
});
