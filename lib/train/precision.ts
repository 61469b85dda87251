/**
 * The matmuls' precision for a run: `--precision f32|f16`, checked against what the backend
 * offers (`Backend.setMatmulPrecision`), set for the run and put back afterwards.
 *
 * @module
 */

import { type Backend, MATMUL_PRECISIONS, type MatmulPrecision } from "../backend.ts";

/** The precision of the matmuls: f32, or f16 (WebGPU with shader-f16). */
export type Precision = MatmulPrecision;

/** The precisions `--precision` accepts. */
export const PRECISIONS: readonly Precision[] = MATMUL_PRECISIONS;

const NEEDS_F16 = "--precision f16 needs --backend webgpu on an adapter with shader-f16";

/** `value` as a {@linkcode Precision}, or an error naming `--precision` and the choices. */
export function parsePrecision(value: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(value)) {
    throw new Error(`--precision expects one of ${PRECISIONS.join(", ")}, found "${value}"`);
  }
  return value as Precision;
}

/**
 * Checks that `precision` is one of {@linkcode PRECISIONS} and that `backend` can run it
 * (f16: a backend with `setMatmulPrecision`); an error says what is needed. The CLI calls it
 * before reading any data; `train` again.
 */
export function checkPrecision(
  backend: Backend,
  precision: string,
): asserts precision is Precision {
  parsePrecision(precision);
  if (precision !== "f32" && !backend.setMatmulPrecision) {
    throw new Error(`${NEEDS_F16}; the ${backend.name} backend has f32 matmuls only`);
  }
}

/**
 * Sets the backend's matmul precision for a run; returns what puts the previous one back.
 * The adapter's refusal of f16 (no shader-f16) is an error saying what is needed.
 */
export function setMatmulPrecision(backend: Backend, precision: Precision): () => void {
  checkPrecision(backend, precision);
  const before = backend.matmulPrecision ?? "f32";
  if (!backend.setMatmulPrecision || before === precision) return () => {};
  try {
    backend.setMatmulPrecision(precision);
  } catch (e) {
    if (precision !== "f16") throw e;
    throw new Error(`${NEEDS_F16}: ${(e as Error).message}`, { cause: e });
  }
  return () => backend.setMatmulPrecision!(before);
}
