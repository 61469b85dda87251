/**
 * The matmuls' precision for a run: `--precision f32|f16|tf32|bf16` (`fp32` is another name
 * for f32), checked against what the backend offers (`Backend.setMatmulPrecision`), set for
 * the run and put back afterwards.
 *
 * f16 comes with dynamic loss scaling (below: GradScaler).
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
  bf16: "--precision bf16 needs --backend cuda or native",
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

// ---- dynamic loss scaling ----
//
// Dynamic loss scaling for f16 mixed precision, with the semantics of PyTorch's
// `torch.cuda.amp.GradScaler`.
//
// Why: in f16, gradients smaller than about 6e-8 flush to zero (and below 6e-5 lose
// precision), and many of GPT-2's are that small. Multiplying the loss by a large factor S
// before the backward pass multiplies every gradient by S (backpropagation is linear in its
// seed), which lifts them into f16's range; the optimizer then sees the gradients divided by S
// again ("unscaled"). Too large an S overflows to inf/NaN instead, so S is chosen on the fly:
// a step whose gradients overflow is skipped and S halves; after `growthInterval` clean
// steps in a row S doubles, probing for the largest S that still fits.
//
// The scale is a power of two by default, so scaling and unscaling are exact in binary
// floating point: with no overflow, a scaled run computes the same updates as an unscaled one.

/** GradScaler's constants (PyTorch's defaults). */
export interface GradScalerOptions {
  /** The first scale; default 2**16. */
  initScale?: number;
  /** Multiplies the scale after `growthInterval` steps without overflow; default 2. */
  growthFactor?: number;
  /** Multiplies the scale after a step that overflowed; default 0.5. */
  backoffFactor?: number;
  /** Clean steps in a row before the scale grows; default 2000. */
  growthInterval?: number;
}

/** What a checkpoint keeps of a GradScaler: enough to continue exactly. */
export interface GradScalerState {
  /** The current scale. */
  scale: number;
  /** Steps without overflow since the scale last changed (PyTorch's `_growth_tracker`). */
  growthTracker: number;
}

/** The largest finite float32: the scale is used as an f32 backward seed. */
const F32_MAX = 3.4028234663852886e38;
/** The smallest normal float32, the floor of the scale. */
const F32_MIN_NORMAL = 2 ** -126;

/**
 * PyTorch's GradScaler: `scale` multiplies the loss (seed the backward pass with it), and
 * `update(foundInf)` after each step backs off or grows it.
 */
export class GradScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  #scale: number;
  #growthTracker = 0;

  constructor(options: GradScalerOptions = {}) {
    const {
      initScale = 2 ** 16,
      growthFactor = 2,
      backoffFactor = 0.5,
      growthInterval = 2000,
    } = options;
    checkScale(initScale, "initScale");
    if (!(growthFactor > 1) || !Number.isFinite(growthFactor)) {
      throw new Error(
        `GradScaler: growthFactor must be a finite number > 1, found ${growthFactor}`,
      );
    }
    if (!(backoffFactor > 0 && backoffFactor < 1)) {
      throw new Error(`GradScaler: backoffFactor must be in (0, 1), found ${backoffFactor}`);
    }
    if (!Number.isInteger(growthInterval) || growthInterval < 1) {
      throw new Error(
        `GradScaler: growthInterval must be an integer >= 1, found ${growthInterval}`,
      );
    }
    this.#scale = initScale;
    this.growthFactor = growthFactor;
    this.backoffFactor = backoffFactor;
    this.growthInterval = growthInterval;
  }

  /** The factor the loss is multiplied by this step (PyTorch's `get_scale()`). */
  get scale(): number {
    return this.#scale;
  }

  /** Clean steps in a row since the scale last changed. */
  get growthTracker(): number {
    return this.#growthTracker;
  }

  /**
   * After each optimizer step: `foundInf` (the gradients held an inf or NaN, so the step was
   * skipped) multiplies the scale by `backoffFactor` and restarts the count; otherwise, the
   * `growthInterval`-th clean step in a row multiplies it by `growthFactor`, unless that would
   * leave float32's range (then it stays, as in PyTorch's `_amp_update_scale_`).
   */
  update(foundInf: boolean): void {
    if (foundInf) {
      // never below float32's smallest normal number: a scale of 0 could not grow back
      this.#scale = Math.max(this.#scale * this.backoffFactor, F32_MIN_NORMAL);
      this.#growthTracker = 0;
      return;
    }
    this.#growthTracker++;
    if (this.#growthTracker >= this.growthInterval) {
      const grown = this.#scale * this.growthFactor;
      if (grown <= F32_MAX) this.#scale = grown;
      this.#growthTracker = 0;
    }
  }

  /** The scale and growth count, for a checkpoint. */
  state(): GradScalerState {
    return { scale: this.#scale, growthTracker: this.#growthTracker };
  }

  /** Continues from `state()` as saved in a checkpoint; a malformed one is refused. */
  load(state: GradScalerState): void {
    checkScale(state?.scale, "state.scale");
    const t = state.growthTracker;
    if (!Number.isInteger(t) || t < 0) {
      throw new Error(`GradScaler: state.growthTracker must be an integer >= 0, found ${t}`);
    }
    this.#scale = state.scale;
    this.#growthTracker = t;
  }
}

function checkScale(scale: unknown, name: string): void {
  if (typeof scale !== "number" || !(scale > 0) || !(scale <= F32_MAX)) {
    throw new Error(
      `GradScaler: ${name} must be a positive number within float32's range, found ${scale}`,
    );
  }
}
