/**
 * The process group of a data-parallel run: rendezvous, barrier, broadcast, all-gather and
 * all-reduce (sum, avg) between the ranks that `deno task ddp` starts (torch.distributed's
 * `init_process_group`, for Deno processes).
 *
 * - Rendezvous over TCP: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank
 *   connects and says who it is (rank, world size, node); rank 0 checks that every rank
 *   came once with the same world size, then sends a run id. These connections stay open
 *   as the control channel (small messages: `broadcastBytes`, `allGatherBytes`).
 * - Data within a node goes through shared memory: local rank 0 creates a file in /dev/shm,
 *   every rank maps it with libc `mmap` (FFI), and the file is unlinked as soon as all have
 *   mapped it, so a crash leaves nothing behind. An all-reduce copies each rank's chunk
 *   into its slot, each rank sums 1/N of the chunk for everyone (a reduce-scatter), and
 *   every rank copies the summed chunk out (the all-gather). Ranks wait for each other on
 *   futexes: asleep in the kernel, not spinning.
 * - Across nodes (or with GPT2_DDP_TRANSPORT=tcp) data goes through rank 0 over TCP: a
 *   correct, slow star; a multi-node run wants NCCL.
 *
 * A CUDA backend plugs NCCL in behind the same interface, as llm.c does: rank 0 calls
 * `ncclGetUniqueId`, sends the 128 bytes to every rank with `broadcastBytes` over this
 * rendezvous, each rank calls `ncclCommInitRank(comm, worldSize, id, rank)` on the GPU
 * `LOCAL_RANK` (`cudaSetDevice(LOCAL_RANK)`), and implements `allReduceDevice` with
 * `ncclAllReduce(..., ncclAvg)` on device buffers; the training loop uses `allReduceDevice`
 * when a group has it, and the host round trip otherwise.
 *
 * Every collective must be called by every rank in the same order; each fails after the
 * group's timeout naming the rank it waited for.
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";
import { Channel, type Header, type Message } from "./channel.ts";
import { futexWait, futexWake, mapSharedFile, parentPid, type SharedMapping } from "./libc.ts";

/** How values combine in an all-reduce. */
export type ReduceOp = "sum" | "avg";

/** The collectives a data-parallel run needs; every rank calls them in the same order. */
export interface ProcessGroup {
  /** This process's rank among all (RANK). */
  readonly rank: number;
  /** Number of processes (WORLD_SIZE). */
  readonly worldSize: number;
  /** Rank within this node (LOCAL_RANK): the GPU a CUDA rank uses. */
  readonly localRank: number;
  /** Processes on this node (LOCAL_WORLD_SIZE). */
  readonly localWorldSize: number;
  /** "single", "shm" or "tcp" (a CUDA group: "nccl"). */
  readonly transport: string;
  /** Returns once every rank has called it. */
  barrier(): Promise<void>;
  /**
   * In place over the concatenation of `segments` (one gradient tensor each, say):
   * afterwards every rank holds the sum (or mean) of every rank's values.
   */
  allReduce(segments: Float32Array[], op: ReduceOp): Promise<void>;
  /** In place: every rank's `segments` become rank `root`'s (DDP's initial sync). */
  broadcast(segments: Float32Array[], root?: number): Promise<void>;
  /** Rank 0's bytes on every rank (e.g. NCCL's unique id); others pass null. */
  broadcastBytes(data: Uint8Array | null): Promise<Uint8Array>;
  /** Every rank's bytes, in rank order, on every rank (e.g. data-loader positions). */
  allGatherBytes(data: Uint8Array): Promise<Uint8Array[]>;
  /** Optional: all-reduce device buffers without a trip through the host (NCCL). */
  allReduceDevice?(backend: Backend, buffers: DeviceBuffer[], op: ReduceOp): Promise<void>;
  /** One line for the run's log. */
  describe(): string;
  /** Closes connections and unmaps memory. */
  close(): void;
}

/** The group of a run without DDP: every collective is the identity. */
export class SingleProcessGroup implements ProcessGroup {
  readonly rank = 0;
  readonly worldSize = 1;
  readonly localRank = 0;
  readonly localWorldSize = 1;
  readonly transport = "single";
  barrier(): Promise<void> {
    return Promise.resolve();
  }
  allReduce(_segments: Float32Array[], _op: ReduceOp): Promise<void> {
    return Promise.resolve();
  }
  broadcast(_segments: Float32Array[], _root?: number): Promise<void> {
    return Promise.resolve();
  }
  broadcastBytes(data: Uint8Array | null): Promise<Uint8Array> {
    if (!data) throw new Error("broadcastBytes: rank 0 must pass its bytes");
    return Promise.resolve(data);
  }
  allGatherBytes(data: Uint8Array): Promise<Uint8Array[]> {
    return Promise.resolve([data]);
  }
  describe(): string {
    return "single process (no DDP)";
  }
  close(): void {}
}

/** Where this rank sits, as torchrun's environment says. */
export interface DistEnv {
  rank: number;
  localRank: number;
  worldSize: number;
  localWorldSize: number;
  /** GROUP_RANK: which node. */
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
}

/**
 * torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK,
 * MASTER_ADDR, MASTER_PORT), or null when RANK is unset (not a DDP run).
 */
export function distEnvFromEnv(
  get: (k: string) => string | undefined = (k) => Deno.env.get(k),
): DistEnv | null {
  if (get("RANK") === undefined) return null;
  const int = (name: string, fallback?: number): number => {
    const raw = get(name);
    if (raw === undefined && fallback !== undefined) return fallback;
    const n = Number(raw);
    if (raw === undefined || raw.trim() === "" || !Number.isInteger(n) || n < 0) {
      throw new Error(`Expected a non-negative integer in $${name}, found "${raw ?? ""}"`);
    }
    return n;
  };
  const worldSize = int("WORLD_SIZE");
  const rank = int("RANK");
  if (worldSize < 1 || rank >= worldSize) {
    throw new Error(`Expected RANK < WORLD_SIZE, found RANK=${rank}, WORLD_SIZE=${worldSize}`);
  }
  const localWorldSize = int("LOCAL_WORLD_SIZE", worldSize);
  const localRank = int("LOCAL_RANK", rank % localWorldSize);
  if (localRank >= localWorldSize) {
    throw new Error(
      `Expected LOCAL_RANK < LOCAL_WORLD_SIZE, found ${localRank} and ${localWorldSize}`,
    );
  }
  return {
    rank,
    localRank,
    worldSize,
    localWorldSize,
    nodeRank: int("GROUP_RANK", Math.floor(rank / localWorldSize)),
    masterAddr: get("MASTER_ADDR") ?? "127.0.0.1",
    masterPort: int("MASTER_PORT", 29500),
  };
}

/** Options of {@linkcode initProcessGroup}. */
export interface InitOptions {
  /** How long any rendezvous or collective may wait, in milliseconds. */
  timeoutMs: number;
  /** "shm" (default within one node) or "tcp" (forced through rank 0). */
  transport?: "shm" | "tcp";
  /** Chunk of an all-reduce, in floats per rank (default 4M: 16 MiB slots). */
  chunkFloats?: number;
}

/** Joins the group described by `env`: rendezvous, then the transport's set-up. */
export async function initProcessGroup(env: DistEnv, options: InitOptions): Promise<ProcessGroup> {
  const control = await rendezvous(env, options.timeoutMs);
  const transport = options.transport ?? "shm";
  if (transport === "shm" && env.localWorldSize === env.worldSize && env.worldSize > 1) {
    return await ShmProcessGroup.create(control, options.chunkFloats ?? 4 * 1024 * 1024);
  }
  return control;
}

interface Hello extends Header {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  nodeRank: number;
  pid: number;
}

async function rendezvous(env: DistEnv, timeoutMs: number): Promise<TcpProcessGroup> {
  const where = `${env.masterAddr}:${env.masterPort}`;
  const deadline = performance.now() + timeoutMs;
  if (env.worldSize === 1) return new TcpProcessGroup(env, [], "solo", timeoutMs);
  if (env.rank === 0) {
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: env.masterAddr, port: env.masterPort });
    } catch (e) {
      if (e instanceof Deno.errors.AddrInUse) {
        throw new Error(
          `Port ${env.masterPort} on ${env.masterAddr} is already in use (MASTER_PORT, --master-port): another job holds it; pick another port`,
        );
      }
      throw new Error(`Cannot listen on ${where} for the rendezvous: ${(e as Error).message}`);
    }
    const channels: (Channel | null)[] = Array(env.worldSize).fill(null);
    try {
      for (let joined = 1; joined < env.worldSize; joined++) {
        const left = deadline - performance.now();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const conn = await Promise.race([
          listener.accept(),
          new Promise<null>((resolve) =>
            timer = setTimeout(() => resolve(null), Math.max(0, left))
          ),
        ]);
        clearTimeout(timer);
        if (!conn) {
          const missing = channels.map((c, r) => (r > 0 && !c ? r : -1)).filter((r) => r >= 0);
          throw new Error(
            `Rendezvous at ${where} timed out after ${timeoutMs / 1000} s: rank(s) ${
              missing.join(", ")
            } never joined (WORLD_SIZE=${env.worldSize}); see --timeout`,
          );
        }
        const ch = new Channel(conn, "a joining rank");
        const { header } = await ch.recv(Math.max(1, deadline - performance.now()), "rendezvous");
        const h = header as unknown as Hello;
        let problem = "";
        if (h.worldSize !== env.worldSize) {
          problem =
            `Rank ${h.rank} has WORLD_SIZE=${h.worldSize}, rank 0 has ${env.worldSize}: every rank must be started with the same world size`;
        } else if (!Number.isInteger(h.rank) || h.rank <= 0 || h.rank >= env.worldSize) {
          problem = `A rank joined as RANK=${h.rank}, expected 1..${env.worldSize - 1}`;
        } else if (channels[h.rank]) {
          problem = `Rank ${h.rank} joined twice: two processes have RANK=${h.rank}`;
        }
        if (problem) {
          await ch.send({ type: "error", message: problem }).catch(() => {});
          ch.close();
          throw new Error(problem);
        }
        ch.peer = `rank ${h.rank}`;
        channels[h.rank] = ch;
      }
    } catch (e) {
      for (const c of channels) c?.close();
      throw e;
    } finally {
      listener.close();
    }
    const runId = crypto.randomUUID().slice(0, 8);
    for (const c of channels) await c?.send({ type: "welcome", runId });
    return new TcpProcessGroup(env, channels, runId, timeoutMs);
  }
  // every other rank: connect, retrying while rank 0 starts
  let conn: Deno.Conn | null = null;
  while (!conn) {
    try {
      conn = await Deno.connect({ hostname: env.masterAddr, port: env.masterPort });
    } catch (e) {
      if (performance.now() > deadline) {
        throw new Error(
          `Cannot reach rank 0 at ${where} after ${
            timeoutMs / 1000
          } s (MASTER_ADDR, MASTER_PORT): ${(e as Error).message}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const ch = new Channel(conn, "rank 0");
  const hello: Hello = {
    type: "hello",
    rank: env.rank,
    worldSize: env.worldSize,
    localRank: env.localRank,
    localWorldSize: env.localWorldSize,
    nodeRank: env.nodeRank,
    pid: Deno.pid,
  };
  await ch.send(hello);
  const { header } = await ch.recv(Math.max(1, deadline - performance.now()), "rendezvous");
  const channels: (Channel | null)[] = Array(env.worldSize).fill(null);
  channels[0] = ch;
  return new TcpProcessGroup(env, channels, String(header.runId), timeoutMs);
}

function toBytes(segments: Float32Array[]): Uint8Array {
  const n = segments.reduce((a, s) => a + s.length, 0);
  const out = new Float32Array(n);
  let off = 0;
  for (const s of segments) {
    out.set(s, off);
    off += s.length;
  }
  return new Uint8Array(out.buffer);
}

function fromBytes(bytes: Uint8Array, segments: Float32Array[]): void {
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let off = 0;
  for (const s of segments) {
    s.set(all.subarray(off, off + s.length));
    off += s.length;
  }
}

/** The control channel, and the data path through rank 0 over TCP (multi-node, or forced). */
export class TcpProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly transport: string = "tcp";
  readonly env: DistEnv;
  readonly runId: string;
  readonly timeoutMs: number;
  #channels: (Channel | null)[];

  constructor(env: DistEnv, channels: (Channel | null)[], runId: string, timeoutMs: number) {
    this.env = env;
    this.rank = env.rank;
    this.worldSize = env.worldSize;
    this.localRank = env.localRank;
    this.localWorldSize = env.localWorldSize;
    this.#channels = channels;
    this.runId = runId;
    this.timeoutMs = timeoutMs;
  }

  /** Rank 0 gathers one message from every rank, in rank order. */
  async #gather(header: { type: string }, payload: Uint8Array | undefined): Promise<Message[]> {
    if (this.rank !== 0) {
      await this.#channels[0]!.send(header, payload);
      return [];
    }
    const out: Message[] = [{ header, payload: payload ?? new Uint8Array(0) }];
    for (let r = 1; r < this.worldSize; r++) {
      const m = await this.#channels[r]!.recv(this.timeoutMs, header.type);
      if (m.header.type !== header.type) {
        throw new Error(
          `Rank ${r} called ${m.header.type} while rank 0 called ${header.type}: collectives out of order`,
        );
      }
      out.push(m);
    }
    return out;
  }

  /** Rank 0 sends one message to every rank; the others receive it. */
  async #scatter(type: string, payload: Uint8Array | undefined, extra = {}): Promise<Message> {
    if (this.rank === 0) {
      for (let r = 1; r < this.worldSize; r++) {
        await this.#channels[r]!.send({ type, ...extra }, payload);
      }
      return { header: { type, ...extra }, payload: payload ?? new Uint8Array(0) };
    }
    const m = await this.#channels[0]!.recv(this.timeoutMs, type);
    if (m.header.type !== type) {
      throw new Error(`Rank 0 sent ${m.header.type} while this rank waited for ${type}`);
    }
    return m;
  }

  async barrier(): Promise<void> {
    if (this.worldSize === 1) return;
    await this.#gather({ type: "barrier" }, undefined);
    await this.#scatter("barrier", undefined);
  }

  async allReduce(segments: Float32Array[], op: ReduceOp): Promise<void> {
    if (this.worldSize === 1) return;
    const mine = toBytes(segments);
    const got = await this.#gather({ type: "allreduce" }, mine);
    let result: Uint8Array | undefined;
    if (this.rank === 0) {
      const sum = new Float32Array(mine.byteLength / 4);
      const views = got.map((m) =>
        new Float32Array(m.payload.buffer, m.payload.byteOffset, sum.length)
      );
      const scale = op === "avg" ? 1 / this.worldSize : 1;
      for (let i = 0; i < sum.length; i++) {
        let s = 0;
        for (const v of views) s += v[i];
        sum[i] = s * scale;
      }
      result = new Uint8Array(sum.buffer);
    }
    const m = await this.#scatter("allreduce", result);
    fromBytes(m.payload, segments);
  }

  async broadcast(segments: Float32Array[], root = 0): Promise<void> {
    if (this.worldSize === 1) return;
    if (root !== 0) throw new Error(`broadcast from rank ${root}: only rank 0 is supported`);
    const m = await this.#scatter("broadcast", this.rank === 0 ? toBytes(segments) : undefined);
    if (this.rank !== 0) fromBytes(m.payload, segments);
  }

  async broadcastBytes(data: Uint8Array | null): Promise<Uint8Array> {
    if (this.rank === 0 && !data) throw new Error("broadcastBytes: rank 0 must pass its bytes");
    if (this.worldSize === 1) return data!;
    const m = await this.#scatter("bytes", this.rank === 0 ? data! : undefined);
    return m.payload;
  }

  async allGatherBytes(data: Uint8Array): Promise<Uint8Array[]> {
    if (this.worldSize === 1) return [data];
    const got = await this.#gather({ type: "gather" }, data);
    let packed: Uint8Array | undefined, lengths: number[] = [];
    if (this.rank === 0) {
      lengths = got.map((m) => m.payload.length);
      packed = new Uint8Array(lengths.reduce((a, b) => a + b, 0));
      let off = 0;
      for (const m of got) {
        packed.set(m.payload, off);
        off += m.payload.length;
      }
    }
    const m = await this.#scatter("gather", packed, { lengths });
    const out: Uint8Array[] = [];
    let off = 0;
    for (const n of m.header.lengths as number[]) {
      out.push(m.payload.slice(off, off + n));
      off += n;
    }
    return out;
  }

  describe(): string {
    return `${this.worldSize} ranks over TCP through rank 0 at ${this.env.masterAddr}:${this.env.masterPort}`;
  }

  close(): void {
    for (const c of this.#channels) c?.close();
  }
}

const HEADER_BYTES = 4096;
const ARRIVE = 16; // first word of the per-rank arrival epochs

/** One node's ranks exchanging through a /dev/shm file; control traffic stays on TCP. */
export class ShmProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly transport = "shm";
  readonly path: string;
  #control: TcpProcessGroup;
  #map: SharedMapping;
  #ctl: Int32Array;
  #slots: Float32Array[];
  #result: Float32Array;
  #chunk: number;
  #epoch = 0;
  #launcherPid: number | null;

  private constructor(control: TcpProcessGroup, map: SharedMapping, path: string, chunk: number) {
    this.#control = control;
    this.rank = control.rank;
    this.worldSize = control.worldSize;
    this.localRank = control.localRank;
    this.localWorldSize = control.localWorldSize;
    this.path = path;
    this.#map = map;
    this.#chunk = chunk;
    this.#ctl = new Int32Array(map.buffer, 0, HEADER_BYTES / 4);
    const N = this.worldSize;
    this.#slots = Array.from(
      { length: N },
      (_, j) => new Float32Array(map.buffer, HEADER_BYTES + j * chunk * 4, chunk),
    );
    this.#result = new Float32Array(map.buffer, HEADER_BYTES + N * chunk * 4, chunk);
    const pid = Deno.env.get("GPT2_DDP_LAUNCHER_PID");
    this.#launcherPid = pid ? Number(pid) : null;
  }

  /** Local rank 0 creates and sizes the file, all map it, then it is unlinked. */
  static async create(control: TcpProcessGroup, chunk: number): Promise<ShmProcessGroup> {
    const path = `/dev/shm/gpt2-ddp-${control.runId}-node${control.env.nodeRank}`;
    const bytes = HEADER_BYTES + (control.worldSize + 1) * chunk * 4;
    let map: SharedMapping | null = null;
    if (control.localRank === 0) map = mapSharedFile(path, bytes, true);
    await control.barrier();
    if (!map) map = mapSharedFile(path, bytes, false);
    await control.barrier();
    // every rank holds a mapping now: the name can go, so no crash leaves the file behind
    if (control.localRank === 0) Deno.removeSync(path);
    return new ShmProcessGroup(control, map, path, chunk);
  }

  #checkLauncher(): void {
    if (this.#launcherPid !== null && parentPid() !== this.#launcherPid) {
      throw new Error(`The launcher (pid ${this.#launcherPid}) is gone: rank ${this.rank} stops`);
    }
  }

  /** Every rank announces epoch e, then waits until all have announced it. */
  #barrier(what: string): void {
    const e = ++this.#epoch;
    const ctl = this.#ctl, ptr = this.#map.pointer;
    Atomics.store(ctl, ARRIVE + this.localRank, e);
    futexWake(ptr, (ARRIVE + this.localRank) * 4);
    const start = performance.now();
    let lastCheck = start;
    for (let j = 0; j < this.localWorldSize; j++) {
      for (;;) {
        const v = Atomics.load(ctl, ARRIVE + j);
        if (v >= e) break;
        const now = performance.now();
        if (now - start > this.#control.timeoutMs) {
          throw new Error(
            `Collective ${what} timed out after ${
              this.#control.timeoutMs / 1000
            } s on rank ${this.rank}, waiting for rank ${j} (see --timeout)`,
          );
        }
        if (now - lastCheck > 1000) {
          this.#checkLauncher();
          lastCheck = now;
        }
        futexWait(ptr, (ARRIVE + j) * 4, v, 50);
      }
    }
  }

  barrier(): Promise<void> {
    this.#barrier("barrier");
    return Promise.resolve();
  }

  allReduce(segments: Float32Array[], op: ReduceOp): Promise<void> {
    const N = this.worldSize, me = this.localRank, S = this.#chunk;
    const total = segments.reduce((a, s) => a + s.length, 0);
    const scale = op === "avg" ? 1 / N : 1;
    const slots = this.#slots, result = this.#result, mySlot = slots[me];
    for (let base = 0; base < total; base += S) {
      const len = Math.min(S, total - base);
      const part = (j: number): [number, number] => [
        Math.floor((len * j) / N),
        Math.floor((len * (j + 1)) / N),
      ];
      // each rank sums 1/N of the chunk (a reduce-scatter): publish only the parts that
      // the other ranks sum; this rank's own part is read from its arrays directly
      for (let j = 0; j < N; j++) {
        if (j === me) continue;
        const [lo, hi] = part(j);
        forEachPiece(segments, base + lo, hi - lo, (seg, at, n, off) => {
          mySlot.set(seg.subarray(at, at + n), lo + off);
        });
      }
      this.#barrier("all-reduce");
      const [lo, hi] = part(me);
      forEachPiece(segments, base + lo, hi - lo, (seg, at, n, off) => {
        const r0 = lo + off;
        if (N === 2) {
          const other = slots[1 - me];
          for (let k = 0; k < n; k++) {
            const v = (seg[at + k] + other[r0 + k]) * scale;
            result[r0 + k] = v;
            seg[at + k] = v;
          }
        } else {
          for (let k = 0; k < n; k++) {
            let sum = 0;
            for (let j = 0; j < N; j++) sum += j === me ? seg[at + k] : slots[j][r0 + k];
            const v = sum * scale;
            result[r0 + k] = v;
            seg[at + k] = v;
          }
        }
      });
      this.#barrier("all-reduce");
      // all-gather: copy out the parts the other ranks summed; the next chunk's first
      // barrier keeps the result area until every rank has read it
      for (let j = 0; j < N; j++) {
        if (j === me) continue;
        const [lo, hi] = part(j);
        forEachPiece(segments, base + lo, hi - lo, (seg, at, n, off) => {
          seg.set(result.subarray(lo + off, lo + off + n), at);
        });
      }
    }
    return Promise.resolve();
  }

  async broadcast(segments: Float32Array[], root = 0): Promise<void> {
    if (root !== 0) throw new Error(`broadcast from rank ${root}: only rank 0 is supported`);
    // root's values plus zeros from everyone else: x + 0 is x exactly
    if (this.rank !== 0) { for (const s of segments) s.fill(0); }
    await this.allReduce(segments, "sum");
  }

  broadcastBytes(data: Uint8Array | null): Promise<Uint8Array> {
    return this.#control.broadcastBytes(data);
  }

  allGatherBytes(data: Uint8Array): Promise<Uint8Array[]> {
    return this.#control.allGatherBytes(data);
  }

  describe(): string {
    return `${this.worldSize} ranks on one node, shared memory ${this.path} (mmap, unlinked; ${
      (this.#chunk * 4) / 2 ** 20
    } MiB slots), control over TCP ${this.#control.env.masterAddr}:${this.#control.env.masterPort}`;
  }

  close(): void {
    this.#map.unmap();
    this.#control.close();
  }
}

/**
 * Walks [start, start+len) of the segments' concatenation: `fn(segment, indexInSegment,
 * count, offsetFromStart)` for each piece that lies in one segment.
 */
function forEachPiece(
  segments: Float32Array[],
  start: number,
  len: number,
  fn: (seg: Float32Array, at: number, n: number, off: number) => void,
): void {
  let segStart = 0;
  const end = start + len;
  for (const seg of segments) {
    const segEnd = segStart + seg.length;
    if (segEnd > start && segStart < end) {
      const from = Math.max(start, segStart), to = Math.min(end, segEnd);
      fn(seg, from - segStart, to - from, from - start);
    }
    segStart = segEnd;
    if (segStart >= end) break;
  }
}
