// lib/bench/torch_gpu_peer.ts against the PyTorch GPU peer script itself
// (`$GPT2_SHARED_BENCH/torch_gpt2_gpu.py`): the command line the CUDA bench gives it, run on
// the CPU in the script's smoke mode (tiny sizes), ends in a SUMMARY line the bench reads, so
// a flag the script rejects or a summary the bench cannot read is found here, not on a GPU.
// Ignored where no python3 imports torch or the script is missing.
import { ok } from "node:assert/strict";
import { existsSync } from "node:fs";
import { parseSummary, torchGpuArgs, torchGpuScript } from "../../lib/bench/torch_gpu_peer.ts";

/** Why the peer cannot run here on the CPU, or null. */
async function unavailable(): Promise<string | null> {
  if (!existsSync(torchGpuScript())) return `no peer script at ${torchGpuScript()}`;
  try {
    const r = await new Deno.Command("python3", {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    }).output();
    return r.success ? null : "python3 does not import torch";
  } catch {
    return "no python3";
  }
}

const reason = await unavailable();
if (reason) console.log(`torch gpu peer: skipped: ${reason}`);

Deno.test({
  name:
    "torch gpu peer: the bench's command line, on the CPU at tiny sizes, ends in a SUMMARY line the bench reads",
  ignore: reason !== null,
  async fn() {
    const args = [
      ...torchGpuArgs({ B: 2, T: 32, precision: "bf16", compile: false, warmup: 1, iters: 2 }),
      // the script's smoke mode: the CPU and a tiny model
      ...["--device", "cpu", "--n-layer", "1", "--n-embd", "32", "--n-head", "2"],
    ];
    const r = await new Deno.Command("python3", { args, env: { PYTHONUNBUFFERED: "1" } }).output();
    const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    ok(r.success, out);
    const s = parseSummary(out);
    ok(s !== null && s.median_ms > 0 && s.min_ms > 0 && s.tok_s_at_median > 0, out);
    ok(s.B === 2 && s.T === 32 && s.compile === 0 && "peak_mem_gib" in s, out);
  },
});
