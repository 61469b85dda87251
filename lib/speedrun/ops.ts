/**
 * The speedrun's differentiable ops: ReLU², QK-norm and rotary position embeddings, each a
 * forward kernel of `kernels.ts` plus a closure for its backward, joined to the graph as the
 * lecture's ops are (`opResult` of lib/model/ops.ts). The kernels are host loops over
 * `hostView`, since the Backend interface has no elementwise product to compose them from.
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";
import { opResult } from "../model/ops.ts";
import { gradBuffer, Tensor } from "../model/tensor.ts";
import {
  qkNormBackward,
  qkNormForward,
  relu2Backward,
  relu2Forward,
  rotaryApply,
  rotaryTables,
} from "./kernels.ts";

/** A host array over `buf`, or an error naming the option that needs one. */
function host(be: Backend, buf: DeviceBuffer, option: string): Float32Array {
  if (!be.hostView) {
    throw new Error(
      `${option} runs on backends whose buffers are host memory (cpu, native), found the ` +
        `${be.name} backend, which has no hostView`,
    );
  }
  return be.hostView(buf) as Float32Array;
}

/** Expects qkv (B, T, 3C) with heads of an even size; returns B, T, C. */
function qkvDims(qkv: Tensor, nHead: number): [number, number, number] {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) {
    throw new Error(`Expected qkv of shape [B, T, 3C], found [${qkv.shape}]`);
  }
  const [B, T, C3] = qkv.shape, C = C3 / 3;
  if (C % nHead !== 0 || (C / nHead) % 2 !== 0) {
    throw new Error(`Expected n_embd ${C} to split into ${nHead} heads of an even size`);
  }
  return [B, T, C];
}

/** ReLU²: max(x, 0)², the speedrun's MLP activation (`--mlp relu2`). */
export function relu2(x: Tensor): Tensor {
  const be = x.backend, option = "--mlp relu2";
  const out = Tensor.zeros(be, x.shape);
  relu2Forward(host(be, out.buffer, option), host(be, x.buffer, option));
  return opResult([x], out, () => {
    const dx = host(be, gradBuffer(x), option);
    relu2Backward(dx, host(be, x.buffer, option), host(be, out.grad!.buffer, option));
  });
}

/**
 * QK-norm (`--qk-norm`): each head's query and key in packed qkv (B, T, 3C) divided by its
 * root mean square (PyTorch's `F.rms_norm`, no learned scale); values unchanged.
 */
export function qkNorm(qkv: Tensor, nHead: number): Tensor {
  const be = qkv.backend, option = "--qk-norm";
  const [B, T, C] = qkvDims(qkv, nHead), dims = { rows: B * T, C, nHead };
  const out = Tensor.zeros(be, qkv.shape);
  const rstd = new Float32Array(B * T * 2 * nHead);
  qkNormForward(host(be, out.buffer, option), rstd, host(be, qkv.buffer, option), dims);
  return opResult([qkv], out, () => {
    const dqkv = host(be, gradBuffer(qkv), option);
    qkNormBackward(
      dqkv,
      host(be, out.grad!.buffer, option),
      host(be, qkv.buffer, option),
      rstd,
      dims,
    );
  });
}

/**
 * Rotary position embeddings (`--pos rotary`): each head's query and key in packed qkv
 * (B, T, 3C) rotated by its position (`pos0` + t), base 10000, the first half of the head
 * paired with the second as the speedrun does; values unchanged.
 */
export function rotary(qkv: Tensor, nHead: number, pos0 = 0): Tensor {
  const be = qkv.backend, option = "--pos rotary";
  const [B, T, C] = qkvDims(qkv, nHead), dims = { B, T, C, nHead, pos0 };
  const tables = rotaryTables(T, C / nHead, pos0);
  const out = Tensor.zeros(be, qkv.shape);
  rotaryApply(host(be, out.buffer, option), host(be, qkv.buffer, option), dims, tables, false);
  return opResult([qkv], out, () => {
    const dqkv = host(be, gradBuffer(qkv), option);
    rotaryApply(dqkv, host(be, out.grad!.buffer, option), dims, tables, true);
  });
}
