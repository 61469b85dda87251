/**
 * One C++ source compiled into a shared library by the system's compiler (`CXX`, else `c++`),
 * kept in the CUDA cache under a hash of the source, the flags and the compiler, so the
 * emulator's libraries (libcuda_emu.cpp, libnccl_emu.cpp) build once per change.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { cacheDir } from "../../lib/io/cache.ts";

/** `SOURCE` built as `<name>-<hash>.so` with `flags` (and `libs` after the source), or found. */
export async function buildCachedLibrary(
  sourcePath: string,
  flags: readonly string[],
  libs: readonly string[] = [],
): Promise<string> {
  const source = await Deno.readTextFile(sourcePath);
  const cxx = Deno.env.get("CXX") ?? "c++";
  const key = createHash("sha256").update(source).update(flags.join(" ")).update(cxx).digest("hex")
    .slice(0, 16);
  const dir = cacheDir("cuda");
  const path = join(dir, `${basename(sourcePath).replace(/\.cpp$/, "")}-${key}.so`);
  try {
    if (Deno.statSync(path).isFile) return path;
  } catch {
    // not built yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  const r = await new Deno.Command(cxx, {
    args: [...flags, "-o", tmp, sourcePath, ...libs],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) {
    throw new Error(
      `Compiling ${sourcePath} with ${cxx} failed:\n${new TextDecoder().decode(r.stderr)}`,
    );
  }
  await Deno.rename(tmp, path);
  return path;
}
