// A finite-difference gradient check shared by the op tests: L = sum(f(inputs) * R) for a fixed
// random R, dL/dx from backward() against central differences, for every input that requires
// grad.
import type { Backend } from "../../lib/backend.ts";
import type { Generator } from "../../lib/model/random.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose } from "../support.ts";

/** What a check takes besides the op: the backend, the generator of R, step and tolerance. */
export interface GradcheckOptions {
  backend: Backend;
  rng: Generator;
  /** The central difference's step; 1e-2 (perturbing in f32 loses digits below that). */
  h?: number;
  /** rtol and atol both; 2e-3 by default. */
  tolerance?: number;
}

/** Checks d(sum(f(inputs) * R))/d(input) for every input that requires grad. */
export async function gradcheck(
  name: string,
  inputs: Tensor[],
  f: (xs: Tensor[]) => Tensor,
  options: GradcheckOptions,
): Promise<void> {
  const { backend, rng, h = 1e-2, tolerance = 2e-3 } = options;
  const out = f(inputs);
  const R = rng.fillNormal(new Float32Array(out.size), 0, 1);
  const objective = async (): Promise<number> => {
    const y = (await f(inputs).toArray()) as Float32Array;
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * R[i];
    return s;
  };
  for (const x of inputs) x.grad = null;
  out.backward(Tensor.from(backend, R, out.shape));
  for (const [k, x] of inputs.entries()) {
    if (!x.requiresGrad) continue;
    const analytic = (await x.grad!.toArray()) as Float32Array;
    const data = (await x.toArray()) as Float32Array;
    const numeric = new Float64Array(x.size);
    for (let i = 0; i < x.size; i++) {
      const orig = data[i];
      data[i] = orig + h;
      backend.write(x.buffer, data);
      const plus = await objective();
      data[i] = orig - h;
      backend.write(x.buffer, data);
      const minus = await objective();
      data[i] = orig;
      backend.write(x.buffer, data);
      numeric[i] = (plus - minus) / (2 * h);
    }
    assertClose(`${name}: d/d input ${k}`, analytic, numeric, { rtol: tolerance, atol: tolerance });
  }
}
