/// <reference lib="dom" />
// The WebGPU backend's kernel table compiled by a browser: every entry point of
// kernels/wgsl/ (with the preludes the backend compiles: f32 operands, head sizes 8 and 64)
// through Chromium's WGSL compiler (Tint), which is stricter than the wgpu (naga) under Deno.
// Every one must compile (cross-entropy's once failed there: Tint refuses a NaN constant, so
// the kernel makes its NaN from a var). Skipped with a notice where /usr/bin/chromium is
// missing.
import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { existsSync } from "node:fs";
import {
  KERNELS,
  type Prelude,
  preludeSource,
  WGSL_FILES,
} from "../../lib/backends/webgpu/kernels.ts";
import { repoRoot } from "../support.ts";
import { CHROMIUM, launchChromium, WEBGPU_FLAGS } from "../../tools/chromium.ts";

/** Kernels Tint may reject: none. */
const KNOWN_REJECTED: string[] = [];

/** Each kernel with each prelude variant to compile, as shader source and entry point. */
function compileJobs(sources: Map<string, string>): { key: string; code: string; entry: string }[] {
  const jobs = [];
  for (const [name, spec] of Object.entries(KERNELS)) {
    const kind = (spec as { prelude?: Prelude["kind"] }).prelude;
    const preludes: (Prelude | undefined)[] = kind === "operand"
      ? [{ kind: "operand", type: "f32" }]
      : kind === "headSize"
      ? [{ kind: "headSize", hs: 8 }, { kind: "headSize", hs: 64 }]
      : [undefined];
    for (const prelude of preludes) {
      const variant = prelude?.kind === "headSize" ? ` hs ${prelude.hs}` : "";
      jobs.push({
        key: `${name}${variant}`,
        code: preludeSource(prelude) + sources.get(spec.file)!,
        entry: spec.entry,
      });
    }
  }
  return jobs;
}

Deno.test({
  name: "WGSL kernels in Chromium's WebGPU: all compile to pipelines (Tint)",
  ignore: !existsSync(CHROMIUM),
  async fn() {
    const sources = new Map<string, string>();
    for (const file of WGSL_FILES) {
      sources.set(file, await Deno.readTextFile(`${repoRoot}/kernels/wgsl/${file}.wgsl`));
    }
    // WebGPU needs a secure origin: a blank page on 127.0.0.1
    const server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen() {} },
      () =>
        new Response("<!doctype html><title>kernels</title>", {
          headers: { "content-type": "text/html" },
        }),
    );
    const browser = await launchChromium(WEBGPU_FLAGS);
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${server.addr.port}/`);
      const failures = await page.evaluate(async (jobs) => {
        const adapter = await navigator.gpu.requestAdapter();
        if (!adapter) return { "no adapter": "navigator.gpu.requestAdapter() gave null" };
        const device = await adapter.requestDevice();
        const failed: Record<string, string> = {};
        for (const job of jobs) {
          device.pushErrorScope("validation");
          const module = device.createShaderModule({ code: job.code });
          const errors = (await module.getCompilationInfo()).messages
            .filter((m) => m.type === "error")
            .map((m) => `line ${m.lineNum}: ${m.message}`);
          try {
            await device.createComputePipelineAsync({
              layout: "auto",
              compute: { module, entryPoint: job.entry },
            });
          } catch (e) {
            if (errors.length === 0) errors.push(String(e));
          }
          await device.popErrorScope();
          if (errors.length > 0) failed[job.key] = errors.join("; ");
        }
        return failed;
      }, compileJobs(sources));
      assertEquals(Object.keys(failures), KNOWN_REJECTED, JSON.stringify(failures, null, 2));
      for (const name of KNOWN_REJECTED) {
        assertMatch(failures[name], /: value nan cannot be represented as 'f32'$/);
      }
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
