/**
 * Gradients in shared memory, reduced where they are: one file of /dev/shm holds a region
 * per rank, and rank j's gradients are region j (a backend wraps their arrays as the
 * gradient buffers, `Backend.wrapHost`). An all-reduce copies nothing in or out:
 *
 * 1. a barrier: every rank's gradients are complete;
 * 2. rank j sums part j of the regions over every rank, in rank order (as the copying
 *    all-reduce does, so the sums are the same to the bit), and writes the result into part
 *    j of every rank's region (a reduce-scatter whose results go straight to all);
 * 3. a barrier: every region holds every sum.
 *
 * Between all-reduces a rank touches only its own region (backward accumulates into it,
 * `zeroGrad` clears it), so no rank writes where another reads.
 *
 * The pages are reserved when the file is made (`posix_fallocate`), so a /dev/shm too small
 * for them is an answer here, on every rank alike, not a SIGBUS in the middle of a step.
 *
 * @module
 */

import type { GradientStorage, ReduceOp } from "./collectives.ts";
import { mapSharedFile, type SharedMapping } from "./libc.ts";
import { shmPath } from "./shm_names.ts";
import type { TcpProcessGroup } from "./tcp_group.ts";

/** 64 bytes: every array starts on a cache line of its own. */
const ALIGN_FLOATS = 16;
/** 4 KiB: every region starts on a page of its own. */
const PAGE_FLOATS = 1024;

/** Where each array sits in a rank's region, in floats. */
export interface GradientLayout {
  /** The start of each array. */
  offsets: number[];
  /** The floats in use: the end of the last array. */
  used: number;
  /** One region's length: `used` rounded up to a page. */
  stride: number;
}

/** The arrays of `sizes` one after the other, each on a cache line. */
export function gradientLayout(sizes: readonly number[]): GradientLayout {
  const offsets: number[] = [];
  let at = 0;
  for (const n of sizes) {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`Expected gradient sizes of 0 or more floats, found ${n}`);
    }
    offsets.push(at);
    at += Math.ceil(n / ALIGN_FLOATS) * ALIGN_FLOATS;
  }
  const used = sizes.length === 0 ? 0 : offsets[offsets.length - 1] + sizes[sizes.length - 1];
  return {
    offsets,
    used,
    stride: Math.max(PAGE_FLOATS, Math.ceil(at / PAGE_FLOATS) * PAGE_FLOATS),
  };
}

/**
 * A collective of one node's ranks: local rank 0 makes the file and reserves its pages, the
 * others map it, and it is unlinked once all have it. Any rank's failure (no space, no
 * mapping) is every rank's answer, `ok: false` with the reason; nothing is left behind.
 */
export async function createGradientStorage(
  control: TcpProcessGroup,
  sizes: readonly number[],
  barrier: (what: string) => void,
): Promise<{ ok: true; storage: ShmGradientStorage } | { ok: false; reason: string }> {
  const layout = gradientLayout(sizes);
  const N = control.worldSize;
  const bytes = N * layout.stride * 4;
  const path = shmPath(control.runId, control.env.nodeRank, "-grads");
  const creator = control.localRank === 0;
  const encoder = new TextEncoder(), decoder = new TextDecoder();
  let problem = "";
  const tryMap = (create: boolean): SharedMapping | null => {
    try {
      return mapSharedFile(path, bytes, create, { reserve: create, populate: true });
    } catch (e) {
      problem = (e as Error).message;
      return null;
    }
  };
  let map = creator ? tryMap(true) : null;
  let answers: Uint8Array[];
  try {
    // the creator's answer first: the others map only a file that was made
    const made = await control.broadcastBytes(creator ? encoder.encode(problem) : null);
    if (!creator) {
      if (made.length === 0) map = tryMap(false);
      else problem = decoder.decode(made);
    }
    answers = await control.allGatherBytes(encoder.encode(problem));
  } catch (e) {
    // a rank lost before all had mapped it: the name goes all the same
    map?.unmap();
    if (creator) removeIfThere(path);
    throw e;
  }
  // every rank has mapped the file or given up: the name can go, so no crash leaves it behind
  if (creator) removeIfThere(path);
  const failed = answers.findIndex((a) => a.length > 0);
  if (failed >= 0 || !map) {
    map?.unmap();
    const r = Math.max(failed, 0);
    return {
      ok: false,
      reason: `${N} x ${
        megabytes(layout.used)
      } of gradients cannot be kept in shared memory (rank ${r}: ${decoder.decode(answers[r])})`,
    };
  }
  const storage = new ShmGradientStorage(map, layout, sizes, control.localRank, barrier, path);
  return { ok: true, storage };
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

function megabytes(floats: number): string {
  const mb = floats * 4 / 1e6;
  return `${mb.toFixed(mb < 10 ? 2 : 0)} MB`;
}

/** The gradients of one node's ranks in one mapping; the shared-memory group owns it. */
export class ShmGradientStorage implements GradientStorage {
  readonly arrays: readonly Float32Array[];
  readonly #map: SharedMapping;
  readonly #regions: Float32Array[];
  readonly #rank: number;
  readonly #barrier: (what: string) => void;
  readonly #path: string;
  #closeHooks: (() => void)[] = [];

  /** Views of `map`: `layout.stride` floats a rank, this rank's arrays in region `rank`. */
  constructor(
    map: SharedMapping,
    layout: GradientLayout,
    sizes: readonly number[],
    rank: number,
    barrier: (what: string) => void,
    path: string,
  ) {
    const N = map.byteLength / (layout.stride * 4);
    this.#map = map;
    this.#rank = rank;
    this.#barrier = barrier;
    this.#path = path;
    this.#regions = Array.from(
      { length: N },
      (_, j) => new Float32Array(map.buffer, j * layout.stride * 4, layout.used),
    );
    const mine = this.#regions[rank];
    this.arrays = sizes.map((n, i) => mine.subarray(layout.offsets[i], layout.offsets[i] + n));
  }

  allReduce(op: ReduceOp): Promise<void> {
    const regions = this.#regions, N = regions.length;
    const scale = op === "avg" ? 1 / N : 1;
    const used = regions[0].length;
    this.#barrier("all-reduce"); // every rank's gradients are complete
    const lo = Math.floor((used * this.#rank) / N), hi = Math.floor((used * (this.#rank + 1)) / N);
    if (N === 2) {
      const [a, b] = regions;
      for (let i = lo; i < hi; i++) {
        const v = (a[i] + b[i]) * scale;
        a[i] = v;
        b[i] = v;
      }
    } else {
      for (let i = lo; i < hi; i++) {
        let sum = 0;
        for (let j = 0; j < N; j++) sum += regions[j][i];
        const v = sum * scale;
        for (let j = 0; j < N; j++) regions[j][i] = v;
      }
    }
    this.#barrier("all-reduce"); // every part is in every region
    return Promise.resolve();
  }

  onClose(fn: () => void): void {
    this.#closeHooks.push(fn);
  }

  describe(): string {
    return `${this.#regions.length} x ${
      megabytes(this.#regions[0].length)
    } in shared memory ${this.#path} (mmap, unlinked), all-reduced in place`;
  }

  /** Runs the close hooks, then unmaps: the arrays must not be used afterwards. */
  release(): void {
    const hooks = this.#closeHooks;
    this.#closeHooks = [];
    for (const fn of hooks) fn();
    this.#map.unmap();
  }
}
