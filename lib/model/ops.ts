/**
 * Differentiable ops: each is a forward kernel call plus a closure that calls the
 * backward kernel. The model in `gpt.ts` is written with these only. A forward's output is
 * `Tensor.empty`: its kernel writes every element, so nothing fills it first.
 *
 * @module
 */

import type { MatmulDims } from "../backend.ts";
import { gradBuffer, isGradEnabled, numel, Tensor } from "./tensor.ts";

/**
 * `out`, the result of an op on `inputs`, with `backward` recorded for autograd when gradients
 * are on and an input needs one: how every op, here or elsewhere, joins the graph.
 */
export function opResult(inputs: Tensor[], out: Tensor, backward: () => void): Tensor {
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.parents = inputs;
    out.backwardFn = backward;
  }
  return out;
}

function expectShape(name: string, t: Tensor, expected: readonly number[]): void {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    throw new Error(`Expected ${name} of shape [${expected}], found [${t.shape}]`);
  }
}

function lastDim(t: Tensor): number {
  return t.shape[t.shape.length - 1];
}

/** Rows of `weight` (V, C) picked by `idx` (...): shape (..., C). */
export function embedding(idx: Tensor, weight: Tensor): Tensor {
  if (idx.dtype !== "i32") throw new Error(`Expected i32 token ids, found ${idx.dtype}`);
  const be = weight.backend, N = idx.size, C = lastDim(weight);
  const out = Tensor.empty(be, [...idx.shape, C]);
  be.embeddingForward(out.buffer, idx.buffer, weight.buffer, N, C);
  return opResult([weight], out, () => {
    if (weight.requiresGrad) {
      be.embeddingBackward(gradBuffer(weight), out.grad!.buffer, idx.buffer, N, C);
    }
  });
}

/** a + b, where b's shape is a suffix of a's (b repeats over a's leading dims). */
export function add(a: Tensor, b: Tensor): Tensor {
  const k = b.shape.length;
  const suffix = a.shape.slice(a.shape.length - k);
  if (k > a.shape.length || suffix.some((d, i) => d !== b.shape[i])) {
    throw new Error(`Cannot add shape [${b.shape}] to [${a.shape}]: it must be a suffix`);
  }
  const be = a.backend, n = a.size, nb = b.size;
  const out = Tensor.empty(be, a.shape);
  be.addForward(out.buffer, a.buffer, b.buffer, n, nb);
  return opResult([a, b], out, () => {
    const g = out.grad!.buffer;
    if (a.requiresGrad) be.accumulate(gradBuffer(a), g, n, n);
    if (b.requiresGrad) be.accumulate(gradBuffer(b), g, n, nb);
  });
}

/** alpha * x, e.g. the loss divided by the gradient-accumulation steps. */
export function scale(x: Tensor, alpha: number): Tensor {
  const be = x.backend, n = x.size;
  const out = Tensor.empty(be, x.shape);
  be.scale(out.buffer, x.buffer, alpha, n, false);
  return opResult([x], out, () => be.scale(gradBuffer(x), out.grad!.buffer, alpha, n, true));
}

/** What a deferred `linear` was given, for `gelu` to run both in one kernel. */
interface LinearInputs {
  x: Tensor;
  weight: Tensor;
  bias: Tensor | null;
  dims: MatmulDims;
}

/** Outputs of `linear` whose GEMM has not run yet, by output. */
const deferredLinears = new WeakMap<Tensor, LinearInputs>();

/**
 * x (..., C) @ weight (OC, C)^T + bias (OC): nn.Linear, weight stored [out, in]. Where the
 * backend has `matmulGeluForward`, the GEMM waits until its output is first read, so that a
 * `gelu` reading it next runs both as one kernel (kernel fusion).
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  const be = x.backend, C = lastDim(x), OC = weight.shape[0], N = x.size / C;
  expectShape("linear weight", weight, [OC, C]);
  if (bias) expectShape("linear bias", bias, [OC]);
  const out = Tensor.empty(be, [...x.shape.slice(0, -1), OC]);
  const dims = { N, C, OC };
  const run = () => {
    deferredLinears.delete(out);
    be.matmulForward(out.buffer, x.buffer, weight.buffer, bias?.buffer ?? null, dims);
  };
  if (be.matmulGeluForward) {
    deferredLinears.set(out, { x, weight, bias, dims });
    out.defer(run);
  } else {
    run();
  }
  return opResult(bias ? [x, weight, bias] : [x, weight], out, () => {
    const grads = {
      dinp: x.requiresGrad ? gradBuffer(x) : null,
      dweight: weight.requiresGrad ? gradBuffer(weight) : null,
      dbias: bias?.requiresGrad ? gradBuffer(bias) : null,
    };
    be.matmulBackward(grads, out.grad!.buffer, x.buffer, weight.buffer, dims);
  });
}

/** LayerNorm over the last dim with eps 1e-5. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor): Tensor {
  const be = x.backend, C = lastDim(x), N = x.size / C;
  expectShape("layernorm weight", weight, [C]);
  expectShape("layernorm bias", bias, [C]);
  const out = Tensor.empty(be, x.shape);
  const mean = be.empty?.(N, "f32") ?? be.alloc(N, "f32");
  const rstd = be.empty?.(N, "f32") ?? be.alloc(N, "f32");
  be.layernormForward(out.buffer, mean, rstd, x.buffer, weight.buffer, bias.buffer, { N, C });
  return opResult([x, weight, bias], out, () => {
    const grads = { dinp: gradBuffer(x), dweight: gradBuffer(weight), dbias: gradBuffer(bias) };
    const saved = { inp: x.buffer, weight: weight.buffer, mean, rstd };
    be.layernormBackward(grads, out.grad!.buffer, saved, { N, C });
  });
}

/** GELU with the tanh approximation GPT-2 was trained with. */
export function gelu(x: Tensor): Tensor {
  const be = x.backend, n = x.size;
  const out = Tensor.empty(be, x.shape);
  const lin = deferredLinears.get(x);
  if (lin && be.matmulGeluForward && x.takeDeferred()) {
    // x is a Linear's output not computed yet: the GEMM and GELU in one kernel
    deferredLinears.delete(x);
    const { x: inp, weight, bias, dims } = lin;
    be.matmulGeluForward(
      x.buffer,
      out.buffer,
      inp.buffer,
      weight.buffer,
      bias?.buffer ?? null,
      dims,
    );
  } else {
    be.geluForward(out.buffer, x.buffer, n);
  }
  return opResult([x], out, () => be.geluBackward(gradBuffer(x), x.buffer, out.grad!.buffer, n));
}

/**
 * Causal self-attention on packed qkv (B, T, 3C), heads of C / nHead: the whole of
 * split, view, transpose, `F.scaled_dot_product_attention(is_causal=True)` and the
 * transpose back, in one op. Returns (B, T, C).
 */
export function causalSelfAttention(qkv: Tensor, nHead: number): Tensor {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) {
    throw new Error(`Expected qkv of shape [B, T, 3C], found [${qkv.shape}]`);
  }
  const [B, T, C3] = qkv.shape, C = C3 / 3;
  if (C % nHead !== 0) throw new Error(`n_embd ${C} is not divisible by n_head ${nHead}`);
  const be = qkv.backend, dims = { B, T, C, NH: nHead };
  const out = Tensor.empty(be, [B, T, C]);
  const saved = be.attentionForward(out.buffer, qkv.buffer, dims);
  return opResult([qkv], out, () => {
    be.attentionBackward(gradBuffer(qkv), out.grad!.buffer, qkv.buffer, saved, dims);
  });
}

/**
 * Mean cross-entropy of logits (..., V) against integer targets (...): a scalar. With
 * `overwriteLogits` (the caller reads the logits no more), a backend with
 * `crossEntropyBackwardInPlace` writes the logits' gradient over them.
 */
export function crossEntropy(
  logits: Tensor,
  targets: Tensor,
  { overwriteLogits = false }: { overwriteLogits?: boolean } = {},
): Tensor {
  const be = logits.backend, V = lastDim(logits), N = logits.size / V;
  if (targets.dtype !== "i32") throw new Error(`Expected i32 targets, found ${targets.dtype}`);
  if (numel(targets.shape) !== N) {
    throw new Error(`Expected ${N} targets for logits [${logits.shape}], found [${targets.shape}]`);
  }
  const loss = Tensor.empty(be, [1]);
  be.crossEntropyForward(loss.buffer, logits.buffer, targets.buffer, N, V);
  return opResult([logits], loss, () => {
    if (overwriteLogits && be.crossEntropyBackwardInPlace && !logits.grad) {
      // the gradient takes the logits' buffer: backward recycles it once passed on
      logits.grad = new Tensor(be, logits.buffer, logits.shape);
      be.crossEntropyBackwardInPlace(logits.buffer, loss.grad!.buffer, targets.buffer, N, V);
      return;
    }
    be.crossEntropyBackward(
      gradBuffer(logits),
      loss.grad!.buffer,
      logits.buffer,
      targets.buffer,
      N,
      V,
    );
  });
}
