// The CUDA kernels compile: every kernels/cuda/*.cu through nvcc into the backend's one
// fatbin (buildCudaKernels), which must hold cubins for sm_80 and sm_90 and PTX for
// compute_90, every __global__ function of every .cu file and every entry point of the
// backend's kernel table (lib/backends/cuda/kernels.ts). Needs nvcc, not a GPU, so it
// runs in CI; a kernel that does not compile fails it. Ignored, saying so, without nvcc.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { buildCudaKernels, CUDA_KERNEL_DIR } from "../../lib/backends/cuda/build.ts";
import { KERNELS } from "../../lib/backends/cuda/kernels.ts";

/** One image of a fatbin: a cubin (ELF) or PTX, and the architecture it is for. */
interface FatbinImage {
  kind: "elf" | "ptx";
  /** The architecture as nvcc numbers it: 80 for sm_80 / compute_80. */
  arch: number;
  /** The image's bytes (PTX is usually compressed; cubins are not). */
  payload: Uint8Array;
}

const FATBIN_MAGIC = 0xba55ed50;

/**
 * The images of an nvcc fatbin: a 16-byte header (magic, version, header size, payload
 * size), then entries, each a header (kind 1 = PTX, 2 = ELF at byte 0; its size at 4; the
 * padded payload size at 8; the architecture at 28) followed by its payload. This layout is
 * undocumented; it was read off fatbins nvcc 13.0 writes, so a parse error says so.
 */
function fatbinImages(bytes: Uint8Array): FatbinImage[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const images: FatbinImage[] = [];
  let at = 0;
  // nvcc may concatenate several fatbins (one per translation unit) into one file
  while (at + 16 <= bytes.length) {
    const magic = view.getUint32(at, true);
    if (magic !== FATBIN_MAGIC) {
      throw new Error(
        `Expected the fatbin magic 0x${FATBIN_MAGIC.toString(16)} at byte ${at}, found 0x${
          magic.toString(16)
        } (has nvcc's fatbin layout changed?)`,
      );
    }
    const headerSize = view.getUint16(at + 6, true);
    const end = at + headerSize + Number(view.getBigUint64(at + 8, true));
    let entry = at + headerSize;
    while (entry < end) {
      const kind = view.getUint16(entry, true), size = view.getUint32(entry + 4, true);
      const padded = Number(view.getBigUint64(entry + 8, true));
      if (kind !== 1 && kind !== 2) throw new Error(`Unknown fatbin image kind ${kind}`);
      images.push({
        kind: kind === 1 ? "ptx" : "elf",
        arch: view.getUint32(entry + 28, true),
        payload: bytes.subarray(entry + size, entry + size + padded),
      });
      entry += size + padded;
    }
    at = end;
  }
  return images;
}

/** The names of the `__global__` functions in CUDA source (launch bounds and templates too). */
function kernelNames(source: string): string[] {
  // comments, and preprocessor lines with their continuations (a macro's parameters are
  // not kernel names)
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "")
    .replace(/^[ \t]*#(?:[^\n]*\\\n)*[^\n]*$/gm, "");
  const names = code.matchAll(
    /__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s+)?void\s+(?:__launch_bounds__\s*\([^)]*\)\s+)?(\w+)\s*\(/g,
  );
  return [...names].map((m) => m[1]);
}

/**
 * nvcc's path, or null: where the backend's build looks ($NVCC, $CUDA_HOME/bin,
 * /usr/local/cuda/bin, /usr/local/bin, PATH); null too under GPT2_CUDA_NO_NVCC.
 */
async function findNvcc(): Promise<string | null> {
  if (Deno.env.get("GPT2_CUDA_NO_NVCC")) return null;
  const home = Deno.env.get("CUDA_HOME") ?? Deno.env.get("CUDA_PATH");
  const candidates = [
    Deno.env.get("NVCC"),
    home && join(home, "bin", "nvcc"),
    "/usr/local/cuda/bin/nvcc",
    "/usr/local/bin/nvcc",
    "nvcc",
  ].filter((c): c is string => !!c);
  for (const nvcc of candidates) {
    try {
      const r = await new Deno.Command(nvcc, {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      })
        .output();
      if (r.success) return nvcc;
    } catch {
      // not there: try the next
    }
  }
  return null;
}

const nvcc = await findNvcc();
if (!nvcc) {
  console.log(
    "cuda build: skipped: nvcc not found ($NVCC, $CUDA_HOME/bin, /usr/local/cuda/bin, " +
      "/usr/local/bin, PATH), or GPT2_CUDA_NO_NVCC is set",
  );
}

Deno.test({
  name:
    "cuda: every kernels/cuda/*.cu compiles with nvcc into one fatbin (sm_80, sm_90, compute_90 PTX)",
  ignore: !nvcc,
  async fn() {
    const sources = [...Deno.readDirSync(CUDA_KERNEL_DIR)]
      .filter((e) => e.isFile && e.name.endsWith(".cu"))
      .map((e) => e.name)
      .sort();
    ok(sources.length > 0, `Expected .cu files in ${CUDA_KERNEL_DIR}, found none`);
    const build = await buildCudaKernels({ quiet: true });
    assertEquals(build.via, "nvcc", `Expected the kernels built by nvcc, found ${build.via}`);
    const images = fatbinImages(await Deno.readFile(build.path));
    const has = (kind: FatbinImage["kind"], arch: number) =>
      images.some((i) => i.kind === kind && i.arch === arch);
    const found = images.map((i) => `${i.kind} ${i.arch}`).join(", ");
    ok(has("elf", 80), `Expected a cubin for sm_80 in ${build.path}, found ${found}`);
    ok(has("elf", 90), `Expected a cubin for sm_90 in ${build.path}, found ${found}`);
    ok(has("ptx", 90), `Expected PTX for compute_90 in ${build.path}, found ${found}`);

    // every kernel of every file is in the sm_90 cubins (their symbol tables are plain text)
    const text = new TextDecoder("latin1");
    const cubins = images.filter((i) => i.kind === "elf" && i.arch === 90)
      .map((i) => text.decode(i.payload)).join("\n");
    for (const file of sources) {
      const names = kernelNames(await Deno.readTextFile(join(CUDA_KERNEL_DIR, file)));
      ok(names.length > 0, `Expected a __global__ function in kernels/cuda/${file}, found none`);
      for (const name of names) {
        ok(cubins.includes(name), `kernels/cuda/${file}: ${name} is not in the sm_90 cubins`);
      }
    }
    // and every entry point of the backend's kernel table (macro-made ones too) is there
    for (const name of Object.keys(KERNELS)) {
      ok(
        cubins.includes(`${name}\0`),
        `lib/backends/cuda/kernels.ts names ${name}, which is not in the sm_90 cubins`,
      );
    }
  },
});

Deno.test("cuda build test: the fatbin reader and the kernel-name scan", () => {
  // a hand-made fatbin: one header, an sm_80 cubin entry and a compute_90 PTX entry
  const entry = (kind: number, arch: number, payload: number[]) => {
    const e = new Uint8Array(64 + payload.length), v = new DataView(e.buffer);
    v.setUint16(0, kind, true);
    v.setUint32(4, 64, true);
    v.setBigUint64(8, BigInt(payload.length), true);
    v.setUint32(28, arch, true);
    e.set(payload, 64);
    return e;
  };
  const body = [entry(2, 80, [0x7f, 0x45, 0x4c, 0x46]), entry(1, 90, [1, 2, 3, 4, 5, 6, 7, 8])];
  const size = body.reduce((n, e) => n + e.length, 0);
  const file = new Uint8Array(16 + size), v = new DataView(file.buffer);
  v.setUint32(0, FATBIN_MAGIC, true);
  v.setUint16(4, 1, true);
  v.setUint16(6, 16, true);
  v.setBigUint64(8, BigInt(size), true);
  file.set(body[0], 16);
  file.set(body[1], 16 + body[0].length);
  const images = fatbinImages(file);
  assertEquals(images.map((i) => [i.kind, i.arch, i.payload.length]), [["elf", 80, 4], [
    "ptx",
    90,
    8,
  ]]);
  assertEquals(
    kernelNames(
      "__global__ void a(int x) {}\n// __global__ void commented() {}\n" +
        '#define K(NAME) \\\n  extern "C" __global__ void NAME(float* p) {}\n' +
        "template <int N> __global__ __launch_bounds__(256) void b(float* p) {}\n" +
        'extern "C" __global__ void __launch_bounds__(256)\n    c(int n) {}',
    ),
    ["a", "b", "c"],
  );
});
