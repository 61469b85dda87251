// lib/train/checkpoint.ts: a corrupt or partial checkpoint is refused naming the file, an
// interrupted write is never listed, and the previous checkpoint still loads and resumes.
import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { loadCheckpoint } from "../../lib/train/checkpoint.ts";
import { train } from "../../lib/train/train.ts";
import { fullRecipe, runCheckpoints } from "../support.ts";

Deno.test("checkpoints: a corrupt or partial one is refused naming the file; the previous one still loads", async () => {
  const dir = await Deno.makeTempDir();
  await train(fullRecipe(dir, { evalEvery: 0, steps: 4, checkpointEvery: 2 }));
  const [older, newest] = (await runCheckpoints(dir)).map((c) => c.path);
  const model = join(newest, "model.safetensors");
  const bytes = await Deno.readFile(model);
  await Deno.writeFile(model, bytes.subarray(0, bytes.length - 100)); // truncated
  await rejects(
    loadCheckpoint(new CpuBackend(), newest),
    /Checkpoint .*step_000004 is corrupt: model\.safetensors has \d+ bytes, expected \d+ \(truncated\?\)/,
  );
  await rejects(train(fullRecipe(dir, { resume: "latest" })), /step_000004 is corrupt/);
  bytes[bytes.length - 1] ^= 1; // same size, one bit flipped
  await Deno.writeFile(model, bytes);
  await rejects(
    loadCheckpoint(new CpuBackend(), newest),
    /model\.safetensors has SHA-256 \w+, expected/,
  );
  await Deno.remove(join(newest, "state.json"));
  await rejects(
    loadCheckpoint(new CpuBackend(), newest),
    /is incomplete or not a checkpoint: expected state\.json/,
  );
  // an interrupted write leaves only a temporary folder, never listed
  await Deno.mkdir(join(dir, "checkpoints", "step_000008.tmp-1"));
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [2, 4]);
  const ok2 = await loadCheckpoint(new CpuBackend(), older);
  assertEquals(ok2.state.step, 2);
  assertEquals(ok2.state.optimizer.stepCount, 2);
  const resumed = await train(fullRecipe(dir, { evalEvery: 0, steps: 4, resume: older }));
  assertEquals(resumed.history.map((s) => s.step), [2, 3]);
});
