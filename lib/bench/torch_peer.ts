/**
 * The PyTorch CPU peer (`../shared/bench/torch_gpt2_step.py`, run with Debian's
 * `/usr/bin/python3` and `python3-torch`), parsed from its SUMMARY line.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The peer script: `$GPT2_SHARED_BENCH/torch_gpt2_step.py`, default `../shared/bench`. */
export function torchPeerScript(): string {
  const dir = Deno.env.get("GPT2_SHARED_BENCH") ??
    resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "shared", "bench");
  return join(dir, "torch_gpt2_step.py");
}

/** Why the peer cannot run here, or null when it can. */
export async function torchPeerUnavailable(): Promise<string | null> {
  if (!existsSync(torchPeerScript())) return `the peer script ${torchPeerScript()} is missing`;
  try {
    const r = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", "import torch"],
      stderr: "null",
    }).output();
    return r.success
      ? null
      : "Debian's python3-torch is not installed (apt-get install -y python3-torch)";
  } catch {
    return "/usr/bin/python3 is missing";
  }
}

/** The numbers of one SUMMARY line. */
export type PeerSummary = Record<string, number>;

/** Runs the peer with `args` (e.g. ["train", "4", "64", "2", "5"]) and parses its summary. */
export async function runTorchPeer(args: string[]): Promise<PeerSummary> {
  const r = await new Deno.Command("/usr/bin/python3", { args: [torchPeerScript(), ...args] })
    .output();
  const out = new TextDecoder().decode(r.stdout);
  const line = out.split("\n").find((l) => l.startsWith("SUMMARY"));
  if (!r.success || !line) {
    throw new Error(
      `The PyTorch peer failed (${args.join(" ")}): ${
        new TextDecoder().decode(r.stderr).slice(-500)
      }`,
    );
  }
  const summary: PeerSummary = {};
  for (const m of line.matchAll(/(\w+)=([\d.]+)/g)) summary[m[1]] = Number(m[2]);
  return summary;
}
