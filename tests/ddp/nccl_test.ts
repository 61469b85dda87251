// DDP through NCCL: the binding (lib/backends/cuda/nccl.ts) and the NCCL process group
// (lib/ddp/nccl_group.ts), through Deno FFI against a stand-in libnccl built from
// nccl_stub.c (every machine), and a real 2-GPU run where a machine has two CUDA devices.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import type { DeviceBuffer, DeviceMemory } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { BACKEND_NAMES } from "../../lib/backends/mod.ts";
import {
  CudaFence,
  NCCL_UNIQUE_ID_BYTES,
  NcclDataType,
  NcclLibrary,
  NcclRedOp,
  NcclResult,
  ncclVersionString,
  nonBlockingConfig,
  type RankDevice,
} from "../../lib/backends/cuda/nccl.ts";
import { NcclProcessGroup } from "../../lib/ddp/nccl_group.ts";
import { chooseTransport, type DistEnv, initProcessGroup } from "../../lib/ddp/process_group.ts";
import { rendezvous } from "../../lib/ddp/rendezvous.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { allReduceGradients, broadcastParameters } from "../../lib/train/ddp_sync.ts";
import { assertClose, freePort, repoRoot, runTask, smallModelFlags } from "../support.ts";

function env(rank: number, worldSize: number, port: number, localWorldSize = worldSize): DistEnv {
  return {
    rank,
    localRank: rank % localWorldSize,
    worldSize,
    localWorldSize,
    nodeRank: Math.floor(rank / localWorldSize),
    masterAddr: "127.0.0.1",
    masterPort: port,
  };
}

const STREAM = 0x5eaen;

/** The reference backend with its host buffers presented as device memory on device 0. */
class HostAsDevice extends CpuBackend {
  deviceMemory(buf: DeviceBuffer): DeviceMemory {
    const view = this.hostView(buf);
    const pointer = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(view)));
    return { pointer, bytes: view.byteLength, device: 0, stream: STREAM };
  }
}

/** A driver side whose stream passes every mark, or never does (a kernel that never ends). */
function fakeDevice(o: { devices?: number; passes?: boolean } = {}): RankDevice {
  return {
    deviceCount: () => o.devices ?? 2,
    useStreamContext: () => 0,
    mark: () => {},
    passed: () => o.passes ?? true,
    close: () => {},
  };
}

const STUB_SYMBOLS = {
  stub_reset: { parameters: ["i32", "i32", "i32"], result: "void" },
  stub_device: { parameters: ["i32", "i32"], result: "i32" },
  stub_ops: { parameters: [], result: "i32" },
  stub_op: { parameters: ["i32", "i32"], result: "i64" },
  stub_comm: { parameters: ["i32", "i32"], result: "i32" },
  stub_id_byte: { parameters: ["i32", "i32"], result: "i32" },
  stub_config_byte: { parameters: ["i32", "i32"], result: "i32" },
} as const;

/** nccl_stub.c built once into a temporary folder; null (and why) without a C compiler. */
const stub: Promise<{ path: string; lib: Deno.DynamicLibrary<typeof STUB_SYMBOLS> } | string> =
  (async () => {
    const dir = await Deno.makeTempDir({ prefix: "nccl-stub-" });
    const path = join(dir, "libnccl_stub.so");
    const src = join(repoRoot, "tests", "ddp", "nccl_stub.c");
    try {
      const out = await new Deno.Command("cc", {
        args: ["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", path, src],
      }).output();
      if (!out.success) return `cc failed on nccl_stub.c: ${new TextDecoder().decode(out.stderr)}`;
    } catch (e) {
      return `no C compiler (cc) to build the NCCL stand-in: ${(e as Error).message}`;
    }
    return { path, lib: Deno.dlopen(path, STUB_SYMBOLS) };
  })();

/** The stand-in, reset to `mode` (0 well, 1 a collective never ends, 2 a peer lost, 3 two ranks on one GPU). */
async function openStub(mode = 0, polls = 3, version = 22703) {
  const s = await stub;
  if (typeof s === "string") throw new Error(s);
  s.lib.symbols.stub_reset(mode, polls, version);
  return { nccl: NcclLibrary.open(s.path), stub: s.lib.symbols };
}

/** `n` ranks in this process, each an NCCL group over the stand-in. */
async function stubGroups(
  nccl: NcclLibrary,
  o: { n?: number; timeoutMs?: number; device?: () => RankDevice } = {},
): Promise<NcclProcessGroup[]> {
  const n = o.n ?? 2, port = freePort();
  const backend = new HostAsDevice();
  return await Promise.all(
    Array.from({ length: n }, async (_, r) => {
      const control = await rendezvous(env(r, n, port), o.timeoutMs ?? 5000);
      try {
        return await NcclProcessGroup.create(control, backend, {
          nccl,
          device: o.device?.() ?? fakeDevice(),
        });
      } catch (e) {
        control.close();
        throw e;
      }
    }),
  );
}

const stubIgnored = typeof (await stub) === "string";
if (stubIgnored) console.log(`nccl stand-in tests skipped: ${await stub}`);

Deno.test("nccl: the enums, the config struct and the version are nccl.h's", () => {
  assertEquals(NcclResult, {
    success: 0,
    unhandledCudaError: 1,
    systemError: 2,
    internalError: 3,
    invalidArgument: 4,
    invalidUsage: 5,
    remoteError: 6,
    inProgress: 7,
    timeout: 8,
  });
  assertEquals(NcclDataType, { int32: 2, float32: 7 });
  assertEquals(NcclRedOp, { sum: 0, avg: 4 });
  assertEquals(NCCL_UNIQUE_ID_BYTES, 128);
  const config = new DataView(nonBlockingConfig(22703).buffer);
  assertEquals(config.byteLength, 40);
  assertEquals(config.getBigUint64(0, true), 40n); // size
  assertEquals(config.getUint32(8, true), 0xcafebeef); // magic
  assertEquals(config.getUint32(12, true), 21700); // the version of the fields passed
  assertEquals(config.getInt32(16, true), 0); // blocking = 0
  for (const at of [20, 24, 28]) assertEquals(config.getInt32(at, true), -(2 ** 31)); // UNDEF
  assertEquals(config.getBigUint64(32, true), 0n); // netName
  assertEquals(new DataView(nonBlockingConfig(21403).buffer).getUint32(12, true), 21403);
  assertEquals(ncclVersionString(22703), "2.27.3");
  assertEquals(ncclVersionString(2804), "2.8.4"); // the old encoding
});

Deno.test({
  name: "nccl: id, config, all-reduce, broadcast and finalize cross the FFI as nccl.h says",
  ignore: stubIgnored,
  async fn() {
    const { nccl, stub } = await openStub();
    assertEquals(nccl.version, "2.27.3");
    const groups = await stubGroups(nccl);
    try {
      // rank 0's unique id reached both communicators, by value, with the config asked for
      const id = nccl.uniqueId().id;
      for (const comm of [1, 2]) {
        assertEquals(stub.stub_comm(comm, 0), 2); // nranks
        assertEquals(stub.stub_comm(comm, 1), comm - 1); // rank
        const got = Uint8Array.from({ length: 128 }, (_, i) => stub.stub_id_byte(comm, i));
        assertEquals(got, id);
        const config = Uint8Array.from({ length: 40 }, (_, i) => stub.stub_config_byte(comm, i));
        assertEquals(config, nonBlockingConfig(22703));
      }
      assertEquals(groups.map((g) => g.transport), ["nccl", "nccl"]);
      ok(
        /^2 ranks over NCCL 2\.27\.3 \(.*libnccl_stub\.so\), this rank on CUDA device 0; small collectives over TCP 127\.0\.0\.1:\d+$/
          .test(groups[0].describe()),
      );

      // three buffers: the first two end to end (one range), the third apart
      const backend = new HostAsDevice();
      const make = (r: number) => {
        const flat = Float32Array.of(1, 2, 3, 4, 5).map((x) => x * (r + 1));
        return [
          backend.wrapHost(flat.subarray(0, 2)),
          backend.wrapHost(flat.subarray(2)),
          backend.upload(Float32Array.of(10 * (r + 1))),
        ];
      };
      const bufs = [make(0), make(1)];
      await Promise.all(groups.map((g, r) => g.allReduceDevice(backend, bufs[r], "sum")));
      const values = (r: number) => bufs[r].map((b) => [...backend.hostView(b)]);
      assertEquals(values(0), [[2, 4], [6, 8, 10], [20]]); // the stand-in: every rank alike
      assertEquals(stub.stub_ops(), 4); // two ranges on each rank
      const op = (i: number) => [0, 1, 2, 3, 4, 5].map((f) => Number(stub.stub_op(i, f)));
      const p0 = backend.deviceMemory(bufs[0][0]).pointer,
        p2 = backend.deviceMemory(bufs[0][2]).pointer;
      assertEquals(op(0), [1, Number(p0), 5, NcclDataType.float32, NcclRedOp.sum, Number(STREAM)]);
      assertEquals(op(1), [1, Number(p2), 1, NcclDataType.float32, NcclRedOp.sum, Number(STREAM)]);

      await Promise.all(groups.map((g, r) => g.allReduceDevice(backend, bufs[r], "avg")));
      assertEquals(values(0), [[2, 4], [6, 8, 10], [20]]);
      assertEquals(Number(stub.stub_op(4, 4)), NcclRedOp.avg);

      await Promise.all(groups.map((g, r) => g.broadcastDevice(backend, bufs[r], 0)));
      assertEquals(values(0), [[2, 4], [6, 8, 10], [20]]); // the root keeps its own
      assertEquals(values(1), [[7, 7], [7, 7, 7], [7]]);
      assertEquals([op(8)[0], op(8)[4]], [2, 0]); // a broadcast from rank 0

      // the host collectives still go over the control channel
      const loss = [Float32Array.of(1), Float32Array.of(3)];
      await Promise.all(groups.map((g, r) => g.allReduce([loss[r]], "avg")));
      assertEquals([...loss[1]], [2]);
    } finally {
      for (const g of groups) g.close();
    }
    for (const comm of [1, 2]) {
      assertEquals([2, 3, 4].map((f) => stub.stub_comm(comm, f)), [0, 1, 1]); // finalized, destroyed
    }
    nccl.close();
  },
});

Deno.test({
  name: "nccl: a stuck collective times out, a lost peer and a refused set-up say so, and abort",
  ignore: stubIgnored,
  async fn() {
    const backend = new HostAsDevice();
    const bufs = () => [backend.upload(Float32Array.of(1, 2))];

    // a collective that NCCL never finishes: the timeout, then ncclCommAbort
    let { nccl, stub: calls } = await openStub(1);
    // one rank: in one process a rank waiting in NCCL holds up the other's control channel
    let groups = await stubGroups(nccl, { n: 1, timeoutMs: 300 });
    const stuck =
      /^Error: Collective all-reduce \(NCCL\) timed out after 0\.3 s on rank 0: every rank reached it, NCCL did not finish \(see --timeout\)$/;
    await Promise.all(groups.map((g) => rejects(g.allReduceDevice(backend, bufs(), "avg"), stuck)));
    for (const g of groups) g.close();
    assertEquals([calls.stub_comm(1, 2), calls.stub_comm(1, 4)], [1, 0]); // aborted, not destroyed
    nccl.close();

    // the stream never passes the collective (a kernel stuck on a peer): the same
    ({ nccl, stub: calls } = await openStub(0));
    groups = await stubGroups(nccl, {
      n: 1,
      timeoutMs: 300,
      device: () => fakeDevice({ passes: false }),
    });
    await Promise.all(groups.map((g) => rejects(g.allReduceDevice(backend, bufs(), "avg"), stuck)));
    for (const g of groups) g.close();
    nccl.close();

    // a rank that never comes to the collective is named, as the shared-memory group names it
    ({ nccl } = await openStub(0));
    groups = await stubGroups(nccl, { timeoutMs: 300 });
    await rejects(
      groups[0].allReduceDevice(backend, bufs(), "avg"),
      /^Error: Collective all-reduce timed out after 0\.3 s on rank 0, waiting for rank 1 \(see --timeout\)$/,
    );
    for (const g of groups) g.close();
    nccl.close();

    // a peer lost mid-collective: NCCL's asynchronous error, in its words and ours
    ({ nccl, stub: calls } = await openStub(2));
    groups = await stubGroups(nccl);
    await Promise.all(groups.map((g, r) =>
      rejects(
        g.allReduceDevice(backend, bufs(), "avg"),
        new RegExp(
          `^Error: NCCL all-reduce failed on rank ${r} \\(CUDA device 0\\): remote process exited or there was a network error \\(socketProgress: Connection closed by remote peer\\): a peer rank died, or the connection between ranks broke$`,
        ),
      )
    ));
    for (const g of groups) g.close();
    assertEquals(calls.stub_comm(2, 2), 1);
    nccl.close();

    // every rank must pass the same buffers
    ({ nccl, stub: calls } = await openStub(0));
    groups = await stubGroups(nccl);
    const mismatch =
      /^Error: Rank 1 passed 2 buffers, 8 bytes, layout \w+ to an NCCL all-reduce, rank 0 passed 1 buffers, 8 bytes, layout \w+: every rank must pass the same buffers in the same order$/;
    await Promise.all([
      rejects(groups[0].allReduceDevice(backend, bufs(), "avg"), mismatch),
      rejects(
        groups[1].allReduceDevice(backend, [
          backend.upload(Float32Array.of(1)),
          backend.upload(Float32Array.of(2)),
        ], "avg"),
        mismatch,
      ),
    ]);
    for (const g of groups) g.close();
    nccl.close();

    // two ranks on one GPU: NCCL refuses the set-up, and the error says what to do
    ({ nccl } = await openStub(3));
    await rejects(
      stubGroups(nccl),
      /NCCL set-up \(ncclCommInitRank\) failed on rank [01] \(CUDA device 0\): invalid usage .*\(Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 0\): two ranks on one GPU; each rank needs a GPU of its own \(LOCAL_RANK picks it\)/,
    );
    nccl.close();

    // more ranks on this node than devices
    ({ nccl } = await openStub(0));
    await rejects(
      stubGroups(nccl, { device: () => fakeDevice({ devices: 1 }) }),
      /Expected a CUDA device for each of the 2 ranks on this node \(LOCAL_WORLD_SIZE\), found 1: NCCL needs a GPU per rank \(--nproc-per-node at most 1\)/,
    );
    nccl.close();

    // an NCCL without non-blocking communicators is refused by version
    const s = await stub;
    if (typeof s === "string") throw new Error(s);
    s.lib.symbols.stub_reset(0, 0, 21303);
    try {
      NcclLibrary.open(s.path);
      ok(false, "NCCL 2.13 must be refused");
    } catch (e) {
      ok(
        /^Expected NCCL 2\.14 or later \(non-blocking communicators, so that a hung rank times out\), found 2\.13\.3 in /
          .test((e as Error).message),
        (e as Error).message,
      );
    }
  },
});

/** The CUDA backend over its CPU emulator, or why there is none here. */
const emulated = (async () => {
  try {
    const { buildEmulator } = await import("../cuda_emulator/mod.ts");
    await buildEmulator();
    return null;
  } catch (e) {
    return `no CUDA emulator: ${(e as Error).message.split("\n")[0]}`;
  }
})();
const noEmulator = stubIgnored ? "no NCCL stand-in" : await emulated;
if (noEmulator) console.log(`emulated CUDA DDP test skipped: ${noEmulator}`);

Deno.test({
  name: "nccl: DDP's weights and gradients on the CUDA backend (emulated) go through the group",
  ignore: noEmulator !== null,
  async fn() {
    const { createEmulatedCudaBackend } = await import("../cuda_emulator/mod.ts");
    const { nccl, stub } = await openStub(0, 1);
    const backends = await Promise.all(
      [0, 1].map(() => createEmulatedCudaBackend({ quiet: true, memoryBytes: 2 ** 26 })),
    );
    const port = freePort();
    const groups = await Promise.all(backends.map(async (backend, r) => {
      const control = await rendezvous(env(r, 2, port), 5000);
      return NcclProcessGroup.create(control, backend, { nccl, device: fakeDevice() });
    }));
    try {
      const config = { n_layer: 1, n_head: 2, n_embd: 16, block_size: 16, vocab_size: 64 };
      const models = backends.map((b, r) => new GPT(b, config, { seed: 1 + r }));
      const rank0 = await Promise.all(
        models[0].parameters().map((p) => p.buffer).map((b) => backends[0].read(b)),
      );
      await Promise.all(models.map((m, r) => broadcastParameters(m, groups[r])));
      // rank 0 keeps its weights; rank 1's are what the stand-in's broadcast wrote there
      for (const [i, p] of models[0].parameters().entries()) {
        assertEquals(await backends[0].read(p.buffer), rank0[i]);
        const other = await backends[1].read(models[1].parameters()[i].buffer);
        ok(other.every((x) => x === 7), `rank 1's parameter ${i} after the broadcast`);
      }
      const counted = (from: number, to: number) => {
        let n = 0;
        for (let i = from; i < to; i++) n += Number(stub.stub_op(i, 2));
        return n;
      };
      const params = models[0].numParameters();
      assertEquals(counted(0, stub.stub_ops()), 2 * params); // every weight, on both ranks

      // a backward pass on each rank, then one all-reduce over every gradient
      const tokens = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 64);
      models.forEach((m, r) => {
        const x = Tensor.from(backends[r], tokens.subarray(0, 8), [1, 8]);
        const y = Tensor.from(backends[r], tokens.subarray(8), [1, 8]);
        m.forward(x, y).loss!.backward();
      });
      const grads = (r: number) =>
        Promise.all(models[r].parameters().map((p) => backends[r].read(p.grad!.buffer)));
      const before = [await grads(0), await grads(1)];
      const ops = stub.stub_ops();
      await Promise.all(models.map((m, r) => allReduceGradients(m, groups[r])));
      assertEquals(counted(ops, stub.stub_ops()), 2 * params);
      for (let i = ops; i < stub.stub_ops(); i++) {
        assertEquals([Number(stub.stub_op(i, 0)), Number(stub.stub_op(i, 4))], [1, NcclRedOp.avg]);
      }
      assertEquals([await grads(0), await grads(1)], before); // the stand-in's mean of equals
    } finally {
      for (const g of groups) g.close();
      for (const b of backends) b.destroy();
      nccl.close();
    }
  },
});

Deno.test("process group: host backends keep shm and tcp; a backend with device memory gets NCCL", () => {
  const host = new CpuBackend(), device = new HostAsDevice();
  const one = env(0, 1, 1), node = env(0, 2, 1), nodes = env(0, 4, 1, 2);
  assertEquals(chooseTransport(one, {}), "single");
  assertEquals(chooseTransport(one, { backend: device }), "single");
  assertEquals(chooseTransport(node, {}), "shm");
  assertEquals(chooseTransport(node, { backend: host }), "shm");
  assertEquals(chooseTransport(node, { backend: host, transport: "shm" }), "shm");
  assertEquals(chooseTransport(node, { backend: host, transport: "tcp" }), "tcp");
  assertEquals(chooseTransport(nodes, { backend: host }), "tcp");
  assertEquals(chooseTransport(node, { backend: device }), "nccl");
  assertEquals(chooseTransport(node, { backend: device, transport: "shm" }), "nccl");
  assertEquals(chooseTransport(nodes, { backend: device }), "nccl"); // across nodes too
  assertEquals(chooseTransport(node, { backend: device, transport: "tcp" }), "tcp");
});

Deno.test("process group: without NCCL a device backend's rank fails at once, saying where it looked", async () => {
  let found: string | null = null;
  try {
    found = NcclLibrary.open().path;
  } catch {
    // the usual case here: no NCCL
  }
  if (found) {
    console.log(`skipped: this machine has NCCL (${found})`);
    return;
  }
  const t0 = performance.now();
  await rejects(
    initProcessGroup(env(0, 2, freePort()), { timeoutMs: 60_000, backend: new HostAsDevice() }),
    /^Error: Expected NCCL \(libnccl\.so\.2\) for DDP on CUDA devices, found none; looked in .+/,
  );
  ok(performance.now() - t0 < 2000, "before the rendezvous, not after its timeout");
});

const cudaRegistered = (BACKEND_NAMES as readonly string[]).includes("cuda");
const cudaMissing = cudaRegistered
  ? await (await import("../../lib/backends/cuda/mod.ts")).cudaUnavailable()
  : null;
if (!cudaRegistered) console.log("--backend cuda test skipped: no cuda in BACKEND_NAMES yet");

Deno.test({
  name: "ddp: --backend cuda without a usable GPU fails within seconds, saying what is missing",
  ignore: cudaMissing === null,
  async fn() {
    const t0 = performance.now();
    const r = await runTask([
      "lib/cli/ddp.ts",
      "--nproc-per-node",
      "2",
      "--master-port",
      String(freePort()),
      "--",
      ...smallModelFlags,
      "--backend",
      "cuda",
      "--steps",
      "1",
    ]);
    const seconds = (performance.now() - t0) / 1000;
    assertEquals(r.code, 1, r.stdout + r.stderr);
    ok(seconds < 30, `the job took ${seconds} s to fail`);
    ok(/error: rank [01] \(pid \d+\) exited with code 1/.test(r.stderr), r.stderr);
    ok(/CUDA|libcuda/.test(r.stdout + r.stderr), r.stdout + r.stderr);
  },
});

/** Why the real 2-GPU test cannot run here, or null. */
async function twoGpusUnavailable(): Promise<string | null> {
  const { cudaUnavailable } = await import("../../lib/backends/cuda/mod.ts");
  const missing = await cudaUnavailable();
  if (missing) return missing;
  try {
    NcclLibrary.open();
    const devices = CudaFence.open().deviceCount();
    // NCCL refuses two ranks on one GPU: the test needs a device per rank
    return devices >= 2 ? null : `NCCL DDP needs 2 CUDA devices, found ${devices}`;
  } catch (e) {
    return (e as Error).message;
  }
}

const noTwoGpus = await twoGpusUnavailable();
if (noTwoGpus) console.log(`2-GPU NCCL test skipped: ${noTwoGpus}`);

Deno.test({
  name: "ddp on CUDA: 2 ranks on 2 GPUs through NCCL equal 1 GPU with 2 accumulation steps",
  ignore: noTwoGpus !== null,
  async fn() {
    const flags = [...smallModelFlags, "--backend", "cuda", "--precision", "fp32", "--steps", "4"];
    const ddp = await runTask([
      "lib/cli/ddp.ts",
      "--nproc-per-node",
      "2",
      "--master-port",
      String(freePort()),
      "--timeout",
      "120",
      "--",
      ...flags,
      "--log-dir",
      await Deno.makeTempDir(),
    ]);
    const one = await runTask([
      "lib/cli/train.ts",
      ...flags,
      "--total-batch-size",
      "64",
      "--log-dir",
      await Deno.makeTempDir(),
    ]);
    assertEquals(ddp.code, 0, ddp.stderr + ddp.stdout);
    assertEquals(one.code, 0, one.stderr);
    ok(/process group: 2 ranks over NCCL \d+\.\d+\.\d+/.test(ddp.stdout), ddp.stdout);
    const losses = (s: string) => [...s.matchAll(/step +\d+ \| loss: ([\d.]+)/g)].map((m) => +m[1]);
    assertEquals(losses(ddp.stdout).length, 4);
    // fp32 on both; the sums differ only in order (NCCL's ring against the accumulation)
    assertClose("losses", losses(ddp.stdout), losses(one.stdout), { rtol: 1e-5, atol: 1e-5 });
  },
});
