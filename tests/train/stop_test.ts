// Every stop saves (lib/train/train.ts, lib/train/run_folder.ts): an error in the loop after a
// step (a bad token in a later shard, a dead DDP rank, any exception) saves the last completed
// step as a checkpoint, which resumes as if nothing had happened, and says how to continue;
// SIGHUP stops like Ctrl-C (a real signal: a subprocess).
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import type { ProcessGroup, ReduceOp } from "../../lib/ddp/collectives.ts";
import { writeNpyUint16 } from "../../lib/io/npy.ts";
import { readCheckpointState } from "../../lib/train/checkpoint.ts";
import { train } from "../../lib/train/train.ts";
import { fullRecipe, repoRoot, runCheckpoints, runTask, smallModelFlags } from "../support.ts";

const losses = (h: { loss: number }[]) => h.map((s) => s.loss);

Deno.test("stop: an exception in the loop after a step saves that step's checkpoint, says how to resume, and the resumed run matches an uninterrupted one", async () => {
  const whole = await train(fullRecipe(null, { evalEvery: 0, steps: 5 }));
  const dir = await Deno.makeTempDir();
  const recipe = fullRecipe(dir, { evalEvery: 0, steps: 5, checkpointEvery: 0 });
  const path = join(dir, "checkpoints", "step_000003");
  await rejects(
    train({
      ...recipe,
      resumeCommand: "deno task train --steps 5",
      onStep: (s) => {
        if (s.step === 2) throw new Error("The figure could not be drawn");
      },
    }),
    {
      message:
        `The figure could not be drawn\nstopped by this error after step 2: saved checkpoint ${path} after step 2: once the cause is fixed, continue with deno task train --steps 5 --resume ${path}`,
    },
  );
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [3]);
  const resumed = await train({ ...recipe, resume: path });
  assertEquals(losses(resumed.history), losses(whole.history).slice(3));
});

/** A folder of two train shards of 100 tokens each; the second's first token is `bad`. */
async function shards(dir: string, bad: number): Promise<void> {
  const a = new Uint16Array(100), b = new Uint16Array(100);
  for (let i = 0; i < 100; i++) [a[i], b[i]] = [(i * 37) % 1000, (i * 53) % 1000];
  b[0] = bad;
  await writeNpyUint16(join(dir, "toy_train_000000.npy"), a);
  await writeNpyUint16(join(dir, "toy_train_000001.npy"), b);
}

Deno.test("stop: a bad token in a later shard, met in the middle of a step, saves the step before it with its data position", async () => {
  const data = await Deno.makeTempDir();
  await shards(data, 60000); // above the vocabulary of 50304
  const dir = await Deno.makeTempDir();
  const recipe = fullRecipe(dir, { dataPath: data, evalEvery: 0, steps: 4, checkpointEvery: 0 });
  const path = join(dir, "checkpoints", "step_000001");
  await rejects(train(recipe), (e: Error) => {
    ok(e.message.includes("expected token ids in [0, 50304)"), e.message);
    ok(
      e.message.endsWith(
        `stopped by this error after step 0: saved checkpoint ${path} after step 0: once the cause is fixed, continue with deno task train ... --resume ${path}`,
      ),
      e.message,
    );
    return true;
  });
  // the data position is the step's start, not the micro-batch where the error came
  const state = await readCheckpointState(path);
  assertEquals((state.ranks[0].loader as { position: number }).position, 64);
  // with the shard repaired, the resumed run matches an uninterrupted one
  await shards(data, 7);
  const whole = await train({ ...recipe, logDir: null });
  const resumed = await train({ ...recipe, resume: path });
  assertEquals(losses(resumed.history), losses(whole.history).slice(1));
});

/** Rank 0 of a two-rank group whose other rank dies once `dead` is set. */
class DyingGroup implements ProcessGroup {
  readonly rank = 0;
  readonly worldSize = 2;
  readonly localRank = 0;
  readonly localWorldSize = 2;
  readonly transport = "test";
  dead = false;
  #alive(): Promise<void> {
    return this.dead
      ? Promise.reject(new Error("rank 1 is gone: connection reset by peer"))
      : Promise.resolve();
  }
  barrier(): Promise<void> {
    return this.#alive();
  }
  allReduce(_segments: Float32Array[], _op: ReduceOp): Promise<void> {
    return this.#alive(); // rank 1 holds the same values: the mean is rank 0's
  }
  broadcast(_segments: Float32Array[], _root?: number): Promise<void> {
    return this.#alive();
  }
  async broadcastBytes(data: Uint8Array | null): Promise<Uint8Array> {
    await this.#alive();
    return data!;
  }
  async allGatherBytes(data: Uint8Array): Promise<Uint8Array[]> {
    await this.#alive();
    return [data, data];
  }
  describe(): string {
    return "two ranks, one of them simulated";
  }
  close(): void {}
}

Deno.test("stop: a DDP rank that dies saves rank 0's checkpoint with every rank's data position", async () => {
  const dir = await Deno.makeTempDir();
  const group = new DyingGroup();
  // B*T*world = 64 tokens a micro-step: one micro-step a step
  const recipe = fullRecipe(dir, { evalEvery: 0, steps: 5, checkpointEvery: 0, group });
  const path = join(dir, "checkpoints", "step_000002");
  await rejects(
    train({
      ...recipe,
      onStep: (s) => {
        if (s.step === 1) group.dead = true;
      },
    }),
    (e: Error) => {
      ok(e.message.startsWith("rank 1 is gone: connection reset by peer\n"), e.message);
      ok(e.message.includes(`saved checkpoint ${path} after step 1`), e.message);
      return true;
    },
  );
  const state = await readCheckpointState(path);
  assertEquals(state.worldSize, 2);
  assertEquals(
    state.ranks.map((r) => (r.loader as { position: number }).position),
    [2 * 64, 2 * 64 + 32],
  );
});

Deno.test("stop: an error before any step is done, or with the last step saved already, or a non-finite loss, saves nothing new", async () => {
  const dir = await Deno.makeTempDir();
  const failAt = (step: number) => (e: { step: number }) => {
    if (e.step === step) throw new Error("No room for the figure");
  };
  const recipe = fullRecipe(dir, { evalEvery: 1, steps: 3, checkpointEvery: 1 });
  await rejects(train({ ...recipe, onEval: failAt(0) }), {
    message:
      "No room for the figure\nstopped by this error at step 0: no step was completed: nothing to save",
  });
  assertEquals(await runCheckpoints(dir), []);
  const first = join(dir, "checkpoints", "step_000001");
  await rejects(train({ ...recipe, overwrite: true, onEval: failAt(1) }), {
    message:
      `No room for the figure\nstopped by this error after step 0: nothing new since ${first}: once the cause is fixed, continue with deno task train ... --resume ${first}`,
  });
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [1]);
  const nan = await Deno.makeTempDir();
  await rejects(train(fullRecipe(nan, { evalEvery: 0, steps: 3, maxLr: 1e9 })), (e: Error) => {
    ok(/^(Loss|Gradient norm) became/.test(e.message) && !e.message.includes("saved"), e.message);
    return true;
  });
  assertEquals(await runCheckpoints(nan), []);
});

Deno.test("stop: a checkpoint that cannot be written after the last one was removed under the run says that one is gone, not to resume it", async () => {
  const dir = await Deno.makeTempDir();
  const checkpoints = join(dir, "checkpoints");
  const recipe = fullRecipe(dir, { evalEvery: 0, steps: 4, checkpointEvery: 1 });
  await rejects(
    train({
      ...recipe,
      onStep: (s) => {
        // a clean-up removes checkpoints/ (step_000001 with it), and a file takes its name
        if (s.step === 1) {
          Deno.removeSync(checkpoints, { recursive: true });
          Deno.writeTextFileSync(checkpoints, "");
        }
      },
    }),
    (e: Error) => {
      ok(
        e.message.endsWith(
          `stopped after step 1: the last checkpoint written, ${
            join(checkpoints, "step_000001")
          }, is gone: once the cause is fixed, start the run again`,
        ),
        e.message,
      );
      return true;
    },
  );
});

Deno.test("stop: a log.txt that can no longer be written (its folder moved under the run) is an error naming it and --log-dir", async () => {
  const parent = await Deno.makeTempDir();
  const dir = join(parent, "run"), moved = join(parent, "moved");
  const recipe = fullRecipe(dir, { evalEvery: 0, steps: 4, checkpointEvery: 0 });
  await rejects(
    train({ ...recipe, onStep: (s) => s.step === 1 && Deno.renameSync(dir, moved) }),
    (e: Error) => {
      ok(e.message.startsWith(`Cannot append to ${join(dir, "log.txt")} (--log-dir): `), e.message);
      return true;
    },
  );
  // the log written before the move is whole where it went
  assertEquals((await Deno.readTextFile(join(moved, "log.txt"))).split("\n").length, 3);
});

/** Reads a stream until `pattern` shows up in it; returns what was read, draining the rest. */
async function readUntil(stream: ReadableStream<Uint8Array>, pattern: RegExp): Promise<string> {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Stream ended before ${pattern}: ${text}`);
    text += dec.decode(value);
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return text;
}

Deno.test("stop: SIGHUP (a closed terminal) writes a checkpoint and exits 0, as Ctrl-C does", async () => {
  const dir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
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
    ],
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await readUntil(child.stdout, /step {5}1 \|/);
  child.kill("SIGHUP");
  const status = await child.status;
  const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  assertEquals(status.code, 0, stderr);
  ok(stderr.includes("rank 0: SIGHUP: stopping after this step"), stderr);
  const ckpts = await runCheckpoints(dir);
  assertEquals(ckpts.length, 1);
  ok(ckpts[0].step >= 2, `checkpoint at ${ckpts[0].step}`);
});

Deno.test("stop: deno task train exits 1 on an error after a step, naming the command that continues it", async () => {
  const data = await Deno.makeTempDir();
  await shards(data, 60000);
  const dir = await Deno.makeTempDir();
  const flags = [...smallModelFlags, "--data", data, "--steps", "4", "--log-dir", dir];
  // --overwrite is dropped from the command that continues the run
  const r = await runTask(["lib/cli/train.ts", ...flags, "--overwrite"]);
  assertEquals(r.code, 1, r.stderr);
  // one micro-step a step (the preset's total batch is B*T): the error comes in step 2
  const path = join(dir, "checkpoints", "step_000002");
  ok(
    r.stderr.includes(
      `once the cause is fixed, continue with deno task train ${flags.join(" ")} --resume ${path}`,
    ),
    r.stderr,
  );
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [2]);
});
