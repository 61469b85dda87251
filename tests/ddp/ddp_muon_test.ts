// DDP with Muon: the gradients are averaged over the ranks before Newton-Schulz orthogonalises
// them, so 2 ranks x B must train as 1 process with 2 accumulation steps of B (same tokens per
// step), on the reference backend, with every speedrun option on (the untied head included: a
// parameter of AdamW's groups under Muon's split).
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { join } from "node:path";
import { readSafetensors, toFloat32 } from "../../lib/io/safetensors.ts";
import { assertClose, freePort, runTask as run, smallModelFlags } from "../support.ts";

const root = join(import.meta.dirname!, "..", "..");

/** The speedrun's options, Muon among them, on the reference backend. */
const muonFlags = [
  "--backend",
  "cpu",
  "--optimizer",
  "muon",
  "--muon-lr",
  "0.02",
  "--mlp",
  "relu2",
  "--qk-norm",
  "--pos",
  "rotary",
  "--untie-head",
];

Deno.test("ddp: Muon with 2 ranks x B equals 1 rank with 2 accumulation steps (losses and weights)", async () => {
  const [ddpDir, oneDir] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  try {
    const [ddp, one] = await Promise.all([
      run([
        "lib/cli/ddp.ts",
        "--nproc-per-node",
        "2",
        "--master-port",
        String(freePort()),
        "--timeout",
        "120",
        "--",
        ...smallModelFlags,
        ...muonFlags,
        "--steps",
        "4",
        "--log-dir",
        ddpDir,
      ]),
      run([
        "lib/cli/train.ts",
        ...smallModelFlags,
        ...muonFlags,
        "--total-batch-size",
        "64",
        "--steps",
        "4",
        "--log-dir",
        oneDir,
      ]),
    ]);
    assertEquals(ddp.code, 0, ddp.stderr + ddp.stdout);
    assertEquals(one.code, 0, one.stderr);
    ok(ddp.stdout.includes("[rank0] => calculated gradient accumulation steps: 1"), ddp.stdout);
    ok(one.stdout.includes("=> calculated gradient accumulation steps: 2"), one.stdout);
    for (const out of [ddp.stdout, one.stdout]) {
      ok(/optimizer = muon/.test(out), `Muon must be on: ${out.slice(0, 2000)}`);
    }
    const losses = (s: string) => [...s.matchAll(/step +\d+ \| loss: ([\d.]+)/g)].map((m) => +m[1]);
    assertEquals(losses(ddp.stdout).length, 4);
    assertEquals(losses(one.stdout).length, 4);
    assertClose("losses", losses(ddp.stdout), losses(one.stdout), { rtol: 1e-6, atol: 2e-6 });
    const a = await readSafetensors(join(ddpDir, "model", "model.safetensors"));
    const b = await readSafetensors(join(oneDir, "model", "model.safetensors"));
    assertEquals([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    ok(a.tensors.has("lm_head.weight"), `an untied head is saved: ${[...a.tensors.keys()]}`);
    for (const [name, t] of a.tensors) {
      assertClose(name, toFloat32(t), toFloat32(b.tensors.get(name)!), { rtol: 1e-4, atol: 1e-6 });
    }
  } finally {
    await Deno.remove(ddpDir, { recursive: true });
    await Deno.remove(oneDir, { recursive: true });
  }
});
