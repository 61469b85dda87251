/**
 * One node's ranks exchanging data through shared memory: local rank 0 creates a file in
 * /dev/shm, every rank maps it with libc `mmap` (FFI), and the file is unlinked as soon as
 * all have mapped it, so a crash leaves nothing behind. An all-reduce copies each rank's
 * chunk into its slot, each rank sums 1/N of the chunk for everyone (a reduce-scatter), and
 * every rank copies the summed chunk out (the all-gather). Gradients can live in a mapping
 * of their own instead (`gradientStorage`, shm_gradients.ts), where the all-reduce needs no
 * copy. Ranks wait for each other on futexes: asleep in the kernel, not spinning. Control
 * traffic stays on TCP.
 *
 * @module
 */

import type { GradientStorageResult, ProcessGroup, ReduceOp } from "./collectives.ts";
import { futexWait, futexWake, mapSharedFile, parentPid, type SharedMapping } from "./libc.ts";
import { createGradientStorage, type ShmGradientStorage } from "./shm_gradients.ts";
import { shmPath } from "./shm_names.ts";
import type { TcpProcessGroup } from "./tcp_group.ts";

const HEADER_BYTES = 4096;
const ARRIVE = 16; // first word of the per-rank arrival epochs
const PIDS = 128; // first word of the per-rank process ids, for telling a dead rank from a slow one
const LIVENESS_CHECK_MS = 200;

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
  #gradients: ShmGradientStorage[] = [];

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
    const path = shmPath(control.runId, control.env.nodeRank);
    const bytes = HEADER_BYTES + (control.worldSize + 1) * chunk * 4;
    const creator = control.localRank === 0;
    let map: SharedMapping | null = null;
    try {
      if (creator) map = mapSharedFile(path, bytes, true);
      await control.barrier();
      if (!map) map = mapSharedFile(path, bytes, false);
      Atomics.store(
        new Int32Array(map.buffer, 0, HEADER_BYTES / 4),
        PIDS + control.localRank,
        Deno.pid,
      );
      await control.barrier();
    } catch (e) {
      // a rank that failed or died before all had mapped it: the name goes all the same
      map?.unmap();
      if (creator) removeIfThere(path);
      throw e;
    }
    // every rank holds a mapping now: the name can go, so no crash leaves the file behind
    if (creator) removeIfThere(path);
    return new ShmProcessGroup(control, map, path, chunk);
  }

  #checkLauncher(): void {
    if (this.#launcherPid !== null && parentPid() !== this.#launcherPid) {
      throw new Error(`The launcher (pid ${this.#launcherPid}) is gone: rank ${this.rank} stops`);
    }
  }

  /**
   * Fails when local rank `j`, which this rank waits for, has died: it will never arrive, and
   * waiting out --timeout would leave this rank in the barrier while the launcher, stopping
   * the job, asks it to save and end.
   */
  #checkPeer(j: number, what: string): void {
    const pid = Atomics.load(this.#ctl, PIDS + j);
    if (pid > 0 && !processAlive(pid)) {
      throw new Error(
        `Rank ${j} (pid ${pid}) is gone: collective ${what} on rank ${this.rank} cannot complete`,
      );
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
        if (now - lastCheck > LIVENESS_CHECK_MS) {
          this.#checkLauncher();
          this.#checkPeer(j, what);
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

  /**
   * The gradients in a mapping of their own, a region per rank, all-reduced in place by the
   * same barriers; `ok: false` (on every rank) when /dev/shm cannot hold them.
   */
  async gradientStorage(sizes: readonly number[]): Promise<GradientStorageResult> {
    const result = await createGradientStorage(this.#control, sizes, (what) => this.#barrier(what));
    if (result.ok) this.#gradients.push(result.storage);
    return result;
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

  /** Unmaps the memory (the gradient storage's close hooks run first) and closes the channels. */
  close(): void {
    for (const g of this.#gradients) g.release();
    this.#gradients = [];
    this.#map.unmap();
    this.#control.close();
  }
}

/** Whether process `pid` runs: it exists and is not a zombie (dead, not yet reaped). */
function processAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return false;
  }
  // "pid (comm) state ...": comm may hold spaces and parentheses, the last ")" ends it
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
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
