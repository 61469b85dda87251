/**
 * The sizes check every backend's KV-cache kernels share (`kvCacheAppend`, `attentionDecode`),
 * so that a bad call fails the same way, with the same message, on every backend.
 *
 * @module
 */

import type { DeviceBuffer, KVCacheDims } from "../backend.ts";

/**
 * `dims` after checking it describes caches that hold the new positions: pos + T <= maxT,
 * heads that divide C, and key and value buffers of B NH maxT hs elements.
 *
 * @throws {RangeError} saying which size is off.
 */
export function checkKVCacheDims(
  dims: KVCacheDims,
  kCache: DeviceBuffer,
  vCache: DeviceBuffer,
): KVCacheDims {
  const { B, T, C, NH, pos, maxT } = dims;
  if (!(NH >= 1) || C % NH !== 0) {
    throw new RangeError(`KV cache: expected C (${C}) to be a multiple of NH (${NH})`);
  }
  if (!(pos >= 0) || !(T >= 1) || pos + T > maxT) {
    throw new RangeError(
      `KV cache: expected pos + T within its ${maxT} positions, found pos ${pos} and T ${T}`,
    );
  }
  const expected = B * maxT * C;
  for (const [name, buf] of [["key", kCache], ["value", vCache]] as const) {
    if (buf.length !== expected) {
      throw new RangeError(
        `KV cache: expected a ${name} cache of ${expected} elements (B ${B} x maxT ${maxT} x C ${C}), found ${buf.length}`,
      );
    }
  }
  return dims;
}
