// Resume knows its lineage (lib/train/checkpoint.ts, lib/train/train.ts): each checkpoint names
// its parent; --resume latest follows the branch last written or resumed, not the highest step;
// pruning removes only the resumed branch's own older checkpoints; log.txt keeps one history;
// changed settings are listed on resume and other data is refused; older checkpoints, which
// record neither, still resume.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { writeNpyUint16 } from "../../lib/io/npy.ts";
import { readCheckpointState, resolveResume } from "../../lib/train/checkpoint.ts";
import { train, type TrainOptions } from "../../lib/train/train.ts";
import { fullRecipe, runCheckpoints, shakespearePath } from "../support.ts";

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

const ckpt = (dir: string, step: number) =>
  join(dir, "checkpoints", `step_${String(step).padStart(6, "0")}`);

function recipe(dir: string, extra: Partial<TrainOptions>): TrainOptions {
  return fullRecipe(dir, { evalEvery: 0, keepCheckpoints: 10, ...extra });
}

Deno.test("lineage: after resuming an older checkpoint, --resume latest follows the new branch, pruning leaves the other branch, and log.txt holds one history", async () => {
  const dir = await Deno.makeTempDir();
  // branch A: 2, 4, 6
  await train(recipe(dir, { steps: 6, checkpointEvery: 2 }));
  const a6 = await readCheckpointState(ckpt(dir, 6));
  // branch B from A's step 2 (as the NaN message advises): 3, 4 (in place of A's), 5
  const { result: b, lines } = await captureLog(() =>
    train(recipe(dir, { steps: 5, checkpointEvery: 1, keepCheckpoints: 2, resume: ckpt(dir, 2) }))
  );
  ok(
    lines.includes(
      `${
        join(dir, "log.txt")
      }: dropped 4 line(s) of step 2 on, which this run redoes from its checkpoint`,
    ),
    lines.join("\n"),
  );
  // B's own older checkpoints pruned (2 kept: 4, 5); A's step 6 is another branch: kept
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [4, 5, 6]);
  assertEquals((await readCheckpointState(ckpt(dir, 6))).lineage, a6.lineage);
  const b5 = await readCheckpointState(ckpt(dir, 5));
  const b4 = await readCheckpointState(ckpt(dir, 4));
  assertEquals(b5.lineage?.parent, { step: 4, name: "step_000004", id: b4.lineage!.id });
  assertEquals(b4.lineage?.parent?.step, 3);
  // one history in log.txt: A's steps 0 and 1, then B's
  const log = (await Deno.readTextFile(join(dir, "log.txt"))).trimEnd().split("\n");
  assertEquals(log.map((l) => Number(l.split(" ")[0])), [0, 1, 2, 3, 4]);
  assertEquals(log.slice(2), b.history.map((s) => `${s.step} train ${s.loss.toFixed(6)}`));

  // latest is B's step 5, not A's higher step 6
  assertEquals(await resolveResume("latest", dir), ckpt(dir, 5));
  const c = await train(recipe(dir, { steps: 7, checkpointEvery: 1, resume: "latest" }));
  assertEquals(c.history.map((s) => s.step), [5, 6]);
  assertEquals((await readCheckpointState(ckpt(dir, 6))).lineage?.parent?.step, 5);
});

Deno.test("lineage: resuming an abandoned branch prunes only its own checkpoints, and the branch resumed becomes latest before its first checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  await train(recipe(dir, { steps: 6, checkpointEvery: 2 })); // A: 2, 4, 6
  await train(recipe(dir, { steps: 4, checkpointEvery: 1, resume: ckpt(dir, 2) })); // B: 3, 4
  assertEquals(await resolveResume("latest", dir), ckpt(dir, 4));
  // back to A's step 6 with one checkpoint kept: B's 2, 3, 4 are not A's ancestors
  await train(
    recipe(dir, { steps: 8, checkpointEvery: 1, keepCheckpoints: 1, resume: ckpt(dir, 6) }),
  );
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [2, 3, 4, 8]);
  // a resume that stops before its first checkpoint still makes its branch the latest
  await rejects(
    train(recipe(dir, {
      steps: 9,
      evalEvery: 1,
      resume: ckpt(dir, 3),
      onEval: () => {
        throw new Error("Stopped before a step");
      },
    })),
    { message: /^Stopped before a step/ },
  );
  assertEquals(await resolveResume("latest", dir), ckpt(dir, 3));
});

Deno.test("lineage: a checkpoints/HEAD naming a checkpoint that is gone is said, and the newest written is taken", async () => {
  const dir = await Deno.makeTempDir();
  await train(recipe(dir, { steps: 2, checkpointEvery: 1 }));
  const head = join(dir, "checkpoints", "HEAD");
  await Deno.writeTextFile(head, "step_000099\n");
  const lines: string[] = [];
  assertEquals(await resolveResume("latest", dir, (l) => lines.push(l)), ckpt(dir, 2));
  assertEquals(lines, [
    `warning: ${head} names step_000099, which is not a checkpoint there: --resume latest takes the newest one written, ${
      ckpt(dir, 2)
    }`,
  ]);
  // the run says it too
  const { lines: said } = await captureLog(() =>
    train(recipe(dir, { steps: 3, resume: "latest" }))
  );
  ok(said.some((l) => l.startsWith(`warning: ${head} names step_000099`)), said.join("\n"));
});

Deno.test("lineage: resuming with changed settings lists them old -> new; other batch settings are refused, listing every change", async () => {
  const dir = await Deno.makeTempDir();
  await train(recipe(dir, { steps: 2, checkpointEvery: 2 }));
  const { lines } = await captureLog(() =>
    train(recipe(dir, { steps: 3, maxLr: 2e-2, weightDecay: 0.2, resume: "latest" }))
  );
  ok(
    lines.includes(
      `warning: resuming ${
        ckpt(dir, 2)
      } with changed settings: steps 2 -> 3, maxLr 0.01 -> 0.02, weightDecay 0.1 -> 0.2`,
    ),
    lines.join("\n"),
  );
  await rejects(train(recipe(dir, { steps: 5, B: 4, resume: "latest" })), {
    message: `Checkpoint ${
      ckpt(dir, 3)
    } was trained with other batch settings: B 2 -> 4, steps 3 -> 5, maxLr 0.02 -> 0.01, weightDecay 0.2 -> 0.1: the data positions would not match; resume with the checkpoint's B, T and total batch size`,
  });
});

async function shardFolder(dir: string, second: number): Promise<void> {
  const a = new Uint16Array(200), b = new Uint16Array(second);
  for (let i = 0; i < a.length; i++) a[i] = (i * 37) % 1000;
  for (let i = 0; i < b.length; i++) b[i] = (i * 53) % 1000;
  await writeNpyUint16(join(dir, "toy_train_000000.npy"), a);
  await writeNpyUint16(join(dir, "toy_train_000001.npy"), b);
}

Deno.test("lineage: a checkpoint records its data; a resume on another text or other shards under the same name is refused, a moved copy resumes", async () => {
  // a text file: another one under the same name
  const text = await Deno.makeTempDir();
  const copy = join(text, "input.txt");
  const original = await Deno.readTextFile(shakespearePath);
  await Deno.writeTextFile(copy, original);
  const dir = await Deno.makeTempDir();
  await train(recipe(dir, { dataPath: copy, steps: 2, checkpointEvery: 2 }));
  const state = await readCheckpointState(ckpt(dir, 2));
  const hash = createHash("sha256").update(original).digest("hex");
  assertEquals(state.data?.sha256, hash);
  await Deno.writeTextFile(copy, original.replace("First Citizen", "Second Citizen"));
  await rejects(train(recipe(dir, { dataPath: copy, steps: 3, resume: "latest" })), {
    message: new RegExp(
      `^Checkpoint ${
        ckpt(dir, 2)
      } was trained on other data than ${copy} \\(it read ${copy}\\): input.txt has \\d+ bytes, the checkpoint's had \\d+; resume with the checkpoint's data, or start a fresh run$`,
    ),
  });
  // the same text elsewhere: the same data
  const resumed = await train(
    recipe(dir, { dataPath: shakespearePath, steps: 3, resume: "latest" }),
  );
  assertEquals(resumed.history.map((s) => s.step), [2]);

  // shards: one more shard, then a shard of another length
  const data = await Deno.makeTempDir();
  await shardFolder(data, 200);
  const run = await Deno.makeTempDir();
  await train(recipe(run, { dataPath: data, steps: 1, checkpointEvery: 1 }));
  await writeNpyUint16(join(data, "toy_train_000002.npy"), new Uint16Array(200));
  await rejects(train(recipe(run, { dataPath: data, steps: 2, resume: "latest" })), {
    message: `Checkpoint ${
      ckpt(run, 1)
    } was trained on other data than ${data} (it read ${data}): new toy_train_000002.npy; resume with the checkpoint's data, or start a fresh run`,
  });
  await Deno.remove(join(data, "toy_train_000002.npy"));
  await shardFolder(data, 150);
  await rejects(train(recipe(run, { dataPath: data, steps: 2, resume: "latest" })), {
    message: /toy_train_000001\.npy has \d+ bytes, the checkpoint's had \d+/,
  });
});

Deno.test("lineage: a checkpoint of an older version (no lineage, no data) still resumes, and is pruned with its run", async () => {
  const dir = await Deno.makeTempDir();
  await train(recipe(dir, { steps: 2, checkpointEvery: 1 }));
  for (const step of [1, 2]) {
    const path = ckpt(dir, step);
    const state = JSON.parse(await Deno.readTextFile(join(path, "state.json")));
    delete state.lineage;
    delete state.data;
    const bytes = new TextEncoder().encode(JSON.stringify(state, null, 1) + "\n");
    await Deno.writeFile(join(path, "state.json"), bytes);
    const hex = createHash("sha256").update(bytes).digest("hex");
    await Deno.writeTextFile(join(path, "state.json.sha256"), `${hex}  state.json\n`);
  }
  await Deno.remove(join(dir, "checkpoints", "HEAD"));
  const r = await train(
    recipe(dir, { steps: 4, checkpointEvery: 1, keepCheckpoints: 2, resume: "latest" }),
  );
  assertEquals(r.history.map((s) => s.step), [2, 3]);
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [3, 4]);
  assertEquals((await readCheckpointState(ckpt(dir, 3))).lineage?.parent?.step, 2);
});
