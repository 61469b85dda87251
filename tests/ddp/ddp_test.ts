// The DDP runner: the launcher, the process group (rendezvous, collectives, timeouts) and
// data-parallel training against a single process with gradient accumulation, in the lecture's
// data order and shuffled.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  type DistEnv,
  distEnvFromEnv,
  initProcessGroup,
  type ProcessGroup,
} from "../../lib/ddp/process_group.ts";
import { writeNpyUint16 } from "../../lib/io/npy.ts";
import { freePort, runTask as run, smallModelFlags } from "../support.ts";
import { assertDdpEqualsAccumulation } from "./ddp_equivalence.ts";

const root = join(import.meta.dirname!, "..", "..");

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is dead, only not yet reaped
  } catch {
    return false;
  }
}

function shmFiles(): string[] {
  return [...Deno.readDirSync("/dev/shm")].map((e) => e.name).filter((n) =>
    n.startsWith("gpt2-ddp-")
  );
}

Deno.test("ddp: 2 ranks x B equal 1 rank with 2 accumulation steps (losses and weights)", async () => {
  const before = shmFiles();
  const { ddp } = await assertDdpEqualsAccumulation([]);
  ok(ddp.stdout.includes("shared memory /dev/shm/gpt2-ddp-"), ddp.stdout);
  ok(!/\[rank1\] step/.test(ddp.stdout), "rank 1 must not print step lines");
  assertEquals(shmFiles(), before); // the shared-memory file is unlinked once mapped
});

/**
 * A folder of token shards for the small model's B*T = 32: a val shard and three train shards
 * of about 12 documents, each shard 65 to 96 tokens, so it holds 2 windows of B*T: one step of
 * two ranks, and two micro-steps of one process. Each shard's count of windows must be even for
 * the two to match: one process moves to the next shard when its next micro-batch does not fit,
 * two ranks when the next pair does not.
 */
async function evenDocumentShards(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ddp_shuffle_" });
  let seed = 2024;
  const next = (n: number): number => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
  const shard = (): Uint16Array => {
    const tokens: number[] = [];
    while (tokens.length < 70) {
      tokens.push(50256); // <|endoftext|> opens each document
      for (let i = 0, n = 2 + next(7); i < n; i++) tokens.push(next(1000));
    }
    return Uint16Array.from(tokens.slice(0, 70 + next(20)));
  };
  await writeNpyUint16(join(dir, "docs_val_000000.npy"), shard());
  for (let i = 1; i <= 3; i++) await writeNpyUint16(join(dir, `docs_train_00000${i}.npy`), shard());
  return dir;
}

Deno.test("ddp: with --shuffle, 2 ranks x B equal 1 rank with 2 accumulation steps, into a second epoch", async () => {
  const data = await evenDocumentShards();
  try {
    // 4 steps over 3 shards of one step each: the fourth is the second epoch's, in a new order
    const { ddp } = await assertDdpEqualsAccumulation(["--shuffle", "--data", data]);
    ok(ddp.stdout.includes("shuffle = true"), ddp.stdout);
  } finally {
    await Deno.remove(data, { recursive: true });
  }
});

/** Starts a 2-rank job of many steps and reads its output until step 1 is printed. */
async function startJob(launcherFlags: string[]) {
  const logDir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "lib/cli/ddp.ts",
      "--nproc-per-node",
      "2",
      "--master-port",
      String(freePort()),
      ...launcherFlags,
      "--",
      ...smallModelFlags,
      "--steps",
      "1000",
      "--log-dir",
      logDir,
    ],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.getReader();
  const dec = new TextDecoder();
  let out = "";
  while (!/\[rank0\] step {5}1 \|/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`The job ended early: ${out}\n${await stderr}`);
    out += dec.decode(value);
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain, so no rank blocks on a full pipe */ }
  })();
  const pids = [...out.matchAll(/\[launcher\] rank (\d): pid (\d+)/g)].map((m) => +m[2]);
  assertEquals(pids.length, 2);
  return { child, stderr, pids, logDir };
}

for (const signal of ["SIGINT", "SIGHUP"] as const) {
  Deno.test(`ddp: ${signal} on the launcher reaches every rank: one checkpoint, all exit 0`, async () => {
    const { child, stderr, pids, logDir } = await startJob([]);
    child.kill(signal);
    const status = await child.status;
    const err = await stderr;
    assertEquals(status.code, 0, err);
    // checkpoints/HEAD names the newest; every other entry is a checkpoint
    const dirs = [...Deno.readDirSync(join(logDir, "checkpoints"))].map((e) => e.name)
      .filter((n) => n !== "HEAD");
    assertEquals(dirs.length, 1, dirs.join(", "));
    const state = JSON.parse(
      await Deno.readTextFile(join(logDir, "checkpoints", dirs[0], "state.json")),
    );
    assertEquals(state.worldSize, 2);
    assertEquals(state.ranks.length, 2);
    ok(state.ranks[1].loader.position !== state.ranks[0].loader.position);
    for (const pid of pids) ok(!alive(pid), `rank pid ${pid} is still running`);
  });
}

/** The checkpoints in `logDir` (checkpoints/HEAD, which names the newest, left out). */
function checkpointNames(logDir: string): string[] {
  return [...Deno.readDirSync(join(logDir, "checkpoints"))].map((e) => e.name)
    .filter((n) => n !== "HEAD").sort();
}

Deno.test("ddp: a killed rank stops the job: rank 0 saves its checkpoint within the grace period, the launcher names the dead rank with its last lines and says how to resume, no orphans", async () => {
  const { child, stderr, pids, logDir } = await startJob([]);
  const t0 = performance.now();
  Deno.kill(pids[1], "SIGKILL");
  const status = await child.status;
  const seconds = (performance.now() - t0) / 1000;
  const err = await stderr;
  assertEquals(status.code, 1, err);
  // rank 0 notices at once: well within the default 30 s grace, never waiting it out
  ok(seconds < 15, `the launcher took ${seconds} s`);
  ok(err.includes(`error: rank 1 (pid ${pids[1]}) was killed by SIGKILL; its last lines:`), err);
  ok(
    err.includes(
      "the launcher stopped rank(s) 0 (SIGTERM, then SIGKILL after 30 s): rank 0 exited with code 1",
    ),
    err,
  );
  const saved = checkpointNames(logDir);
  assertEquals(saved.length, 1, saved.join(", "));
  const path = join(logDir, "checkpoints", saved[0]);
  ok(new RegExp(`\\[rank0\\] error: Rank 1 \\(pid ${pids[1]}\\) is gone`).test(err), err);
  ok(
    err.endsWith(
      `to continue: deno task ddp --nproc-per-node 2 -- ${
        smallModelFlags.join(" ")
      } --steps 1000 --log-dir ${logDir} --resume ${path}\n`,
    ),
    err,
  );
  for (const pid of pids) ok(!alive(pid), `rank pid ${pid} is still running`);
});

Deno.test("ddp: a rank that fails with an error mid-run gets rank 0's checkpoint saved (SIGTERM, not SIGKILL), and the message names --resume", async () => {
  // rank 0's data: two good shards; rank 1's: the second shard starts with a token above the
  // vocabulary, loaded in step 2 (B*T*2 = 64 tokens a step, 200 tokens a shard)
  const good = await Deno.makeTempDir(), bad = await Deno.makeTempDir();
  for (const [dir, token] of [[good, 7], [bad, 60000]] as const) {
    for (const i of [0, 1]) {
      const tokens = new Uint16Array(200).map((_, k) => (k * (37 + 16 * i)) % 1000);
      if (i === 1) tokens[0] = token;
      await writeNpyUint16(join(dir, `toy_train_00000${i}.npy`), tokens);
    }
  }
  const logDir = await Deno.makeTempDir();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "lib/cli/ddp.ts",
      "--nproc-per-node",
      "2",
      "--master-port",
      String(freePort()),
      "--script",
      "tests/ddp/failing_rank.ts",
      "--",
      ...smallModelFlags,
      "--data",
      good,
      "--steps",
      "1000",
      "--checkpoint-every",
      "0",
      "--log-dir",
      logDir,
    ],
    cwd: root,
    env: { NO_COLOR: "1", GPT2_TEST_RANK1_DATA: bad },
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 1, err);
  ok(/error: rank 1 \(pid \d+\) exited with code 1; its last lines:/.test(err), err);
  ok(err.includes("expected token ids in [0, 50304)"), err);
  ok(err.includes("rank 0 exited with code 1"), err);
  // rank 1 loads its second shard in step 2, once its batch is read (step 3's windows would
  // not fit in the first); rank 0 finished steps 0 and 1 and waits for it: step 2's start is saved
  const path = join(logDir, "checkpoints", "step_000002");
  assertEquals(checkpointNames(logDir), ["step_000002"]);
  ok(err.includes(`[rank0] stopped by this error after step 1: saved checkpoint ${path}`), err);
  ok(err.endsWith(`--log-dir ${logDir} --resume ${path}\n`), err);
  ok(err.includes("to continue: deno task ddp --nproc-per-node 2 -- "), err);
});

Deno.test("ddp: a launcher killed with SIGKILL leaves no rank running unattended: they stop together with one checkpoint", async () => {
  const { child, pids, logDir } = await startJob([]);
  const t0 = performance.now();
  child.kill("SIGKILL"); // no signal reaches the ranks: each must notice its parent is gone
  await child.status;
  while (pids.some(alive) && performance.now() - t0 < 30_000) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const seconds = (performance.now() - t0) / 1000;
  for (const pid of pids) ok(!alive(pid), `rank pid ${pid} still runs after ${seconds} s`);
  // checkpoints/HEAD names the newest; every other entry is a checkpoint
  const dirs = [...Deno.readDirSync(join(logDir, "checkpoints"))].map((e) => e.name)
    .filter((n) => n !== "HEAD");
  assertEquals(dirs.length, 1, dirs.join(", "));
  const state = JSON.parse(
    await Deno.readTextFile(join(logDir, "checkpoints", dirs[0], "state.json")),
  );
  assertEquals(state.ranks.length, 2); // both ranks reached the checkpoint together
});

Deno.test("ddp: a hung rank makes the collective time out (--timeout) and the job stop", async () => {
  const { child, stderr, pids } = await startJob(["--timeout", "2"]);
  Deno.kill(pids[1], "SIGSTOP"); // hangs without dying
  const status = await child.status;
  const err = await stderr;
  assertEquals(status.code, 1, err);
  ok(err.includes(`error: rank 0 (pid ${pids[0]}) exited with code 1`), err);
  ok(/timed out after 2 s on rank 0, waiting for rank 1 \(see --timeout\)/.test(err), err);
  for (const pid of pids) ok(!alive(pid), `rank pid ${pid} is still running`);
});

Deno.test("ddp: a port in use and a missing --nproc-per-node are clear errors", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  try {
    const r = await run(["lib/cli/ddp.ts", "--nproc-per-node", "2", "--master-port", String(port)]);
    assertEquals(r.code, 1);
    ok(r.stderr.includes(`Port ${port} on 127.0.0.1 is already in use (--master-port)`), r.stderr);
  } finally {
    held.close();
  }
  const r = await run(["lib/cli/ddp.ts", "--", "--steps", "1"]);
  assertEquals(r.code, 1);
  ok(r.stderr.includes("Expected --nproc-per-node N"), r.stderr);
});

/**
 * A rank program for the in-place test: two copies of a small model see the same batches (two
 * micro-steps of this rank's data, two optimizer steps); one has its gradients placed in the
 * group's shared memory, the other all-reduces them by copying. Prints one JSON line a step.
 */
const IN_PLACE_RANK = (lib: string) => `
import { distEnvFromEnv, initProcessGroup } from "${lib}/ddp/process_group.ts";
import { allReduceGradients, placeGradients } from "${lib}/train/ddp_sync.ts";
import { createBackend } from "${lib}/backends/mod.ts";
import { GPT } from "${lib}/model/gpt.ts";
import { Tensor } from "${lib}/model/tensor.ts";
import { clipGradNorm, configureOptimizers } from "${lib}/train/optim.ts";

const env = distEnvFromEnv()!;
const group = await initProcessGroup(env, { timeoutMs: 60_000 });
const { backend } = await createBackend(Deno.args[0]);
// /dev/shm cannot hold 2 x 4 TB: every rank says so, and nothing is left behind
const huge = await group.gradientStorage!([2 ** 40]);
if (huge.ok) throw new Error("Expected no storage for 2 x 4 TB of gradients");
const config = { n_layer: 1, n_head: 2, n_embd: 16, block_size: 32, vocab_size: 64 };
const placedModel = new GPT(backend, config, { seed: 7 });
const copiedModel = new GPT(backend, config, { seed: 7 });
const placement = await placeGradients(placedModel, group);
const again = await placeGradients(placedModel, group); // placed once: the same gradients
const shared = new Set(
  placedModel.parameters().map((p) => (backend.hostView!(p.grad!.buffer) as Float32Array).buffer),
);
let copies = 0; // calls of the copying all-reduce
const copying = group.allReduce.bind(group);
group.allReduce = (segments, op) => (copies++, copying(segments, op));
const models = [placedModel, copiedModel];
const optimizers = models.map((m) => configureOptimizers(m, { weightDecay: 0.1, learningRate: 1e-2 }));

/** Floats that differ (bit for bit) between two lists of tensors, and those not zero in a. */
async function compare(a: Tensor[], b: Tensor[]): Promise<{ differ: number; nonzero: number }> {
  let differ = 0, nonzero = 0;
  for (let i = 0; i < a.length; i++) {
    const [x, y] = [await a[i].toArray(), await b[i].toArray()];
    for (let j = 0; j < x.length; j++) {
      if (!Object.is(x[j], y[j])) differ++;
      if (x[j] !== 0) nonzero++;
    }
  }
  return { differ, nonzero };
}

for (let step = 0; step < 2; step++) {
  for (const [k, model] of models.entries()) {
    optimizers[k].zeroGrad();
    for (let micro = 0; micro < 2; micro++) {
      const tok = (i: number) => (i * 7 + env.rank * 13 + step * 5 + micro * 3) % 64;
      const x = Int32Array.from({ length: 16 }, (_, i) => tok(i));
      const y = Int32Array.from({ length: 16 }, (_, i) => tok(i + 1));
      const { loss } = model.forward(Tensor.from(backend, x, [2, 8]), Tensor.from(backend, y, [2, 8]));
      loss!.backward();
    }
  }
  const before = copies;
  await allReduceGradients(placedModel, group);
  const inPlaceCopies = copies - before;
  await allReduceGradients(copiedModel, group);
  const copyCopies = copies - before - inPlaceCopies;
  const grads = models.map((m) => m.parameters().map((p) => p.grad!));
  const g = await compare(grads[0], grads[1]);
  const norms = [];
  for (const [k, model] of models.entries()) {
    norms.push(await clipGradNorm(model.parameters(), 1.0));
    optimizers[k].step();
  }
  const w = await compare(placedModel.parameters(), copiedModel.parameters());
  console.log(JSON.stringify({
    step, inPlace: placement.inPlace, note: placement.note, again: again.note === placement.note,
    shared: shared.size, inPlaceCopies, copyCopies, grads: g, norms, weights: w, reason: huge.reason,
  }));
}
const grad = placedModel.parameters()[0].grad!;
group.close(); // the gradients move out of the mapping first: still readable
const moved = placedModel.parameters()[0].grad!;
console.log(JSON.stringify({ moved: moved !== grad, readable: (await moved.toArray()).length }));
`;

for (const backendName of ["cpu", "native"]) {
  Deno.test(`ddp: gradients placed in shared memory are all-reduced in place, as the copying path gives them (${backendName})`, async () => {
    const dir = await Deno.makeTempDir();
    const script = join(dir, "in_place_rank.ts");
    await Deno.writeTextFile(script, IN_PLACE_RANK(pathToFileURL(join(root, "lib")).href));
    const before = shmFiles();
    const r = await run([
      "lib/cli/ddp.ts",
      "--nproc-per-node",
      "2",
      "--master-port",
      String(freePort()),
      "--script",
      script,
      "--",
      backendName,
    ]);
    assertEquals(r.code, 0, r.stderr + r.stdout);
    for (const rank of [0, 1]) {
      const lines = [...r.stdout.matchAll(new RegExp(`^\\[rank${rank}\\] (\\{.*\\})$`, "gm"))]
        .map((m) => JSON.parse(m[1]));
      assertEquals(lines.length, 3, r.stdout);
      for (const s of lines.slice(0, 2)) {
        ok(s.inPlace, s.note);
        ok(
          /^gradients: 2 x [\d.]+ MB in shared memory \/dev\/shm\/gpt2-ddp-\S+-grads/.test(s.note),
          s.note,
        );
        ok(s.again, "a second placeGradients keeps the gradients where they are");
        assertEquals(s.shared, 1); // every gradient is a view of the one mapping
        assertEquals([s.inPlaceCopies, s.copyCopies], [0, 1]); // in place: no copying all-reduce
        assertEquals(s.grads.differ, 0); // the same floats, bit for bit
        ok(s.grads.nonzero > 0);
        assertEquals(s.norms[0], s.norms[1]);
        assertEquals(s.weights.differ, 0); // clipped and stepped alike

        ok(/rank 0: Cannot reserve \d+ bytes .*no space left/.test(s.reason), s.reason);
      }
      assertEquals(lines[2], { moved: true, readable: 1024 }); // wte's gradient, 64 x 16
    }
    assertEquals(shmFiles(), before); // both mappings are unlinked once mapped
    await Deno.remove(dir, { recursive: true });
  });
}

function env(rank: number, worldSize: number, port: number): DistEnv {
  return {
    rank,
    localRank: rank,
    worldSize,
    localWorldSize: worldSize,
    nodeRank: 0,
    masterAddr: "127.0.0.1",
    masterPort: port,
  };
}

Deno.test("process group: wrong world size, missing rank and a stuck collective fail with clear errors", async () => {
  // a rank started with another WORLD_SIZE is refused, by rank 0 and on that rank
  let port = freePort();
  const r0 = initProcessGroup(env(0, 2, port), { timeoutMs: 5000, transport: "tcp" });
  const r1 = initProcessGroup(env(1, 3, port), { timeoutMs: 5000, transport: "tcp" });
  const wrong = /Rank 1 has WORLD_SIZE=3, rank 0 has 2: every rank must be started/;
  await Promise.all([rejects(r0, wrong), rejects(r1, wrong)]);

  // a rank that never comes: rank 0 names it when the rendezvous times out
  port = freePort();
  await rejects(
    initProcessGroup(env(0, 3, port), { timeoutMs: 300, transport: "tcp" }),
    /Rendezvous at 127\.0\.0\.1:\d+ timed out after 0\.3 s: rank\(s\) 1, 2 never joined \(WORLD_SIZE=3\)/,
  );

  // collectives: all-reduce sum and avg, gather, broadcast; then one rank stops calling
  port = freePort();
  const groups: ProcessGroup[] = await Promise.all(
    [0, 1].map((r) => initProcessGroup(env(r, 2, port), { timeoutMs: 400, transport: "tcp" })),
  );
  try {
    const y = [Float32Array.of(1, 2), Float32Array.of(3, 4)];
    await Promise.all(groups.map((g, r) => g.allReduce([y[r]], "sum")));
    assertEquals([...y[1]], [4, 6]);
    const x = [Float32Array.of(1, 2, 3), Float32Array.of(10, 20, 30)];
    await Promise.all(
      groups.map((g, r) => g.allReduce([x[r].subarray(0, 1), x[r].subarray(1)], "avg")),
    );
    assertEquals([...x[0]], [5.5, 11, 16.5]);
    assertEquals([...x[1]], [5.5, 11, 16.5]);
    const gathered = await Promise.all(
      groups.map((g, r) => g.allGatherBytes(new TextEncoder().encode(`rank${r}`))),
    );
    assertEquals(gathered[1].map((b) => new TextDecoder().decode(b)), ["rank0", "rank1"]);
    const id = Uint8Array.from({ length: 128 }, (_, i) => i); // an NCCL unique id's size
    const ids = await Promise.all([groups[0].broadcastBytes(id), groups[1].broadcastBytes(null)]);
    assertEquals(ids[1], id);
    await rejects(
      groups[0].barrier(),
      /Timed out after 0\.4 s waiting for rank 1 \(barrier\); see --timeout/,
    );
  } finally {
    for (const g of groups) g.close();
  }
});

Deno.test("process group: torchrun's environment is read and checked", () => {
  const from = (vars: Record<string, string>) => distEnvFromEnv((k) => vars[k]);
  assertEquals(from({}), null);
  assertEquals(from({ RANK: "1", WORLD_SIZE: "2", MASTER_PORT: "1234" }), {
    rank: 1,
    localRank: 1,
    worldSize: 2,
    localWorldSize: 2,
    nodeRank: 0,
    masterAddr: "127.0.0.1",
    masterPort: 1234,
  });
  throws(() => from({ RANK: "2", WORLD_SIZE: "2" }), /Expected RANK < WORLD_SIZE, found RANK=2/);
  throws(() => from({ RANK: "0" }), /Expected a non-negative integer in \$WORLD_SIZE, found ""/);
});
