/**
 * Headless Chromium for the browser tests (plots, notebooks in Jupyter, the serve page, WGSL
 * in Tint): Debian's `/usr/bin/chromium` driven by playwright-core, which downloads no browser.
 *
 * @module
 */

import type { Browser } from "playwright-core";

/** Debian's Chromium, installed by `deno task setup`. */
export const CHROMIUM = "/usr/bin/chromium";

/** WebGPU in headless Chromium on a machine without a GPU: SwiftShader's software adapter. */
export const WEBGPU_FLAGS: readonly string[] = [
  "--enable-unsafe-webgpu",
  "--use-webgpu-adapter=swiftshader",
  "--use-angle=swiftshader",
];

/** Launches headless Chromium, quiet (no network chatter, no first-run), with `extra` flags. */
export async function launchChromium(extra: readonly string[] = []): Promise<Browser> {
  const { chromium } = await import("playwright-core");
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      ...extra,
    ],
  });
}
