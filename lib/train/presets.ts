/**
 * Training presets: the constants of a run as data, printed at start; every flag of
 * `deno task train` overrides them.
 *
 * - `shakespeare` (the default): the lecture's section-1 run, quick on any backend.
 * - `gpt2-124M-fineweb`: build-nanogpt's `train_gpt2.py` constants for GPT-2 (124M) on
 *   FineWeb-EDU 10B (B=64, T=1024, 2**19 tokens per step, 19,073 steps).
 * - `speedrun-shakespeare`: after the lecture, Keller Jordan's modded-nanogpt recipe (Muon,
 *   rotary, QK-norm, ReLU², zero-initialised projections, an untied head) on the tiny model.
 * - `shakespeare-finetune`: nanoGPT's `config/finetune_shakespeare.py` made small enough for a
 *   CPU: OpenAI's GPT-2 (124M) fine-tuned on Tiny Shakespeare at a constant 3e-5.
 *
 * Every field but `description` is a row of lib/train/hyperparameters.ts, which gives its
 * flag, its help text and its printing.
 *
 * @module
 */

import {
  formatHyperparameters,
  type Hyperparameters,
  TINY_SHAKESPEARE,
} from "./hyperparameters.ts";

/** The lecture's recipe: the speedrun's options all off (GPT-2 as OpenAI made it, AdamW). */
const LECTURE_RECIPE = {
  mlp: "gelu",
  qkNorm: false,
  pos: "learned",
  zeroInitProj: false,
  untieHead: false,
  optimizer: "adamw",
  muonLr: 0.02,
} as const satisfies Partial<Hyperparameters>;

/** A preset: what it reproduces, and a value for every hyperparameter of the table. */
export interface TrainPreset extends Hyperparameters {
  /** What the preset reproduces. */
  description: string;
}

/** The lecture's presets by name. */
export const PRESETS: Record<string, TrainPreset> = {
  "shakespeare": {
    description: "the lecture's section-1 run: from scratch on Tiny Shakespeare",
    model: "auto",
    initFrom: null, // GPT-2's random init
    vocabSize: 50304,
    B: 4,
    T: 64,
    totalBatchSize: null, // B * T * world: no accumulation
    steps: 50,
    maxLr: 6e-4,
    minLr: 6e-5, // max_lr * 0.1
    warmupSteps: 10,
    weightDecay: 0.1,
    seed: 1337,
    evalEvery: 25,
    valBatches: 5,
    hellaswag: 0,
    data: TINY_SHAKESPEARE,
    checkpointEvery: 0, // at the end only: a 124M checkpoint with AdamW's moments is 1.5 GB
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
  "gpt2-124M-fineweb": {
    description: "build-nanogpt's GPT-2 (124M) run on FineWeb-EDU 10B",
    model: "gpt2",
    initFrom: null,
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
    hellaswag: "all",
    data: "data/edu_fineweb10B", // made by deno task fineweb; relative to the repository
    checkpointEvery: 5000,
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
  // nanoGPT: init_from 'gpt2-xl', batch 1 x 32 accumulation x 1024 tokens, 20 iterations at a
  // constant 3e-5 (decay_lr False): 655,360 tokens, about two epochs. Here GPT-2 124M at the
  // shakespeare preset's CPU batch of 4 x 64: 300 steps are 76,800 tokens, a quarter epoch.
  "shakespeare-finetune": {
    description: "nanoGPT's finetune_shakespeare: OpenAI's GPT-2 (124M) fine-tuned on Tiny " +
      "Shakespeare at a constant learning rate",
    model: "gpt2", // the shape --init-from loads
    initFrom: "gpt2",
    vocabSize: 50304, // GPT-2's 50257 rows padded with zero rows
    B: 4,
    T: 64,
    totalBatchSize: null, // B * T * world: no accumulation
    steps: 300,
    maxLr: 3e-5,
    minLr: 3e-5, // = max_lr with no warmup: constant, nanoGPT's decay_lr = False
    warmupSteps: 0,
    weightDecay: 0.1, // nanoGPT's default
    seed: 1337,
    evalEvery: 25,
    valBatches: 10,
    hellaswag: 0,
    data: TINY_SHAKESPEARE,
    checkpointEvery: 0, // at the end only: 1.5 GB with AdamW's moments
    keepCheckpoints: 3,
    ...LECTURE_RECIPE,
  },
};

/**
 * The presets past the lecture, the speedrun's options on; kept apart from
 * {@linkcode PRESETS} so the lecture's help and tables stay the lecture's.
 */
export const AFTER_LECTURE_PRESETS: Record<string, TrainPreset> = {
  // After the lecture: modded-nanogpt's recipe (Muon, rotary, QK-norm, ReLU², zero-initialised
  // projections, an untied head) on the tiny model, small enough for a CPU
  "speedrun-shakespeare": {
    description: "after the lecture: the speedrun's recipe (Muon, rotary, QK-norm, ReLU²) " +
      "on the tiny model and Tiny Shakespeare",
    model: "tiny",
    initFrom: null,
    vocabSize: 50304,
    B: 8,
    T: 128,
    totalBatchSize: null, // B * T * world: no accumulation
    steps: 200,
    maxLr: 3e-3, // AdamW's: embeddings, the head, gains and biases
    minLr: 3e-4,
    warmupSteps: 10,
    weightDecay: 0, // the speedrun decays nothing
    seed: 1337,
    evalEvery: 50,
    valBatches: 5,
    hellaswag: 0,
    data: TINY_SHAKESPEARE,
    checkpointEvery: 0,
    keepCheckpoints: 3,
    mlp: "relu2",
    qkNorm: true,
    pos: "rotary",
    zeroInitProj: true,
    untieHead: true,
    optimizer: "muon",
    muonLr: 0.02, // the speedrun's Muon rate
  },
};

/** The preset called `name`, or an error listing the names. */
export function getPreset(name: string): TrainPreset {
  const preset = PRESETS[name] ?? AFTER_LECTURE_PRESETS[name];
  if (!preset) {
    const names = [...Object.keys(PRESETS), ...Object.keys(AFTER_LECTURE_PRESETS)];
    throw new Error(`Unknown --preset "${name}", expected one of ${names.join(", ")}`);
  }
  return { ...preset };
}

/** The preset as printed: its name and description, then one `key = value` a line. */
export function formatPreset(name: string, preset: TrainPreset): string {
  return `preset ${name}: ${preset.description}\n${formatHyperparameters(preset)}`;
}
