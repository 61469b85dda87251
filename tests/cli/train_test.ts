// `deno task train` (lib/cli/train.ts) as a process: --precision in --help and a bad one exits 1;
// Ctrl-C writes a checkpoint that --resume latest continues from, and a finished run writes its
// report. Then what may never be lost or silent: a second trainer in one --log-dir, a stale lock
// after kill -9, a NaN (--max-lr 1e6), a resume with nothing left to do, a fresh run among
// checkpoints and --overwrite, a failed checkpoint write, and sample/hellaswag verifying a
// checkpoint folder. The resolution of the flags (bad values, --min-lr above --max-lr, an
// empty --log-dir, --precision on a backend) is tested in-process: tests/train/settings_test.ts.
import { deepStrictEqual as assertEquals, ok, strictEqual } from "node:assert/strict";
import { hostname } from "node:os";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { checkFiniteCheckpoint, loadCheckpoint } from "../../lib/train/checkpoint.ts";
import { repoRoot, runCheckpoints, runTask, smallModelFlags, type TaskOutput } from "../support.ts";

Deno.test("train task: --precision is in --help; a bad one exits 1 naming it", async () => {
  const run = (args: string[]) => runTask(["lib/cli/train.ts", ...args]);
  const help = await run(["--help"]);
  strictEqual(help.code, 0);
  ok(/--precision P\s+f32, f16, tf32, bf16/.test(help.stdout), help.stdout);
  const bad = await run(["--precision", "fp8"]);
  strictEqual(bad.code, 1);
  ok(
    bad.stderr.includes('--precision expects one of f32, f16, tf32, bf16, found "fp8"'),
    bad.stderr,
  );
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

// ---- issue 14: nothing lost, nothing silent ----

/** `lib/cli/train.ts` with the small model and `args`, run to its end. */
function trainTask(args: readonly string[]): Promise<TaskOutput> {
  return runTask(["lib/cli/train.ts", ...smallModelFlags, ...args]);
}

/** `lib/cli/train.ts` with the small model and `args`, started with piped output. */
function spawnTrain(args: readonly string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "lib/cli/train.ts", ...smallModelFlags, ...args],
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Every file under `dir` with its modification time and SHA-256: to show nothing changed. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      for (const [k, v] of await snapshot(path)) out.set(join(e.name, k), v);
    } else {
      const data = await Deno.readFile(path);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
      out.set(e.name, `${(await Deno.stat(path)).mtime?.getTime()} ${digest.join(",")}`);
    }
  }
  return out;
}

/** The checkpoint loads, verified, and holds only finite values. */
async function assertGoodCheckpoint(path: string): Promise<void> {
  await checkFiniteCheckpoint(await loadCheckpoint(new CpuBackend(), path));
}

Deno.test("train task: a second trainer in the same --log-dir is refused naming the first; the first ends intact", async () => {
  const dir = await Deno.makeTempDir();
  const first = spawnTrain(["--steps", "1000", "--checkpoint-every", "0", "--log-dir", dir]);
  await readUntil(first.stdout, /step {5}1 \|/);
  const second = await trainTask(["--steps", "2", "--log-dir", dir]);
  strictEqual(second.code, 1, second.stdout);
  const owner = JSON.parse(await Deno.readTextFile(join(dir, "train.lock")));
  assertEquals(
    second.stderr.trim().split("\n").at(-1),
    `error: --log-dir ${dir} is in use by another trainer (pid ${first.pid} on host ${hostname()}, started ${owner.startedAt}): wait for it to end, or pick another --log-dir`,
  );
  first.kill("SIGINT");
  const rest = await new Response(first.stderr).text();
  assertEquals((await first.status).code, 0, rest);
  // the first run's log alone, step after step, and its one checkpoint
  const log = (await Deno.readTextFile(join(dir, "log.txt"))).trimEnd().split("\n");
  log.forEach((line, i) => ok(new RegExp(`^${i} train \\d+\\.\\d{6}$`).test(line), line));
  const ckpts = await runCheckpoints(dir);
  assertEquals(ckpts.map((c) => c.step), [log.length]);
  await assertGoodCheckpoint(ckpts[0].path);
  ok(!(await exists(join(dir, "train.lock"))), "the lock goes with its run");
});

Deno.test("train task: after kill -9 the stale lock is taken over, saying so, and --resume latest continues", async () => {
  const dir = await Deno.makeTempDir();
  const killed = spawnTrain(["--steps", "1000", "--checkpoint-every", "1", "--log-dir", dir]);
  await readUntil(killed.stdout, /saved checkpoint .*step_000002/);
  killed.kill("SIGKILL");
  await killed.status;
  await killed.stderr.cancel();
  const latest = (await runCheckpoints(dir)).at(-1)!;
  await assertGoodCheckpoint(latest.path);
  const r = await trainTask([
    "--steps",
    String(latest.step + 1),
    "--log-dir",
    dir,
    "--resume",
    "latest",
  ]);
  assertEquals(r.code, 0, r.stderr);
  ok(
    r.stdout.includes(
      `took over the stale lock ${
        join(dir, "train.lock")
      } of pid ${killed.pid} on host ${hostname()}, started `,
    ) && r.stdout.includes(": that run is no longer running"),
    r.stdout,
  );
  ok(r.stdout.includes(`resuming from ${latest.path} at step ${latest.step}`), r.stdout);
  assertEquals(
    (await readDirNames(join(dir, "checkpoints"))).filter((n) => n.includes(".tmp-")),
    [],
  );
});

Deno.test("train task: --max-lr 1e6 stops at the NaN before the step, naming the last good checkpoint, which --keep-checkpoints 1 kept and which resumes", async () => {
  const dir = await Deno.makeTempDir();
  const flags = ["--backend", "cpu", "--checkpoint-every", "1", "--keep-checkpoints", "1"];
  const r = await trainTask([...flags, "--max-lr", "1e6", "--steps", "20", "--log-dir", dir]);
  strictEqual(r.code, 1, r.stdout);
  const step = Number(/Loss became NaN at step (\d+)/.exec(r.stderr)?.[1]);
  ok(step >= 2, r.stderr);
  const ckpt = (s: number) => join(dir, "checkpoints", `step_${String(s).padStart(6, "0")}`);
  const [good, failing] = [ckpt(step - 1), ckpt(step)];
  assertEquals(
    r.stderr.trim().split("\n").at(-1),
    `error: Loss became NaN at step ${step}: stopping without updating the weights; the last good checkpoint is ${good} (--resume ${good}, perhaps with a lower --max-lr); ${failing}, written after it, is finite but holds the weights that gave this: resuming it repeats it`,
  );
  // nothing with NaN was written; the good one is kept although --keep-checkpoints is 1
  assertEquals((await runCheckpoints(dir)).map((c) => c.path), [good, failing]);
  for (const path of [good, failing]) await assertGoodCheckpoint(path);
  ok(!(await exists(join(dir, "model"))), "no model/ after a failed run");
  const resumed = await trainTask([
    ...flags,
    "--max-lr",
    "1e-4",
    "--steps",
    String(step + 2),
    "--resume",
    good,
    "--log-dir",
    dir,
  ]);
  assertEquals(resumed.code, 0, resumed.stderr);
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [step + 2]);
});

Deno.test("train task: resuming past --steps says nothing is left to do, exits 0 and touches nothing", async () => {
  const dir = await Deno.makeTempDir();
  const first = await trainTask(["--steps", "2", "--log-dir", dir]);
  assertEquals(first.code, 0, first.stderr);
  const before = await snapshot(dir);
  const r = await trainTask(["--steps", "1", "--log-dir", dir, "--resume", "latest"]);
  assertEquals(r.code, 0, r.stderr);
  const latest = join(dir, "checkpoints", "step_000002");
  ok(
    r.stdout.includes(
      `${latest} is at step 2 and --steps is 1: nothing left to do (pass a --steps above 2 to train further)`,
    ),
    r.stdout,
  );
  ok(!/^step /m.test(r.stdout) && !r.stdout.includes("wrote the run report"), r.stdout);
  assertEquals(await snapshot(dir), before);
});

Deno.test("train task: a fresh run among an earlier run's checkpoints is refused; --overwrite starts over, saying so", async () => {
  const help = await trainTask(["--help"]);
  ok(/--overwrite\s+start over in a --log-dir that holds an earlier run/.test(help.stdout));
  const dir = await Deno.makeTempDir();
  assertEquals((await trainTask(["--steps", "2", "--log-dir", dir])).code, 0);
  const before = await snapshot(dir);
  const again = await trainTask(["--steps", "2", "--log-dir", dir]);
  strictEqual(again.code, 1);
  assertEquals(
    again.stderr.trim().split("\n").at(-1),
    `error: --log-dir ${dir} already holds an earlier run's checkpoints/ (1 checkpoint(s), newest ${
      join(dir, "checkpoints", "step_000002")
    }), log.txt, model/, run.json, report.html: continue it with --resume latest, start over with --overwrite (removes them), or pick a new --log-dir`,
  );
  assertEquals(await snapshot(dir), before);
  const over = await trainTask(["--steps", "1", "--log-dir", dir, "--overwrite"]);
  assertEquals(over.code, 0, over.stderr);
  ok(
    over.stdout.includes(
      `--overwrite: removed checkpoints/ (1 checkpoint(s), newest ${
        join(dir, "checkpoints", "step_000002")
      }), log.txt, model/, run.json, report.html from ${dir}`,
    ),
    over.stdout,
  );
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [1]);
  assertEquals((await Deno.readTextFile(join(dir, "log.txt"))).trimEnd().split("\n").length, 1);
});

Deno.test("train task: a checkpoint write that fails (a file-size limit standing in for a full disk) says how to resume; no partial folder is left", async () => {
  const dir = await Deno.makeTempDir();
  const first = await trainTask(["--steps", "2", "--checkpoint-every", "2", "--log-dir", dir]);
  assertEquals(first.code, 0, first.stderr);
  const older = join(dir, "checkpoints", "step_000002");
  // model.safetensors is 3.2 MB: with files limited to 2 MiB (SIGXFSZ ignored) its write fails
  const deno = Deno.execPath();
  const args = [
    "run",
    "--allow-all",
    "lib/cli/train.ts",
    ...smallModelFlags,
    "--steps",
    "4",
    "--checkpoint-every",
    "2",
    "--resume",
    "latest",
    "--log-dir",
    dir,
  ];
  const out = await new Deno.Command("bash", {
    args: ["-c", `trap '' XFSZ; ulimit -f 2048; exec "$0" "$@"`, deno, ...args],
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  strictEqual(out.code, 1, stderr);
  const last = stderr.trim().split("\n").at(-1)!;
  const failed = join(dir, "checkpoints", "step_000004");
  ok(last.startsWith(`error: Writing the checkpoint ${failed} failed: `), last);
  ok(
    last.endsWith(
      `; stopped after step 3: once the cause is fixed (a full disk: free some space), continue with --resume ${older}`,
    ),
    last,
  );
  // besides HEAD (naming the newest checkpoint), the older checkpoint alone
  assertEquals(await readDirNames(join(dir, "checkpoints")), ["HEAD", "step_000002"]);
  await assertGoodCheckpoint(older);
  const resumed = await trainTask([
    "--steps",
    "4",
    "--checkpoint-every",
    "2",
    "--resume",
    "latest",
    "--log-dir",
    dir,
  ]);
  assertEquals(resumed.code, 0, resumed.stderr);
  ok(resumed.stdout.includes(`resuming from ${older} at step 2`), resumed.stdout);
});

Deno.test("sample and hellaswag --weights on a checkpoint folder verify its model against state.json", async () => {
  const dir = await Deno.makeTempDir();
  assertEquals((await trainTask(["--steps", "2", "--log-dir", dir])).code, 0);
  const ckpt = join(dir, "checkpoints", "step_000002");
  const sample = (weights: string) =>
    runTask([
      "lib/cli/sample.ts",
      "--weights",
      weights,
      "--backend",
      "cpu",
      "--max-length",
      "12",
      "--num-return-sequences",
      "1",
    ]);
  const ok1 = await sample(ckpt);
  assertEquals(ok1.code, 0, ok1.stderr);
  ok(
    ok1.stdout.includes(
      `verified ${ckpt}: model.safetensors and config.json match its state.json (checkpoint of step 2)`,
    ),
    ok1.stdout,
  );
  const model = join(ckpt, "model.safetensors");
  const bytes = await Deno.readFile(model);
  bytes[bytes.length - 1] ^= 1; // one bit flipped, same size
  await Deno.writeFile(model, bytes);
  const refused =
    /^error: --weights .*step_000002: Checkpoint .*step_000002 is corrupt: model\.safetensors has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}$/m;
  const bad = await sample(ckpt);
  strictEqual(bad.code, 1);
  ok(refused.test(bad.stderr), bad.stderr);
  const hella = await runTask(["lib/cli/hellaswag.ts", "--weights", ckpt, "--backend", "cpu"]);
  strictEqual(hella.code, 1);
  ok(refused.test(hella.stderr), hella.stderr);
  // the final model/ is a Hugging Face folder: nothing to verify it against, it loads as before
  const plain = await sample(join(dir, "model"));
  assertEquals(plain.code, 0, plain.stderr);
  ok(!plain.stdout.includes("verified"), plain.stdout);
});

async function exists(path: string): Promise<boolean> {
  return (await Deno.stat(path).catch(() => null)) !== null;
}

async function readDirNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("train task: when its deno task wrapper is killed, the trainer stops with a checkpoint instead of running on", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const wrapper = new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "train",
        ...smallModelFlags,
        "--steps",
        "100000",
        "--eval-every",
        "0",
        "--log-dir",
        dir,
      ],
      cwd: repoRoot,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const before = await readUntil(wrapper.stdout, /step {5}1 \|/);
    const t0 = performance.now();
    wrapper.kill("SIGKILL"); // the trainer is its child: orphaned now, it must notice
    await wrapper.status;
    // the trainer shares the wrapper's stderr pipe: the pipe ends when the trainer has exited
    const stderr = new Response(wrapper.stderr).text();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const rest = await Promise.race([
      stderr,
      new Promise<null>((r) => timer = setTimeout(() => r(null), 30_000)),
    ]);
    clearTimeout(timer);
    if (rest === null) {
      // the orphan ran on: end it before failing, so the test leaves no process behind
      await new Deno.Command("pkill", { args: ["-f", dir] }).output();
      await stderr;
      throw new Error("The orphaned trainer was still running 30 s after its wrapper died");
    }
    const seconds = (performance.now() - t0) / 1000;
    ok(seconds < 30, `the orphaned trainer ran on for ${seconds.toFixed(1)} s`);
    ok(/the parent process \(pid \d+\) is gone: stopping after this step/.test(rest), rest);
    const ckpts = await runCheckpoints(dir);
    assertEquals(ckpts.length, 1, before + rest);
    ok(ckpts[0].step >= 2, `checkpoint at ${ckpts[0].step}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
