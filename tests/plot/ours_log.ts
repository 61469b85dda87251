/**
 * A log written the way our training loop writes it, for the plot tests.
 *
 * @module
 */

/** Lines exactly as our training loop writes them (lib/train/train.ts: `toFixed(6)`), plus val/hella. */
export function oursLog(steps: number): string {
  let text = "";
  for (let step = 0; step < steps; step++) {
    if (step % 5 === 0 || step === steps - 1) {
      text += `${step} val ${(10 - step * 0.1).toFixed(4)}\n`;
      text += `${step} hella ${(0.25 + step * 0.001).toFixed(4)}\n`;
    }
    text += `${step} train ${(10.9 - step * 0.1).toFixed(6)}\n`;
  }
  return text;
}
