// The NaN guard of lib/train/train.ts and lib/train/checkpoint.ts: a gradient norm that goes
// non-finite with a finite loss stops the run before AdamW touches the weights; a checkpoint
// is never written with non-finite weights; pruning keeps the newest (finite) checkpoint, which
// the message names and `--resume latest` continues; a checkpoint holding NaN (one written
// before the guard) is refused on resume, naming the tensor.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import type { AdamWParams, DeviceBuffer } from "../../lib/backend.ts";
import { savePretrained } from "../../lib/model/pretrained.ts";
import {
  checkFiniteCheckpoint,
  loadCheckpoint,
  STATE_HASH_FILE,
} from "../../lib/train/checkpoint.ts";
import { train } from "../../lib/train/train.ts";
import { fullRecipe, runCheckpoints } from "../support.ts";

/** The reference backend, counting AdamW's updates; `poison` may corrupt a buffer. */
class CountingCpu extends CpuBackend {
  adamwCalls = 0;
  crossEntropyBackwardCalls = 0;
  /** Called after each cross-entropy backward, with its dlogits and the call's number. */
  poisonGradient: ((dlogits: DeviceBuffer, call: number) => void) | null = null;
  /** Called after each AdamW update, with the parameter and the update's hyperparameters. */
  poisonParameter: ((param: DeviceBuffer, hp: AdamWParams, call: number) => void) | null = null;

  override crossEntropyBackward(
    ...args: Parameters<CpuBackend["crossEntropyBackward"]>
  ): void {
    super.crossEntropyBackward(...args);
    const call = ++this.crossEntropyBackwardCalls;
    this.poisonGradient?.(args[0], call);
  }

  override adamw(...args: Parameters<CpuBackend["adamw"]>): void {
    super.adamw(...args);
    const call = ++this.adamwCalls;
    this.poisonParameter?.(args[0], args[5], call);
  }
}

const PARAMETER_TENSORS = 16; // the 1-layer model of fullRecipe: 6 decayed, 10 not

Deno.test("NaN guard: a gradient norm gone NaN (finite loss) stops the run before AdamW's step; keep 1 still keeps the last good checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  const backend = new CountingCpu();
  // two micro-steps a step: backward call 5 is step 2's first one
  backend.poisonGradient = (dlogits, call) => {
    if (call === 5) backend.hostView(dlogits)[0] = NaN;
  };
  const good = join(dir, "checkpoints", "step_000001");
  const failing = join(dir, "checkpoints", "step_000002");
  await rejects(
    train(fullRecipe(dir, { backend, evalEvery: 0, checkpointEvery: 1, keepCheckpoints: 1 })),
    {
      message:
        `Gradient norm became NaN at step 2: stopping without updating the weights; the last good checkpoint is ${good} (--resume ${good}, perhaps with a lower --max-lr); ${failing}, written after it, is finite but holds the weights that gave this: resuming it repeats it`,
    },
  );
  assertEquals(backend.adamwCalls, 2 * PARAMETER_TENSORS); // steps 0 and 1 only
  // step 2 started from step_000002's weights and failed, so keep 1 kept step_000001 too
  assertEquals((await runCheckpoints(dir)).map((c) => c.path), [good, failing]);
  for (const path of [good, failing]) {
    await checkFiniteCheckpoint(await loadCheckpoint(new CpuBackend(), path));
  }
  ok(!(await Deno.stat(join(dir, "train.lock")).catch(() => null)), "the lock is released");
  // the good one resumes; once its successor has passed a step, keep 1 is one again
  const resumed = await train(
    fullRecipe(dir, { evalEvery: 0, resume: good, checkpointEvery: 1, keepCheckpoints: 1 }),
  );
  assertEquals(resumed.history.map((s) => s.step), [1, 2, 3, 4, 5]);
  ok(resumed.history.every((s) => Number.isFinite(s.norm)));
  assertEquals((await runCheckpoints(dir)).map((c) => c.step), [6]);
});

Deno.test("NaN guard: a checkpoint is never written with non-finite weights; the run stops naming the last good one", async () => {
  const dir = await Deno.makeTempDir();
  const backend = new CountingCpu();
  // the first update of step 2 (AdamW's third) leaves a NaN in its parameter: wte
  backend.poisonParameter = (param, hp, call) => {
    if (hp.step === 3 && call === 2 * PARAMETER_TENSORS + 1) backend.hostView(param)[7] = NaN;
  };
  const good = join(dir, "checkpoints", "step_000002");
  await rejects(
    train(fullRecipe(dir, { backend, evalEvery: 0, checkpointEvery: 1 })),
    {
      message:
        `Weights or AdamW moments became non-finite at step 2 (transformer.wte.weight): stopping without writing ${
          join(dir, "checkpoints", "step_000003")
        }; the last good checkpoint is ${good} (--resume ${good}, perhaps with a lower --max-lr)`,
    },
  );
  // nothing of step 3: no folder, no temporary folder; the earlier ones verify and are finite
  // HEAD names the newest checkpoint; no other entry but the checkpoints
  const names = [...Deno.readDirSync(join(dir, "checkpoints"))].map((e) => e.name).sort();
  assertEquals(names, ["HEAD", "step_000001", "step_000002"]);
  for (const name of names.filter((n) => n !== "HEAD")) {
    await checkFiniteCheckpoint(
      await loadCheckpoint(new CpuBackend(), join(dir, "checkpoints", name)),
    );
  }
  ok(!(await Deno.stat(join(dir, "model")).catch(() => null)), "no model/ of NaN weights");
});

Deno.test("NaN guard: resuming a checkpoint that holds NaN (written before the guard) is refused naming the tensor", async () => {
  const dir = await Deno.makeTempDir();
  await train(fullRecipe(dir, { evalEvery: 0, steps: 2, checkpointEvery: 1 }));
  const [first, second] = (await runCheckpoints(dir)).map((c) => c.path);
  // an older version's checkpoints (format 1: no run id, no state.json.sha256), NaN in wte
  const ckpt = await loadCheckpoint(new CpuBackend(), second);
  const wte = ckpt.model.namedParameters().find(([n]) => n === "transformer.wte.weight")![1];
  ckpt.model.backend.hostView!(wte.buffer)[3] = NaN;
  await savePretrained(ckpt.model, second);
  await toFormat1(first);
  await toFormat1(second);
  const log = await Deno.readTextFile(join(dir, "log.txt"));
  await rejects(
    train(fullRecipe(dir, { evalEvery: 0, steps: 4, resume: second })),
    {
      message:
        `Checkpoint ${second} holds non-finite values in transformer.wte.weight: resuming it would repeat them; resume from an earlier checkpoint`,
    },
  );
  // nothing lost: log.txt as it was, the earlier checkpoint resumes
  assertEquals(await Deno.readTextFile(join(dir, "log.txt")), log);
  const resumed = await train(fullRecipe(dir, { evalEvery: 0, steps: 3, resume: first }));
  assertEquals(resumed.history.map((s) => s.step), [1, 2]);
});

/** Rewrites a checkpoint as the first format had it, with its files' hashes recomputed. */
async function toFormat1(path: string): Promise<void> {
  const state = JSON.parse(await Deno.readTextFile(join(path, "state.json")));
  state.format = "gpt2-ts-checkpoint/1";
  delete state.runId;
  for (const f of Object.keys(state.files)) {
    const data = await Deno.readFile(join(path, f));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
    state.files[f] = {
      bytes: data.length,
      sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    };
  }
  await Deno.writeTextFile(join(path, "state.json"), JSON.stringify(state));
  await Deno.remove(join(path, STATE_HASH_FILE));
}
