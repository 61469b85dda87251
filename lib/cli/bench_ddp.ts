/**
 * `deno task bench-ddp`: the time to all-reduce (average) GPT-2 124M's gradients, 148
 * tensors and 124,475,904 floats (498 MB), between the ranks `deno task ddp` starts. Rank 0
 * prints each repeat and the median. `--transport tcp` on the launcher measures the TCP
 * path instead of shared memory.
 *
 * ```sh
 * deno task bench-ddp                       # 2 ranks, shared memory
 * deno task bench-ddp --repeats 3 --model gpt2
 * ```
 *
 * @module
 */

import { numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";
import { GPT, gptConfig } from "../model/gpt.ts";
import { CpuBackend } from "../backends/cpu/mod.ts";
import { distEnvFromEnv, initProcessGroup } from "../ddp/process_group.ts";

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    model: { type: "string" },
    repeats: { type: "string" },
    timeout: { type: "string" },
    "slot-mib": { type: "string" },
  });
  const env = distEnvFromEnv();
  if (!env) throw new Error("Run the benchmark under the launcher: deno task bench-ddp");
  const group = await initProcessGroup(env, {
    timeoutMs: numberFlag(f, "timeout", 300, { min: 1 }) * 1000,
    transport: Deno.env.get("GPT2_DDP_TRANSPORT") === "tcp" ? "tcp" : "shm",
    chunkFloats: numberFlag(f, "slot-mib", 16, { integer: true, min: 1 }) * 2 ** 18,
  });
  try {
    // the gradients' shapes, without the model's weights or init
    const model = new GPT(new CpuBackend(), gptConfig(stringFlag(f, "model", "gpt2"), 50304), {
      skipInit: true,
    });
    const grads = model.parameters().map((p) =>
      new Float32Array(p.size).fill((env.rank + 1) / 1024)
    );
    const n = grads.reduce((a, g) => a + g.length, 0);
    if (env.rank === 0) {
      console.log(
        `all-reduce (avg) of ${grads.length} tensors, ${n.toLocaleString("en-US")} floats (${
          (n * 4 / 1e6).toFixed(0)
        } MB), ${group.describe()}`,
      );
    }
    const times: number[] = [];
    const repeats = numberFlag(f, "repeats", 5, { integer: true, min: 1 });
    for (let i = 0; i < repeats + 1; i++) {
      await group.barrier();
      const t0 = performance.now();
      await group.allReduce(grads, "avg");
      const ms = performance.now() - t0;
      if (i > 0) times.push(ms); // the first touches every page of the mapping
      if (env.rank === 0) {
        console.log(`${i === 0 ? "warm-up" : `repeat ${i}`}: ${ms.toFixed(1)} ms`);
      }
    }
    // every rank must hold the mean of 1/1024, 2/1024, ...
    const expected = (env.worldSize + 1) / 2 / 1024;
    if (
      Math.abs(grads[0][0] - expected) > 1e-6 || Math.abs(grads.at(-1)!.at(-1)! - expected) > 1e-6
    ) {
      throw new Error(
        `Expected every value to be ${expected} after the average, found ${grads[0][0]}`,
      );
    }
    times.sort((a, b) => a - b);
    if (env.rank === 0) {
      const med = times[Math.floor(times.length / 2)];
      console.log(
        `median ${med.toFixed(1)} ms (${
          (n * 4 / 1e9 / (med / 1000)).toFixed(2)
        } GB/s of gradients per rank)`,
      );
    }
  } finally {
    group.close();
  }
});
