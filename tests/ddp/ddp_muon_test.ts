// DDP with Muon: the gradients are averaged over the ranks before Newton-Schulz orthogonalises
// them, so 2 ranks x B must train as 1 process with 2 accumulation steps of B (same tokens per
// step), on the reference backend, with every speedrun option on (the untied head included: a
// parameter of AdamW's groups under Muon's split).
import { ok } from "node:assert/strict";
import { assertDdpEqualsAccumulation } from "./ddp_equivalence.ts";

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
  const { ddp, one } = await assertDdpEqualsAccumulation(muonFlags, { timeoutS: 120 });
  for (const out of [ddp.stdout, one.stdout]) {
    ok(/optimizer = muon/.test(out), `Muon must be on: ${out.slice(0, 2000)}`);
  }
  ok(/untieHead = true/.test(one.stdout), `an untied head: ${one.stdout.slice(0, 2000)}`);
});
