/**
 * `deno task bench-ddp`: the time to all-reduce (average) GPT-2 124M's gradients, 148
 * tensors and 124,475,904 floats (498 MB), between the ranks `deno task ddp` starts, the way
 * training does it (`allReduceGradients`). Two paths: "copy", the gradients in each rank's own
 * memory, copied through the group's slots; "in-place", the gradients placed in shared memory
 * (`placeGradients`) and reduced where they are. Rank 0 prints each repeat and the medians.
 * `--transport tcp` on the launcher measures the TCP path (which has no in-place one).
 *
 * ```sh
 * deno task bench-ddp                       # 2 ranks, shared memory, both paths
 * deno task bench-ddp --repeats 3 --path in-place --model gpt2
 * ```
 *
 * @module
 */

import { numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";
import { GPT, gptConfig } from "../model/gpt.ts";
import { CpuBackend } from "../backends/cpu/mod.ts";
import { distEnvFromEnv, initProcessGroup, type ProcessGroup } from "../ddp/process_group.ts";
import { allReduceGradients, placeGradients } from "../train/ddp_sync.ts";
import { gradBuffer, type Tensor } from "../model/tensor.ts";

const PATHS = ["copy", "in-place", "both"] as const;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    model: { type: "string" },
    repeats: { type: "string" },
    timeout: { type: "string" },
    "slot-mib": { type: "string" },
    path: { type: "string" },
  });
  const env = distEnvFromEnv();
  if (!env) throw new Error("Run the benchmark under the launcher: deno task bench-ddp");
  const path = stringFlag(f, "path", "both");
  if (!(PATHS as readonly string[]).includes(path)) {
    throw new Error(`--path expects one of ${PATHS.join(", ")}, found "${path}"`);
  }
  const repeats = numberFlag(f, "repeats", 5, { integer: true, min: 1 });
  const group = await initProcessGroup(env, {
    timeoutMs: numberFlag(f, "timeout", 300, { min: 1 }) * 1000,
    transport: Deno.env.get("GPT2_DDP_TRANSPORT") === "tcp" ? "tcp" : "shm",
    chunkFloats: numberFlag(f, "slot-mib", 16, { integer: true, min: 1 }) * 2 ** 18,
  });
  const say = (line: string): void => {
    if (env.rank === 0) console.log(line);
  };
  try {
    // the gradients' shapes, without the model's weights or init
    const backend = new CpuBackend();
    const model = new GPT(backend, gptConfig(stringFlag(f, "model", "gpt2"), 50304), {
      skipInit: true,
    });
    const params = model.parameters();
    const n = params.reduce((a, p) => a + p.size, 0);
    say(
      `all-reduce (avg) of ${params.length} tensors, ${n.toLocaleString("en-US")} floats (${
        (n * 4 / 1e6).toFixed(0)
      } MB), ${group.describe()}`,
    );
    // every rank holds (rank + 1) / 1024 everywhere: the mean is the same on every rank
    const grad = (p: Tensor): Float32Array => backend.hostView(gradBuffer(p)) as Float32Array;
    const fill = (): void => {
      for (const p of params) grad(p).fill((env.rank + 1) / 1024);
    };
    const medians: Record<string, number> = {};
    if (path !== "in-place") {
      fill();
      say("copy: the gradients in each rank's own memory, copied by group.allReduce");
      medians.copy = await timeRepeats(model, group, grad, repeats, say);
    }
    if (path !== "copy") {
      const placement = await placeGradients(model, group);
      say(`in-place: ${placement.note}`);
      if (placement.inPlace) {
        fill();
        medians["in-place"] = await timeRepeats(model, group, grad, repeats, say);
      }
    }
    const mb = n * 4 / 1e9;
    for (const [name, ms] of Object.entries(medians)) {
      say(
        `${name}: median ${ms.toFixed(1)} ms (${
          (mb / (ms / 1000)).toFixed(2)
        } GB/s of gradients per rank)`,
      );
    }
    if (medians.copy !== undefined && medians["in-place"] !== undefined) {
      say(`in-place is ${(medians.copy / medians["in-place"]).toFixed(2)}x as fast as copy`);
    }
  } finally {
    group.close();
  }
});

/**
 * Times `repeats` gradient all-reduces after a warm-up (the first touches every page),
 * printing each; checks the mean came out on every rank; returns the median in ms.
 */
async function timeRepeats(
  model: GPT,
  group: ProcessGroup,
  grad: (p: Tensor) => Float32Array,
  repeats: number,
  say: (line: string) => void,
): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < repeats + 1; i++) {
    await group.barrier();
    const t0 = performance.now();
    await allReduceGradients(model, group);
    const ms = performance.now() - t0;
    if (i > 0) times.push(ms);
    say(`  ${i === 0 ? "warm-up" : `repeat ${i}`}: ${ms.toFixed(1)} ms`);
  }
  // every rank must hold the mean of 1/1024, 2/1024, ...
  const expected = (group.worldSize + 1) / 2 / 1024;
  const params = model.parameters();
  const first = grad(params[0])[0], last = grad(params.at(-1)!).at(-1)!;
  if (Math.abs(first - expected) > 1e-6 || Math.abs(last - expected) > 1e-6) {
    throw new Error(`Expected every value to be ${expected} after the average, found ${first}`);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
