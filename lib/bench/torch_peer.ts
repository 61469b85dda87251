/**
 * The PyTorch CPU peer (`../shared/bench/torch_gpt2_step.py`), parsed from its SUMMARY line.
 * It runs under the first Python that imports torch: `$GPT2_TORCH_PYTHON`, `python3` on the
 * PATH (pip's `torch`), then Debian's `/usr/bin/python3` (`python3-torch`), its process given
 * the environment of its allocator (lib/bench/peer_allocator.ts).
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

/** A process to start: the program, its arguments and what it adds to our environment. */
export interface PeerCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The peer's arguments for `B` x `T` steps of `mode`: warm-up, timed iterations, and `--bf16`
 * (autocast to bfloat16, as build-nanogpt runs) for the bf16 row.
 */
export function peerStepArgs(
  o: { mode: "train" | "fwd"; B: number; T: number; warmup: number; iters: number },
  precision: "fp32" | "bf16",
): string[] {
  const args = [o.mode, o.B, o.T, o.warmup, o.iters].map(String);
  return precision === "bf16" ? [...args, "--bf16"] : args;
}

/** The command that runs `script` with `args` under `python`, `env` added (the allocator's). */
export function torchPeerCommand(
  python: string,
  script: string,
  args: string[],
  env: Record<string, string>,
): PeerCommand {
  return { command: python, args: [script, ...args], env: { ...env } };
}

/** The numbers of the SUMMARY line in the peer's `stdout`, or null when it printed none. */
export function parsePeerSummary(stdout: string): PeerSummary | null {
  const line = stdout.split("\n").find((l) => l.startsWith("SUMMARY"));
  if (!line) return null;
  const summary: PeerSummary = {};
  for (const m of line.matchAll(/(\w+)=([\d.]+)/g)) summary[m[1]] = Number(m[2]);
  return summary;
}

/** Where {@linkcode runTorchPeer} finds what it runs; each defaults as the module says. */
export interface RunTorchPeerOptions {
  /** The Python (default: {@linkcode findTorchPython}'s). */
  python?: string;
  /** The peer script (default: {@linkcode torchPeerScript}). */
  script?: string;
  /** What the peer's process adds to our environment (lib/bench/peer_allocator.ts). */
  env?: Record<string, string>;
}

/** Runs the peer with `args` (e.g. ["train", "4", "64", "2", "5"]) and parses its summary. */
export async function runTorchPeer(
  args: string[],
  o: RunTorchPeerOptions = {},
): Promise<PeerSummary> {
  let python = o.python;
  if (python === undefined) {
    const found = await findTorchPython();
    if (typeof found === "string") throw new Error(`The PyTorch peer cannot run: ${found}`);
    python = found.python;
  }
  const c = torchPeerCommand(python, o.script ?? torchPeerScript(), args, o.env ?? {});
  const r = await new Deno.Command(c.command, { args: c.args, env: c.env }).output();
  const summary = parsePeerSummary(new TextDecoder().decode(r.stdout));
  if (!r.success || !summary) {
    throw new Error(
      `The PyTorch peer failed (${args.join(" ")}): ${
        new TextDecoder().decode(r.stderr).slice(-500)
      }`,
    );
  }
  return summary;
}
