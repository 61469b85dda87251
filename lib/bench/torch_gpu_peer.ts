/**
 * The PyTorch GPU peer (`../shared/bench/torch_gpt2_gpu.py`: GPT-2 124M as build-nanogpt's
 * `train_gpt2.py` runs it on a GPU, eager or `--compile`), run with the python3 that holds
 * PyTorch and parsed from its SUMMARY line.
 *
 * Environment: `GPT2_SHARED_BENCH` (the script's folder, `../shared/bench` by default) and
 * `GPT2_TORCH_PYTHON` (the interpreter; else `python3` on PATH, else
 * `/opt/torch/.venv/bin/python3`).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The peer script: `$GPT2_SHARED_BENCH/torch_gpt2_gpu.py`, default `../shared/bench`. */
export function torchGpuScript(): string {
  const dir = Deno.env.get("GPT2_SHARED_BENCH") ??
    resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "shared", "bench");
  return join(dir, "torch_gpt2_gpu.py");
}

/** What one run of the peer measured. */
export interface TorchGpuTiming {
  medianMs: number;
  minMs: number;
  tokensPerSec: number;
  /** `torch.cuda.max_memory_allocated()` over the timed steps, GiB. */
  peakMemGib: number;
}

async function canImportTorch(python: string): Promise<boolean> {
  try {
    const r = await new Deno.Command(python, {
      args: ["-c", "import torch; assert torch.cuda.is_available()"],
      stdout: "null",
      stderr: "null",
    }).output();
    return r.success;
  } catch {
    return false;
  }
}

let found: Promise<string | null> | null = null;

/** The first interpreter that imports torch with CUDA: `$GPT2_TORCH_PYTHON`, python3, the venv. */
export function torchGpuPython(): Promise<string | null> {
  found ??= (async () => {
    const explicit = Deno.env.get("GPT2_TORCH_PYTHON");
    for (const python of explicit ? [explicit] : ["python3", "/opt/torch/.venv/bin/python3"]) {
      if (await canImportTorch(python)) return python;
    }
    return null;
  })();
  return found;
}

/** Why the peer cannot run here, or null when it can. */
export async function torchGpuUnavailable(): Promise<string | null> {
  if (!existsSync(torchGpuScript())) return `the peer script ${torchGpuScript()} is missing`;
  if (await torchGpuPython()) return null;
  const explicit = Deno.env.get("GPT2_TORCH_PYTHON");
  return `no python3 here imports torch with CUDA available (tried ${
    explicit ?? "python3, /opt/torch/.venv/bin/python3"
  }; GPT2_TORCH_PYTHON names another)`;
}

/** The numbers of a SUMMARY line (`key=value`, numeric values only). */
export function parseSummary(output: string): Record<string, number> | null {
  const line = output.split("\n").find((l) => l.startsWith("SUMMARY"));
  if (!line) return null;
  const summary: Record<string, number> = {};
  for (const m of line.matchAll(/(\w+)=(-?[\d.]+)(?=\s|$)/g)) summary[m[1]] = Number(m[2]);
  return summary;
}

/** Options of one peer run: the script's flags. */
export interface TorchGpuRun {
  B: number;
  T: number;
  precision: "fp32" | "tf32" | "bf16";
  compile: boolean;
  warmup: number;
  iters: number;
}

/** The peer's command line after the interpreter: the script and its flags for `o`. */
export function torchGpuArgs(o: TorchGpuRun): string[] {
  return [
    torchGpuScript(),
    "--B",
    String(o.B),
    "--T",
    String(o.T),
    "--precision",
    o.precision,
    "--warmup",
    String(o.warmup),
    "--iters",
    String(o.iters),
    ...(o.compile ? ["--compile"] : []),
  ];
}

/** Runs the peer once and returns its timing; an error carries the end of its output. */
export async function runTorchGpuPeer(o: TorchGpuRun): Promise<TorchGpuTiming> {
  const python = await torchGpuPython();
  if (!python) throw new Error(`The PyTorch GPU peer cannot run: ${await torchGpuUnavailable()}`);
  const args = torchGpuArgs(o);
  const r = await new Deno.Command(python, { args, env: { PYTHONUNBUFFERED: "1" } }).output();
  const dec = new TextDecoder();
  const out = dec.decode(r.stdout), s = parseSummary(out);
  if (!r.success || !s || !(s.median_ms > 0)) {
    throw new Error(
      `The PyTorch GPU peer failed (${args.slice(1).join(" ")}, exit code ${r.code}): ${
        (out + dec.decode(r.stderr)).slice(-800)
      }`,
    );
  }
  return {
    medianMs: s.median_ms,
    minMs: s.min_ms,
    tokensPerSec: s.tok_s_at_median,
    peakMemGib: s.peak_mem_gib,
  };
}
