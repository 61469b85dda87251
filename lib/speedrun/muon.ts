/**
 * After the lecture: Muon (Keller Jordan's optimizer from the modded-nanogpt speedrun) for the
 * 2-D weights inside the blocks. Each step: momentum 0.95 with Nesterov, the update made
 * (nearly) orthogonal by 5 steps of the quintic Newton-Schulz iteration with coefficients
 * (3.4445, -4.7750, 2.0315), scaled by max(1, rows / cols)^0.5, and subtracted at the
 * learning rate. The iteration runs on the backend's matmul kernels; the Frobenius norm that
 * starts it is read through `hostView` (the optimizer step is synchronous), so Muon runs on
 * backends whose buffers are host memory (cpu, native).
 *
 * Under DDP the gradients reach the step already averaged over the ranks (lib/train/train.ts
 * all-reduces them before clipping), so every rank orthogonalises the same matrix.
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";
import type { Tensor } from "../model/tensor.ts";

/** The quintic's coefficients (a, b, c): X <- a X + (b A + c A²) X with A = X Xᵀ. */
export const NEWTON_SCHULZ_COEFFICIENTS: readonly [number, number, number] = [
  3.4445,
  -4.775,
  2.0315,
];

/** Muon's constants. */
export interface MuonOptions {
  /** Momentum of the gradient average; 0.95. */
  momentum?: number;
  /** Nesterov momentum (the speedrun's); true. */
  nesterov?: boolean;
  /** Newton-Schulz steps; 5. */
  nsSteps?: number;
}

/**
 * `X / (|X|_F + 1e-7)` taken through `steps` quintic Newton-Schulz iterations: for a
 * (rows, cols) matrix, a matrix of (nearly) the same singular vectors with singular values
 * near 1 (between about 0.7 and 1.2: the quintic trades exactness for speed, as the speedrun
 * does). A new buffer; `g` is left as it is.
 */
export function newtonSchulz(
  be: Backend,
  g: DeviceBuffer,
  rows: number,
  cols: number,
  steps = 5,
): DeviceBuffer {
  const n = rows * cols;
  const view = hostArray(be, g);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += view[i] * view[i];
  let X = be.alloc(n, "f32");
  be.scale(X, g, 1 / (Math.sqrt(ss) + 1e-7), n, false); // top singular value <= 1
  const [a, b, c] = NEWTON_SCHULZ_COEFFICIENTS;
  // A is X Xᵀ (rows, rows) for a wide X, Xᵀ X (cols, cols) for a tall one: the speedrun
  // transposes a tall X first, which this is without the transposes
  const wide = rows <= cols, k = wide ? rows : cols;
  const A = be.alloc(k * k, "f32"), AA = be.alloc(k * k, "f32"), P = be.alloc(k * k, "f32");
  const square = { N: k, C: k, OC: k };
  for (let s = 0; s < steps; s++) {
    if (wide) {
      be.matmulForward(A, X, X, null, { N: rows, C: cols, OC: rows }); // X Xᵀ
    } else {
      be.zero(A); // Xᵀ X, as matmulBackward's dweight (it accumulates)
      const grads = { dinp: null, dweight: A, dbias: null };
      be.matmulBackward(grads, X, X, X, { N: rows, C: cols, OC: cols });
    }
    be.matmulForward(AA, A, A, null, square); // A Aᵀ = A², A being symmetric
    be.scale(P, A, b, k * k, false);
    be.scale(P, AA, c, k * k, true); // P = b A + c A², symmetric too
    const next = be.alloc(n, "f32");
    if (wide) {
      be.scale(next, X, a, n, false);
      // next += P X: matmulBackward's dinp is dout (rows, rows) @ weight (rows, cols)
      const grads = { dinp: next, dweight: null, dbias: null };
      be.matmulBackward(grads, P, X, X, { N: rows, C: cols, OC: rows });
    } else {
      be.matmulForward(next, X, P, null, { N: rows, C: cols, OC: cols }); // X Pᵀ = X P
      be.scale(next, X, a, n, true);
    }
    be.recycle?.(X); // this iteration's input, ours, read for the last time above
    X = next;
  }
  for (const t of [A, AA, P]) be.recycle?.(t);
  return X;
}

/** A host array over `buf`, or an error saying Muon needs one. */
function hostArray(be: Backend, buf: DeviceBuffer): Float32Array {
  if (!be.hostView) {
    throw new Error(
      `--optimizer muon runs on backends whose buffers are host memory (cpu, native), found ` +
        `the ${be.name} backend, which has no hostView`,
    );
  }
  return be.hostView(buf) as Float32Array;
}

/** Muon over 2-D parameters (weights stored [out, in], rows = out). */
export class Muon {
  readonly params: Tensor[];
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly nsSteps: number;
  /** The momentum buffer of each parameter stepped so far (PyTorch's `momentum_buffer`). */
  readonly state = new Map<Tensor, DeviceBuffer>();

  constructor(params: Tensor[], options: MuonOptions = {}) {
    for (const p of params) {
      if (p.shape.length !== 2) {
        throw new Error(`Muon takes 2-D parameters, found one of shape [${p.shape}]`);
      }
    }
    this.params = params;
    this.momentum = options.momentum ?? 0.95;
    this.nesterov = options.nesterov ?? true;
    this.nsSteps = options.nsSteps ?? 5;
  }

  /**
   * One update at learning rate `lr` of every parameter that has a gradient, the gradient
   * first multiplied in place by `gradScale` (clipping's factor, `AdamW.clipGradNorm`).
   */
  step(lr: number, gradScale = 1): void {
    for (const p of this.params) {
      if (!p.grad) continue;
      const be = p.backend, n = p.size, [rows, cols] = p.shape, g = p.grad.buffer;
      if (gradScale !== 1) be.scale(g, g, gradScale, n, false);
      let buf = this.state.get(p);
      if (!buf) {
        buf = be.alloc(n, "f32");
        this.state.set(p, buf);
      }
      be.scale(buf, buf, this.momentum, n, false);
      be.accumulate(buf, g, n, n); // buf = momentum * buf + g
      let update = buf;
      if (this.nesterov) {
        update = be.alloc(n, "f32");
        be.scale(update, buf, this.momentum, n, false);
        be.accumulate(update, g, n, n); // g + momentum * buf
      }
      const orth = newtonSchulz(be, update, rows, cols, this.nsSteps);
      const shapeScale = Math.max(1, rows / cols) ** 0.5;
      be.scale(p.buffer, orth, -lr * shapeScale, n, true);
      // the step's temporaries go back for the next parameter (the momentum buffer stays)
      be.recycle?.(orth);
      if (update !== buf) be.recycle?.(update);
    }
  }

  /** Zeroes the parameters' gradients. */
  zeroGrad(): void {
    for (const p of this.params) if (p.grad) p.backend.zero(p.grad.buffer);
  }
}
