/**
 * The project's cache folder, shared by hub downloads (`lib/io/hub.ts`) and the native
 * backend's compiled kernels (`lib/backends/native/build.ts`): `GPT2_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/gpt2-deno`, else `~/.cache/gpt2-deno`.
 *
 * @module
 */

import { join } from "node:path";

/**
 * The cache folder, or `sub` inside it: `GPT2_CACHE_DIR`, else `$XDG_CACHE_HOME/gpt2-deno`,
 * else `~/.cache/gpt2-deno`.
 */
export function cacheDir(sub?: string): string {
  const root = cacheRoot();
  return sub ? join(root, sub) : root;
}

function cacheRoot(): string {
  const explicit = Deno.env.get("GPT2_CACHE_DIR");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "gpt2-deno");
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  if (!home) {
    throw new Error(
      "Expected GPT2_CACHE_DIR, XDG_CACHE_HOME or HOME to be set to find a cache folder, found none",
    );
  }
  return join(home, ".cache", "gpt2-deno");
}
