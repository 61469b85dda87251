/**
 * Causal self-attention on the CUDA backend: flash style (attention.cu: tiled kernels for
 * head sizes 16, 32, 64 and 128, a thread-per-row kernel for others), saving only the
 * softmax statistics, or materialised (attention_naive.cu, the speedup ladder's rung before
 * flash attention), saving the probabilities. Flash attention has a second set of kernels on
 * tensor cores (attention_bf16.cu): bf16 operands for head sizes 64 and 128, used under bf16
 * matmuls (autocast, as PyTorch's SDPA), and TF32 operands for head size 64, used under TF32
 * matmuls, unless `AttentionPrecision` says otherwise; the backward runs the kernels of the
 * forward that made its saved statistics.
 *
 * @module
 */

import type { AttentionDims } from "../../backend.ts";
import { AttentionSaved, type CudaBuffer, type CudaDevice } from "./device.ts";
import {
  attentionBf16SmemBytes,
  attentionSmemBytes,
  BF16_ATTENTION_THREADS,
  BF16_HEAD_SIZES,
  type KernelName,
  TF32_HEAD_SIZES,
  TILED_HEAD_SIZES,
} from "./kernels.ts";

const TILE = 64, TILE_THREADS = 256, THREADS = 256;

/** The attention kernels to use: flash style, or the (B, NH, T, T) matrix stored. */
export type AttentionKind = "flash" | "materialized";

/**
 * The precision of flash attention's products: "auto" runs the bf16 tensor-core kernels when
 * the matmuls are bf16, the TF32 ones when they are TF32, and the f32 ones otherwise; "f32"
 * always the f32 (SIMT) kernels; "bf16" or "tf32" those kernels whatever the matmuls'
 * precision. They apply only where `tensorCoreAttention` says the head size has them (bf16:
 * 64, 128; TF32: 64); elsewhere the f32 kernels run.
 */
export type AttentionPrecision = "auto" | "f32" | "bf16" | "tf32";

/** The operands' precision of the tensor-core attention kernels. */
export type TensorCoreOperand = "bf16" | "tf32";

/** How attention runs: the kernels, their precision, and the matmuls' precision now. */
export interface AttentionChoice {
  kind: AttentionKind;
  precision: AttentionPrecision;
  matmulPrecision: "f32" | "tf32" | "bf16";
}

/** The operands of the tensor-core forward that saved these statistics (its backward's too). */
const madeByTensorCores = new WeakMap<AttentionSaved, TensorCoreOperand>();

/** Whether the tensor-core kernels of `operand` serve this head size on this device. */
export function tensorCoreAttention(
  dev: CudaDevice,
  operand: TensorCoreOperand,
  hs: number,
  BNH: number,
): boolean {
  const sizes: readonly number[] = operand === "bf16" ? BF16_HEAD_SIZES : TF32_HEAD_SIZES;
  if (!sizes.includes(hs) || BNH > 65535) return false;
  const most = Math.max(
    attentionBf16SmemBytes("forward", hs, operand),
    attentionBf16SmemBytes("dkdv", hs, operand),
    attentionBf16SmemBytes("dq", hs, operand),
  );
  return most <= dev.kernels.maxSharedOptin;
}

/** Which tensor-core kernels flash attention of these sizes runs on under `choice`, if any. */
export function tensorCoreOperand(
  dev: CudaDevice,
  choice: Omit<AttentionChoice, "kind">,
  { C, NH, B }: AttentionDims,
): TensorCoreOperand | null {
  const wanted = choice.precision === "auto"
    ? (choice.matmulPrecision === "f32" ? null : choice.matmulPrecision)
    : choice.precision === "f32"
    ? null
    : choice.precision;
  return wanted && tensorCoreAttention(dev, wanted, C / NH, B * NH) ? wanted : null;
}

/** Whether the tiled kernels serve this head size on this device (else the generic ones). */
export function tiledAttention(dev: CudaDevice, hs: number, BNH: number): boolean {
  if (!(TILED_HEAD_SIZES as readonly number[]).includes(hs) || BNH > 65535) return false;
  const most = Math.max(
    attentionSmemBytes("forward", hs),
    attentionSmemBytes("dkdv", hs),
    attentionSmemBytes("dq", hs),
  );
  return most <= dev.kernels.maxSharedOptin;
}

/** out (B, T, C) from qkv (B, T, 3C); returns what the matching backward needs. */
export function attentionForward(
  dev: CudaDevice,
  choice: AttentionChoice,
  out: CudaBuffer,
  qkv: CudaBuffer,
  dims: AttentionDims,
): AttentionSaved {
  const { B, T, NH } = dims;
  if (choice.kind === "materialized") {
    const saved = dev.allocate(
      B * NH * T * T * 4,
      (p) => new AttentionSaved(p, B * NH * T * T, "materialized", dims, out, out.version),
    );
    naiveForward(dev, out, saved, qkv, dims);
    dev.written(out);
    return saved;
  }
  const lse = dev.allocate(
    B * NH * T * 4,
    (p) => new AttentionSaved(p, B * NH * T, "flash", dims, out, out.version + 1),
  );
  const operand = tensorCoreOperand(dev, choice, dims);
  if (operand) madeByTensorCores.set(lse, operand);
  flashForward(dev, out, lse, qkv, dims, operand);
  dev.written(out); // now at lse.outVersion
  return lse;
}

/**
 * dqkv += attention's backward of dout, by whichever forward made `saved`. `fresh`: dqkv
 * holds zeros no fill has written yet; the flash kernels then write it (every element, its
 * first contribution), the materialized backward fills it first.
 */
export function attentionBackward(
  dev: CudaDevice,
  dqkv: CudaBuffer,
  dout: CudaBuffer,
  qkv: CudaBuffer,
  saved: AttentionSaved,
  dims: AttentionDims,
  fresh = false,
): void {
  const { B, T, C } = dims;
  if (saved.kind === "materialized" || B * T * C === 0) {
    if (fresh) dev.fillZeros(dqkv);
    naiveBackward(dev, dqkv, dout, qkv, saved, dims);
  } else {
    flashBackward(dev, dqkv, dout, qkv, saved, dims, fresh);
  }
  dev.written(dqkv);
}

function flashForward(
  dev: CudaDevice,
  out: CudaBuffer,
  lse: CudaBuffer,
  qkv: CudaBuffer,
  dims: AttentionDims,
  operand: TensorCoreOperand | null,
): void {
  const { B, T, C, NH } = dims, hs = C / NH;
  if (B * T * C === 0) return;
  const args = [out.pointer, lse.pointer, qkv.pointer, B, T, C, NH] as const;
  if (operand) {
    const name = `attention_forward_${operand}_hs${hs}` as
      & KernelName
      & `attention_forward_${TensorCoreOperand}_hs${number}`;
    dev.kernels.launch(
      name,
      [Math.ceil(T / TILE), B * NH],
      BF16_ATTENTION_THREADS,
      [...args],
      attentionBf16SmemBytes("forward", hs, operand),
    );
  } else if (tiledAttention(dev, hs, B * NH)) {
    const name = `attention_forward_hs${hs}` as KernelName & `attention_forward_hs${number}`;
    dev.kernels.launch(
      name,
      [Math.ceil(T / TILE), B * NH],
      TILE_THREADS,
      [...args],
      attentionSmemBytes("forward", hs),
    );
  } else {
    dev.kernels.launch("attention_forward_generic", dev.blocks(B * NH * T, 64), 64, [...args]);
  }
}

function flashBackward(
  dev: CudaDevice,
  dqkv: CudaBuffer,
  dout: CudaBuffer,
  qkv: CudaBuffer,
  saved: AttentionSaved,
  dims: AttentionDims,
  overwrite: boolean,
): void {
  const { B, T, C, NH } = dims, hs = C / NH;
  if (B * T * C === 0) return;
  const operand = madeByTensorCores.get(saved) ?? null;
  let out = saved.out, lse: CudaBuffer = saved, recomputed: CudaBuffer[] = [];
  if (out.version !== saved.outVersion) {
    // the forward's output was overwritten since: compute it again (with its statistics)
    out = dev.empty(B * T * C);
    lse = dev.empty(B * NH * T);
    flashForward(dev, out, lse, qkv, dims, operand);
    recomputed = [out, lse];
  }
  const k = dev.kernels;
  const D = dev.scratch(4 * B * NH * T);
  k.launch("attention_backward_prep", dev.blocks(B * T * NH * 32), THREADS, [
    D,
    dout.pointer,
    out.pointer,
    B,
    T,
    C,
    NH,
  ]);
  const args = [
    dqkv.pointer,
    dout.pointer,
    qkv.pointer,
    lse.pointer,
    D,
    B,
    T,
    C,
    NH,
    overwrite ? 1 : 0,
  ] as const;
  if (operand) {
    const grid = [Math.ceil(T / TILE), B * NH] as const;
    const dkdv = `attention_backward_dkdv_${operand}_hs${hs}` as
      & KernelName
      & `attention_backward_dkdv_${TensorCoreOperand}_hs${number}`;
    const dq = `attention_backward_dq_${operand}_hs${hs}` as
      & KernelName
      & `attention_backward_dq_${TensorCoreOperand}_hs${number}`;
    const threads = BF16_ATTENTION_THREADS;
    k.launch(dkdv, grid, threads, [...args], attentionBf16SmemBytes("dkdv", hs, operand));
    k.launch(dq, grid, threads, [...args], attentionBf16SmemBytes("dq", hs, operand));
  } else if (tiledAttention(dev, hs, B * NH)) {
    const grid = [Math.ceil(T / TILE), B * NH] as const;
    const dkdv = `attention_backward_dkdv_hs${hs}` as
      & KernelName
      & `attention_backward_dkdv_hs${number}`;
    const dq = `attention_backward_dq_hs${hs}` as KernelName & `attention_backward_dq_hs${number}`;
    k.launch(dkdv, grid, TILE_THREADS, [...args], attentionSmemBytes("dkdv", hs));
    k.launch(dq, grid, TILE_THREADS, [...args], attentionSmemBytes("dq", hs));
  } else {
    const blocks = dev.blocks(B * NH * T, 64);
    k.launch("attention_backward_dkdv_generic", blocks, 64, [...args]);
    k.launch("attention_backward_dq_generic", blocks, 64, [...args]);
  }
  dev.giveBack(D);
  dev.release(...recomputed);
}

function naiveForward(
  dev: CudaDevice,
  out: CudaBuffer,
  att: CudaBuffer,
  qkv: CudaBuffer,
  { B, T, C, NH }: AttentionDims,
): void {
  if (B * T * C === 0) return;
  const k = dev.kernels, rows = B * NH * T;
  k.launch("att_naive_scores", dev.blocks(rows * T), THREADS, [
    att.pointer,
    qkv.pointer,
    B,
    T,
    C,
    NH,
  ]);
  k.launch("att_naive_softmax", dev.blocks(rows * 32), THREADS, [att.pointer, B, NH, T]);
  k.launch("att_naive_values", dev.blocks(B * T * C), THREADS, [
    out.pointer,
    att.pointer,
    qkv.pointer,
    B,
    T,
    C,
    NH,
  ]);
}

function naiveBackward(
  dev: CudaDevice,
  dqkv: CudaBuffer,
  dout: CudaBuffer,
  qkv: CudaBuffer,
  att: CudaBuffer,
  { B, T, C, NH }: AttentionDims,
): void {
  if (B * T * C === 0) return;
  const k = dev.kernels, rows = B * NH * T, hs = C / NH;
  const datt = dev.empty(rows * T);
  k.launch("att_naive_datt", dev.blocks(rows * T), THREADS, [
    datt.pointer,
    dout.pointer,
    qkv.pointer,
    B,
    T,
    C,
    NH,
  ]);
  k.launch("att_naive_dv", dev.blocks(B * T * C), THREADS, [
    dqkv.pointer,
    att.pointer,
    dout.pointer,
    B,
    T,
    C,
    NH,
  ]);
  k.launch("att_naive_dpre", dev.blocks(rows * 32), THREADS, [
    datt.pointer,
    att.pointer,
    B,
    NH,
    T,
    1 / Math.sqrt(hs),
  ]);
  k.launch("att_naive_dq", dev.blocks(B * T * C), THREADS, [
    dqkv.pointer,
    datt.pointer,
    qkv.pointer,
    B,
    T,
    C,
    NH,
  ]);
  k.launch("att_naive_dk", dev.blocks(B * T * C), THREADS, [
    dqkv.pointer,
    datt.pointer,
    qkv.pointer,
    B,
    T,
    C,
    NH,
  ]);
  dev.release(datt);
}
