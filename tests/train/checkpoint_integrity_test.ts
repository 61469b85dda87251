// state.json's own integrity (lib/train/checkpoint.ts): its SHA-256 beside it refuses an edit
// or a missing hash file naming the file; a version-1 checkpoint (no hash of its state) is
// cross-checked, so an edited data position is refused too. In each case the earlier
// checkpoint still resumes. (A failed write, a full disk: tests/cli/train_test.ts.)
import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import {
  loadCheckpoint,
  readCheckpointState,
  STATE_HASH_FILE,
  verifyCheckpointModel,
} from "../../lib/train/checkpoint.ts";
import { train } from "../../lib/train/train.ts";
import { fullRecipe, runCheckpoints } from "../support.ts";

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A run of 4 steps with checkpoints at 2 and 4; their folders. */
async function twoCheckpoints(): Promise<{ dir: string; older: string; newest: string }> {
  const dir = await Deno.makeTempDir();
  await train(fullRecipe(dir, { evalEvery: 0, steps: 4, checkpointEvery: 2 }));
  const [older, newest] = (await runCheckpoints(dir)).map((c) => c.path);
  return { dir, older, newest };
}

/** The earlier checkpoint still resumes: the run ends at `steps` from step 2. */
async function olderResumes(dir: string, older: string): Promise<void> {
  const resumed = await train(fullRecipe(dir, { evalEvery: 0, steps: 3, resume: older }));
  assertEquals(resumed.history.map((s) => s.step), [2]);
}

Deno.test("checkpoint integrity: state.json has its SHA-256 beside it, in sha256sum's format", async () => {
  const { newest } = await twoCheckpoints();
  const state = await Deno.readFile(join(newest, "state.json"));
  assertEquals(
    await Deno.readTextFile(join(newest, STATE_HASH_FILE)),
    `${await sha256(state)}  state.json\n`,
  );
});

Deno.test("checkpoint integrity: an edited state.json (a data position) is refused naming the file; the older one resumes", async () => {
  const { dir, older, newest } = await twoCheckpoints();
  const path = join(newest, "state.json");
  const original = await Deno.readFile(path);
  const state = JSON.parse(new TextDecoder().decode(original));
  state.ranks[0].loader.position += 32; // still on the B*T grid: only the hash can tell
  const edited = new TextEncoder().encode(JSON.stringify(state, null, 1) + "\n");
  await Deno.writeFile(path, edited);
  const message = `Checkpoint ${newest} is corrupt: state.json has SHA-256 ${await sha256(
    edited,
  )}, expected ${await sha256(original)} (${STATE_HASH_FILE}): it was edited or damaged`;
  await rejects(loadCheckpoint(new CpuBackend(), newest), { message });
  await rejects(train(fullRecipe(dir, { evalEvery: 0, steps: 6, resume: "latest" })), { message });
  // sample and hellaswag read a checkpoint's model through the same check
  await rejects(verifyCheckpointModel(newest), { message });
  await olderResumes(dir, older);
});

Deno.test("checkpoint integrity: a missing state.json.sha256 is refused naming it", async () => {
  const { dir, older, newest } = await twoCheckpoints();
  await Deno.remove(join(newest, STATE_HASH_FILE));
  await rejects(readCheckpointState(newest), {
    message: `Checkpoint ${newest} is incomplete: ${STATE_HASH_FILE} is missing`,
  });
  await olderResumes(dir, older);
});

Deno.test("checkpoint integrity: a version-1 state.json (no hash) is cross-checked: a data position off the B*T*world grid is refused", async () => {
  const { dir, older, newest } = await twoCheckpoints();
  const path = join(newest, "state.json");
  const state = JSON.parse(await Deno.readTextFile(path));
  state.format = "gpt2-ts-checkpoint/1";
  delete state.runId;
  await Deno.remove(join(newest, STATE_HASH_FILE));
  await Deno.writeTextFile(path, JSON.stringify(state));
  assertEquals((await readCheckpointState(newest)).step, 4); // untouched, it still reads
  state.ranks[0].loader.position += 5;
  await Deno.writeTextFile(path, JSON.stringify(state));
  await rejects(readCheckpointState(newest), {
    message: `Checkpoint ${newest} is corrupt: state.json has rank 0's data position ${
      state.ranks[0].loader.position
    }, expected 0 plus a multiple of B*T*world = 32`,
  });
  state.ranks[0].loader.position -= 5;
  state.optimizer.stepCount = 9;
  await Deno.writeTextFile(path, JSON.stringify(state));
  await rejects(readCheckpointState(newest), {
    message:
      `Checkpoint ${newest} is corrupt: state.json has AdamW step count 9, expected a whole number up to step 4`,
  });
  await olderResumes(dir, older);
});

Deno.test("checkpoint integrity: verifyCheckpointModel checks only the model's files, and nothing outside a checkpoint", async () => {
  const { dir, newest } = await twoCheckpoints();
  // AdamW's moments damaged: sampling from the model is still fine, resuming is not
  const moments = join(newest, "optimizer.safetensors");
  const bytes = await Deno.readFile(moments);
  bytes[bytes.length - 1] ^= 1;
  await Deno.writeFile(moments, bytes);
  assertEquals((await verifyCheckpointModel(newest))?.step, 4);
  await rejects(loadCheckpoint(new CpuBackend(), newest), /optimizer\.safetensors has SHA-256/);
  assertEquals(await verifyCheckpointModel(join(dir, "model")), null); // a Hugging Face folder
  assertEquals(await verifyCheckpointModel("gpt2"), null); // a hub name
});
