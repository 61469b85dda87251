/**
 * nn.Linear on the GPU, forward and backward, with the three matmul kernels:
 * `matmul_register.wgsl` (register-blocked, software adapters), `matmul_tiled.wgsl`
 * (workgroup-memory tiles, real GPUs; also every f16 matmul) and `matmul_naive.wgsl` (one
 * output per invocation, the ladder's first rung); the bias's gradient is
 * `matmul_bias.wgsl`'s. Operands over one binding are cut into row and column chunks
 * (`GpuDevice.rowChunks`), one dispatch per pair of chunks, the backward ones accumulating.
 *
 * @module
 */

import type { MatmulDims } from "../../backend.ts";
import { type Binding, type GpuDevice, slice, type WebGpuBuffer } from "./device.ts";
import type { WebGpuKernels } from "./kernels.ts";

/** Rows of the weight per backward_input dispatch (a multiple of 4 and of 64). */
const K_PIECE = 4096;

/** The matmul precisions WebGPU has: WGSL has f16 (shader-f16) but no bf16 or TF32. */
export type WebGpuPrecision = "f32" | "f16";

/** Which matmul kernel runs, and on what precision of operands. */
export interface MatmulChoice {
  /** The backend's kernel choice (`WebGpuKernels.matmul`). */
  kernel: WebGpuKernels["matmul"];
  /** "f16" runs the tiled kernel, whatever `kernel` says: it rounds operands as it stages them. */
  precision: WebGpuPrecision;
}

/** The gradients `matmulBackward` accumulates into, as this backend's buffers. */
export interface MatmulGpuGrads {
  dinp: WebGpuBuffer | null;
  dweight: WebGpuBuffer | null;
  dbias: WebGpuBuffer | null;
}

function kernelOf(choice: MatmulChoice): WebGpuKernels["matmul"] {
  return choice.precision === "f16" ? "tiled" : choice.kernel;
}

/**
 * out (N, OC) = inp (N, C) @ weight (OC, C)^T, plus `bias` (OC) in the kernel's epilogue
 * when it is given (null: no bias, or one the caller adds separately).
 */
export function matmulForward(
  gpu: GpuDevice,
  choice: MatmulChoice,
  out: WebGpuBuffer,
  inp: WebGpuBuffer,
  weight: WebGpuBuffer,
  bias: WebGpuBuffer | null,
  { N, C, OC }: MatmulDims,
): void {
  const kernel = kernelOf(choice);
  const v4 = C % 4 === 0; // GPT-2's shapes all are
  for (const [n0, n1] of gpu.rowChunks(N, [C, OC])) {
    for (const [j0, j1] of gpu.rowChunks(OC, [C])) {
      const bindings = [
        slice(inp, n0 * C, (n1 - n0) * C),
        slice(weight, j0 * C, (j1 - j0) * C),
        bias ? slice(bias, 0, OC) : gpu.dummy,
        slice(out, n0 * OC, (n1 - n0) * OC),
      ];
      if (kernel === "register") {
        gpu.dispatch(
          v4 ? "matmulRegisterForwardVec4" : "matmulRegisterForward",
          [n1 - n0, C, j1 - j0, OC, j0, bias ? 1 : 0],
          bindings,
          [Math.ceil((j1 - j0) / 32), Math.ceil((n1 - n0) / 32)],
        );
      } else {
        // A = inp (rows n, K = C contiguous), B(k, j) = weight[j C + k]
        const shape = { M: n1 - n0, N: j1 - j0, K: C };
        const strides = { a: [0, C, 1], b: [0, 1, C], c: [j0, OC] } as const;
        const flags = { bias: bias !== null, accumulate: false };
        stridedMatmul(gpu, kernel, choice.precision, shape, strides, flags, bindings);
      }
    }
  }
}

/** dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum of dout rows (null: skipped). */
export function matmulBackward(
  gpu: GpuDevice,
  choice: MatmulChoice,
  { dinp, dweight, dbias }: MatmulGpuGrads,
  dout: WebGpuBuffer,
  inp: WebGpuBuffer,
  weight: WebGpuBuffer,
  dims: MatmulDims,
): void {
  const { N, C, OC } = dims;
  const v4 = C % 4 === 0 && OC % 4 === 0;
  const chunks: Chunks = {
    n: gpu.rowChunks(N, [C, OC]),
    oc: gpu.rowChunks(OC, [C], v4 ? 4 : 1),
  };
  if (dinp) backwardInput(gpu, choice, dinp, dout, weight, dims, chunks);
  if (dweight) backwardWeight(gpu, choice, dweight, dout, inp, dims, chunks);
  if (dbias) {
    for (const [n0, n1] of chunks.n) {
      gpu.dispatch(
        "matmulBackwardBias",
        [n1 - n0, C, OC, OC, 0, 0],
        [slice(dout, n0 * OC, (n1 - n0) * OC), slice(dbias, 0, OC)],
        [Math.ceil(OC / 64)],
      );
    }
  }
}

/** Row chunks (over N) and output-feature chunks (over OC) that fit the bindings. */
interface Chunks {
  n: [number, number][];
  oc: [number, number][];
}

/** dinp (N, C) += dout (N, OC) @ weight (OC, C), per chunk of rows and of OC. */
function backwardInput(
  gpu: GpuDevice,
  choice: MatmulChoice,
  dinp: WebGpuBuffer,
  dout: WebGpuBuffer,
  weight: WebGpuBuffer,
  { C, OC }: MatmulDims,
  chunks: Chunks,
): void {
  const kernel = kernelOf(choice), v4 = C % 4 === 0 && OC % 4 === 0;
  // the reduction over OC in pieces of at most K_PIECE rows, so the weight rows that all
  // workgroups of a dispatch read stay in cache (lm_head: 2x faster on llvmpipe)
  const pieces = chunks.oc.flatMap(([a, b]) => {
    const out: [number, number][] = [];
    for (let j = a; j < b; j += K_PIECE) out.push([j, Math.min(b, j + K_PIECE)]);
    return out;
  });
  for (const [n0, n1] of chunks.n) {
    for (const [j0, j1] of pieces) {
      const d = slice(dout, n0 * OC, (n1 - n0) * OC), w = slice(weight, j0 * C, (j1 - j0) * C);
      const di = slice(dinp, n0 * C, (n1 - n0) * C);
      if (kernel === "register") {
        gpu.dispatch(
          v4 ? "matmulRegisterBackwardInputVec4" : "matmulRegisterBackwardInput",
          [n1 - n0, C, j1 - j0, OC, j0, 0],
          [d, w, di],
          [Math.ceil(C / (v4 ? 64 : 32)), Math.ceil((n1 - n0) / 32)],
        );
      } else {
        // A(n, k) = dout[n OC + j0 + k], B(k, c) = weight[k C + c]
        const shape = { M: n1 - n0, N: C, K: j1 - j0 };
        const strides = { a: [j0, OC, 1], b: [0, C, 1], c: [0, C] } as const;
        const flags = { bias: false, accumulate: true };
        stridedMatmul(gpu, kernel, choice.precision, shape, strides, flags, [
          d,
          w,
          gpu.dummy,
          di,
        ]);
      }
    }
  }
}

/** dweight (OC, C) += dout^T (OC, N) @ inp (N, C), per chunk of OC and of rows. */
function backwardWeight(
  gpu: GpuDevice,
  choice: MatmulChoice,
  dweight: WebGpuBuffer,
  dout: WebGpuBuffer,
  inp: WebGpuBuffer,
  { C, OC }: MatmulDims,
  chunks: Chunks,
): void {
  const kernel = kernelOf(choice), v4 = C % 4 === 0 && OC % 4 === 0;
  for (const [j0, j1] of chunks.oc) {
    for (const [n0, n1] of chunks.n) {
      const d = slice(dout, n0 * OC, (n1 - n0) * OC), x = slice(inp, n0 * C, (n1 - n0) * C);
      const dw = slice(dweight, j0 * C, (j1 - j0) * C);
      if (kernel === "register") {
        gpu.dispatch(
          v4 ? "matmulRegisterBackwardWeightVec4" : "matmulRegisterBackwardWeight",
          [n1 - n0, C, j1 - j0, OC, j0, 0],
          [d, x, dw],
          v4
            ? [Math.ceil(C / 64), Math.ceil((j1 - j0) / 32)]
            : [Math.ceil(C / 32), Math.ceil((j1 - j0) / 32)],
        );
      } else {
        // A(j, n) = dout[n OC + j0 + j], B(n, c) = inp[n C + c], K runs over rows n
        const shape = { M: j1 - j0, N: C, K: n1 - n0 };
        const strides = { a: [j0, 1, OC], b: [0, C, 1], c: [0, C] } as const;
        const flags = { bias: false, accumulate: true };
        stridedMatmul(gpu, kernel, choice.precision, shape, strides, flags, [
          d,
          x,
          gpu.dummy,
          dw,
        ]);
      }
    }
  }
}

/**
 * One dispatch of matmul_tiled.wgsl or matmul_naive.wgsl: C (M, N) (+)= A (M, K) B (K, N),
 * A at [offset, row stride, k stride], B at [offset, k stride, column stride], C at
 * [offset, row stride]; bindings are A, B, the bias, C.
 */
function stridedMatmul(
  gpu: GpuDevice,
  kernel: "naive" | "tiled",
  precision: WebGpuPrecision,
  { M, N, K }: { M: number; N: number; K: number },
  strides: {
    a: readonly [number, number, number];
    b: readonly [number, number, number];
    c: readonly [number, number];
  },
  flags: { bias: boolean; accumulate: boolean },
  bindings: Binding[],
): void {
  const bits = (flags.accumulate ? 1 : 0) | (flags.bias ? 2 : 0);
  const tile = kernel === "naive" ? 8 : 64;
  gpu.dispatch(
    kernel === "naive" ? "matmulNaive" : "matmulTiled",
    [M, N, K, ...strides.a, ...strides.b, ...strides.c, bits],
    bindings,
    [Math.ceil(N / tile), Math.ceil(M / tile)],
    kernel === "tiled" ? { kind: "operand", type: precision } : undefined,
  );
}
