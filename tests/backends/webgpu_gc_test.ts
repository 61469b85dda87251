// The WebGPU backend's buffer pool under garbage collection: a child Deno (with
// --v8-flags=--expose-gc, see webgpu_gc_child.ts) collects garbage in the middle of
// training steps, so freed buffers are reused as early as they can be; the losses must
// still equal the reference backend's, and the pool must actually have been used.
import { ok } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { hasWebGpuAdapter } from "../../lib/backends/webgpu/mod.ts";
import { assertClose } from "../support.ts";

Deno.test({
  name: "webgpu: buffers reused after garbage collection keep training exact",
  ignore: !(await hasWebGpuAdapter()),
  async fn() {
    const child = fileURLToPath(new URL("./webgpu_gc_child.ts", import.meta.url));
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--v8-flags=--expose-gc", child],
      stderr: "piped",
      stdout: "piped",
    }).output();
    const stdout = new TextDecoder().decode(r.stdout);
    if (!r.success) {
      throw new Error(`The child failed: ${new TextDecoder().decode(r.stderr).slice(-2000)}`);
    }
    const { cpu, gpu, reused } = JSON.parse(stdout.trim().split("\n").pop()!);
    assertClose("losses with collections mid-step", gpu, cpu, { rtol: 2e-5 });
    ok(reused > 50, `Expected the pool to serve many buffers, it served ${reused}`);
  },
});
