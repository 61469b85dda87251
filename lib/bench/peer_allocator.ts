/**
 * The memory allocator the PyTorch CPU peer runs under. PyTorch's CPU performance guide advises
 * jemalloc or tcmalloc: glibc's malloc hands a training step's large buffers back to the kernel
 * and page-faults them in again every step, which on these VMs made PyTorch's step about 2.5x
 * slower. The allocator is preloaded (`LD_PRELOAD`), jemalloc told to keep freed memory
 * (`MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`). `$GPT2_TORCH_MALLOC` names the library,
 * or `glibc` for none; otherwise the first of Debian's and the usual library folders' jemalloc
 * (`libjemalloc2`), then tcmalloc, is taken.
 *
 * @module
 */

/** The allocator of the peer's process. */
export interface PeerAllocator {
  /** "jemalloc", "tcmalloc", "glibc malloc", or the preloaded library's file name. */
  name: string;
  /** The shared library to preload; null for glibc's malloc. */
  library: string | null;
}

/** jemalloc's settings for the peer: freed pages are kept, never returned to the kernel. */
export const JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1";

/** The libraries tried, in order: jemalloc in each folder, then tcmalloc. */
export function allocatorCandidates(arch: string): string[] {
  const dirs = [`/usr/lib/${arch}-linux-gnu`, "/usr/lib64", "/usr/lib", "/usr/local/lib"];
  const names = ["libjemalloc.so.2", "libtcmalloc.so.4", "libtcmalloc_minimal.so.4"];
  return names.flatMap((name) => dirs.map((dir) => `${dir}/${name}`));
}

/** The allocator's name from its library's file name. */
function allocatorName(library: string): string {
  const file = library.slice(library.lastIndexOf("/") + 1);
  if (file.includes("jemalloc")) return "jemalloc";
  if (file.includes("tcmalloc")) return "tcmalloc";
  return file;
}

/**
 * The peer's allocator: `$GPT2_TORCH_MALLOC` (a library's path, or `glibc`), else the first
 * of {@linkcode allocatorCandidates} that `exists`, else glibc's malloc.
 *
 * @throws {Error} when `$GPT2_TORCH_MALLOC` names a library that does not exist
 */
export function findPeerAllocator(
  env: (name: string) => string | undefined,
  exists: (path: string) => boolean,
  arch: string = Deno.build.arch,
): PeerAllocator {
  const chosen = env("GPT2_TORCH_MALLOC");
  if (chosen === "glibc") return { name: "glibc malloc", library: null };
  if (chosen) {
    if (!exists(chosen)) {
      throw new Error(
        `GPT2_TORCH_MALLOC expects an allocator's shared library or "glibc", found "${chosen}", which does not exist`,
      );
    }
    return { name: allocatorName(chosen), library: chosen };
  }
  const library = allocatorCandidates(arch).find(exists);
  return library
    ? { name: allocatorName(library), library }
    : { name: "glibc malloc", library: null };
}

/**
 * The environment the peer's process adds to ours: the library preloaded ahead of any
 * `LD_PRELOAD` already set, and for jemalloc {@linkcode JEMALLOC_CONF} unless `MALLOC_CONF` is
 * set already. Empty for glibc's malloc.
 */
export function allocatorEnv(
  allocator: PeerAllocator,
  env: (name: string) => string | undefined,
): Record<string, string> {
  if (!allocator.library) return {};
  const preload = env("LD_PRELOAD");
  const added: Record<string, string> = {
    LD_PRELOAD: preload ? `${allocator.library}:${preload}` : allocator.library,
  };
  if (allocator.name === "jemalloc" && !env("MALLOC_CONF")) added.MALLOC_CONF = JEMALLOC_CONF;
  return added;
}

/** One line on the allocator for the bench's header; for glibc's malloc, what to install. */
export function describeAllocator(allocator: PeerAllocator, added: Record<string, string>): string {
  if (!allocator.library) {
    return "PyTorch peer's allocator: glibc malloc (no jemalloc or tcmalloc found). glibc malloc " +
      "page-faults every step on these VMs, which made PyTorch look 2.5x slower than it is: " +
      "install jemalloc (apt-get install -y libjemalloc2) or tcmalloc, or name one in " +
      "GPT2_TORCH_MALLOC; the PyTorch rows below are labelled glibc malloc";
  }
  const settings = Object.entries(added).map(([k, v]) => `${k}=${v}`).join(" ");
  return `PyTorch peer's allocator: ${allocator.name} (${settings})`;
}
