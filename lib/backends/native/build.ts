/**
 * Builds the native backend's C kernels (`kernels/cpu/*.c`) into one shared library on
 * first use, with the system C compiler, cached by a hash of the sources, the flags and the
 * compiler's version, so an edit or a new compiler rebuilds it.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheDir } from "../../io/cache.ts";

/** What was built, and how. */
export interface NativeLibrary {
  /** Path of the shared library. */
  path: string;
  /** The OpenBLAS library linked for GEMMs, or null for the project's own GEMM. */
  blas: string | null;
  /** Whether this call compiled it (false: taken from the cache). */
  compiled: boolean;
}

const KERNEL_DIR = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "kernels",
  "cpu",
);
const BASE_FLAGS = [
  "-O3",
  "-march=native",
  "-fopenmp",
  "-fno-math-errno",
  "-shared",
  "-fPIC",
  "-std=c11",
  // never unloaded: Deno closes a library when the worker that opened it ends (each test file
  // is one), and a thread that ran a GEMM in OpenBLAS then ran its thread-exit cleanup in
  // unmapped code (a segfault) once OpenBLAS had gone with the last library using it
  "-Wl,-z,nodelete",
];
const BLAS_DIRS = [
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib64",
  "/usr/lib",
  "/usr/local/lib",
];

/** How to build the kernels library. */
export interface NativeBuildOptions {
  /**
   * Link OpenBLAS where it is installed (it is then available for GEMMs); false builds
   * without it. Default: true, unless `GPT2_NO_BLAS` is set to a non-empty value.
   */
  linkBlas?: boolean;
}

/** Whether to link OpenBLAS when the caller does not say: not when `GPT2_NO_BLAS` is set. */
export function linkBlasByDefault(): boolean {
  return !Deno.env.get("GPT2_NO_BLAS");
}

/** OpenBLAS's shared library on this machine, or null where it is not installed. */
export function findOpenBlas(): string | null {
  for (const dir of BLAS_DIRS) {
    for (const name of ["libopenblas.so.0", "libopenblas.so"]) {
      try {
        if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
      } catch {
        // not here
      }
    }
  }
  return null;
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: (e as Error).message };
  }
}

/**
 * Compiles (or finds in the cache) the kernels library; with and without OpenBLAS are two
 * libraries, cached side by side.
 *
 * @throws {Error} when there is no C compiler or the build fails, with the compiler's output.
 */
export async function buildNativeLibrary(options: NativeBuildOptions = {}): Promise<NativeLibrary> {
  const cc = Deno.env.get("CC") ?? "cc";
  const version = await run(cc, ["--version"]);
  if (!version.ok) {
    throw new Error(`No C compiler: "${cc} --version" failed (${version.out.trim()})`);
  }
  const blas = (options.linkBlas ?? linkBlasByDefault()) ? findOpenBlas() : null;
  const flags = [...BASE_FLAGS, ...(blas ? ["-DUSE_CBLAS"] : [])];
  const sources = [...Deno.readDirSync(KERNEL_DIR)].filter((e) => e.name.endsWith(".c")).map((e) =>
    e.name
  )
    .sort();
  const hash = createHash("sha256");
  hash.update(version.out.split("\n")[0]).update(flags.join(" ")).update(blas ?? "no-blas");
  const hashed = [...Deno.readDirSync(KERNEL_DIR)].map((e) => e.name).filter((n) =>
    /\.[ch]$/.test(n)
  ).sort();
  for (const s of hashed) hash.update(s).update(Deno.readFileSync(join(KERNEL_DIR, s))); // headers too
  const dir = cacheDir("native");
  const path = join(dir, `libgpt2-${hash.digest("hex").slice(0, 16)}.so`);
  try {
    if (Deno.statSync(path).isFile) return { path, blas, compiled: false };
  } catch {
    // not built yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  const args = [
    ...flags,
    ...sources.map((s) => join(KERNEL_DIR, s)),
    "-o",
    tmp,
    "-lm",
    ...(blas ? [blas] : []),
  ];
  console.error(
    `native: compiling ${sources.length} kernels with ${cc} ${flags.join(" ")}${
      blas ? ` and ${blas}` : ""
    }`,
  );
  const r = await run(cc, args);
  if (!r.ok) throw new Error(`Compiling kernels/cpu failed:\n${r.out.trim()}`);
  await Deno.rename(tmp, path);
  return { path, blas, compiled: true };
}
