/**
 * The CUDA backend's kernels besides matmul and attention, by layer: each checks its
 * buffers (a kernel never runs past a buffer's end), launches the kernels of its .cu file
 * and marks what it wrote. Semantics are the reference backend's (lib/backends/cpu/mod.ts).
 *
 * @module
 */

import type { AdamWParams } from "../../backend.ts";
import type { CudaBuffer, CudaDevice } from "./device.ts";
import { type Bf16Copies, columnSums } from "./matmul.ts";

const THREADS = 256;

/** The least and greatest value of each host copy of ids seen (the copy is never changed). */
const idRanges = new WeakMap<Int32Array, { least: number; greatest: number }>();

/**
 * Whether every id of `host` (an i32 buffer's host copy, replaced, never changed, when the
 * buffer is written) is in [0, V): one pass per copy, then a lookup, so a batch's ids are
 * scanned once however many kernels check them. False sends the caller to its own scan,
 * which names the first id out of range.
 */
function idsWithin(host: Int32Array, V: number): boolean {
  let range = idRanges.get(host);
  if (!range) {
    let least = 0, greatest = 0;
    if (host.length > 0) least = greatest = host[0];
    for (let n = 1; n < host.length; n++) {
      const id = host[n];
      if (id < least) least = id;
      else if (id > greatest) greatest = id;
    }
    range = { least, greatest };
    idRanges.set(host, range);
  }
  return range.least >= 0 && range.greatest < V;
}

/** out[i] = a[i] + b[i % nb]. */
export function addForward(
  dev: CudaDevice,
  out: CudaBuffer,
  a: CudaBuffer,
  b: CudaBuffer,
  n: number,
  nb: number,
): void {
  if (n === 0) return;
  if (nb <= 0) {
    throw new Error(`addForward: expected a broadcast length of at least 1, found ${nb}`);
  }
  dev.kernels.launch("add_forward", dev.blocks(n), THREADS, [
    out.pointer,
    a.pointer,
    b.pointer,
    n,
    nb,
  ]);
  dev.written(out);
}

/**
 * dst[i % nDst] += src[i], or = with `overwrite` (a gradient's first contribution: every
 * element of dst is written). A thread per dst element walks its src elements in order; for
 * a long, thin broadcast (many rows of few elements) the column sums of matmul.ts instead.
 */
export function accumulate(
  dev: CudaDevice,
  dst: CudaBuffer,
  src: CudaBuffer,
  n: number,
  nDst: number,
  overwrite = false,
): void {
  if (n === 0) return;
  const rows = n / nDst;
  if (Number.isInteger(rows) && rows >= 64 && nDst < 2 ** 16) {
    columnSums(dev, dst, src, rows, nDst, overwrite);
  } else {
    dev.kernels.launch("accumulate", dev.blocks(nDst), THREADS, [
      dst.pointer,
      src.pointer,
      n,
      nDst,
      overwrite ? 1 : 0,
    ]);
  }
  dev.written(dst);
}

/** out[i] = alpha * inp[i], or += with `acc`; in double, as the reference. */
export function scale(
  dev: CudaDevice,
  out: CudaBuffer,
  inp: CudaBuffer,
  alpha: number,
  n: number,
  acc: boolean,
): void {
  if (n === 0) return;
  dev.kernels.launch("scale_forward", dev.blocks(n), THREADS, [
    out.pointer,
    inp.pointer,
    alpha,
    n,
    acc ? 1 : 0,
  ]);
  dev.written(out);
}

/**
 * out (N, C) = weight[idx]; ids the host knows are checked here, with the reference's
 * RangeError, others on the device (a fault the next read-back throws).
 */
export function embeddingForward(
  dev: CudaDevice,
  out: CudaBuffer,
  idx: CudaBuffer,
  weight: CudaBuffer,
  N: number,
  C: number,
): void {
  const V = Math.floor(weight.length / C);
  const host = idx.hostInts;
  if (host && !idsWithin(host, V)) {
    for (let n = 0; n < N; n++) {
      const token = host[n];
      if (token < 0 || token >= V) {
        throw new RangeError(
          `Token id ${token} at position ${n} is outside the table of ${V} rows`,
        );
      }
    }
  }
  if (N * C === 0) return;
  const fault = host ? 0n : dev.faultPointer();
  dev.kernels.launch("embedding_forward", dev.blocks(N * C), THREADS, [
    out.pointer,
    idx.pointer,
    weight.pointer,
    N,
    C,
    V,
    fault,
  ]);
  dev.written(out);
}

/**
 * dweight[idx[n]] += dout[n], deterministic: with the ids on the host, their positions are
 * bucketed by id (a counting sort over typed arrays; largest buckets first) and each row
 * summed in the reference's order; without, a thread per channel walks every row. `fresh`:
 * dweight holds zeros no fill has written yet; the rows are then written, not added to,
 * where every row has an id (wpe's gradient), else filled first.
 */
export function embeddingBackward(
  dev: CudaDevice,
  dweight: CudaBuffer,
  dout: CudaBuffer,
  idx: CudaBuffer,
  N: number,
  C: number,
  fresh = false,
): void {
  if (N * C === 0) {
    if (fresh) dev.fillZeros(dweight);
    return;
  }
  const V = Math.floor(dweight.length / C);
  const k = dev.kernels;
  if (!idx.hostInts) {
    if (fresh) dev.fillZeros(dweight);
    k.launch("embedding_backward_columns", dev.blocks(C), THREADS, [
      dweight.pointer,
      dout.pointer,
      idx.pointer,
      N,
      C,
      V,
    ]);
    dev.written(dweight);
    return;
  }
  const { table, count } = bucketPositions(idx.hostInts, N, V, true);
  const overwrite = fresh && count === V && V * C === dweight.length;
  if (fresh && !overwrite) dev.fillZeros(dweight);
  if (count > 0) {
    const t = dev.scratch(table.byteLength); // the buckets, then the positions: one copy
    dev.driver.copyToDevice(t, table);
    k.launch("embedding_backward_buckets", [count, Math.ceil(C / THREADS)], THREADS, [
      dweight.pointer,
      dout.pointer,
      t + BigInt(4 * 3 * count),
      t,
      count,
      C,
      overwrite ? 1 : 0,
    ]);
    dev.giveBack(t);
  }
  dev.written(dweight);
}

/** What `bucketPositions` returns: views of one table (buckets first, then positions). */
export interface PositionBuckets {
  /** count buckets of (id, start, count), then the positions they index. */
  table: Int32Array;
  /** Positions n < N grouped by id, ascending within an id. */
  positions: Int32Array;
  /** (id, start, count) per id present, largest count first, then smaller id first. */
  buckets: Int32Array;
  /** The number of distinct ids in [0, V). */
  count: number;
}

/** Per-id counts, all zero between calls of `bucketPositions` (reused: no V-sized array per step). */
let idCounts = new Int32Array(0);
/** The arrays `bucketPositions(..., true)` returns views of, grown as needed. */
let reusedTable: Int32Array = new Int32Array(0), reusedIds: Int32Array = new Int32Array(0);

/** The first `n` elements of `scratch`, or of a larger array that replaces it. */
function grown(scratch: Int32Array, n: number): Int32Array {
  return scratch.length >= n ? scratch : new Int32Array(Math.max(n, 2 * scratch.length));
}

/**
 * Positions n < N grouped by id (ids in [0, V) only), by counting sorts over typed arrays:
 * O(N + V), no per-id arrays and no comparison sort. With `reuse`, the arrays returned are
 * views of this module's scratch arrays, valid until the next call (the embedding backward
 * uploads them at once): no arrays made per step.
 */
export function bucketPositions(
  ids: Int32Array,
  N: number,
  V: number,
  reuse = false,
): PositionBuckets {
  if (idCounts.length < V) idCounts = new Int32Array(V);
  const perId = idCounts;
  let count = 0, valid = 0, largest = 0;
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    if (id < 0 || id >= V) continue;
    const c = ++perId[id];
    if (c === 1) count++;
    if (c > largest) largest = c;
    valid++;
  }
  // the ids present, ascending: the one pass over V (then, with more than one position for
  // an id, the order of the buckets after them)
  let present: Int32Array, order: Int32Array, table: Int32Array;
  if (reuse) {
    reusedIds = grown(reusedIds, 2 * count);
    reusedTable = grown(reusedTable, 3 * count + valid);
    present = reusedIds.subarray(0, count);
    order = reusedIds.subarray(count, 2 * count);
    table = reusedTable.subarray(0, 3 * count + valid);
  } else {
    present = new Int32Array(count);
    order = new Int32Array(count);
    table = new Int32Array(3 * count + valid);
  }
  for (let id = 0, j = 0; j < count; id++) if (perId[id] !== 0) present[j++] = id;
  // ids ordered by count, descending, then by id: a counting sort over the counts (none
  // needed when every id is there once)
  if (largest > 1) {
    const firstOfCount = new Int32Array(largest + 2);
    for (let j = 0; j < count; j++) firstOfCount[largest - perId[present[j]] + 1]++;
    for (let r = 1; r <= largest + 1; r++) firstOfCount[r] += firstOfCount[r - 1];
    for (let j = 0; j < count; j++) {
      const id = present[j];
      order[firstOfCount[largest - perId[id]]++] = id;
    }
  } else {
    order = present;
  }
  const buckets = table.subarray(0, 3 * count), positions = table.subarray(3 * count);
  const cursor = perId; // reused: each id's next slot in positions
  let start = 0;
  for (let b = 0; b < count; b++) {
    const id = order[b], c = perId[id];
    buckets[3 * b] = id;
    buckets[3 * b + 1] = start;
    buckets[3 * b + 2] = c;
    cursor[id] = start;
    start += c;
  }
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    if (id >= 0 && id < V) positions[cursor[id]++] = n;
  }
  for (let j = 0; j < count; j++) perId[present[j]] = 0; // zero again for the next call
  return { table, positions, buckets, count };
}

/** LayerNorm forward: a warp per row, saving mean and rstd. */
export function layernormForward(
  dev: CudaDevice,
  out: CudaBuffer,
  stats: { mean: CudaBuffer; rstd: CudaBuffer },
  inp: CudaBuffer,
  params: { weight: CudaBuffer; bias: CudaBuffer },
  N: number,
  C: number,
): void {
  if (N === 0) return;
  dev.kernels.launch("layernorm_forward", Math.ceil(N / (THREADS / 32)), THREADS, [
    out.pointer,
    stats.mean.pointer,
    stats.rstd.pointer,
    inp.pointer,
    params.weight.pointer,
    params.bias.pointer,
    N,
    C,
  ]);
  dev.written(out, stats.mean, stats.rstd);
}

/**
 * LayerNorm backward: dinp per row; dweight and dbias through per-block partial sums. Each
 * gradient is added to, or written where `grads.overwrite` says (its first contribution).
 */
export function layernormBackward(
  dev: CudaDevice,
  grads: {
    dinp: CudaBuffer;
    dweight: CudaBuffer;
    dbias: CudaBuffer;
    overwrite?: { dinp: boolean; dweight: boolean; dbias: boolean };
  },
  dout: CudaBuffer,
  saved: { inp: CudaBuffer; weight: CudaBuffer; mean: CudaBuffer; rstd: CudaBuffer },
  N: number,
  C: number,
): void {
  if (N === 0 || C === 0) return;
  const rowsPerBlock = Math.max(32, Math.ceil(N / 1024));
  const blocks = Math.ceil(N / rowsPerBlock);
  const partials = dev.scratch(4 * 2 * blocks * C);
  const k = dev.kernels;
  k.launch("layernorm_backward", blocks, THREADS, [
    grads.dinp.pointer,
    partials,
    dout.pointer,
    saved.inp.pointer,
    saved.weight.pointer,
    saved.mean.pointer,
    saved.rstd.pointer,
    N,
    C,
    rowsPerBlock,
    grads.overwrite?.dinp ? 1 : 0,
  ]);
  k.launch("column_sums_finish", dev.blocks(2 * C), THREADS, [
    grads.dweight.pointer,
    grads.dbias.pointer,
    partials,
    blocks,
    C,
    (grads.overwrite?.dweight ? 1 : 0) | (grads.overwrite?.dbias ? 2 : 0),
  ]);
  dev.giveBack(partials);
  dev.written(grads.dinp, grads.dweight, grads.dbias);
}

/** GELU (tanh approximation) forward. */
export function geluForward(dev: CudaDevice, out: CudaBuffer, inp: CudaBuffer, n: number): void {
  if (n === 0) return;
  dev.kernels.launch("gelu_forward", dev.blocks(n), THREADS, [out.pointer, inp.pointer, n]);
  dev.written(out);
}

/** GELU backward: dinp += gelu'(inp) * dout, or = without `accumulate`. */
export function geluBackward(
  dev: CudaDevice,
  dinp: CudaBuffer,
  inp: CudaBuffer,
  dout: CudaBuffer,
  n: number,
  accumulate = true,
): void {
  if (n === 0) return;
  dev.kernels.launch("gelu_backward", dev.blocks(n), THREADS, [
    dinp.pointer,
    inp.pointer,
    dout.pointer,
    n,
    accumulate ? 1 : 0,
  ]);
  dev.written(dinp);
}

/** Threads per row of the fused classifier: up to 1024, a multiple of 32. */
function classifierThreads(V: number): number {
  return Math.min(1024, Math.max(32, Math.ceil(V / 32) * 32));
}

/** Targets the host knows, checked with the reference's RangeError; else the device's fault. */
function targetFault(dev: CudaDevice, targets: CudaBuffer, N: number, V: number): bigint {
  const host = targets.hostInts;
  if (!host) return dev.faultPointer();
  if (idsWithin(host, V)) return 0n;
  for (let n = 0; n < N; n++) {
    if (host[n] < 0 || host[n] >= V) {
      throw new RangeError(`Target ${host[n]} at position ${n} is outside the vocabulary of ${V}`);
    }
  }
  return 0n;
}

/** loss[0] = mean cross-entropy of N rows of V logits: a block per row, then the mean. */
export function crossEntropyForward(
  dev: CudaDevice,
  loss: CudaBuffer,
  logits: CudaBuffer,
  targets: CudaBuffer,
  N: number,
  V: number,
): void {
  const fault = targetFault(dev, targets, N, V);
  if (N === 0) {
    dev.driver.fill32(loss.pointer, 0x7fc00000, 1); // the mean of nothing: NaN, as 0 / 0
    dev.written(loss);
    return;
  }
  const rowLoss = dev.scratch(4 * N);
  const k = dev.kernels;
  k.launch("crossentropy_forward_rows", N, classifierThreads(V), [
    rowLoss,
    logits.pointer,
    targets.pointer,
    N,
    V,
    fault,
  ]);
  k.launch("crossentropy_forward_mean", 1, 1024, [loss.pointer, rowLoss, N]);
  dev.giveBack(rowLoss);
  dev.written(loss);
}

/** dlogits += (softmax(logits) - onehot(targets)) * dloss / N, dloss read on the device. */
export function crossEntropyBackward(
  dev: CudaDevice,
  dlogits: CudaBuffer,
  dloss: CudaBuffer,
  logits: CudaBuffer,
  targets: CudaBuffer,
  N: number,
  V: number,
): void {
  targetFault(dev, targets, N, V);
  if (N === 0) return;
  dev.kernels.launch("crossentropy_backward", N, classifierThreads(V), [
    dlogits.pointer,
    dloss.pointer,
    logits.pointer,
    targets.pointer,
    N,
    V,
  ]);
  dev.written(dlogits);
}

/**
 * logits = (softmax(logits) - onehot(targets)) * dloss / N, written over the logits (llm.c's
 * classifier: the logits are dead once their gradient exists).
 */
export function crossEntropyBackwardInPlace(
  dev: CudaDevice,
  logits: CudaBuffer,
  dloss: CudaBuffer,
  targets: CudaBuffer,
  N: number,
  V: number,
): void {
  targetFault(dev, targets, N, V);
  if (N === 0) return;
  dev.kernels.launch("crossentropy_backward_inplace", N, classifierThreads(V), [
    logits.pointer,
    dloss.pointer,
    targets.pointer,
    N,
    V,
  ]);
  dev.written(logits);
}

/** Sums of squares of the first ns[i] elements of each buffer, with one read-back. */
export async function sumsOfSquares(
  dev: CudaDevice,
  bufs: CudaBuffer[],
  ns: number[],
): Promise<number[]> {
  if (bufs.length === 0) return [];
  const maxN = Math.max(...ns);
  // blocks per buffer: enough for the largest, a function of the sizes only (deterministic)
  const P = Math.max(1, Math.min(512, Math.ceil(maxN / (THREADS * 64))));
  const out = dev.scratch(8 * bufs.length); // doubles
  const k = dev.kernels;
  for (let first = 0; first < bufs.length; first += 65535) {
    const group = bufs.slice(first, first + 65535), count = group.length;
    const table = new BigUint64Array(2 * count);
    group.forEach((b, i) => {
      table[2 * i] = b.pointer;
      table[2 * i + 1] = BigInt(ns[first + i]);
    });
    const t = dev.scratch(16 * count), partials = dev.scratch(8 * P * count);
    dev.driver.copyToDevice(t, table);
    k.launch("sum_of_squares_partial", [P, count], THREADS, [partials, t, count]);
    k.launch("sum_of_squares_finish", dev.blocks(count), THREADS, [
      out + BigInt(8 * first),
      partials,
      P,
      count,
    ]);
    dev.giveBack(t, partials);
  }
  let bytes: ArrayBuffer;
  try {
    bytes = await dev.readBytes(out, 8 * bufs.length);
  } finally {
    dev.giveBack(out);
  }
  return [...new Float64Array(bytes)];
}

/** What `adamw` updates. */
export interface AdamWBuffers {
  param: CudaBuffer;
  grad: CudaBuffer;
  m: CudaBuffer;
  v: CudaBuffer;
}

/**
 * One AdamW step of n parameters (fused: one pass; or "elementwise": moments, then the
 * parameters), refreshing the parameter's bf16 copy in the same pass where it has one.
 */
export function adamw(
  dev: CudaDevice,
  bf16: Bf16Copies,
  { param, grad, m, v }: AdamWBuffers,
  n: number,
  hp: AdamWParams,
  fused: boolean,
): void {
  if (n === 0) return;
  const { lr, beta1, beta2, eps, weightDecay, step, gradScale = 1 } = hp;
  // the host's part, as the reference computes it
  const bc1 = 1 - beta1 ** step, bc2 = 1 - beta2 ** step;
  const stepSize = lr / bc1, sqrtBc2 = Math.sqrt(bc2), decay = 1 - lr * weightDecay;
  const copy = bf16.existing(param);
  const copyPointer = copy && param.length === n ? copy.pointer : 0n;
  const k = dev.kernels, blocks = dev.blocks(n);
  if (fused) {
    k.launch("adamw_update", blocks, THREADS, [
      param.pointer,
      grad.pointer,
      m.pointer,
      v.pointer,
      copyPointer,
      n,
      beta1,
      beta2,
      eps,
      stepSize,
      sqrtBc2,
      decay,
      gradScale,
    ]);
  } else {
    k.launch("adamw_moments", blocks, THREADS, [
      grad.pointer,
      m.pointer,
      v.pointer,
      n,
      beta1,
      beta2,
      gradScale,
    ]);
    k.launch("adamw_apply", blocks, THREADS, [
      param.pointer,
      m.pointer,
      v.pointer,
      copyPointer,
      n,
      eps,
      stepSize,
      sqrtBc2,
      decay,
    ]);
  }
  dev.written(param, m, v);
  if (copy && copyPointer !== 0n) copy.version = param.version;
}

/**
 * buf[0, n) = std * N(0, 1) from init.cu's counter-based generator keyed by (seed, stream):
 * the same numbers for the same key on every GPU and launch shape.
 */
export function initNormal(
  dev: CudaDevice,
  buf: CudaBuffer,
  n: number,
  std: number,
  seed: number,
  stream: number,
): void {
  if (n === 0) return;
  dev.kernels.launch("init_normal", dev.blocks(Math.ceil(n / 2)), THREADS, [
    buf.pointer,
    n,
    seed | 0,
    stream | 0,
    std,
  ]);
  dev.written(buf);
}
