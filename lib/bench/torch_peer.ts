/**
 * The PyTorch CPU peer (`../shared/bench/torch_gpt2_step.py`), parsed from its SUMMARY line.
 * It runs under the first Python that imports torch: `$GPT2_TORCH_PYTHON`, `python3` on the
 * PATH (pip's `torch`), then Debian's `/usr/bin/python3` (`python3-torch`).
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

/** A Python that imports torch, and torch's version there. */
export interface TorchPython {
  python: string;
  version: string;
}

/** The Pythons tried, in order. */
export function torchPythonCandidates(env: (name: string) => string | undefined): string[] {
  const chosen = env("GPT2_TORCH_PYTHON");
  return chosen ? [chosen] : ["python3", "/usr/bin/python3"];
}

let found: TorchPython | null = null;

/** The first candidate that imports torch, or why none can. */
export async function findTorchPython(): Promise<TorchPython | string> {
  if (found) return found;
  const tried: string[] = [];
  for (const python of torchPythonCandidates((n) => Deno.env.get(n))) {
    try {
      const r = await new Deno.Command(python, {
        args: ["-c", "import torch; print(torch.__version__)"],
        stderr: "null",
      }).output();
      if (r.success) {
        return found = { python, version: new TextDecoder().decode(r.stdout).trim() };
      }
      tried.push(`${python} has no torch`);
    } catch {
      tried.push(`${python} is missing`);
    }
  }
  return `${tried.join(", ")} (pip install torch, or apt-get install -y python3-torch)`;
}

/** Why the peer cannot run here, or null when it can. */
export async function torchPeerUnavailable(): Promise<string | null> {
  if (!existsSync(torchPeerScript())) return `the peer script ${torchPeerScript()} is missing`;
  const python = await findTorchPython();
  return typeof python === "string" ? python : null;
}

/** The numbers of one SUMMARY line. */
export type PeerSummary = Record<string, number>;

/** Runs the peer with `args` (e.g. ["train", "4", "64", "2", "5"]) and parses its summary. */
export async function runTorchPeer(args: string[]): Promise<PeerSummary> {
  const python = await findTorchPython();
  if (typeof python === "string") throw new Error(`The PyTorch peer cannot run: ${python}`);
  const r = await new Deno.Command(python.python, { args: [torchPeerScript(), ...args] })
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
