/**
 * Tensors with reverse-mode autograd, as small as micrograd's: each op records its inputs
 * and a closure that pushes the output's gradient into theirs; `backward()` walks the graph
 * in reverse topological order.
 *
 * Gradients accumulate (`+=`) like PyTorch's `.grad`, so tied weights and gradient
 * accumulation work without extra code; `zeroGrad` on the optimizer clears them.
 *
 * @module
 */

import type { Backend, DeviceBuffer, DType } from "../backend.ts";

let gradEnabled = true;

/** Runs `fn` without recording the graph (PyTorch's `torch.no_grad()`). */
export async function noGrad<T>(fn: () => Promise<T> | T): Promise<T> {
  const before = gradEnabled;
  gradEnabled = false;
  try {
    return await fn();
  } finally {
    gradEnabled = before;
  }
}

/** Whether ops record the graph now. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Tensors `Tensor.zeros` and `Tensor.empty` made while a {@linkcode forwardScope} is open; null when none is. */
let scopeAllocations: Tensor[] | null = null;

/**
 * Runs `fn`, a model's forward, and treats the tensors it allocated, other than `outputs(r)`
 * and views of them, as its intermediates: with gradients off they go back to the backend at
 * once (nothing can reach them); with gradients on, `backward` gives each back once it has
 * passed its gradient on, as every reader of it in the graph has run by then. A training step
 * then reuses the last one's memory instead of allocating its activations again.
 */
export function forwardScope<R>(fn: () => R, outputs: (r: R) => readonly (Tensor | null)[]): R {
  const outer = scopeAllocations;
  const made: Tensor[] = [];
  scopeAllocations = made;
  let result: R;
  try {
    result = fn();
  } finally {
    scopeAllocations = outer;
  }
  const kept = new Set(outputs(result).map((t) => t?.buffer));
  for (const t of made) {
    if (kept.has(t.buffer)) {
      outer?.push(t); // the enclosing forward decides about its own outputs
    } else if (t.backwardFn) {
      t.intermediate = true;
    } else if (!gradEnabled) {
      t.backend.recycle?.(t.buffer);
    }
  }
  return result;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** An n-dimensional array on a backend, with an optional gradient and graph node. */
export class Tensor {
  /** The gradient, same shape, once backward() has reached this tensor. */
  grad: Tensor | null = null;
  /** Inputs of the op that made this tensor (empty for leaves). */
  parents: Tensor[] = [];
  /** Pushes this tensor's grad into the parents' grads; null for leaves. */
  backwardFn: (() => void) | null = null;
  /**
   * Set by {@linkcode forwardScope} on a forward's internal activations: `backward` recycles
   * the buffer once this tensor's gradient has gone to its parents.
   */
  intermediate = false;
  readonly #buffer: DeviceBuffer;
  /** The kernel that writes this tensor, not run yet (`defer`); null once run or taken. */
  #deferred: (() => void) | null = null;

  constructor(
    readonly backend: Backend,
    buffer: DeviceBuffer,
    readonly shape: readonly number[],
    /** Whether gradients flow to this tensor: parameters, and everything made from them. */
    public requiresGrad = false,
  ) {
    this.#buffer = buffer;
    if (numel(shape) !== buffer.length) {
      throw new Error(
        `Shape [${shape}] needs ${numel(shape)} elements, the buffer has ${buffer.length}`,
      );
    }
  }

  /** A tensor holding a copy of `data`. */
  static from(
    backend: Backend,
    data: Float32Array | Int32Array,
    shape: readonly number[],
    requiresGrad = false,
  ): Tensor {
    return new Tensor(backend, backend.upload(data), shape, requiresGrad);
  }

  /** A zero-filled tensor. */
  static zeros(backend: Backend, shape: readonly number[], dtype: DType = "f32"): Tensor {
    const t = new Tensor(backend, backend.alloc(numel(shape), dtype), shape);
    scopeAllocations?.push(t);
    return t;
  }

  /**
   * A tensor for a kernel to write in full (an op's output): its contents are undefined
   * until then, so backends with `empty` skip the fill `zeros` makes.
   */
  static empty(backend: Backend, shape: readonly number[], dtype: DType = "f32"): Tensor {
    const n = numel(shape);
    const t = new Tensor(backend, backend.empty?.(n, dtype) ?? backend.alloc(n, dtype), shape);
    scopeAllocations?.push(t);
    return t;
  }

  /** The tensor's storage; reading it first runs the kernel that writes it, if deferred. */
  get buffer(): DeviceBuffer {
    const run = this.#deferred;
    if (run) {
      this.#deferred = null;
      run();
    }
    return this.#buffer;
  }

  /**
   * Defers `run`, the kernel that writes this tensor, until its buffer is first read, so that
   * the op that reads it next may run a fused kernel in its place (`takeDeferred`).
   */
  defer(run: () => void): void {
    this.#deferred = run;
  }

  /**
   * Takes the deferred kernel away, for a caller about to write this tensor with a kernel
   * that does the same work and more; false when none is pending (it has run already).
   */
  takeDeferred(): boolean {
    const pending = this.#deferred !== null;
    this.#deferred = null;
    return pending;
  }

  /** Element type. */
  get dtype(): DType {
    return this.#buffer.dtype;
  }

  /** Number of elements. */
  get size(): number {
    return this.#buffer.length;
  }

  /** The same storage seen with another shape (PyTorch's `view`). */
  view(...shape: number[]): Tensor {
    const out = new Tensor(this.backend, this.buffer, shape, this.requiresGrad && gradEnabled);
    if (out.requiresGrad) {
      out.parents = [this];
      out.backwardFn = () => {
        const g = out.grad!;
        this.backend.accumulate(gradBuffer(this), g.buffer, g.size, this.size);
      };
    }
    return out;
  }

  /** Copies the data to the host. */
  async toArray(): Promise<Float32Array | Int32Array> {
    return await this.backend.read(this.buffer);
  }

  /** The value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new Error(`item() needs one element, tensor has shape [${this.shape}]`);
    }
    return (await this.toArray())[0];
  }

  /**
   * Backpropagates from this tensor: every tensor that requires grad and led here gets
   * `.grad` accumulated. Starts from 1 for a scalar, or from `gradient` (same shape), as
   * PyTorch's `backward(gradient)`. Intermediate gradients are dropped afterwards.
   */
  backward(gradient?: Tensor): void {
    if (!gradient && this.size !== 1) {
      throw new Error(`backward() starts from a scalar, this tensor has shape [${this.shape}]`);
    }
    if (gradient && gradient.size !== this.size) {
      throw new Error(`backward(gradient) needs shape [${this.shape}], found [${gradient.shape}]`);
    }
    if (!this.requiresGrad) throw new Error("backward() on a tensor that does not require grad");
    const order = topologicalOrder(this);
    this.grad = gradient ?? Tensor.from(this.backend, new Float32Array([1]), this.shape);
    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i];
      if (!node.backwardFn || !node.grad) continue;
      node.backwardFn();
      // its gradient is in its parents' now: the buffer can serve the next one of its size
      // (as PyTorch frees it here); a gradient the caller passed in stays the caller's
      if (node.grad !== gradient) node.backend.recycle?.(node.grad.buffer);
      node.grad = null;
      if (node.intermediate) node.backend.recycle?.(node.buffer); // its readers have all run
      node.intermediate = false;
    }
    for (const node of order) {
      if (node.backwardFn) {
        node.grad = null; // non-leaf: free its gradient
        node.backwardFn = null; // and the graph, so memory can go
        node.parents = [];
      }
    }
  }
}

/** The gradient buffer of `t`, allocated zero-filled on first use. */
export function gradBuffer(t: Tensor): DeviceBuffer {
  // not Tensor.zeros: a gradient made during a forward is no activation of it
  if (!t.grad) t.grad = new Tensor(t.backend, t.backend.alloc(t.size, "f32"), t.shape);
  return t.grad.buffer;
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // iterative DFS: a 48-layer graph is deep enough to matter for recursion
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [node, expanded] = stack.pop()!;
    if (expanded) {
      order.push(node);
      continue;
    }
    if (seen.has(node)) continue;
    seen.add(node);
    stack.push([node, true]);
    for (const p of node.parents) if (p.requiresGrad && !seen.has(p)) stack.push([p, false]);
  }
  return order;
}
