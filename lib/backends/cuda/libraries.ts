/**
 * Where the CUDA libraries are: the driver's `libcuda.so.1`, cuBLASLt, cuBLAS, NVRTC and NCCL,
 * searched in `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64`, the linker's paths
 * (`LD_LIBRARY_PATH`, `ldconfig -p`, the usual system folders) and Python's
 * `site-packages/nvidia/<package>/lib` folders (PyTorch's wheels: `nvidia/cu13/lib`,
 * `nvidia/nccl/lib`), for every soname a library has gone by (with and without the version
 * suffix). Nothing here loads a library: it finds files, and says where it looked.
 *
 * One setting replaces the search for the driver, for cuBLASLt and for NCCL:
 * `GPT2_CUDA_DRIVER_LIB`, `GPT2_CUBLASLT_LIB` and `GPT2_NCCL_LIB` name the file to open
 * instead (the CPU emulator's libraries in the tests, tests/cuda_emulator/ffi.ts and
 * nccl_ffi.ts); the backend and NCCL open it exactly as they open the real one.
 *
 * @module
 */

import { join } from "node:path";

/** The CUDA libraries the backend (and NCCL) load. */
export type CudaLibraryName = "cuda" | "cublasLt" | "cublas" | "nvrtc" | "nccl";

/** Where a library was found (`path`, null when nowhere), and every place looked at. */
export interface LibraryHit {
  path: string | null;
  tried: string[];
}

/** The file names each library has had, newest first. */
export const SONAMES: Readonly<Record<CudaLibraryName, readonly string[]>> = {
  cuda: ["libcuda.so.1", "libcuda.so"],
  cublasLt: ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"],
  cublas: ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
  nvrtc: ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
  nccl: ["libnccl.so.2", "libnccl.so"],
};

/** The settings that name a library's file, replacing the search. */
export const LIBRARY_OVERRIDES: Readonly<Partial<Record<CudaLibraryName, string>>> = {
  cuda: "GPT2_CUDA_DRIVER_LIB",
  cublasLt: "GPT2_CUBLASLT_LIB",
  nccl: "GPT2_NCCL_LIB",
};

/** The file a setting names for `name` (LIBRARY_OVERRIDES), or null where none is set. */
export function libraryOverride(name: CudaLibraryName): string | null {
  const variable = LIBRARY_OVERRIDES[name];
  return (variable && Deno.env.get(variable)) || null;
}

/** System folders the dynamic linker reads (x86-64 and arm64 Debian/Ubuntu, RHEL, WSL). */
const SYSTEM_DIRS = [
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib64",
  "/usr/lib",
  "/usr/local/lib",
  "/usr/lib/wsl/lib",
  "/usr/local/nvidia/lib64",
  "/usr/local/nvidia/lib",
];

/** Python environments whose `nvidia` wheels hold CUDA libraries, besides those on PATH. */
const KNOWN_PYTHONS = ["/opt/torch/.venv/bin/python3"];

let cachedLinkerMap: Map<string, string> | null = null;
let cachedSitePackages: string[] | null = null;

/**
 * The file of library `name`, with the list of places looked at (for an error message that
 * says where it looked). The first existing file wins, in this order: `$CUDA_HOME/lib64`
 * (and `$CUDA_PATH/lib64`), `/usr/local/cuda/lib64`, `LD_LIBRARY_PATH`, the linker's cache,
 * the system folders, Python's `nvidia/*` wheels (not for the driver, which no wheel holds).
 * Where `libraryOverride(name)` names a file, only that file.
 */
export function findCudaLibrary(name: CudaLibraryName): LibraryHit {
  const override = libraryOverride(name);
  if (override) {
    return {
      path: isFile(override) ? override : null,
      tried: [`${LIBRARY_OVERRIDES[name]}: ${override}`],
    };
  }
  const sonames = SONAMES[name];
  const tried: string[] = [];
  for (const dir of searchDirs()) {
    for (const soname of sonames) {
      const path = join(dir, soname);
      tried.push(path);
      if (isFile(path)) return { path, tried };
    }
  }
  const linker = linkerMap();
  for (const soname of sonames) {
    tried.push(`ldconfig -p: ${soname}`);
    const path = linker.get(soname);
    if (path && isFile(path)) return { path, tried };
  }
  // the driver comes with the NVIDIA driver package, never in a wheel: no Python to start
  for (const dir of name === "cuda" ? [] : pythonNvidiaLibDirs()) {
    for (const soname of sonames) {
      const path = join(dir, soname);
      tried.push(path);
      if (isFile(path)) return { path, tried };
    }
  }
  return { path: null, tried };
}

/** The places `findCudaLibrary` looks (for `name`, default any but the driver), in a few words. */
export function searchSummary(name?: CudaLibraryName): string {
  const places = "$CUDA_HOME/lib64, /usr/local/cuda/lib64, LD_LIBRARY_PATH, ldconfig -p, " +
    "the system library folders";
  return name === "cuda" ? places : `${places} and Python's site-packages/nvidia/*/lib`;
}

function searchDirs(): string[] {
  const dirs: string[] = [];
  for (const v of ["CUDA_HOME", "CUDA_PATH"]) {
    const root = Deno.env.get(v);
    if (root) dirs.push(join(root, "lib64"), join(root, "lib"));
  }
  dirs.push("/usr/local/cuda/lib64");
  for (const d of (Deno.env.get("LD_LIBRARY_PATH") ?? "").split(":")) if (d) dirs.push(d);
  dirs.push(...SYSTEM_DIRS);
  return [...new Set(dirs)];
}

/** `ldconfig -p`'s soname -> path map for this machine's architecture, read once. */
function linkerMap(): Map<string, string> {
  if (cachedLinkerMap) return cachedLinkerMap;
  const map = new Map<string, string>();
  const arch = Deno.build.arch === "aarch64" ? "AArch64" : "x86-64"; // 32-bit entries skipped
  for (const cmd of ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]) {
    const out = runQuietly(cmd, ["-p"]);
    if (out === null) continue;
    for (const line of out.split("\n")) {
      // "	libcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"
      const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)/.exec(line);
      if (!m || map.has(m[1])) continue;
      if (m[2].includes(arch)) map.set(m[1], m[3]);
    }
    break;
  }
  cachedLinkerMap = map;
  return map;
}

/** `site-packages/nvidia/<pkg>/lib` (and one level deeper) of every Python found, read once. */
function pythonNvidiaLibDirs(): string[] {
  if (!cachedSitePackages) {
    const sites = new Set<string>();
    const pythons = [...KNOWN_PYTHONS, "python3", "python"];
    const script = "import site,sys\n" +
      "print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]+sys.path))";
    for (const py of pythons) {
      const out = runQuietly(py, ["-c", script]);
      if (out === null) continue;
      for (const line of out.split("\n")) {
        if (line.trim().endsWith("-packages")) sites.add(line.trim());
      }
    }
    cachedSitePackages = [...sites];
  }
  const dirs: string[] = [];
  for (const site of cachedSitePackages) {
    const nvidia = join(site, "nvidia");
    for (const pkg of listDirs(nvidia)) {
      dirs.push(join(nvidia, pkg, "lib"));
      for (const sub of listDirs(join(nvidia, pkg))) {
        if (sub !== "lib") dirs.push(join(nvidia, pkg, sub, "lib"));
      }
    }
  }
  return dirs.filter(isDir);
}

function runQuietly(cmd: string, args: string[]): string | null {
  try {
    const r = new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).outputSync();
    return r.success ? new TextDecoder().decode(r.stdout) : null;
  } catch {
    return null; // not installed, or not allowed to run
  }
}

function listDirs(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].filter((e) => e.isDirectory || e.isSymlink).map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
