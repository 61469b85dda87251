/**
 * The step sizes `deno task bench` times: `--configs` (items like `train:4x64` or
 * `fwd:1x1024`), parsed and bounded, and the defaults: with the PyTorch peer, training steps
 * from short sequences to GPT-2's full context (B=2, T=1024, the lecture's T).
 *
 * @module
 */

/** A step size to time: a training step or a forward pass at B x T. */
export interface StepConfig {
  mode: "train" | "fwd";
  B: number;
  T: number;
}

/** The largest --configs batch: B*T*vocab logits beyond this exhaust a machine's memory. */
const MAX_BENCH_B = 1024;
/** GPT-2 124M's block size: the longest --configs sequence. */
const BENCH_BLOCK_SIZE = 1024;

/** `--configs`'s default: beside the PyTorch peer, training steps up to T=1024. */
export function defaultStepConfigs(peer: boolean): string {
  return peer ? "train:4x64,train:8x128,train:2x1024" : "train:4x64,train:8x128,fwd:1x1024";
}

/**
 * The sizes of a `--configs` list.
 *
 * @throws {Error} naming `--configs` for an item that is not `train|fwd:BxT`, or a size outside
 * B 1..1024 and T 1..1024 (GPT-2's block size)
 */
export function parseStepConfigs(text: string): StepConfig[] {
  return text.split(",").map((s) => {
    const m = s.trim().match(/^(train|fwd):(\d+)x(\d+)$/);
    if (!m) {
      throw new Error(`--configs expects items like train:4x64 or fwd:1x1024, found "${s}"`);
    }
    const B = Number(m[2]), T = Number(m[3]);
    // a zero size divides by zero in the timing; GPT-2's context is its block size
    if (B < 1 || B > MAX_BENCH_B || T < 1 || T > BENCH_BLOCK_SIZE) {
      throw new Error(
        `--configs expects B from 1 to ${MAX_BENCH_B} and T from 1 to ${BENCH_BLOCK_SIZE} (GPT-2's block size), found "${s}"`,
      );
    }
    return { mode: m[1] as StepConfig["mode"], B, T };
  });
}
