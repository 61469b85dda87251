/**
 * The lecture's optimisation recipe: AdamW (betas 0.9/0.95, eps 1e-8) with weight decay on
 * the 2-D tensors only, gradient-norm clipping at 1.0, and linear warmup then cosine decay.
 *
 * @module
 */

import { decayGroups, type ParamGroup } from "../model/gpt.ts";
import type { Module } from "../model/nn.ts";
import type { Tensor } from "../model/tensor.ts";
import { Muon } from "../speedrun/muon.ts";

export type { ParamGroup };

/** AdamW hyperparameters. */
export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
}

/** torch.optim.AdamW, one backend kernel call per parameter tensor. */
export class AdamW {
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  /** Steps taken so far (PyTorch keeps one per parameter; they move together here). */
  stepCount = 0;
  readonly groups: ParamGroup[];
  readonly state = new Map<Tensor, { m: Tensor["buffer"]; v: Tensor["buffer"] }>();
  /**
   * What the next `step` multiplies every gradient by: clipping's factor, set by
   * `clipGradNorm` (1: none). `step` and `zeroGrad` put it back to 1.
   */
  gradScale = 1;

  constructor(groups: ParamGroup[], options: AdamWOptions) {
    this.groups = groups;
    this.lr = options.lr;
    this.betas = options.betas ?? [0.9, 0.95];
    this.eps = options.eps ?? 1e-8;
  }

  /**
   * Clears every gradient: zeroes the buffers in place (they are about 500 MB for GPT-2 124M,
   * not worth reallocating each step).
   */
  zeroGrad(): void {
    this.gradScale = 1;
    for (const g of this.groups) {
      for (const p of g.params) if (p.grad) p.backend.zero(p.grad.buffer);
    }
  }

  /** Every parameter this optimizer updates. */
  parameters(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /**
   * `torch.nn.utils.clip_grad_norm_` over `parameters()`, the multiplication folded into the
   * next `step` (llm.c's `grad_scale`): the gradients are read once, by AdamW, instead of
   * being scaled in place by a pass of their own first, and the update is the same to the
   * bit. AdamW's gradients stay as backward left them (Muon's, with `MuonAndAdamW`, are
   * scaled in place before its update). Returns the norm before clipping; `scale`
   * as `clipGradNorm`'s (loss scaling: the true norm, the gradients unscaled in the same
   * multiplication; a norm that is not finite leaves the factor at 1 for the caller to skip
   * the step).
   */
  async clipGradNorm(maxNorm: number, scale?: number): Promise<number> {
    const norm = await gradNorm(this.parameters(), scale);
    if (scale !== undefined && !Number.isFinite(norm)) return norm;
    this.gradScale = clipFactor(norm, maxNorm, scale);
    return norm;
  }

  /** One update of every parameter that has a gradient (times `gradScale`). */
  step(): void {
    const gradScale = this.gradScale;
    this.gradScale = 1;
    this.stepCount++;
    for (const group of this.groups) {
      for (const p of group.params) {
        if (!p.grad) continue;
        let s = this.state.get(p);
        if (!s) {
          s = { m: p.backend.alloc(p.size, "f32"), v: p.backend.alloc(p.size, "f32") };
          this.state.set(p, s);
        }
        p.backend.adamw(p.buffer, p.grad.buffer, s.m, s.v, p.size, {
          lr: this.lr,
          beta1: this.betas[0],
          beta2: this.betas[1],
          eps: this.eps,
          weightDecay: group.weightDecay,
          step: this.stepCount,
          gradScale,
        });
      }
    }
  }
}

/**
 * After the lecture, the speedrun's optimizer: Muon (lib/speedrun/muon.ts) for the 2-D weights
 * inside the blocks, AdamW (this class's groups) for the rest. Each has its own learning rate:
 * `lr` is AdamW's, `muonLr` Muon's; the loop sets both from the schedule each step, Muon's on
 * the same warmup and cosine from its own peak, `muonPeakLr` ({@linkcode muonSchedule}).
 */
export class MuonAndAdamW extends AdamW {
  readonly muon: Muon;
  /** Muon's peak learning rate (`--muon-lr`). */
  readonly muonPeakLr: number;
  /** Muon's learning rate for the next step. */
  muonLr: number;

  constructor(groups: ParamGroup[], options: AdamWOptions, muon: Muon, muonLr: number) {
    super(groups, options);
    this.muon = muon;
    this.muonPeakLr = muonLr;
    this.muonLr = muonLr;
  }

  /** Clears the gradients of both. */
  override zeroGrad(): void {
    super.zeroGrad();
    this.muon.zeroGrad();
  }

  /** The parameters of both. */
  override parameters(): Tensor[] {
    return [...super.parameters(), ...this.muon.params];
  }

  /** One AdamW step of its groups at `lr`, then one Muon step at `muonLr` (each times `gradScale`). */
  override step(): void {
    const gradScale = this.gradScale;
    super.step();
    this.muon.step(this.muonLr, gradScale);
  }
}

/** The optimizers by name: the lecture's AdamW, or the speedrun's Muon with AdamW. */
export type OptimizerName = "adamw" | "muon";
/** The optimizer names. */
export const OPTIMIZERS: readonly OptimizerName[] = ["adamw", "muon"];

/** Options of `configureOptimizers`. */
export interface ConfigureOptions {
  weightDecay: number;
  learningRate: number;
  /** Print the two groups' sizes, as the lecture does. */
  verbose?: boolean;
  /** "muon": the speedrun's Muon for the blocks' 2-D weights; default "adamw". */
  optimizer?: OptimizerName;
  /** Muon's peak learning rate (with `optimizer` "muon"); default 0.02, the speedrun's. */
  muonLr?: number;
}

/** Whether parameter `name` goes to Muon: a 2-D weight inside a block. */
export function isMuonParameter(name: string, p: Tensor): boolean {
  return p.shape.length === 2 && name.startsWith("transformer.h.");
}

/**
 * AdamW with two groups: every parameter of 2 or more dimensions (matmul weights,
 * embeddings) decays; biases and LayerNorm parameters do not.
 */
export function configureOptimizers(model: Module, options: ConfigureOptions): AdamW {
  if (options.optimizer === "muon") return configureMuon(model, options);
  const groups = decayGroups(model.parameters(), options.weightDecay);
  const [decay, noDecay] = groups.map((g) => g.params);
  if (options.verbose) {
    const count = (ps: Tensor[]) => ps.reduce((n, p) => n + p.size, 0).toLocaleString("en-US");
    console.log(`num decayed parameter tensors: ${decay.length}, with ${count(decay)} parameters`);
    console.log(
      `num non-decayed parameter tensors: ${noDecay.length}, with ${count(noDecay)} parameters`,
    );
  }
  return new AdamW(groups, { lr: options.learningRate, betas: [0.9, 0.95], eps: 1e-8 });
}

/**
 * Muon for the blocks' 2-D weights at `muonLr`; AdamW at `learningRate` for the rest, with
 * weight decay on its 2-D tensors (embeddings, an untied head) only.
 */
function configureMuon(model: Module, options: ConfigureOptions): AdamW {
  const params = model.namedParameters();
  const muonParams = params.filter(([n, p]) => isMuonParameter(n, p)).map(([, p]) => p);
  const rest = params.filter(([n, p]) => !isMuonParameter(n, p)).map(([, p]) => p);
  const groups = decayGroups(rest, options.weightDecay);
  const [decay, noDecay] = groups.map((g) => g.params);
  if (options.verbose) {
    const count = (ps: Tensor[]) => ps.reduce((n, p) => n + p.size, 0).toLocaleString("en-US");
    console.log(
      `Muon parameter tensors: ${muonParams.length}, with ${count(muonParams)} parameters`,
    );
    console.log(`AdamW decayed tensors: ${decay.length}, with ${count(decay)} parameters`);
    console.log(`AdamW non-decayed tensors: ${noDecay.length}, with ${count(noDecay)} parameters`);
  }
  return new MuonAndAdamW(
    groups,
    { lr: options.learningRate, betas: [0.9, 0.95], eps: 1e-8 },
    new Muon(muonParams),
    options.muonLr ?? 0.02,
  );
}

/**
 * Scales all gradients so their global L2 norm is at most `maxNorm`
 * (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
 *
 * With `scale` (loss scaling, lib/train/precision.ts) the gradients hold `scale` times the true
 * ones: the returned norm is the true one (divided by `scale`), and the gradients are
 * unscaled and clipped together, one multiplication each by
 * `min(1, maxNorm / (norm + 1e-6)) / scale` (GradScaler's `unscale_` then clipping, in one
 * pass). With `scale`, a norm that is not finite (an inf or NaN in a gradient: overflow) is
 * returned with the gradients left as they are, for the caller to skip the step.
 */
export async function clipGradNorm(
  params: Tensor[],
  maxNorm: number,
  scale?: number,
): Promise<number> {
  const norm = await gradNorm(params, scale);
  // overflow under loss scaling: the caller skips the step (without a scale, as PyTorch: an
  // inf norm clips by 0)
  if (scale !== undefined && !Number.isFinite(norm)) return norm;
  const factor = clipFactor(norm, maxNorm, scale);
  if (factor !== 1) {
    for (const p of params) {
      if (p.grad) p.backend.scale(p.grad.buffer, p.grad.buffer, factor, p.size, false);
    }
  }
  return norm;
}

/**
 * The global L2 norm of the gradients of `params`, divided by `scale` (loss scaling: the
 * true one), with one read-back where the backend batches the sums of squares.
 */
export async function gradNorm(params: Tensor[], scale?: number): Promise<number> {
  if (scale !== undefined && !(scale > 0 && Number.isFinite(scale))) {
    throw new Error(`clipGradNorm: scale must be a positive finite number, found ${scale}`);
  }
  let sumSq = 0;
  const withGrad = params.filter((p) => p.grad), backend = withGrad[0]?.backend;
  if (backend?.sumsOfSquares && withGrad.every((p) => p.backend === backend)) {
    // one read-back for all parameters where the backend can batch them
    const sums = await backend.sumsOfSquares(
      withGrad.map((p) => p.grad!.buffer),
      withGrad.map((p) => p.size),
    );
    for (const s of sums) sumSq += s;
  } else {
    for (const p of withGrad) sumSq += await p.backend.sumOfSquares(p.grad!.buffer, p.size);
  }
  return Math.sqrt(sumSq) / (scale ?? 1);
}

/**
 * What clipping at `maxNorm` multiplies the gradients by, given their true norm:
 * `min(1, maxNorm / (norm + 1e-6)) / scale` (PyTorch's coefficient, and GradScaler's unscale).
 */
export function clipFactor(norm: number, maxNorm: number, scale = 1): number {
  return Math.min(1, maxNorm / (norm + 1e-6)) / scale;
}

/** The learning-rate schedule's constants. */
export interface LrSchedule {
  maxLr: number;
  minLr: number;
  warmupSteps: number;
  maxSteps: number;
}

/** Linear warmup for `warmupSteps`, then cosine decay to `minLr` at `maxSteps`, then flat. */
export function getLr(it: number, s: LrSchedule): number {
  // 1) linear warmup for warmup_iters steps
  if (it < s.warmupSteps) return s.maxLr * (it + 1) / s.warmupSteps;
  // 2) if it > lr_decay_iters, return min learning rate
  if (it > s.maxSteps) return s.minLr;
  // 3) in between, use cosine decay down to min learning rate
  const decayRatio = (it - s.warmupSteps) / (s.maxSteps - s.warmupSteps);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * decayRatio)); // starts at 1 and goes to 0
  return s.minLr + coeff * (s.maxLr - s.minLr);
}

/**
 * After the lecture, Muon's schedule: `s`'s warmup and cosine, from Muon's own peak rate
 * `muonLr` down to the same fraction of it as AdamW's minimum is of AdamW's peak.
 */
export function muonSchedule(s: LrSchedule, muonLr: number): LrSchedule {
  return { ...s, maxLr: muonLr, minLr: s.maxLr > 0 ? muonLr * (s.minLr / s.maxLr) : 0 };
}
