/**
 * What a data-parallel run asks of its process group, whatever carries the data: the
 * collectives (barrier, broadcast, all-gather, all-reduce), the optional hooks a transport
 * offers to reduce gradients where they are (device buffers, shared memory), and the group
 * of a run without DDP.
 *
 * Every collective must be called by every rank in the same order.
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";

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
  /**
   * Optional: all-reduce device buffers (`Backend.deviceMemory`) in place, without a trip
   * through the host (NCCL); resolves when every buffer holds the result.
   */
  allReduceDevice?(backend: Backend, buffers: DeviceBuffer[], op: ReduceOp): Promise<void>;
  /**
   * Optional, with `allReduceDevice`: in place, every rank's device buffers become rank
   * `root`'s (DDP's initial weights, through NCCL).
   */
  broadcastDevice?(backend: Backend, buffers: DeviceBuffer[], root?: number): Promise<void>;
  /**
   * Optional, a collective: host memory for gradients of `sizes` floats each, where
   * {@linkcode GradientStorage.allReduce} works in place (shared memory on one node). Every
   * rank gets the same answer; `ok: false` says why it could not be made (say, /dev/shm
   * too small), and the group's `allReduce` still works as before.
   */
  gradientStorage?(sizes: readonly number[]): Promise<GradientStorageResult>;
  /** One line for the run's log. */
  describe(): string;
  /** Closes connections and unmaps memory. */
  close(): void;
}

/**
 * Every rank's gradients in memory the ranks share, each rank's in a region of its own: a
 * backend wraps {@linkcode GradientStorage.arrays} (`Backend.wrapHost`) as the gradients
 * themselves, so the all-reduce sums them where they are, without copying them in or out.
 */
export interface GradientStorage {
  /** This rank's arrays, one per size asked for, in its region. */
  readonly arrays: readonly Float32Array[];
  /**
   * A collective, in place over `arrays` on every rank: afterwards every rank's arrays hold
   * the sum (or mean) of every rank's values, as `ProcessGroup.allReduce` gives them.
   */
  allReduce(op: ReduceOp): Promise<void>;
  /** Runs `fn` when the group closes, before the memory goes, while `arrays` can be read. */
  onClose(fn: () => void): void;
  /** One line for the run's log: where the gradients are and how much memory they take. */
  describe(): string;
}

/** What `ProcessGroup.gradientStorage` gives: the storage, or why there is none. */
export type GradientStorageResult =
  | { ok: true; storage: GradientStorage }
  | { ok: false; reason: string };

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
