// What each CUDA kernel takes of a block (lib/backends/cuda/resources.ts: nvcc's registers,
// static shared memory, spills and `.maxntid` for sm_80 and sm_90) and the checks built on
// it, through the real FFI on the emulator's library (tests/cuda_emulator/libcuda_emu.cpp,
// opened by driver.ts's Deno.dlopen): its cuLaunchKernel refuses a block or shared memory a
// GPU would refuse, its cuModuleGetFunction a kernel whose kernels.ts signature is not the
// .cu's, and the launcher (kernels.ts) refuses a block above cuFuncGetAttribute's
// MAX_THREADS_PER_BLOCK with a message naming the kernel. The parsers and the register
// arithmetic are checked on hand-written text always; the rest is ignored, saying why,
// without nvcc (or with GPT2_CUDA_NO_NVCC) or without a C++ compiler for the emulator.
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { findNvcc } from "../../lib/backends/cuda/build.ts";
import { CudaError } from "../../lib/backends/cuda/driver.ts";
import { launchChecks } from "../cuda_emulator/ffi.ts";
import { createEmulatedCudaBackend } from "../cuda_emulator/mod.ts";
import {
  attentionSmemBytes,
  type KernelArgs,
  KernelLauncher,
  KERNELS,
} from "../../lib/backends/cuda/kernels.ts";
import type { CudaBackend } from "../../lib/backends/cuda/mod.ts";
import {
  kernelResources,
  largestBlock,
  parseMaxntid,
  parsePtxasInfo,
  RESOURCE_ARCHES,
  type ResourceTable,
} from "../../lib/backends/cuda/resources.ts";
import { hasCxx } from "../support.ts";

/** The error `fn` throws (failing when it returns), checked to include `message`. */
function thrown(fn: () => unknown, message = ""): Error {
  try {
    fn();
  } catch (e) {
    assert(e instanceof Error, `Expected an Error, found ${e}`);
    assert(e.message.includes(message), `Expected "${message}" in: ${e.message}`);
    return e;
  }
  throw new Error(`Expected a throw with "${message}", found none`);
}

const nvcc = Deno.env.get("GPT2_CUDA_NO_NVCC") ? null : await findNvcc();
const cxx = await hasCxx();
if (!nvcc) {
  console.log(
    "cuda resources: nvcc tests skipped: nvcc not found ($NVCC, $CUDA_HOME/bin, " +
      "/usr/local/cuda/bin, /usr/local/bin, PATH), or GPT2_CUDA_NO_NVCC is set",
  );
}
if (!cxx) console.log("cuda resources: emulator tests skipped: no C++ compiler (c++ or $CXX)");

Deno.test("cuda resources: registers per warp round up to 256, warps to 4 sub-partitions", () => {
  // by hand: 128 x 32 = 4096 per warp, 65536 / 4096 = 16 warps = 512 threads
  assertEquals(largestBlock(128), { threads: 512, limitedBy: "registers" });
  // 169 x 32 = 5408 -> 5632 per warp, 65536 / 5632 = 11.6 warps -> 8 (multiple of 4) = 256
  assertEquals(largestBlock(169, 256), { threads: 256, limitedBy: "__launch_bounds__" });
  assertEquals(largestBlock(169), { threads: 256, limitedBy: "registers" });
  // 66 x 32 = 2112 -> 2304, 65536 / 2304 = 28.4 warps -> 28 = 896 threads
  assertEquals(largestBlock(66), { threads: 896, limitedBy: "registers" });
  assertEquals(largestBlock(32), { threads: 1024, limitedBy: "CUDA's 1024 threads" });
  assertEquals(largestBlock(32, 128), { threads: 128, limitedBy: "__launch_bounds__" });
});

Deno.test("cuda resources: ptxas's report and the PTX's .maxntid are read per entry point", () => {
  const report = [
    "ptxas info    : 0 bytes gmem",
    "ptxas info    : Compiling entry function 'k_one' for 'sm_80'",
    "ptxas info    : Function properties for k_one",
    "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads",
    "ptxas info    : Used 80 registers, used 1 barriers, 1024 bytes smem, 392 bytes cmem[0]",
    "ptxas info    : Compiling entry function 'k_two' for 'sm_90'",
    "ptxas info    : Function properties for _Z6helperv",
    "    16 bytes stack frame, 16 bytes spill stores, 16 bytes spill loads",
    "ptxas info    : Function properties for k_two",
    "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads",
    "ptxas info    : Used 22 registers, used 0 barriers",
  ].join("\n");
  const info = parsePtxasInfo(report);
  assertEquals(info.get("sm_80")?.get("k_one"), {
    registers: 80,
    staticSharedBytes: 1024,
    spillStoreBytes: 4,
    spillLoadBytes: 12,
  });
  // the helper's spills are its own, not k_two's
  assertEquals(info.get("sm_90")?.get("k_two"), {
    registers: 22,
    staticSharedBytes: 0,
    spillStoreBytes: 0,
    spillLoadBytes: 0,
  });
  const ptx = [
    ".visible .entry k_one(\n\t.param .u64 k_one_param_0,\n\t.param .u32 k_one_param_1\n)",
    ".maxntid 256, 1, 1\n{\n\tret;\n}",
    ".visible .entry k_two(\n\t.param .u64 k_two_param_0\n)\n{\n\tret;\n}",
    ".visible .entry k_three(\n)\n.reqntid 32, 4\n{\n\tret;\n}",
  ].join("\n");
  assertEquals([...parseMaxntid(ptx)], [["k_one", 256], ["k_two", 1024], ["k_three", 128]]);
});

Deno.test({
  name: "cuda resources: nvcc's table has every kernel for sm_80 and sm_90, with plausible needs",
  ignore: !nvcc,
  async fn() {
    const table = (await kernelResources({ quiet: true }))!;
    assert(table, "Expected a resource table where nvcc is present, found null");
    for (const arch of RESOURCE_ARCHES) {
      for (const name of Object.keys(KERNELS)) {
        const k = table.kernels[arch][name];
        assert(k, `Expected ${name} in the ${arch} table, found none`);
        const where = `${name} on ${arch}: ${JSON.stringify(k)}`;
        assert(k.registers >= 8 && k.registers <= 255, `Expected 8 to 255 registers, ${where}`);
        assert(k.staticSharedBytes >= 0 && k.staticSharedBytes <= 48 * 1024, where);
        assert(k.spillStoreBytes >= 0 && k.spillLoadBytes >= 0, where);
        assert([128, 256, 1024].includes(k.maxntid), `Expected .maxntid 128/256/1024, ${where}`);
        assert(k.maxThreads >= 32 && k.maxThreads <= k.maxntid, where);
      }
      // the __launch_bounds__ of the sources: ATT_THREADS 256, DECODE_THREADS 128
      assertEquals(table.kernels[arch].attention_forward_hs64.maxntid, 256);
      assertEquals(table.kernels[arch].attention_backward_dq_hs128.maxntid, 256);
      assertEquals(table.kernels[arch].attention_decode.maxntid, 128);
      assertEquals(table.kernels[arch].gelu_forward.maxntid, 1024);
      // sum_of_squares_partial declares its 64 floats of partial sums statically
      assert(table.kernels[arch].sum_of_squares_partial.staticSharedBytes > 0);
    }
    // a second call is the cache's answer, the same table
    assertEquals(await kernelResources({ quiet: true }), table);
  },
});

Deno.test({
  name: "cuda resources: GPT-2's head size 64 attention kernels do not spill on sm_90",
  ignore: !nvcc,
  async fn() {
    const table = (await kernelResources({ quiet: true }))!;
    for (
      const name of [
        "attention_forward_hs64",
        "attention_backward_dkdv_hs64",
        "attention_backward_dq_hs64",
      ]
    ) {
      const k = table.kernels.sm_90[name];
      assertEquals(
        [k.spillStoreBytes, k.spillLoadBytes],
        [0, 0],
        `${name} spills on sm_90 (${k.registers} registers)`,
      );
    }
  },
});

/** A backend over the emulator, and a launcher of its module that a test drives itself. */
async function emulated(
  resources?: ResourceTable | null,
): Promise<{ backend: CudaBackend; launcher: KernelLauncher; module: bigint }> {
  const backend = await createEmulatedCudaBackend({ quiet: true, resources });
  // the emulator's library, opened by driver.ts as libcuda.so.1 would be
  assert(
    /libcuda_emu-\w+-own\d+\.so$/.test(backend.driver.libraryPath),
    backend.driver.libraryPath,
  );
  const module = backend.driver.loadModule(Deno.readFileSync(backend.build.path));
  return {
    backend,
    launcher: new KernelLauncher(backend.driver, module, backend.driver.maxSharedMemoryOptin()),
    module,
  };
}

/** Null pointers: a refused launch never reads them. */
const attentionArgs: KernelArgs<"attention_forward_hs64"> = [0n, 0n, 0n, 1, 64, 1, 64];

Deno.test({
  name: "cuda resources: the launcher refuses a block above the kernel's, saying why",
  ignore: !nvcc || !cxx,
  async fn() {
    const { backend, launcher } = await emulated();
    try {
      // cuFuncGetAttribute answers from nvcc's table
      assertEquals(launcher.limits("attention_forward_hs64").maxThreads, 256);
      assertEquals(launcher.limits("attention_decode").maxThreads, 128);
      assertEquals(launcher.limits("gelu_forward").maxThreads, 1024);
      thrown(
        () =>
          launcher.launch(
            "attention_forward_hs64",
            1,
            512,
            attentionArgs,
            attentionSmemBytes("forward", 64),
          ),
        "attention_forward_hs64: block of 512 threads, the kernel takes at most 256 " +
          "(__launch_bounds__) on this device",
      );
      thrown(
        () => launcher.launch("gelu_forward", 1, 2048, [0n, 0n, 1]),
        "gelu_forward: a grid of 1x1x1 blocks of 2048x1x1 threads is outside CUDA's limits",
      );
      assertEquals(launcher.launches, 0);
    } finally {
      backend.destroy();
    }
  },
});

Deno.test({
  name: "cuda resources: the emulated cuLaunchKernel refuses what a GPU would, with its CUresult",
  ignore: !nvcc || !cxx,
  async fn() {
    const table = (await kernelResources({ quiet: true }))!;
    // a table where gelu_forward needs 128 registers: 512 threads at most, by registers
    const heavy: ResourceTable = structuredClone(table);
    heavy.kernels.sm_90.gelu_forward = {
      ...heavy.kernels.sm_90.gelu_forward,
      registers: 128,
      maxThreads: 512,
      limitedBy: "registers",
    };
    const { backend, module } = await emulated(heavy);
    try {
      const driver = backend.driver, params = new Uint8Array(128);
      const launch = (name: string, threads: number, shared: number, args = params) => () =>
        driver.launch(
          driver.getFunction(module, name),
          [1, 1, 1],
          [threads, 1, 1],
          shared,
          args,
          name,
        );
      // gelu_forward's arguments (out, inp, n) all 0: were the check missing, it would run and
      // do nothing, so this fails as an assertion, not a crash
      const zeros = new BigUint64Array(3);
      const at = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(zeros)));
      const geluArgs = new Uint8Array(new BigUint64Array([at, at + 8n, at + 16n]).buffer);
      const registers = thrown(
        launch("gelu_forward", 1024, 0, geluArgs),
        "gelu_forward: block of 1024 threads, the kernel takes at most 512 (registers: 128 " +
          "per thread, 65536 per block) on sm_90",
      );
      assert(registers instanceof CudaError, String(registers));
      assertEquals(registers.errorName, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES");
      const refused = thrown(
        launch("attention_forward_hs64", 512, 0),
        "CUDA_ERROR_INVALID_VALUE (1): attention_forward_hs64: block of 512 threads, the " +
          "kernel takes at most 256 (__launch_bounds__) on sm_80",
      );
      assert(refused instanceof CudaError && refused.code === 1, String(refused));
      // dynamic shared memory above 48 KiB without cuFuncSetAttribute first
      thrown(launch("attention_forward_hs64", 256, 49 * 1024), "needs cuFuncSetAttribute");
      // 200 KiB fits an H100 (the emulated device) but not an A100's 163 KiB
      const fn = driver.getFunction(module, "attention_forward_hs64");
      driver.setMaxDynamicSharedMemory(fn, 200 * 1024);
      thrown(
        () => driver.launch(fn, [1, 1, 1], [256, 1, 1], 200 * 1024, params, "attention"),
        "sm_80 allows at most 166912 per block",
      );
    } finally {
      backend.destroy();
    }
  },
});

Deno.test({
  name:
    "cuda resources: the emulated cuModuleGetFunction refuses a kernel whose kernels.ts signature is not the .cu's",
  ignore: !cxx,
  async fn() {
    const { backend } = await emulated(null);
    const file = await Deno.makeTempFile({ suffix: ".tsv" });
    const before = Deno.env.get("GPT2_CUDA_EMU_CHECKS");
    try {
      // kernels.ts's table with gelu_forward's last parameter made a float
      const checks = launchChecks(null).replace(
        /^(signature\tgelu_forward\tptr,ptr),i64$/m,
        "$1,f32",
      );
      assert(checks.includes("\tgelu_forward\tptr,ptr,f32\n"), "gelu_forward's signature changed");
      await Deno.writeTextFile(file, checks);
      Deno.env.set("GPT2_CUDA_EMU_CHECKS", file);
      const module = backend.driver.loadModule(Deno.readFileSync(backend.build.path));
      backend.driver.getFunction(module, "gelu_backward"); // the others still load
      const refused = thrown(
        () => backend.driver.getFunction(module, "gelu_forward"),
        "kernel gelu_forward: kernels.ts says (ptr,ptr,f32), the .cu says (ptr,ptr,i64)",
      );
      assert(
        refused instanceof CudaError && refused.errorName === "CUDA_ERROR_NOT_FOUND",
        String(refused),
      );
    } finally {
      before === undefined
        ? Deno.env.delete("GPT2_CUDA_EMU_CHECKS")
        : Deno.env.set("GPT2_CUDA_EMU_CHECKS", before);
      await Deno.remove(file);
      backend.destroy();
    }
  },
});

Deno.test({
  name: "cuda resources: without a table the emulator launches unchecked (1024 threads)",
  ignore: !cxx,
  async fn() {
    const { backend, launcher } = await emulated(null);
    try {
      assertEquals(launcher.limits("attention_forward_hs64").maxThreads, 1024);
      assertEquals(launcher.limits("attention_forward_hs64").registers, 0);
    } finally {
      backend.destroy();
    }
  },
});
