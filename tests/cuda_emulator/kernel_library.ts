/**
 * The CPU emulator's kernel library: kernels/cuda/*.cu compiled as C++ by the system's compiler
 * with this folder's headers (cuda_emulator.h, runtime.h: a block's threads are fibers,
 * barriers and warp shuffles are checked, WMMA emulated), cached by a hash of everything that
 * goes in. It exports the kernels with their compiled signatures, `emu_launch` (a grid over
 * cuLaunchKernel's argument array) and `emu_gemm` (the GEMM cuBLASLt's stand-in runs), which
 * libcuda_emu.cpp opens (`GPT2_CUDA_EMU_KERNELS`).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheDir } from "../../lib/io/cache.ts";
import { CUDA_KERNEL_DIR, readSources, unitSource } from "../../lib/backends/cuda/build.ts";
import { KERNELS } from "../../lib/backends/cuda/kernels.ts";

/** This folder: the emulator's headers (cuda_emulator.h, runtime.h). */
const EMULATOR_DIR = fileURLToPath(new URL(".", import.meta.url));

/** The emulator's library: the kernels compiled by the system C++ compiler, cached. */
export async function buildEmulator(): Promise<string> {
  const sources = readSources();
  const runtime = ["cuda_emulator.h", "runtime.h"].map((n) =>
    Deno.readTextFileSync(join(EMULATOR_DIR, n))
  );
  const names = Object.keys(KERNELS);
  const unit = [
    `#include "${join(EMULATOR_DIR, "runtime.h")}"`,
    unitSource(sources),
    "static const emu::Entry ENTRIES[] = {",
    ...names.map((n) => `  EMU_KERNEL(${n}),`),
    "};",
    "const emu::Entry* emu_entries() { return ENTRIES; }",
    `int emu_entry_count() { return ${names.length}; }`,
  ].join("\n");
  const cxx = Deno.env.get("CXX") ?? "c++";
  const flags = [
    "-O2",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-Wno-unknown-pragmas",
  ];
  const key = createHash("sha256").update(unit).update(runtime.join("\0")).update(flags.join(" "))
    .update([...sources.values()].join("\0")).digest("hex").slice(0, 16);
  const dir = cacheDir("cuda");
  const path = join(dir, `emulator-${key}.so`);
  try {
    if (Deno.statSync(path).isFile) return path;
  } catch {
    // not built yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const src = join(dir, `emulator-${key}.${Deno.pid}.cpp`), tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(src, unit);
  try {
    const r = await new Deno.Command(cxx, {
      args: [...flags, "-I", EMULATOR_DIR, "-I", CUDA_KERNEL_DIR, "-o", tmp, src],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      throw new Error(
        `Compiling the CUDA emulator with ${cxx} failed:\n${new TextDecoder().decode(r.stderr)}`,
      );
    }
    await Deno.rename(tmp, path);
    return path;
  } finally {
    await Deno.remove(src).catch(() => {});
  }
}
