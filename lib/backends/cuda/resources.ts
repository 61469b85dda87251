/**
 * What each CUDA kernel needs of a block, from the compiler: for sm_80 and sm_90, every entry
 * point's registers per thread, static shared memory and spills (`ptxas -v` of the same
 * translation unit build.ts compiles) and the `.maxntid` of its PTX (`__launch_bounds__`),
 * hence the largest block it can launch with. The CPU emulator refuses launches above it as
 * a GPU would (tests/cuda_emulator/), so CI sees a block too large for a kernel without a GPU.
 *
 * One nvcc run (`--keep` leaves the PTX beside the cubins), cached under `cacheDir("cuda")`
 * by a hash of the sources, the flags and nvcc's version, as build.ts caches the fatbin.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { cacheDir } from "../../io/cache.ts";
import {
  CUDA_KERNEL_DIR,
  findNvcc,
  NVCC_FLAGS,
  readSources,
  sourcesHash,
  unitSource,
} from "./build.ts";

/** The architectures the fatbin carries machine code for (build.ts's DEFAULT_GENCODE). */
export const RESOURCE_ARCHES = ["sm_80", "sm_90"] as const;

/** One of `RESOURCE_ARCHES`. */
export type ResourceArch = (typeof RESOURCE_ARCHES)[number];

/** CUDA's limit on threads per block (every architecture since Fermi). */
export const MAX_BLOCK_THREADS = 1024;
/** 32-bit registers a block may use (compute capability 5.0 to 12.x). */
export const REGISTERS_PER_BLOCK = 65536;
/**
 * Registers are allocated per warp, threads x registers rounded up to this many, and the
 * launch check rounds the warps up to the SM's four sub-partitions: the toolkit's own
 * occupancy model, include/cuda_occupancy.h (`cudaOccRegAllocationGranularity`: 256 for
 * compute capability 3 to 12; `cudaOccSubPartitionsPerMultiprocessor`: 4 for 8.x and 9.x;
 * the "Hardware check" in `cudaOccMaxBlocksPerSMRegsLimit`), the same "register allocation
 * unit size" and warp "granularity" the CUDA Occupancy Calculator lists per compute capability
 * (e.g. https://xmartlabs.github.io/cuda-calculator).
 */
export const REGISTER_ALLOCATION_UNIT = 256;
const SUB_PARTITIONS = 4;
const WARP = 32;

/**
 * The most shared memory (static + dynamic) a block may opt in to, in bytes:
 * CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN of the A100 (163 KiB) and the
 * H100/H200 (227 KiB), as the CUDA programming guide's per-compute-capability table lists.
 */
export const SHARED_OPTIN_BYTES: Readonly<Record<ResourceArch, number>> = {
  sm_80: 163 * 1024,
  sm_90: 227 * 1024,
};

/** What limits a kernel's largest block. */
export type BlockLimit = "__launch_bounds__" | "registers" | "CUDA's 1024 threads";

/** One kernel's needs on one architecture. */
export interface KernelResources {
  /** Registers per thread. */
  registers: number;
  /** Statically declared shared memory, in bytes (dynamic comes with the launch). */
  staticSharedBytes: number;
  /** Bytes per thread stored to local memory for lack of registers. */
  spillStoreBytes: number;
  /** Bytes per thread loaded back from those spills. */
  spillLoadBytes: number;
  /** The PTX's `.maxntid` (x * y * z): `__launch_bounds__`; 1024 without one. */
  maxntid: number;
  /** The largest block it can launch with: min(maxntid, 1024, the register limit). */
  maxThreads: number;
  /** Which of the three that is. */
  limitedBy: BlockLimit;
}

/** Every kernel's needs on each architecture, and the compiler that measured them. */
export interface ResourceTable {
  /** nvcc's version line. */
  nvcc: string;
  /** By architecture, then by kernel name. */
  kernels: Record<ResourceArch, Record<string, KernelResources>>;
}

/**
 * The largest block a kernel with `registers` per thread and `.maxntid` `maxntid` launches
 * with, and what limits it.
 */
export function largestBlock(
  registers: number,
  maxntid = MAX_BLOCK_THREADS,
): { threads: number; limitedBy: BlockLimit } {
  const perWarp = Math.ceil((registers * WARP) / REGISTER_ALLOCATION_UNIT) *
    REGISTER_ALLOCATION_UNIT;
  const byRegisters = perWarp === 0
    ? Infinity
    : Math.floor(REGISTERS_PER_BLOCK / perWarp / SUB_PARTITIONS) * SUB_PARTITIONS * WARP;
  const bound = Math.min(maxntid, MAX_BLOCK_THREADS);
  const limitedBy: BlockLimit = byRegisters < bound
    ? "registers"
    : maxntid < MAX_BLOCK_THREADS
    ? "__launch_bounds__"
    : "CUDA's 1024 threads";
  const threads = Math.min(bound, byRegisters);
  return { threads, limitedBy };
}

interface PtxasEntry {
  registers: number;
  staticSharedBytes: number;
  spillStoreBytes: number;
  spillLoadBytes: number;
}

/** `ptxas -v`'s report (nvcc's stderr) by architecture, then entry point. */
export function parsePtxasInfo(text: string): Map<string, Map<string, PtxasEntry>> {
  const out = new Map<string, Map<string, PtxasEntry>>();
  let current: PtxasEntry | null = null, currentName = "", propertiesOf = "";
  for (const line of text.split("\n")) {
    const entry = line.match(/Compiling entry function '([^']+)' for '(sm_\d+[a-z]?)'/);
    if (entry) {
      currentName = entry[1];
      current = { registers: 0, staticSharedBytes: 0, spillStoreBytes: 0, spillLoadBytes: 0 };
      if (!out.has(entry[2])) out.set(entry[2], new Map());
      out.get(entry[2])!.set(currentName, current);
      continue;
    }
    if (!current) continue;
    const properties = line.match(/Function properties for (\S+)/);
    if (properties) propertiesOf = properties[1];
    // a device function's own frame (not inlined) has its own properties line: skip it
    const spills = line.match(/(\d+) bytes spill stores, (\d+) bytes spill loads/);
    if (spills && propertiesOf === currentName) {
      current.spillStoreBytes = Number(spills[1]);
      current.spillLoadBytes = Number(spills[2]);
    }
    const used = line.match(/Used (\d+) registers/);
    if (used) {
      current.registers = Number(used[1]);
      current.staticSharedBytes = Number(line.match(/(\d+) bytes smem/)?.[1] ?? 0);
    }
  }
  return out;
}

/** Each `.entry`'s `.maxntid` (or `.reqntid`) in a PTX file, as x * y * z threads. */
export function parseMaxntid(ptx: string): Map<string, number> {
  const out = new Map<string, number>();
  // `.entry name(params)` then its performance directives, up to the body's `{`
  for (const m of ptx.matchAll(/\.entry\s+([\w$]+)\s*\(([^)]*)\)([^{]*)\{/g)) {
    const bound = m[3].match(/\.(?:maxntid|reqntid)\s+(\d+)(?:\s*,\s*(\d+))?(?:\s*,\s*(\d+))?/);
    out.set(
      m[1],
      bound ? Number(bound[1]) * Number(bound[2] ?? 1) * Number(bound[3] ?? 1) : MAX_BLOCK_THREADS,
    );
  }
  return out;
}

/** The table from nvcc's report and the PTX of each architecture. */
export function resourceTable(
  nvcc: string,
  ptxasInfo: string,
  ptx: Readonly<Record<ResourceArch, string>>,
): ResourceTable {
  const info = parsePtxasInfo(ptxasInfo);
  const kernels = {} as Record<ResourceArch, Record<string, KernelResources>>;
  for (const arch of RESOURCE_ARCHES) {
    const entries = info.get(arch);
    if (!entries) throw new Error(`Expected ptxas's report for ${arch}, found none`);
    const bounds = parseMaxntid(ptx[arch]);
    kernels[arch] = {};
    for (const [name, e] of entries) {
      const maxntid = bounds.get(name) ?? MAX_BLOCK_THREADS;
      const { threads, limitedBy } = largestBlock(e.registers, maxntid);
      kernels[arch][name] = { ...e, maxntid, maxThreads: threads, limitedBy };
    }
  }
  return { nvcc, kernels };
}

/**
 * Every kernel's resources from the cache, else measured now (one nvcc run, a few seconds),
 * or null where there is no nvcc (or `GPT2_CUDA_NO_NVCC` is set).
 *
 * @throws {Error} when nvcc fails, with its output.
 */
export async function kernelResources(
  options: { quiet?: boolean } = {},
): Promise<ResourceTable | null> {
  const nvcc = Deno.env.get("GPT2_CUDA_NO_NVCC") ? null : await findNvcc();
  if (!nvcc) return null;
  const sources = readSources();
  const flags = [
    ...NVCC_FLAGS,
    ...RESOURCE_ARCHES.flatMap((a) => ["-gencode", `arch=compute_${a.slice(3)},code=${a}`]),
    "-Xptxas",
    "-v",
  ];
  const key = createHash("sha256").update(sourcesHash(sources)).update(flags.join(" "))
    .update(nvcc.version).digest("hex").slice(0, 16);
  const dir = cacheDir("cuda");
  const path = join(dir, `resources-${key}.json`);
  try {
    return JSON.parse(await Deno.readTextFile(path)) as ResourceTable;
  } catch {
    // not measured yet
  }
  if (!options.quiet) console.error(`cuda: measuring the kernels' registers with ${nvcc.path}`);
  const work = await Deno.makeTempDir({ prefix: "gpt2-cuda-resources-" });
  try {
    const unit = join(work, "kernels.cu");
    await Deno.writeTextFile(unit, unitSource(sources));
    const r = await new Deno.Command(nvcc.path, {
      args: [
        ...flags,
        "--keep",
        "--keep-dir",
        work,
        "-I",
        CUDA_KERNEL_DIR,
        "-o",
        join(work, "kernels.fatbin"),
        unit,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    const log = dec.decode(r.stdout) + dec.decode(r.stderr);
    if (!r.success) throw new Error(`Measuring kernels/cuda with nvcc failed:\n${log.trim()}`);
    const ptx = {} as Record<ResourceArch, string>;
    for (const arch of RESOURCE_ARCHES) {
      ptx[arch] = await Deno.readTextFile(join(work, `kernels.compute_${arch.slice(3)}.ptx`));
    }
    const table = resourceTable(nvcc.version, log, ptx);
    await Deno.mkdir(dir, { recursive: true });
    const tmp = `${path}.${Deno.pid}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(table));
    await Deno.rename(tmp, path);
    return table;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * Why a block of `threads` threads with `sharedBytes` of dynamic shared memory cannot launch
 * kernel `name` on some architecture of the table, or null when it can on all of them:
 * "block" above `__launch_bounds__` or 1024 threads (the driver's CUDA_ERROR_INVALID_VALUE),
 * "registers" above what the register file holds (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES),
 * "shared" above the opt-in shared memory (CUDA_ERROR_INVALID_VALUE).
 */
export function launchRefusal(
  table: ResourceTable,
  name: string,
  threads: number,
  sharedBytes: number,
): { reason: "block" | "registers" | "shared"; message: string } | null {
  for (const arch of RESOURCE_ARCHES) {
    const k = table.kernels[arch][name];
    if (!k) continue;
    if (threads > k.maxThreads) {
      const why = k.limitedBy === "registers"
        ? `registers: ${k.registers} per thread, ${REGISTERS_PER_BLOCK} per block`
        : k.limitedBy;
      return {
        reason: k.limitedBy === "registers" ? "registers" : "block",
        message: `${name}: block of ${threads} threads, the kernel takes at most ${k.maxThreads} ` +
          `(${why}) on ${arch}`,
      };
    }
    const total = k.staticSharedBytes + sharedBytes;
    if (total > SHARED_OPTIN_BYTES[arch]) {
      return {
        reason: "shared",
        message: `${name}: ${k.staticSharedBytes} bytes of static and ${sharedBytes} of dynamic ` +
          `shared memory, ${arch} allows at most ${SHARED_OPTIN_BYTES[arch]} per block`,
      };
    }
  }
  return null;
}
