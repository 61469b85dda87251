/**
 * Generation's KV cache on WebGPU (`attention_decode.wgsl`): appending the new positions'
 * keys and values to the caches, and the new queries' attention over them. qkv, out and the
 * caches are bound in batch chunks where they are over one binding.
 *
 * @module
 */

import type { KVCacheDims } from "../../backend.ts";
import { type GpuDevice, grid, slice, type WebGpuBuffer } from "./device.ts";
import type { Prelude } from "./kernels.ts";

/** The caches of one layer, as this backend's buffers: (B, NH, maxT, hs) each. */
export interface KVBuffers {
  k: WebGpuBuffer;
  v: WebGpuBuffer;
}

function headSize(hs: number): Prelude {
  return { kind: "headSize", hs };
}

/** The batch chunks and the slices of qkv (B, T, 3C), out (B, T, C) and a cache in each. */
function chunks(
  gpu: GpuDevice,
  { B, T, C, maxT }: KVCacheDims,
): { nb: number; qkv: [number, number]; out: [number, number]; cache: [number, number] }[] {
  return gpu.rowChunks(B, [T * 3 * C, T * C, maxT * C]).map(([b0, b1]) => {
    const nb = b1 - b0;
    return {
      nb,
      qkv: [b0 * T * 3 * C, nb * T * 3 * C],
      out: [b0 * T * C, nb * T * C],
      cache: [b0 * maxT * C, nb * maxT * C],
    };
  });
}

/** Copies the keys and values of the T new positions of qkv into the caches at pos. */
export function kvCacheAppend(
  gpu: GpuDevice,
  cache: KVBuffers,
  qkv: WebGpuBuffer,
  dims: KVCacheDims,
): void {
  const { T, C, NH, pos, maxT } = dims, hs = C / NH;
  for (const c of chunks(gpu, dims)) {
    gpu.dispatch(
      "kvCacheAppend",
      [c.nb, T, C, NH, pos, maxT, 1 / Math.sqrt(hs)],
      [slice(qkv, ...c.qkv), slice(cache.k, ...c.cache), slice(cache.v, ...c.cache)],
      grid(c.nb * T * C),
      headSize(hs),
    );
  }
}

/** out (B, T, C) = the new queries of qkv attending to cached positions 0 .. pos + t. */
export function attentionDecode(
  gpu: GpuDevice,
  out: WebGpuBuffer,
  qkv: WebGpuBuffer,
  cache: KVBuffers,
  dims: KVCacheDims,
): void {
  const { T, C, NH, pos, maxT } = dims, hs = C / NH;
  for (const c of chunks(gpu, dims)) {
    gpu.dispatch(
      "attentionDecode",
      [c.nb, T, C, NH, pos, maxT, 1 / Math.sqrt(hs)],
      [
        slice(qkv, ...c.qkv),
        slice(cache.k, ...c.cache),
        slice(cache.v, ...c.cache),
        slice(out, ...c.out),
      ],
      grid(c.nb * NH * T),
      headSize(hs),
    );
  }
}
