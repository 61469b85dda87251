/**
 * Modules as PyTorch has them: `Linear`, `Embedding`, `LayerNorm`, and `namedParameters()`
 * in registration order with tied tensors listed once, so names and order match
 * `model.named_parameters()` of the PyTorch GPT-2.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import * as ops from "./ops.ts";
import { Tensor } from "./tensor.ts";

/** Base class: parameters and submodules are found by walking own fields in order. */
export class Module {
  /** (name, parameter) pairs in PyTorch's order; a tensor reachable twice is listed once. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const walk = (value: unknown, prefix: string): void => {
      if (value instanceof Tensor) {
        if (value.requiresGrad && !seen.has(value)) {
          seen.add(value);
          out.push([prefix, value]);
        }
      } else if (Array.isArray(value)) {
        value.forEach((v, i) => walk(v, `${prefix}.${i}`));
      } else if (value instanceof Module || isPlainObject(value)) {
        for (const [k, v] of Object.entries(value as object)) {
          walk(v, prefix ? `${prefix}.${k}` : k);
        }
      }
    };
    walk(this, "");
    return out;
  }

  /** The parameters alone, in `namedParameters()` order. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
}

function isPlainObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

/** A trainable tensor filled with zeros. */
export function parameter(backend: Backend, shape: readonly number[]): Tensor {
  const t = Tensor.zeros(backend, shape);
  t.requiresGrad = true;
  return t;
}

/** y = x W^T + b, with W stored [out_features, in_features] as nn.Linear does. */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(backend: Backend, inFeatures: number, outFeatures: number, bias = true) {
    super();
    this.weight = parameter(backend, [outFeatures, inFeatures]);
    this.bias = bias ? parameter(backend, [outFeatures]) : null;
  }
  forward(x: Tensor): Tensor {
    return ops.linear(x, this.weight, this.bias);
  }
}

/** A lookup table of `num` rows of `dim` values. */
export class Embedding extends Module {
  weight: Tensor;
  constructor(backend: Backend, num: number, dim: number) {
    super();
    this.weight = parameter(backend, [num, dim]);
  }
  forward(idx: Tensor): Tensor {
    return ops.embedding(idx, this.weight);
  }
}

/** LayerNorm over the last dim, weight 1 and bias 0 at init. */
export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(backend: Backend, dim: number) {
    super();
    this.weight = Tensor.from(backend, new Float32Array(dim).fill(1), [dim], true);
    this.bias = parameter(backend, [dim]);
  }
  forward(x: Tensor): Tensor {
    return ops.layerNorm(x, this.weight, this.bias);
  }
}
