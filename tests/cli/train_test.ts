// `deno task train` (lib/cli/train.ts): --precision validated and in --help; Ctrl-C writes a
// checkpoint that --resume latest continues from, and a finished run writes its report.
import { deepStrictEqual as assertEquals, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { repoRoot, runCheckpoints, runTask, smallModelFlags } from "../support.ts";

const NEEDS = /--precision f16 needs --backend webgpu on an adapter with shader-f16/;

Deno.test("train task: --precision is validated and named, and in --help", async () => {
  const run = (args: string[]) => runTask(["lib/cli/train.ts", ...args]);
  const help = await run(["--help"]);
  strictEqual(help.code, 0);
  ok(/--precision P\s+f32 or f16/.test(help.stdout), help.stdout);
  const bad = await run(["--precision", "bf16"]);
  strictEqual(bad.code, 1);
  ok(bad.stderr.includes('--precision expects one of f32, f16, found "bf16"'), bad.stderr);
  const cpu = await run(["--precision", "f16", "--backend", "cpu"]);
  strictEqual(cpu.code, 1);
  ok(NEEDS.test(cpu.stderr), cpu.stderr);
});

Deno.test("train task: SIGINT writes a checkpoint and exits 0; --resume latest continues", async () => {
  const dir = await Deno.makeTempDir();
  const args = [
    "run",
    "--allow-all",
    "lib/cli/train.ts",
    ...smallModelFlags,
    "--steps",
    "1000",
    "--checkpoint-every",
    "0",
    "--log-dir",
    dir,
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = await readUntil(child.stdout, /step {5}1 \|/);
  child.kill("SIGINT");
  const status = await child.status;
  const rest = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  assertEquals(status.code, 0, rest);
  const ckpts = await runCheckpoints(dir);
  assertEquals(ckpts.length, 1, stdout);
  ok(ckpts[0].step >= 2, `checkpoint at ${ckpts[0].step}`);
  const r = await runTask([
    ...args.slice(2, -6),
    "--steps",
    String(ckpts[0].step + 1),
    "--eval-every",
    "0",
    "--log-dir",
    dir,
    "--resume",
    "latest",
  ]);
  assertEquals(r.code, 0, r.stderr);
  ok(r.stdout.includes(`resuming from ${ckpts[0].path} at step ${ckpts[0].step}`), r.stdout);
  ok(r.stdout.includes(`step ${String(ckpts[0].step).padStart(5)} |`), r.stdout);
  // a run that ends normally leaves its report beside the log; the interrupted one did not
  const report = await Deno.readTextFile(join(dir, "report.html"));
  ok(report.includes("<html") && report.includes("3.2924"), "report.html with the GPT-2 baseline");
  ok(r.stdout.includes(`wrote the run report ${join(dir, "report.html")}`), r.stdout);
});

/** Reads a stream until `pattern` shows up in it; returns what was read. */
async function readUntil(stream: ReadableStream<Uint8Array>, pattern: RegExp): Promise<string> {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Stream ended before ${pattern}: ${text}`);
    text += dec.decode(value);
  }
  // keep draining so the child never blocks on a full pipe
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return text;
}
