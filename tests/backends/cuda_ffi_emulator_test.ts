// The CUDA backend through its real FFI on the CPU emulator's library
// (tests/cuda_emulator/libcuda_emu.cpp, built with the system C++ compiler; ffi.ts points
// GPT2_CUDA_DRIVER_LIB and GPT2_CUBLASLT_LIB at it): cudaUnavailable and createCudaBackend
// open it through driver.ts, cublaslt.ts and Deno.dlopen as they open libcuda.so.1, and five
// training steps equal the reference CPU backend's; `deno task train --backend cuda` runs on
// it in a child process; the null device (nothing runs, sizes accounted against 80 GiB) takes
// a whole GPT-2 124M training step. Ignored, saying so, without a C++ compiler or where a GPU
// is usable (the same calls then reach the GPU).
import { deepStrictEqual as assertEquals, ok, strictEqual } from "node:assert/strict";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { createCudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { findCudaLibrary } from "../../lib/backends/cuda/libraries.ts";
import { EMULATOR_VARIABLES, emulatorEnv, useEmulatorLibrary } from "../cuda_emulator/ffi.ts";
import { hasCxx, repoRoot, smallModelFlags } from "../support.ts";
import { assertSameRun, trainSteps } from "./train_steps.ts";

const gpu = (await cudaUnavailable()) === null && !Deno.env.get("GPT2_CUDA_DRIVER_LIB");
const cxx = await hasCxx();
const why = gpu ? "a usable GPU is here" : !cxx ? "no C++ compiler (c++ or $CXX)" : null;
if (why) console.log(`cuda (FFI emulator): skipped: ${why}`);

Deno.test("cuda libraries: GPT2_CUDA_DRIVER_LIB and GPT2_CUBLASLT_LIB replace the search", () => {
  const saved = ["GPT2_CUDA_DRIVER_LIB", "GPT2_CUBLASLT_LIB"].map((k) => [k, Deno.env.get(k)]);
  try {
    const file = Deno.makeTempFileSync({ suffix: ".so" });
    Deno.env.set("GPT2_CUDA_DRIVER_LIB", file);
    Deno.env.set("GPT2_CUBLASLT_LIB", `${file}.missing`);
    assertEquals(findCudaLibrary("cuda"), { path: file, tried: [`GPT2_CUDA_DRIVER_LIB: ${file}`] });
    assertEquals(findCudaLibrary("cublasLt"), {
      path: null,
      tried: [`GPT2_CUBLASLT_LIB: ${file}.missing`],
    });
    Deno.removeSync(file);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k!) : Deno.env.set(k!, v);
  }
});

Deno.test({
  name:
    "cuda (FFI emulator): opened through Deno.dlopen by path; five training steps equal the reference CPU backend's (f32)",
  ignore: why !== null,
  async fn() {
    // the variables go back as they were: the test files after this one share the process, and
    // with them set a CUDA suite would take the emulator for a GPU
    const before = Object.fromEntries(EMULATOR_VARIABLES.map((k) => [k, Deno.env.get(k)]));
    const env = await useEmulatorLibrary({ memoryBytes: 4 * 2 ** 30 });
    try {
      const backend = await createCudaBackend({ quiet: true });
      try {
        ok(backend.describe().includes(env.GPT2_CUDA_DRIVER_LIB), backend.describe());
        assertEquals(backend.deviceName, "CUDA emulator on the CPU (through FFI)");
        backend.setMatmulPrecision("f32");
        assertSameRun(await trainSteps(backend), await trainSteps(new CpuBackend()));
      } finally {
        backend.destroy?.();
      }
    } finally {
      for (const [k, v] of Object.entries(before)) {
        v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
      }
      strictEqual(Deno.env.get("GPT2_CUDA_DRIVER_LIB"), before.GPT2_CUDA_DRIVER_LIB);
    }
  },
});

Deno.test({
  name: "cuda (FFI emulator): deno task train --backend cuda trains a tiny GPT-2 on it",
  ignore: why !== null,
  async fn() {
    const env = await emulatorEnv();
    const logDir = await Deno.makeTempDir({ prefix: "cuda_ffi_train_" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "lib/cli/train.ts",
          ...smallModelFlags,
          "--backend=cuda",
          "--precision=f32",
          "--steps=2",
          "--total-batch-size=32",
          `--log-dir=${logDir}`,
        ],
        cwd: repoRoot,
        env: { ...env, NO_COLOR: "1" },
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 0, text);
      ok(text.includes("CUDA emulator on the CPU (through FFI)"), text);
      assertEquals([...text.matchAll(/^step\s+\d+ \| loss: [\d.]+/gm)].length, 2, text);
    } finally {
      await Deno.remove(logDir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cuda (FFI emulator): the null device takes a GPT-2 124M training step at B=4, T=1024 and accounts its memory",
  ignore: why !== null,
  async fn() {
    const env = await emulatorEnv({ nullDevice: true });
    const script = `
      import { createCudaBackend } from "${repoRoot}/lib/backends/cuda/mod.ts";
      import { stepRunner } from "${repoRoot}/lib/bench/step.ts";
      import { gptConfig } from "${repoRoot}/lib/model/gpt.ts";
      const backend = await createCudaBackend({ quiet: true });
      backend.setMatmulPrecision("bf16");
      const step = stepRunner(backend, gptConfig("gpt2", 50304), { mode: "train", B: 4, T: 1024 });
      const ms = [await step(), await step()];
      console.log(JSON.stringify({ name: backend.deviceName, total: backend.totalMemoryBytes, peak: backend.peakMemoryBytes(), ms }));
    `;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      cwd: repoRoot,
      env: { ...env, NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, text);
    const r = JSON.parse(text.trim().split("\n").at(-1)!);
    assertEquals(r.name, "CUDA null device on the CPU (nothing runs)");
    assertEquals(r.total, 80 * 2 ** 30);
    // 124M parameters with AdamW's two moments and the gradients: over 1.5 GB, under 80 GiB
    ok(r.peak > 1.5e9 && r.peak < 80 * 2 ** 30, `peak ${r.peak}`);
    ok(r.ms.every((x: number) => x > 0), text);
  },
});
