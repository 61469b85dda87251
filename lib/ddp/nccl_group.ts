/**
 * The process group of a CUDA run: gradients and the initial weights move between the GPUs
 * through NCCL, on device buffers, on the backend's stream, with no trip through the host;
 * the small collectives (the loss, barriers, checkpoints' bytes) stay on the TCP control
 * channel of the rendezvous. As llm.c does it: rank 0 calls `ncclGetUniqueId`, its 128 bytes
 * reach every rank with `broadcastBytes`, and each rank joins with `ncclCommInitRank` on the
 * device of the backend's stream (GPU `LOCAL_RANK`).
 *
 * A dead or hung rank ends the job as on the CPU: before each device collective the ranks
 * meet on the control channel (one small all-gather, which also checks that every rank
 * passes the same buffers and agrees which of them can go as one), so a rank that died or
 * hangs is named there with the control channel's messages and timeout. The communicator is
 * non-blocking (NCCL 2.14), and this rank waits for NCCL's work by polling, never inside a
 * blocking call: an asynchronous NCCL error (a peer gone mid-collective, a broken link), a
 * collective that does not finish within the timeout, or a launcher that is gone aborts the
 * communicator (`ncclCommAbort`) and fails with a message that says which.
 *
 * @module
 */

import type { Backend, DeviceBuffer, DeviceMemory } from "../backend.ts";
import {
  CudaFence,
  NcclDataType,
  NcclLibrary,
  NcclRedOp,
  NcclResult,
  type RankDevice,
} from "../backends/cuda/nccl.ts";
import type { ProcessGroup, ReduceOp } from "./collectives.ts";
import type { DistEnv } from "./dist_env.ts";
import { parentPid } from "./libc.ts";
import { rendezvous } from "./rendezvous.ts";
import type { TcpProcessGroup } from "./tcp_group.ts";

/** How long a wait polls without sleeping: most collectives end within it. */
const SPIN_MS = 2;
/** The sleep between polls after that, in milliseconds. */
const POLL_SLEEP_MS = 0.1;
/** The longest `close` waits for `ncclCommFinalize` before it aborts instead (a failed rank must exit soon). */
const FINALIZE_MS = 10_000;

/** A run of buffers that NCCL reduces in one call: contiguous, of one element type. */
interface DeviceRange {
  pointer: bigint;
  count: number;
  dataType: number;
}

/** What the NCCL group is made of. */
export interface NcclParts {
  /** The NCCL library (`NcclLibrary.open()`). */
  nccl: NcclLibrary;
  /** The driver's side of this rank (`CudaFence.open()`). */
  device: RankDevice;
}

/** Sleeps the thread for `ms` (fractions allowed) without returning to the event loop. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** FNV-1a over the buffers' sizes and types: the same on every rank that passes the same ones. */
function layoutSignature(mems: readonly DeviceMemory[], types: readonly string[]): string {
  let h = 0x811c9dc5;
  const mix = (n: number): void => {
    h = Math.imul(h ^ n, 0x01000193) >>> 0;
  };
  mems.forEach((m, i) => {
    mix(m.bytes % 2 ** 31);
    mix(Math.floor(m.bytes / 2 ** 31));
    mix(types[i] === "i32" ? 1 : 0);
  });
  const total = mems.reduce((a, m) => a + m.bytes, 0);
  return `${mems.length} buffers, ${total} bytes, layout ${h.toString(16)}`;
}

/** NCCL's data path between GPUs; the control channel for everything small. */
export class NcclProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly transport = "nccl";
  /** The CUDA device this rank's communicator is on. */
  readonly device: number;
  #control: TcpProcessGroup;
  #nccl: NcclLibrary;
  #rankDevice: RankDevice;
  #comm: bigint;
  #stream: bigint;
  #closed = false;
  #launcherPid: number | null;

  private constructor(
    control: TcpProcessGroup,
    parts: NcclParts,
    comm: bigint,
    memory: DeviceMemory,
  ) {
    this.#control = control;
    this.rank = control.rank;
    this.worldSize = control.worldSize;
    this.localRank = control.localRank;
    this.localWorldSize = control.localWorldSize;
    this.#nccl = parts.nccl;
    this.#rankDevice = parts.device;
    this.#comm = comm;
    this.#stream = memory.stream;
    this.device = memory.device;
    this.#launcherPid = launcherPid();
  }

  /**
   * Joins the NCCL communicator of every rank of `control`, on the device of `backend`'s
   * stream. A collective: every rank calls it after the rendezvous.
   *
   * @throws {Error} when this node has fewer devices than ranks, when NCCL cannot set up
   * (its words, and a hint for two ranks on one GPU), or when not every rank joins within the
   * control channel's timeout.
   */
  static async create(
    control: TcpProcessGroup,
    backend: Backend,
    parts: NcclParts,
  ): Promise<NcclProcessGroup> {
    if (!backend.deviceMemory) {
      throw new Error(
        `Expected a backend whose buffers lie in device memory (deviceMemory) for NCCL, found ${backend.name}`,
      );
    }
    const { nccl, device } = parts;
    const devices = device.deviceCount();
    if (devices < control.localWorldSize) {
      throw new Error(
        `Expected a CUDA device for each of the ${control.localWorldSize} ranks on this node (LOCAL_WORLD_SIZE), found ${devices}: NCCL needs a GPU per rank (--nproc-per-node at most ${devices})`,
      );
    }
    const memory = backend.deviceMemory(backend.alloc(1, "f32"));
    const current = device.useStreamContext(memory.stream);
    if (current !== memory.device) {
      throw new Error(
        `Expected the backend's stream on CUDA device ${memory.device}, found its context on device ${current}`,
      );
    }
    let id: Uint8Array | null = null;
    if (control.rank === 0) {
      const got = nccl.uniqueId();
      if (got.rc !== NcclResult.success) {
        throw new Error(`ncclGetUniqueId failed on rank 0: ${nccl.errorString(got.rc)}`);
      }
      id = got.id;
    }
    id = await control.broadcastBytes(id);
    const { rc, comm } = nccl.initRankNonBlocking(control.worldSize, id, control.rank);
    const group = new NcclProcessGroup(control, parts, comm, memory);
    if (rc !== NcclResult.success && rc !== NcclResult.inProgress) {
      throw group.#failed("set-up (ncclCommInitRank)", rc);
    }
    group.#waitFor("set-up (ncclCommInitRank)", () => true);
    group.#checkCommunicator();
    return group;
  }

  /** The communicator is the one asked for: every rank, this rank, this device. */
  #checkCommunicator(): void {
    const info = this.#nccl.commInfo(this.#comm);
    if (info.rc !== NcclResult.success) throw this.#failed("set-up (ncclCommCount)", info.rc);
    if (info.count !== this.worldSize || info.rank !== this.rank || info.device !== this.device) {
      this.#abort();
      throw new Error(
        `Expected an NCCL communicator of ${this.worldSize} ranks with this one as rank ${this.rank} on device ${this.device}, found ${info.count} ranks, rank ${info.rank}, device ${info.device}`,
      );
    }
  }

  /**
   * In place on every rank: each buffer becomes the sum (or mean) of every rank's, through
   * `ncclAllReduce` on the backend's stream, grouped (`ncclGroupStart`/`End`) into one launch,
   * buffers that lie end to end on every rank reduced as one. Resolves when NCCL is done.
   */
  async allReduceDevice(backend: Backend, buffers: DeviceBuffer[], op: ReduceOp): Promise<void> {
    const ranges = await this.#agree(backend, buffers, "all-reduce");
    const redOp = op === "avg" ? NcclRedOp.avg : NcclRedOp.sum;
    this.#launch(
      "all-reduce",
      ranges,
      (r) => this.#nccl.allReduce(r.pointer, r.count, r.dataType, redOp, this.#comm, this.#stream),
    );
  }

  /**
   * In place: every rank's buffers become rank `root`'s, through `ncclBroadcast` (DDP's
   * initial weights). Resolves when NCCL is done.
   */
  async broadcastDevice(backend: Backend, buffers: DeviceBuffer[], root = 0): Promise<void> {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) {
      throw new Error(`Expected a root rank in 0..${this.worldSize - 1}, found ${root}`);
    }
    const ranges = await this.#agree(backend, buffers, "broadcast");
    this.#launch(
      "broadcast",
      ranges,
      (r) => this.#nccl.broadcast(r.pointer, r.count, r.dataType, root, this.#comm, this.#stream),
    );
  }

  /**
   * The ranks meet on the control channel before a device collective (a dead or hung rank is
   * named there, with the CPU's messages), check that they pass the same buffers, and agree
   * which neighbours lie end to end on every rank (those go to NCCL as one range).
   */
  async #agree(backend: Backend, buffers: DeviceBuffer[], what: string): Promise<DeviceRange[]> {
    if (this.#closed) throw new Error(`NCCL ${what} on rank ${this.rank}: the group is closed`);
    const deviceMemory = backend.deviceMemory?.bind(backend);
    if (!deviceMemory) {
      throw new Error(
        `Expected a backend whose buffers lie in device memory (deviceMemory) for an NCCL ${what}, found ${backend.name}`,
      );
    }
    const mems = buffers.map((b) => deviceMemory(b));
    const types = buffers.map((b) => b.dtype);
    mems.forEach((m) => {
      if (m.device !== this.device || m.stream !== this.#stream) {
        throw new Error(
          `Expected every buffer of an NCCL ${what} on device ${this.device}, stream 0x${
            this.#stream.toString(16)
          }, found device ${m.device}, stream 0x${m.stream.toString(16)}`,
        );
      }
    });
    const joins = mems.map((m, i) =>
      i > 0 && types[i] === types[i - 1] &&
      mems[i - 1].pointer + BigInt(mems[i - 1].bytes) === m.pointer
    );
    const mine = { layout: layoutSignature(mems, types), joins: joins.map(Number).join("") };
    const all = (await this.#meet(what, new TextEncoder().encode(JSON.stringify(mine))))
      .map((b) => JSON.parse(new TextDecoder().decode(b)) as typeof mine);
    all.forEach((other, r) => {
      if (other.layout !== all[0].layout) {
        throw new Error(
          `Rank ${r} passed ${other.layout} to an NCCL ${what}, rank 0 passed ${
            all[0].layout
          }: every rank must pass the same buffers in the same order`,
        );
      }
    });
    const ranges: DeviceRange[] = [];
    mems.forEach((m, i) => {
      const count = m.bytes / 4; // f32 and i32 alike
      if (i > 0 && all.every((o) => o.joins[i] === "1")) {
        ranges[ranges.length - 1].count += count;
      } else {
        const dataType = types[i] === "i32" ? NcclDataType.int32 : NcclDataType.float32;
        ranges.push({ pointer: m.pointer, count, dataType });
      }
    });
    return ranges;
  }

  /**
   * The control channel's all-gather, its timeout said as the shared-memory group says it
   * ("Collective all-reduce timed out after 300 s on rank 0, waiting for rank 1").
   */
  async #meet(what: string, data: Uint8Array): Promise<Uint8Array[]> {
    try {
      return await this.#control.allGatherBytes(data);
    } catch (e) {
      const waited = /^Timed out after .* waiting for (rank \d+) \(/.exec((e as Error).message);
      if (!waited) throw e;
      throw new Error(
        `Collective ${what} timed out after ${
          this.#control.timeoutMs / 1000
        } s on rank ${this.rank}, waiting for ${waited[1]} (see --timeout)`,
      );
    }
  }

  /** One NCCL group of `call` over the ranges, then a wait until the stream has passed it. */
  #launch(what: string, ranges: DeviceRange[], call: (r: DeviceRange) => number): void {
    if (ranges.length === 0) return;
    const ok = (rc: number): boolean => rc === NcclResult.success || rc === NcclResult.inProgress;
    const started = this.#nccl.groupStart();
    if (!ok(started)) throw this.#failed(what, started);
    let first: number = NcclResult.success;
    for (const r of ranges) {
      const rc = call(r);
      if (!ok(rc) && first === NcclResult.success) first = rc;
    }
    const ended = this.#nccl.groupEnd(); // always: a group left open breaks every later call
    if (!ok(first)) throw this.#failed(what, first);
    if (!ok(ended)) throw this.#failed(what, ended);
    // non-blocking: the work is on the stream once the state is success; then wait for it
    let marked = false;
    this.#waitFor(what, () => {
      if (!marked) {
        this.#rankDevice.mark(this.#stream);
        marked = true;
      }
      return this.#rankDevice.passed();
    });
  }

  /**
   * Polls until the communicator is idle and `ready()` holds. Ends the communicator and fails
   * on an asynchronous NCCL error, after the timeout, or when the launcher is gone.
   */
  #waitFor(what: string, ready: () => boolean): void {
    const start = performance.now();
    let lastCheck = start;
    for (;;) {
      const state = this.#nccl.asyncError(this.#comm);
      if (state === NcclResult.success) {
        if (ready()) return;
      } else if (state !== NcclResult.inProgress) {
        throw this.#failed(what, state);
      }
      const now = performance.now();
      if (now - start > this.#control.timeoutMs) {
        this.#abort();
        const s = this.#control.timeoutMs / 1000;
        throw new Error(
          what.startsWith("set-up")
            ? `NCCL ${what} timed out after ${s} s on rank ${this.rank}: not every rank joined, or the ranks cannot reach each other (NCCL_SOCKET_IFNAME; see --timeout)`
            : `Collective ${what} (NCCL) timed out after ${s} s on rank ${this.rank}: every rank reached it, NCCL did not finish (see --timeout)`,
        );
      }
      if (now - lastCheck > 1000) {
        this.#checkLauncher();
        lastCheck = now;
      }
      if (now - start > SPIN_MS) sleepSync(POLL_SLEEP_MS);
    }
  }

  #checkLauncher(): void {
    if (this.#launcherPid !== null && parentPid() !== this.#launcherPid) {
      this.#abort();
      throw new Error(`The launcher (pid ${this.#launcherPid}) is gone: rank ${this.rank} stops`);
    }
  }

  /** Ends the communicator and says what NCCL reported, in its words and ours. */
  #failed(what: string, rc: number): Error {
    const detail = this.#comm ? this.#nccl.lastError(this.#comm) : "";
    this.#abort();
    const hint = rc === NcclResult.remoteError || rc === NcclResult.systemError
      ? ": a peer rank died, or the connection between ranks broke"
      : /duplicate gpu/i.test(detail)
      ? ": two ranks on one GPU; each rank needs a GPU of its own (LOCAL_RANK picks it)"
      : "";
    return new Error(
      `NCCL ${what} failed on rank ${this.rank} (CUDA device ${this.device}): ${
        this.#nccl.errorString(rc)
      }${detail ? ` (${detail})` : ""}${hint}`,
    );
  }

  /** `ncclCommAbort`, once: stops work stuck on a peer; the group is unusable afterwards. */
  #abort(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#comm) this.#nccl.abort(this.#comm);
  }

  barrier(): Promise<void> {
    return this.#control.barrier();
  }

  /** Host arrays (the loss, evaluation sums) go over the control channel. */
  allReduce(segments: Float32Array[], op: ReduceOp): Promise<void> {
    return this.#control.allReduce(segments, op);
  }

  broadcast(segments: Float32Array[], root?: number): Promise<void> {
    return this.#control.broadcast(segments, root);
  }

  broadcastBytes(data: Uint8Array | null): Promise<Uint8Array> {
    return this.#control.broadcastBytes(data);
  }

  allGatherBytes(data: Uint8Array): Promise<Uint8Array[]> {
    return this.#control.allGatherBytes(data);
  }

  describe(): string {
    return `${this.worldSize} ranks over NCCL ${this.#nccl.version} (${this.#nccl.path}), this rank on CUDA device ${this.device}; small collectives over TCP ${this.#control.env.masterAddr}:${this.#control.env.masterPort}`;
  }

  /**
   * Ends the communicator (`ncclCommFinalize`, then `ncclCommDestroy`; `ncclCommAbort` when
   * finalizing fails or takes longer than the timeout) and closes the control channel.
   */
  close(): void {
    if (!this.#closed) {
      this.#closed = true;
      const rc = this.#nccl.finalize(this.#comm);
      const deadline = performance.now() + Math.min(this.#control.timeoutMs, FINALIZE_MS);
      let state = rc === NcclResult.success || rc === NcclResult.inProgress
        ? this.#nccl.asyncError(this.#comm)
        : rc;
      while (state === NcclResult.inProgress && performance.now() < deadline) {
        sleepSync(1);
        state = this.#nccl.asyncError(this.#comm);
      }
      if (state === NcclResult.success) this.#nccl.destroy(this.#comm);
      else this.#nccl.abort(this.#comm);
    }
    this.#rankDevice.close();
    this.#control.close();
  }
}

/**
 * The NCCL group of `env`'s job for `backend` (`initProcessGroup` with a device backend):
 * NCCL and the driver are loaded first, so that where either is missing every rank fails at
 * once, saying where it looked, before it waits for the others; then the rendezvous, then
 * {@linkcode NcclProcessGroup.create}.
 */
export async function initNcclGroup(
  env: DistEnv,
  backend: Backend,
  timeoutMs: number,
): Promise<NcclProcessGroup> {
  const parts = { nccl: NcclLibrary.open(), device: CudaFence.open() };
  const control = await rendezvous(env, timeoutMs);
  try {
    return await NcclProcessGroup.create(control, backend, parts);
  } catch (e) {
    control.close();
    throw e;
  }
}

/** GPT2_DDP_LAUNCHER_PID: the `deno task ddp` that started this rank, if one did. */
function launcherPid(): number | null {
  const pid = Deno.env.get("GPT2_DDP_LAUNCHER_PID");
  return pid ? Number(pid) : null;
}
