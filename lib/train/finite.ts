/**
 * Which of a model's parameters and AdamW's moments hold a NaN or an infinity: the check a
 * checkpoint passes before it is written and a resumed checkpoint passes when loaded, so that
 * "the last good checkpoint" is true. It costs one pass over the values on every backend: a
 * scan of the buffer's own memory where the backend has `hostView` (cpu, native), else the
 * backend's `sumOfSquares` (one wait for all with `sumsOfSquares`), a non-finite sum being
 * confirmed by reading the buffer back (a sum of squares of large finite values can overflow).
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";
import type { GPT } from "../model/gpt.ts";
import { type AdamW, MuonAndAdamW } from "./optim.ts";

/** A named buffer to check: its first `size` elements. */
export interface NamedBuffer {
  name: string;
  backend: Backend;
  buffer: DeviceBuffer;
  size: number;
}

/**
 * The model's parameters by name, AdamW's moments as `<name>.exp_avg(_sq)`, and Muon's
 * momentum as `<name>.momentum_buffer` where Muon runs.
 */
export function trainingBuffers(model: GPT, optimizer: AdamW | null): NamedBuffer[] {
  const out: NamedBuffer[] = [];
  const names = new Map<unknown, string>();
  for (const [name, p] of model.namedParameters()) {
    names.set(p, name);
    out.push({ name, backend: p.backend, buffer: p.buffer, size: p.size });
  }
  for (const [p, s] of optimizer?.state ?? []) {
    const name = names.get(p) ?? "(a tensor outside the model)";
    out.push({ name: `${name}.exp_avg`, backend: p.backend, buffer: s.m, size: p.size });
    out.push({ name: `${name}.exp_avg_sq`, backend: p.backend, buffer: s.v, size: p.size });
  }
  if (optimizer instanceof MuonAndAdamW) {
    for (const [p, buffer] of optimizer.muon.state) {
      const name = names.get(p) ?? "(a tensor outside the model)";
      out.push({ name: `${name}.momentum_buffer`, backend: p.backend, buffer, size: p.size });
    }
  }
  return out;
}

/** The names of the buffers holding a NaN or an infinity, in the order given. */
export async function nonFiniteBuffers(buffers: readonly NamedBuffer[]): Promise<string[]> {
  const suspects: NamedBuffer[] = [];
  const bySum: NamedBuffer[] = [];
  for (const b of buffers) {
    if (b.backend.hostView) {
      if (!allFinite(b.backend.hostView(b.buffer), b.size)) suspects.push(b);
    } else {
      bySum.push(b);
    }
  }
  const sums = await sumsOfSquares(bySum);
  for (let i = 0; i < bySum.length; i++) {
    const b = bySum[i];
    // a finite sum of squares means every value is finite; a non-finite one is read to be sure
    if (!Number.isFinite(sums[i]) && !allFinite(await b.backend.read(b.buffer), b.size)) {
      suspects.push(b);
    }
  }
  const bad = new Set(suspects);
  return buffers.filter((b) => bad.has(b)).map((b) => b.name);
}

/** Host arrays (a loaded checkpoint's moments) by name: the names holding a NaN or infinity. */
export function nonFiniteArrays(arrays: Iterable<[string, Float32Array]>): string[] {
  const out: string[] = [];
  for (const [name, a] of arrays) if (!allFinite(a, a.length)) out.push(name);
  return out;
}

/** Up to `max` names, then how many more: `a, b, c and 4 more`. */
export function listNames(names: readonly string[], max = 3): string {
  if (names.length <= max) return names.join(", ");
  return `${names.slice(0, max).join(", ")} and ${names.length - max} more`;
}

function allFinite(a: Float32Array | Int32Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    // x * 0 is 0 for every finite x, NaN for NaN and the infinities
    if (a[i] * 0 !== 0) return false;
  }
  return true;
}

/** Each buffer's sum of squares, with one wait per backend that batches them. */
async function sumsOfSquares(buffers: readonly NamedBuffer[]): Promise<number[]> {
  const sums = new Array<number>(buffers.length);
  const byBackend = new Map<Backend, number[]>();
  buffers.forEach((b, i) => {
    const indices = byBackend.get(b.backend) ?? [];
    indices.push(i);
    byBackend.set(b.backend, indices);
  });
  for (const [backend, indices] of byBackend) {
    if (backend.sumsOfSquares) {
      const got = await backend.sumsOfSquares(
        indices.map((i) => buffers[i].buffer),
        indices.map((i) => buffers[i].size),
      );
      indices.forEach((i, k) => sums[i] = got[k]);
    } else {
      for (const i of indices) {
        sums[i] = await backend.sumOfSquares(buffers[i].buffer, buffers[i].size);
      }
    }
  }
  return sums;
}
