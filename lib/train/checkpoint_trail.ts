/**
 * Which checkpoint a run can go back to. A checkpoint's weights are only known to be good once
 * a step has started from them and found the loss and the gradient norm finite: weights that
 * are finite but exploding give a NaN at the very next step, and resuming them would give it
 * again. So the trail keeps the newest checkpoint written (`last`) apart from the newest one
 * that passed a step (`good`), the messages of a stopped run name `good`, and the pruning of
 * older checkpoints waits until the new one has passed: `--keep-checkpoints 1` never leaves a
 * run with only a checkpoint that fails.
 *
 * @module
 */

/** A run's checkpoints so far, and the pruning that waits for the newest to pass a step. */
export class CheckpointTrail {
  /** The newest checkpoint written (or resumed from), or null. */
  last: string | null;
  /** The newest checkpoint whose weights passed a step, or null. */
  good: string | null = null;
  #pendingPrune: number | null = null;
  readonly #prune: (step: number) => Promise<void>;

  /**
   * @param resumedFrom the checkpoint the run continues, or null
   * @param prune removes the older checkpoints, keeping the newest up to a step's
   */
  constructor(resumedFrom: string | null, prune: (step: number) => Promise<void>) {
    this.last = resumedFrom;
    this.#prune = prune;
  }

  /** A step started from the weights of `last` and found them good: prune, if waiting. */
  async passed(): Promise<void> {
    this.good = this.last;
    if (this.#pendingPrune !== null) {
      const step = this.#pendingPrune;
      this.#pendingPrune = null;
      await this.#prune(step);
    }
  }

  /** Checkpoint `path` of `step` was written; with `prunedNow` false its pruning waits. */
  written(path: string | null, step: number, prunedNow: boolean): void {
    if (path === null) return;
    this.last = path;
    this.#pendingPrune = prunedNow ? null : step;
  }

  /**
   * What a stopped run can go back to, for its message: the newest checkpoint that passed a
   * step; where a newer one holds the weights that failed, that one too (every checkpoint is
   * finite: lib/train/checkpoint.ts writes no other).
   */
  goBackTo(): string {
    const { last, good } = this;
    if (last === null) return "no checkpoint was written yet (try a lower --max-lr)";
    const resume = (path: string) =>
      `the last good checkpoint is ${path} (--resume ${path}, perhaps with a lower --max-lr)`;
    if (last === good) return resume(last);
    if (good) {
      return `${
        resume(good)
      }; ${last}, written after it, is finite but holds the weights that gave this: resuming it repeats it`;
    }
    return `the last good checkpoint is ${last} (its weights are finite, but this step started from them: resuming it repeats this, so start again with a lower --max-lr)`;
  }
}
