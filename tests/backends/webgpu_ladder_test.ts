// lib/backends/webgpu/ladder.ts: the WebGPU ladder's rungs (no adapter needed).
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { webGpuLadder } from "../../lib/backends/webgpu/ladder.ts";

for (const fallback of [false, true]) {
  const adapter = fallback ? "a software adapter" : "a GPU";
  Deno.test(`webGpuLadder on ${adapter}: naive to the adapter's best, one change per rung`, () => {
    const rungs = webGpuLadder(fallback);
    assertEquals(rungs.map((r) => r.name), [
      "naive kernels",
      "tiled matmul",
      "fused kernels",
      "flash attention",
      "vocab 50304",
      "fused AdamW",
    ]);
    assertEquals(rungs[0].kernels, {
      matmul: "naive",
      attention: "materialized",
      fusedElementwise: false,
      adamw: "elementwise",
    });
    assertEquals(rungs[0].vocabSize, 50257);
    const tile = fallback ? "register" : "tiled";
    assertEquals(rungs.at(-1)!.kernels, {
      matmul: tile,
      attention: "flash",
      fusedElementwise: true,
      adamw: "fused",
    });
    assertEquals(rungs.at(-1)!.vocabSize, 50304);
    assertEquals(rungs[1].kernels.matmul, tile);
    for (let i = 1; i < rungs.length; i++) {
      const [before, rung] = [rungs[i - 1], rungs[i]];
      const changed: string[] = (Object.keys(rung.kernels) as (keyof typeof rung.kernels)[])
        .filter((k) => rung.kernels[k] !== before.kernels[k]);
      if (rung.vocabSize !== before.vocabSize) changed.push("vocabSize");
      assertEquals(changed.length, 1, `${rung.name} changes ${changed.join(", ")}`);
    }
  });
}
