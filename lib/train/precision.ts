/**
 * The matmuls' precision for a run: `--precision f32|f16|tf32|bf16` (`fp32` is another name
 * for f32), checked against what the backend offers (`Backend.setMatmulPrecision`), set for
 * the run and put back afterwards.
 *
 * @module
 */

import { type Backend, MATMUL_PRECISIONS, type MatmulPrecision } from "../backend.ts";

/** The precision of the matmuls: f32, f16 (WebGPU with shader-f16), tf32 or bf16 (CUDA). */
export type Precision = MatmulPrecision;

/** The precisions `--precision` accepts (and `fp32`, another name for f32). */
export const PRECISIONS: readonly Precision[] = MATMUL_PRECISIONS;

/** Other names `--precision` takes, as PyTorch and build-nanogpt spell them. */
const ALIASES: Readonly<Record<string, Precision>> = { fp32: "f32" };

/** What each precision needs, for the errors of a backend that cannot run it. */
const NEEDS: Readonly<Record<Exclude<Precision, "f32">, string>> = {
  f16: "--precision f16 needs --backend webgpu on an adapter with shader-f16",
  tf32: "--precision tf32 needs --backend cuda",
  bf16: "--precision bf16 needs --backend cuda",
};

/** `value` as a {@linkcode Precision}, or an error naming `--precision` and the choices. */
export function parsePrecision(value: string): Precision {
  const canonical = ALIASES[value] ?? value;
  if (!(PRECISIONS as readonly string[]).includes(canonical)) {
    throw new Error(`--precision expects one of ${PRECISIONS.join(", ")}, found "${value}"`);
  }
  return canonical as Precision;
}

/**
 * Checks that `precision` is one of {@linkcode PRECISIONS} (or an alias) and that `backend`
 * can run it (anything but f32: a backend with `setMatmulPrecision`); an error says what is
 * needed. Returns the precision's canonical name. The CLI calls it before reading any data;
 * `train` again.
 */
export function checkPrecision(backend: Backend, precision: string): Precision {
  const p = parsePrecision(precision);
  if (p !== "f32" && !backend.setMatmulPrecision) {
    throw new Error(`${NEEDS[p]}; the ${backend.name} backend has f32 matmuls only`);
  }
  return p;
}

/**
 * Sets the backend's matmul precision for a run; returns what puts the previous one back.
 * The backend's refusal (WebGPU without shader-f16, a backend without bf16) is an error
 * saying what is needed, then why the backend refused.
 */
export function setMatmulPrecision(backend: Backend, precision: Precision): () => void {
  const p = checkPrecision(backend, precision);
  const before = backend.matmulPrecision ?? "f32";
  if (!backend.setMatmulPrecision || before === p) return () => {};
  try {
    backend.setMatmulPrecision(p);
  } catch (e) {
    if (p === "f32") throw e;
    throw new Error(`${NEEDS[p]}: ${(e as Error).message}`, { cause: e });
  }
  return () => backend.setMatmulPrecision!(before);
}
