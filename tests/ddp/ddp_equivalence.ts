// The DDP equivalence both DDP tests check: 2 ranks x B against 1 process with 2 accumulation
// steps of B (the same tokens per step), same losses and the same final weights.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { readSafetensors, toFloat32 } from "../../lib/io/safetensors.ts";
import { assertClose, freePort, runTask, smallModelFlags, type TaskOutput } from "../support.ts";

/** Both runs' output, for checks of their own. */
export interface EquivalentRuns {
  ddp: TaskOutput;
  one: TaskOutput;
}

/**
 * Trains 4 steps of the small model with `flags` under `deno task ddp --nproc-per-node 2` and in
 * one process with `--total-batch-size 64` (2 accumulation steps), and asserts the same losses
 * (to 1e-6) and final weights (to 1e-4); the log folders are removed afterwards.
 */
export async function assertDdpEqualsAccumulation(
  flags: readonly string[],
  { timeoutS = 60 }: { timeoutS?: number } = {},
): Promise<EquivalentRuns> {
  const [ddpDir, oneDir] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  try {
    const train = [...smallModelFlags, ...flags, "--steps", "4", "--log-dir"];
    const [ddp, one] = await Promise.all([
      runTask([
        "lib/cli/ddp.ts",
        "--nproc-per-node",
        "2",
        "--master-port",
        String(freePort()),
        "--timeout",
        String(timeoutS),
        "--",
        ...train,
        ddpDir,
      ]),
      runTask(["lib/cli/train.ts", ...train, oneDir, "--total-batch-size", "64"]),
    ]);
    assertEquals(ddp.code, 0, ddp.stderr + ddp.stdout);
    assertEquals(one.code, 0, one.stderr);
    ok(ddp.stdout.includes("[rank0] => calculated gradient accumulation steps: 1"), ddp.stdout);
    ok(one.stdout.includes("=> calculated gradient accumulation steps: 2"), one.stdout);
    const losses = (s: string) => [...s.matchAll(/step +\d+ \| loss: ([\d.]+)/g)].map((m) => +m[1]);
    assertEquals(losses(ddp.stdout).length, 4);
    assertEquals(losses(one.stdout).length, 4);
    assertClose("losses", losses(ddp.stdout), losses(one.stdout), { rtol: 1e-6, atol: 2e-6 });
    const a = await readSafetensors(join(ddpDir, "model", "model.safetensors"));
    const b = await readSafetensors(join(oneDir, "model", "model.safetensors"));
    assertEquals([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    for (const [name, t] of a.tensors) {
      assertClose(name, toFloat32(t), toFloat32(b.tensors.get(name)!), { rtol: 1e-4, atol: 1e-6 });
    }
    return { ddp, one };
  } finally {
    await Deno.remove(ddpDir, { recursive: true });
    await Deno.remove(oneDir, { recursive: true });
  }
}
