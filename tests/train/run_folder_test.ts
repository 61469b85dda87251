// One run per log folder (lib/train/run_folder.ts and the checks of lib/train/train.ts): a
// second trainer is refused while the first finishes intact; a stale lock and interrupted
// checkpoint writes are cleaned up, saying so; a fresh run among an earlier run's checkpoints
// is refused unless --overwrite; a resume among another run's checkpoints is refused; pruning
// touches only this run's checkpoints; bad --log-dir values, and a resume with nothing left to
// do (--min-lr above --max-lr: tests/train/settings_test.ts).
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { hostname } from "node:os";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { loadCheckpoint, readCheckpointState } from "../../lib/train/checkpoint.ts";
import { train } from "../../lib/train/train.ts";
import { fullRecipe, runCheckpoints, smallRecipe } from "../support.ts";

/** Runs `fn` with console.log captured; returns the lines. */
async function captureLog<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    return { result: await fn(), lines };
  } finally {
    console.log = original;
  }
}

/** Every file under `dir` with its bytes and modification time: to show nothing changed. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      for (const [k, v] of await snapshot(path)) out.set(join(e.name, k), v);
    } else {
      const info = await Deno.stat(path);
      const data = await Deno.readFile(path);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
      out.set(e.name, `${info.mtime?.getTime()} ${digest.join(",")}`);
    }
  }
  return out;
}

const exists = async (path: string) => (await Deno.stat(path).catch(() => null)) !== null;

/** A pid that no process has (above Linux's largest pid_max). */
const DEAD_PID = 2 ** 22 + 1;

Deno.test("run folder: a second trainer in the same --log-dir is refused, naming the first; the first finishes intact", async () => {
  const dir = await Deno.makeTempDir();
  const lock = join(dir, "train.lock");
  const first = train(fullRecipe(dir, { evalEvery: 0 }));
  while (!(await Deno.readTextFile(lock).catch(() => ""))) {
    await new Promise((r) => setTimeout(r, 2));
  }
  const owner = JSON.parse(await Deno.readTextFile(lock));
  assertEquals([owner.pid, owner.host], [Deno.pid, hostname()]);
  await rejects(train(fullRecipe(dir, { evalEvery: 0 })), {
    message:
      `--log-dir ${dir} is in use by another trainer (pid ${Deno.pid} on host ${hostname()}, started ${owner.startedAt}): wait for it to end, or pick another --log-dir`,
  });
  const done = await first;
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [3, 6]);
  const log = (await Deno.readTextFile(join(dir, "log.txt"))).trimEnd().split("\n");
  assertEquals(log, done.history.map((s) => `${s.step} train ${s.loss.toFixed(6)}`));
  ok(!(await exists(lock)), "the lock file goes with its run");
});

Deno.test("run folder: a stale lock is taken over and interrupted checkpoint writes of dead runs removed, saying so", async () => {
  const dir = await Deno.makeTempDir();
  await train(fullRecipe(dir, { evalEvery: 0, steps: 2, checkpointEvery: 1 }));
  // what a run killed with SIGKILL while writing its step-3 checkpoint leaves behind
  const stale = { pid: DEAD_PID, host: hostname(), startedAt: "2020-01-02T03:04:05.000Z" };
  await Deno.writeTextFile(join(dir, "train.lock"), JSON.stringify(stale) + "\n");
  const tmp = join(dir, "checkpoints", `step_000003.tmp-${DEAD_PID}`);
  await Deno.mkdir(tmp);
  await Deno.writeFile(join(tmp, "model.safetensors"), new Uint8Array(100));
  // a live process's write (pid 1 runs on every Linux machine) is left alone
  const live = join(dir, "checkpoints", "step_000003.tmp-1");
  await Deno.mkdir(live);
  const { result, lines } = await captureLog(() =>
    train(fullRecipe(dir, { evalEvery: 0, steps: 3, resume: "latest" }))
  );
  assertEquals(result.history.map((s) => s.step), [2]);
  ok(
    lines.includes(
      `took over the stale lock ${
        join(dir, "train.lock")
      } of pid ${DEAD_PID} on host ${stale.host}, started ${stale.startedAt}: that run is no longer running`,
    ),
    lines.join("\n"),
  );
  ok(
    lines.includes(`removed ${tmp}: an interrupted checkpoint write (pid ${DEAD_PID} is gone)`),
    lines.join("\n"),
  );
  ok(
    lines.includes(`left ${live}: pid 1 still runs (remove it once that process is over)`),
    lines.join("\n"),
  );
  ok(!(await exists(tmp)) && (await exists(live)));
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [1, 2, 3]);
});

Deno.test("run folder: a fresh run among an earlier run's checkpoints is refused, nothing touched; --overwrite removes them first, saying so", async () => {
  const dir = await Deno.makeTempDir();
  await train(fullRecipe(dir, { evalEvery: 0, steps: 4, checkpointEvery: 2 }));
  const before = await snapshot(dir);
  const newest = join(dir, "checkpoints", "step_000004");
  await rejects(train(fullRecipe(dir, { evalEvery: 0, steps: 2 })), {
    message:
      `--log-dir ${dir} already holds an earlier run's checkpoints/ (2 checkpoint(s), newest ${newest}), log.txt, model/: continue it with --resume latest, start over with --overwrite (removes them), or pick a new --log-dir`,
  });
  assertEquals(await snapshot(dir), before);
  // --overwrite cannot be combined with a resume from the folder it empties
  await rejects(train(fullRecipe(dir, { resume: "latest", overwrite: true })), {
    message:
      "--overwrite would remove the checkpoint that --resume latest continues from: pass only one of them",
  });
  assertEquals(await snapshot(dir), before);
  const { result, lines } = await captureLog(() =>
    train(fullRecipe(dir, { evalEvery: 0, steps: 2, checkpointEvery: 1, overwrite: true }))
  );
  ok(
    lines.includes(
      `--overwrite: removed checkpoints/ (2 checkpoint(s), newest ${newest}), log.txt, model/ from ${dir}`,
    ),
    lines.join("\n"),
  );
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [1, 2]);
  const log = (await Deno.readTextFile(join(dir, "log.txt"))).trimEnd().split("\n");
  assertEquals(log, result.history.map((s) => `${s.step} train ${s.loss.toFixed(6)}`));
});

Deno.test("run folder: a fresh run is refused where an earlier run left any output without checkpoints, naming them; --overwrite removes them", async () => {
  // after --steps 0: model/ and log.txt, no checkpoint
  const zero = await Deno.makeTempDir();
  await train(fullRecipe(zero, { evalEvery: 0, steps: 0 }));
  ok(await exists(join(zero, "model")) && await exists(join(zero, "log.txt")));
  const before = await snapshot(zero);
  await rejects(train(fullRecipe(zero, { evalEvery: 0, steps: 2 })), {
    message:
      `--log-dir ${zero} already holds an earlier run's log.txt, model/: start over with --overwrite (removes them), or pick a new --log-dir`,
  });
  assertEquals(await snapshot(zero), before);

  // a finished run whose checkpoints were deleted (checkpoints/ with HEAD alone is nothing), with
  // its record and figure
  const done = await Deno.makeTempDir();
  await train(fullRecipe(done, { evalEvery: 0, steps: 2, checkpointEvery: 1 }));
  for (const c of await runCheckpoints(done)) await Deno.remove(c.path, { recursive: true });
  await Deno.writeTextFile(join(done, "run.json"), "{}\n");
  await Deno.writeTextFile(join(done, "figure.svg"), "<svg/>\n");
  await Deno.writeTextFile(join(done, "report.html"), "<html/>\n");
  const kept = await snapshot(done);
  await rejects(train(fullRecipe(done, { evalEvery: 0, steps: 2 })), {
    message:
      `--log-dir ${done} already holds an earlier run's log.txt, model/, run.json, figure.svg, report.html: start over with --overwrite (removes them), or pick a new --log-dir`,
  });
  assertEquals(await snapshot(done), kept);
  const { lines } = await captureLog(() =>
    train(fullRecipe(done, { evalEvery: 0, steps: 1, overwrite: true }))
  );
  ok(
    lines.includes(
      `--overwrite: removed log.txt, model/, run.json, figure.svg, report.html from ${done}`,
    ),
    lines.join("\n"),
  );
  for (const name of ["run.json", "figure.svg", "report.html"]) {
    ok(!(await exists(join(done, name))), name);
  }
});

Deno.test("run folder: a run that died before its first checkpoint leaves a stale lock and its log.txt: a fresh run takes the lock but leaves the log alone", async () => {
  const dir = await Deno.makeTempDir();
  const log = "0 train 10.950000\n1 train 10.120000\n";
  await Deno.writeTextFile(join(dir, "log.txt"), log);
  const stale = { pid: DEAD_PID, host: hostname(), startedAt: "2020-01-02T03:04:05.000Z" };
  await Deno.writeTextFile(join(dir, "train.lock"), JSON.stringify(stale) + "\n");
  const { lines } = await captureLog(() =>
    rejects(train(fullRecipe(dir, { evalEvery: 0, steps: 2 })), {
      message:
        `--log-dir ${dir} already holds an earlier run's log.txt: start over with --overwrite (removes them), or pick a new --log-dir`,
    })
  );
  ok(lines.some((l) => l.startsWith(`took over the stale lock`)), lines.join("\n"));
  assertEquals(await Deno.readTextFile(join(dir, "log.txt")), log);
  ok(!(await exists(join(dir, "train.lock"))), "the refused run gives the lock back");
});

Deno.test("run folder: deleting train.lock while its run lives does not let a second trainer in", async () => {
  const dir = await Deno.makeTempDir();
  const lock = join(dir, "train.lock");
  const first = train(fullRecipe(dir, { evalEvery: 0 }));
  while (!(await Deno.readTextFile(lock).catch(() => ""))) {
    await new Promise((r) => setTimeout(r, 2));
  }
  await Deno.remove(lock);
  await rejects(train(fullRecipe(dir, { evalEvery: 0, overwrite: true })), {
    message:
      `--log-dir ${dir} is in use by another trainer (see ${lock}): wait for it to end, or pick another --log-dir`,
  });
  const done = await first;
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [3, 6]);
  const log = (await Deno.readTextFile(join(dir, "log.txt"))).trimEnd().split("\n");
  assertEquals(log, done.history.map((s) => `${s.step} train ${s.loss.toFixed(6)}`));
});

Deno.test("run folder: a resume among another run's checkpoints is refused; --overwrite clears them for a checkpoint from elsewhere", async () => {
  const [a, b] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  await train(fullRecipe(a, { evalEvery: 0, steps: 2, checkpointEvery: 1 }));
  await train(fullRecipe(b, { evalEvery: 0, steps: 4, checkpointEvery: 2 }));
  const from = join(a, "checkpoints", "step_000001");
  const before = await snapshot(b);
  await rejects(train(fullRecipe(b, { evalEvery: 0, steps: 3, resume: from })), {
    message: `--log-dir ${b} holds 2 checkpoint(s) of another run than ${from} (newest ${
      join(b, "checkpoints", "step_000004")
    }): resume into a new --log-dir, or pass --overwrite to remove them first`,
  });
  assertEquals(await snapshot(b), before);
  const resumed = await train(
    fullRecipe(b, { evalEvery: 0, steps: 3, resume: from, overwrite: true }),
  );
  assertEquals(resumed.history.map((s) => s.step), [1, 2]);
  assertEquals((await runCheckpoints(b)).map((c) => c.step), [3]);
  // the resumed run keeps the id of the run it continues
  const idOf = async (path: string) => (await readCheckpointState(path)).runId;
  assertEquals(await idOf(join(b, "checkpoints", "step_000003")), await idOf(from));
});

Deno.test("run folder: pruning touches only this run's checkpoints and never the newest", async () => {
  const dir = await Deno.makeTempDir();
  await train(fullRecipe(dir, { evalEvery: 0, steps: 2, checkpointEvery: 1 }));
  // step 1 made a checkpoint of an older version (no run id): nobody's, so never pruned
  const legacy = join(dir, "checkpoints", "step_000001");
  const state = JSON.parse(await Deno.readTextFile(join(legacy, "state.json")));
  state.format = "gpt2-ts-checkpoint/1";
  delete state.runId;
  await Deno.writeTextFile(join(legacy, "state.json"), JSON.stringify(state));
  await Deno.remove(join(legacy, "state.json.sha256"));
  const result = await train(fullRecipe(dir, {
    evalEvery: 0,
    steps: 5,
    checkpointEvery: 1,
    keepCheckpoints: 1,
    resume: "latest",
  }));
  assertEquals(result.history.map((s) => s.step), [2, 3, 4]);
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [1, 5]);
  assertEquals((await loadCheckpoint(new CpuBackend(), legacy)).state.step, 1);
});

Deno.test("run folder: an empty --log-dir, a file, a folder under a file and an unwritable one are errors naming --log-dir", async () => {
  await rejects(train(smallRecipe({ logDir: "" })), {
    message: '--log-dir expects a folder, found ""',
  });
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, "keep me");
  await rejects(train(smallRecipe({ logDir: file })), {
    message: `--log-dir ${file} is a file, expected a folder`,
  });
  await rejects(train(smallRecipe({ logDir: join(file, "run") })), (e: Error) => {
    ok(e.message.startsWith(`--log-dir ${join(file, "run")} cannot be made: `), e.message);
    return true;
  });
  assertEquals(await Deno.readTextFile(file), "keep me");
  // sysfs refuses new files, even to root
  await rejects(train(smallRecipe({ logDir: "/sys" })), (e: Error) => {
    ok(e.message.startsWith("--log-dir /sys is not writable: "), e.message);
    return true;
  });
});

Deno.test("train: resuming a checkpoint at or past --steps says nothing is left to do and touches nothing", async () => {
  const dir = await Deno.makeTempDir();
  await train(fullRecipe(dir, { evalEvery: 0, steps: 4, checkpointEvery: 2 }));
  const before = await snapshot(dir);
  const latest = join(dir, "checkpoints", "step_000004");
  for (const steps of [2, 4]) {
    const { result, lines } = await captureLog(() =>
      train(fullRecipe(dir, { evalEvery: 0, steps, resume: "latest" }))
    );
    ok(
      lines.includes(
        `${latest} is at step 4 and --steps is ${steps}: nothing left to do (pass a --steps above 4 to train further)`,
      ),
      lines.join("\n"),
    );
    assertEquals([result.nothingLeft, result.history, result.modelDir], [true, [], null]);
    assertEquals(result.checkpoint, latest);
    assertEquals(await snapshot(dir), before);
  }
});
