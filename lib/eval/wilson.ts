/**
 * How sure an accuracy is: the 95% Wilson score interval of a proportion, and HellaSwag's
 * terminal line with it (in the training loop, its summary and `deno task hellaswag`). On a
 * few hundred examples, the difference between two checkpoints is often inside the interval.
 *
 * @module
 */

/** z for a two-sided 95% interval of the normal distribution. */
export const Z_95 = 1.959963984540054;

/** A confidence interval, both ends in [0, 1]. */
export interface Interval {
  low: number;
  high: number;
}

/**
 * The Wilson score interval of `successes` out of `n` at the given `z` (95% by default).
 * Wilson rather than the textbook p ± z·sqrt(p(1-p)/n) (the Wald interval) because Wald's
 * collapses to a point at 0/n and n/n and spills outside [0, 1] near them, which small
 * HellaSwag subsets (a few dozen examples) reach easily.
 *
 * @throws {RangeError} when `n` is not positive or `successes` is outside [0, n].
 */
export function wilsonInterval(successes: number, n: number, z: number = Z_95): Interval {
  if (!(n > 0) || !(successes >= 0 && successes <= n)) {
    throw new RangeError(`Expected 0 <= successes <= n and n > 0, found ${successes} of ${n}`);
  }
  const p = successes / n;
  const z2 = z * z;
  const denominator = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denominator;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denominator;
  // rounding can take an end a hair past 0 or 1 (0/n gives -3e-17)
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/** `95% CI 0.264-0.447, n=100`: an accuracy's 95% Wilson interval and its sample size. */
export function formatInterval(successes: number, n: number): string {
  const { low, high } = wilsonInterval(successes, n);
  return `95% CI ${low.toFixed(3)}-${high.toFixed(3)}, n=${n}`;
}

/**
 * One accuracy as the terminal shows it, with its 95% Wilson interval:
 * `HellaSwag acc_norm: 35/100 = 0.3500 (95% CI 0.264-0.447, n=100)`. No examples (n = 0)
 * reads `0/0`, without an interval.
 */
export function formatAccuracy(name: string, correct: number, total: number): string {
  if (total === 0) return `${name}: 0/0 (no examples)`;
  return `${name}: ${correct}/${total} = ${(correct / total).toFixed(4)} (${
    formatInterval(correct, total)
  })`;
}
