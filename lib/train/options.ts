/**
 * What a training run takes and gives: {@linkcode TrainOptions} (the CLI fills it from a preset
 * and flags), the per-step and per-evaluation statistics, and the result.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import type { ProcessGroup } from "../ddp/process_group.ts";
import type { GPT, GPTConfig } from "../model/gpt.ts";
import type { GradScalerOptions, GradScalerState } from "./grad_scaler.ts";
import type { InitSource } from "./init_from.ts";
import type { OptimizerName } from "./optim.ts";
import type { Precision } from "./precision.ts";

/** What the HellaSwag hook returns for this rank's share of the examples. */
export interface HellaswagCounts {
  total: number;
  correctNorm: number;
}

/** Where an evaluation happens: this rank, the world, the step. */
export interface EvalContext {
  rank: number;
  world: number;
  step: number;
}

/** Scores this rank's share of HellaSwag (lib/eval/hellaswag.ts plugs in here). */
export type HellaswagHook = (model: GPT, ctx: EvalContext) => Promise<HellaswagCounts>;

/** Everything a run needs; the CLI fills it from a preset and flags. */
export interface TrainOptions {
  backend: Backend;
  config: GPTConfig;
  /** A text file (split 90% train / 10% val) or a folder of `.npy` token shards. */
  dataPath: string;
  /** micro batch size */
  B: number;
  /** sequence length */
  T: number;
  /** Tokens per optimizer step; a multiple of B * T * world (the rest is accumulation). */
  totalBatchSize: number;
  /** max_steps: the run's length and the end of the cosine. */
  steps: number;
  maxLr: number;
  minLr: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  /**
   * After the lecture: "muon", the speedrun's Muon for the blocks' 2-D weights (AdamW at
   * `maxLr` for the rest); default "adamw". A resumed run must use its checkpoint's.
   */
  optimizer?: OptimizerName;
  /** Muon's peak learning rate, on the same warmup and cosine; default 0.02. */
  muonLr?: number;
  /**
   * Folder for `log.txt`, `checkpoints/` and the final `model/`; null writes nothing. One run
   * at a time (a lock file); a fresh run is refused where it holds checkpoints, unless
   * `overwrite`. An empty name is an error.
   */
  logDir: string | null;
  /** Validation loss, HellaSwag and samples every this many steps and at the last; 0: never. */
  evalEvery?: number;
  /** Batches of the validation loss (build-nanogpt's val_loss_steps); default 20. */
  valBatches?: number;
  /** Checkpoint every this many steps (and at the end); 0: only at the end. */
  checkpointEvery?: number;
  /** Checkpoints kept; default 3. */
  keepCheckpoints?: number;
  /** A checkpoint folder, or "latest" (the newest in `<logDir>/checkpoints`). */
  resume?: string | null;
  /**
   * Fine-tuning: start from these weights (lib/train/init_from.ts's `resolveInitFrom`) instead
   * of GPT-2's random init; `config` must have their shape, with at least their vocabulary
   * (`initConfig`). Weights only: AdamW and the data start fresh. Not with `resume`.
   */
  initFrom?: InitSource | null;
  /**
   * A fresh run in a log folder that holds an earlier run: remove its checkpoints, `log.txt`
   * and `model/` first (`--overwrite`); default false, which refuses such a folder.
   */
  overwrite?: boolean;
  /** The DDP process group; a single process by default. */
  group?: ProcessGroup;
  /** HellaSwag at each evaluation, when given. */
  hellaswag?: HellaswagHook | null;
  /** Save a checkpoint and stop on SIGINT/SIGTERM; default true. */
  handleSignals?: boolean;
  /** Tokens per sample, prompt included (build-nanogpt's max_length); default 32. */
  sampleLength?: number;
  /** Settings recorded in checkpoints (the preset's name, say). */
  runInfo?: Record<string, unknown>;
  /** Called after every step, e.g. to draw a live chart in a notebook. */
  onStep?: (s: StepStats) => void;
  /** Called on rank 0 after each evaluation has been logged (e.g. to redraw a figure). */
  onEval?: (e: EvalStats) => Promise<void> | void;
  /**
   * The matmuls' precision; default f32. f16 needs a backend with f16 matmuls (WebGPU on an
   * adapter with shader-f16) and turns loss scaling on.
   */
  precision?: Precision;
  /**
   * Dynamic loss scaling (PyTorch's GradScaler): the backward pass starts from the scale, the
   * gradients are unscaled while clipping, and a step whose gradients overflow is skipped and
   * the scale halved. Default: on with f16, off with f32 (where it changes nothing but costs
   * a pass over the gradients).
   */
  lossScaling?: boolean;
  /** The loss scaler's constants (initial scale, growth...); PyTorch's defaults otherwise. */
  gradScaler?: GradScalerOptions;
}

/** What one optimizer step did. */
export interface StepStats {
  step: number;
  loss: number;
  lr: number;
  norm: number;
  dtMs: number;
  tokensPerSec: number;
  /** With loss scaling: the scale this step's backward pass used. */
  lossScale?: number;
  /** With loss scaling: whether the gradients overflowed, so the optimizer step was skipped. */
  skipped?: boolean;
}

/** What one evaluation found. */
export interface EvalStats {
  step: number;
  valLoss: number;
  /** HellaSwag acc_norm, when the hook ran. */
  hellaAcc: number | null;
  /** This rank's samples. */
  samples: string[];
}

/** The losses of a run, its model and where it was saved. */
export interface TrainResult {
  model: GPT;
  history: StepStats[];
  evals: EvalStats[];
  modelDir: string | null;
  /** The last checkpoint written (rank 0), if any. */
  checkpoint: string | null;
  /** Why the run ended before its last step ("SIGINT"), or null. */
  stoppedBy: string | null;
  /**
   * True when the resumed checkpoint had reached `steps` already: nothing ran and nothing was
   * written (`model` is the checkpoint's).
   */
  nothingLeft: boolean;
  /** The loss scaler's state at the end, with loss scaling; else null. */
  gradScaler: GradScalerState | null;
}
