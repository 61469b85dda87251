/**
 * The page's script: `page/main.ts` and what it imports from `lib/` bundled into one
 * browser module by `deno bundle` (esbuild underneath), at serve time, so the page always
 * runs the model code and kernels of this checkout, never a stale copy.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The page's entry point. */
export const PAGE_ENTRY: string = fileURLToPath(new URL("./page/main.ts", import.meta.url));

/** The repository's deno.json, for the import map (`tiktoken`) and the npm folder. */
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

/**
 * Bundles the page into one JavaScript module and returns its text.
 *
 * @throws {Error} with deno bundle's output, when it fails (a type of code a browser cannot
 * run, a missing npm package).
 */
export async function bundlePage(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "gpt2_page_" });
  try {
    const out = join(dir, "app.js");
    const args = ["bundle", "--quiet", "--config", CONFIG, "--platform", "browser"];
    args.push("--output", out, PAGE_ENTRY);
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      const said = new TextDecoder().decode(new Uint8Array([...stdout, ...stderr])).trim();
      throw new Error(`Cannot bundle the page ${PAGE_ENTRY}: deno bundle exited ${code}: ${said}`);
    }
    return await Deno.readTextFile(out);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
