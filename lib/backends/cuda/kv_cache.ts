/**
 * Generation's KV cache on the CUDA backend (attention_decode.cu): appending the new
 * positions' keys and values to the caches, and the new queries' attention over them, a
 * block per query row.
 *
 * @module
 */

import type { KVCacheDims } from "../../backend.ts";
import type { CudaBuffer, CudaDevice } from "./device.ts";
import { attentionDecodeSmemBytes, DECODE_THREADS } from "./kernels.ts";

/** Copies the keys and values of the T new positions of qkv into the caches at pos. */
export function kvCacheAppend(
  dev: CudaDevice,
  k: CudaBuffer,
  v: CudaBuffer,
  qkv: CudaBuffer,
  { B, T, C, NH, pos, maxT }: KVCacheDims,
): void {
  dev.kernels.launch("kv_cache_append", dev.blocks(B * T * C), 256, [
    k.pointer,
    v.pointer,
    qkv.pointer,
    B,
    T,
    C,
    NH,
    pos,
    maxT,
  ]);
  dev.written(k, v);
}

/** out (B, T, C) = the new queries of qkv attending to cached positions 0 .. pos + t. */
export function attentionDecode(
  dev: CudaDevice,
  out: CudaBuffer,
  qkv: CudaBuffer,
  k: CudaBuffer,
  v: CudaBuffer,
  { B, T, C, NH, pos, maxT }: KVCacheDims,
): void {
  dev.kernels.launch(
    "attention_decode",
    B * NH * T,
    DECODE_THREADS,
    [out.pointer, qkv.pointer, k.pointer, v.pointer, B, T, C, NH, pos, maxT],
    attentionDecodeSmemBytes(C / NH, pos + T),
  );
  dev.written(out);
}
