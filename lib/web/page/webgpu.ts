/**
 * The page's WebGPU backend: the project's own `WebGpuBackend` and WGSL kernels, opened on
 * the browser's `navigator.gpu`, with the kernel sources fetched from the server (the Deno
 * side reads them from `kernels/wgsl/`). Without WebGPU, or without an adapter, it fails with
 * a message for the person at the browser.
 *
 * @module
 */

import { openDevice } from "../../backends/webgpu/device.ts";
import { WebGpuBackend, WGSL_FILES } from "../../backends/webgpu/mod.ts";
import { fetchBytes } from "./fetch_progress.ts";

/** Where the server serves `kernels/wgsl/NAME.wgsl`. */
export function wgslUrl(file: string): string {
  return `kernels/${file}.wgsl`;
}

/** Thrown when the browser cannot run WebGPU; its message says what to do. */
export class NoWebGpuError extends Error {
  override name = "NoWebGpuError";
}

/**
 * Opens the browser's WebGPU device with the project's kernels.
 *
 * @throws {NoWebGpuError} when the browser has no `navigator.gpu` or no adapter; {Error}
 * naming the URL when a kernel's source cannot be fetched.
 */
export async function openWebGpuBackend(base?: string | URL): Promise<WebGpuBackend> {
  base ??= globalThis.location?.href;
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new NoWebGpuError(
      "This browser has no WebGPU (navigator.gpu is missing): open the page in a recent " +
        "Chrome or Edge (on Linux start it with --enable-unsafe-webgpu), Safari 26, or " +
        "Firefox 141+ on Windows, over http://localhost or https",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new NoWebGpuError(
      "This browser has WebGPU but found no adapter (a blocked GPU or driver): check " +
        "chrome://gpu, or enable a software adapter (Chrome: --enable-unsafe-webgpu " +
        "--use-webgpu-adapter=swiftshader)",
    );
  }
  const decoder = new TextDecoder();
  const texts = await Promise.all(
    WGSL_FILES.map(async (file) =>
      [file, decoder.decode(await fetchBytes(new URL(wgslUrl(file), base).href))] as const
    ),
  );
  const { device, info } = await openDevice("high-performance");
  return new WebGpuBackend(device, info, new Map(texts));
}
