/**
 * Training presets: the constants of a run as data, printed at start; every flag of
 * `deno task train` overrides them.
 *
 * - `shakespeare` (the default): the lecture's section-1 run, quick on any backend.
 * - `gpt2-124M-fineweb`: build-nanogpt's `train_gpt2.py` constants for GPT-2 (124M) on
 *   FineWeb-EDU 10B (B=64, T=1024, 2**19 tokens per step, 19,073 steps).
 *
 * @module
 */

/** The constants of a run. */
export interface TrainPreset {
  /** What the preset reproduces. */
  description: string;
  /** A `GPT_CONFIGS` name, or "auto" (gpt2 where the backend trains it in minutes, else tiny). */
  model: string;
  /** 50304: 50257 padded to a multiple of 128, "a nice number". */
  vocabSize: number;
  /** micro batch size */
  B: number;
  /** sequence length */
  T: number;
  /** Tokens per optimizer step; null means B * T * world size (no accumulation). */
  totalBatchSize: number | null;
  /** optimizer steps (build-nanogpt's max_steps, also the end of the cosine) */
  steps: number;
  maxLr: number;
  minLr: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  /** Evaluate (val loss, samples, HellaSwag) every this many steps and at the last. */
  evalEvery: number;
  /** Validation batches per evaluation (build-nanogpt's val_loss_steps). */
  valBatches: number;
  /** Checkpoint every this many steps (0: only at the end). */
  checkpointEvery: number;
  /** How many checkpoints to keep. */
  keepCheckpoints: number;
  /** Run the HellaSwag hook at each evaluation when it is available. */
  hellaswag: boolean;
  /** Where the data is: "shakespeare" (a text file) or a shard folder. */
  data: "shakespeare" | "fineweb";
}

/** The presets by name. */
export const PRESETS: Record<string, TrainPreset> = {
  "shakespeare": {
    description: "the lecture's section-1 run: from scratch on Tiny Shakespeare",
    model: "auto",
    vocabSize: 50304,
    B: 4,
    T: 64,
    totalBatchSize: null,
    steps: 50,
    maxLr: 6e-4,
    minLr: 6e-5, // max_lr * 0.1
    warmupSteps: 10,
    weightDecay: 0.1,
    seed: 1337,
    evalEvery: 25,
    valBatches: 5,
    checkpointEvery: 0, // at the end only: a 124M checkpoint with AdamW's moments is 1.5 GB
    keepCheckpoints: 3,
    hellaswag: false,
    data: "shakespeare",
  },
  "gpt2-124M-fineweb": {
    description: "build-nanogpt's GPT-2 (124M) run on FineWeb-EDU 10B",
    model: "gpt2",
    vocabSize: 50304,
    B: 64, // micro batch size
    T: 1024, // sequence length
    totalBatchSize: 524288, // 2**19, ~0.5M, in number of tokens
    steps: 19073, // 10e9 tokens / 2**19 tokens per step
    maxLr: 6e-4,
    minLr: 6e-5, // max_lr * 0.1
    warmupSteps: 715, // 375e6 warmup tokens (GPT-3 paper) / 2**19
    weightDecay: 0.1,
    seed: 1337,
    evalEvery: 250,
    valBatches: 20,
    checkpointEvery: 5000,
    keepCheckpoints: 3,
    hellaswag: true,
    data: "fineweb",
  },
};

/** The preset called `name`, or an error listing the names. */
export function getPreset(name: string): TrainPreset {
  const preset = PRESETS[name];
  if (!preset) {
    throw new Error(
      `Unknown --preset "${name}", expected one of ${Object.keys(PRESETS).join(", ")}`,
    );
  }
  return { ...preset };
}

/** The preset as printed at the start of a run: one `name = value` per line. */
export function formatPreset(name: string, preset: TrainPreset): string {
  const lines = [`preset ${name}: ${preset.description}`];
  for (const [k, v] of Object.entries(preset)) {
    if (k !== "description") lines.push(`  ${k} = ${v === null ? "B*T*world" : v}`);
  }
  return lines.join("\n");
}
