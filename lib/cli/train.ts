/**
 * `deno task train`: build-nanogpt's training run from a preset (`shakespeare` by default,
 * the lecture's section-1 run; `gpt2-124M-fineweb`, the full GPT-2 124M recipe;
 * `shakespeare-finetune`, nanoGPT's fine-tuning of OpenAI's GPT-2), every constant a flag;
 * `--init-from` starts from loaded weights (lib/train/init_from.ts) instead of random ones.
 * Under `deno task ddp` each rank runs this file with torchrun's environment (RANK,
 * LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { createBackend, trainsGpt2InMinutes } from "../backends/mod.ts";
import { REPO_ROOT, resolveTinyShakespeare } from "../data/datasets.ts";
import { distEnvFromEnv, initProcessGroup, type ProcessGroup } from "../ddp/process_group.ts";
import { ProgressBar } from "../io/progress.ts";
import { GPT_CONFIGS, type GPTConfig, gptConfig, type ModelConfig } from "../model/gpt.ts";
import { speedrunConfigFields } from "../model/speedrun.ts";
import { flopsPerToken, writeRunReport } from "../plot/report.ts";
import { dataTitle, modelTitle, type RunDescription } from "../plot/run_meta.ts";
import {
  formatHyperparameters,
  hyperparameterHelp,
  HYPERPARAMETERS,
  type Hyperparameters,
  resolveHyperparameters,
  TINY_SHAKESPEARE,
} from "../train/settings.ts";
import {
  checkInitFromResume,
  checkInitShape,
  formatFineTuneLosses,
  initConfig,
  type InitSource,
  resolveInitFrom,
} from "../train/init_from.ts";
import { AFTER_LECTURE_PRESETS, getPreset, PRESETS } from "../train/settings.ts";
import { readCheckpointState, resolveResume } from "../train/checkpoint.ts";
import {
  formatRunSummary,
  groupPeakFlops,
  runRecord,
  type RunSummary,
  summarizeRun,
  writeRunRecord,
} from "../train/run_summary.ts";
import { checkPrecision, parsePrecision, PRECISIONS } from "../train/precision.ts";
import { type HellaswagHook, train, type TrainResult } from "../train/train.ts";
import {
  BACKEND_HELP,
  type FlagValues,
  numberFlag,
  parseFlags,
  runMain,
  stringFlag,
} from "./flags.ts";

/** The presets past the lecture, as help lists them. */
const AFTER_LECTURE_NAMES = Object.keys(AFTER_LECTURE_PRESETS).join(", ");

/** The flags that are not hyperparameters: what runs, where it writes, how it resumes. */
const RUN_FLAGS = {
  preset: { type: "string" },
  "n-layer": { type: "string" },
  "n-head": { type: "string" },
  "n-embd": { type: "string" },
  "block-size": { type: "string" },
  backend: { type: "string" },
  precision: { type: "string" },
  "hellaswag-data": { type: "string" },
  resume: { type: "string" },
  overwrite: { type: "boolean" },
  "log-dir": { type: "string" },
  timeout: { type: "string" },
  plot: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const HELP = `deno task train [flags]

Trains GPT-2 from scratch as build-nanogpt does, or fine-tunes one (--init-from, as nanoGPT's
init_from='gpt2'). A preset sets every hyperparameter (the settings are printed at start);
every flag overrides it. Under deno task ddp, each rank runs this.
At the end (Ctrl-C included) a summary: time, steps, tokens, losses, HellaSwag with its 95%
interval, tok/s and MFU, and where the files went.

  --preset NAME           ${Object.keys(PRESETS).join(", ")} (default shakespeare);
                          after the lecture: ${AFTER_LECTURE_NAMES} (its settings print at start)
  --backend NAME          ${BACKEND_HELP}
  --precision P           ${PRECISIONS.join(", ")} (fp32 is f32; default f32, bf16 on cuda):
                          tf32 and bf16 run the matmuls on tensor cores (--backend cuda; bf16
                          as autocast: bf16 operands, f32 sums); f16 runs them in half
                          precision (--backend webgpu with shader-f16) with dynamic loss
                          scaling; weights and AdamW stay f32
  --n-layer N, --n-head N, --n-embd N, --block-size N
                          override the model's shape (small test models); with --init-from
                          the shape is the loaded one's
  --hellaswag-data PATH   hellaswag_val.jsonl (default: data/, ../shared/data, or download)
  --resume DIR|latest     continue from a checkpoint folder, or the newest in <log-dir>/checkpoints
                          (its weights, AdamW's moments, the data position; not with --init-from,
                          which takes weights alone)
  --log-dir DIR           log.txt, checkpoints/ and the final model/ (default log); one run at
                          a time, and a fresh run is refused where checkpoints already are
  --overwrite             start over in a --log-dir that holds an earlier run: its
                          checkpoints/, log.txt and model/ are removed first
  --timeout S             DDP: seconds a rendezvous or collective may wait (default 300)
  --plot                  redraw <log-dir>/figure.{html,svg,png} after each evaluation
  -h, --help              this text

Hyperparameters (the default of each preset in brackets):
${hyperparameterHelp(PRESETS)}`;

await runMain(async () => {
  const f = parseFlags(Deno.args, { ...RUN_FLAGS, ...hyperparameterFlags() });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const presetName = stringFlag(f, "preset", "shakespeare");
  const preset = getPreset(presetName);

  // DDP: torchrun's environment makes this process one rank of a group
  const env = distEnvFromEnv();
  const master = !env || env.rank === 0;
  const say = (line: string): void => {
    if (master) console.log(line);
  };
  const world = env?.worldSize ?? 1;
  const { values: h, notes } = resolveHyperparameters(preset, f, world);
  const resume = stringFlag(f, "resume") ?? null;
  // a flag's --init-from with --resume is refused; a preset's is not loaded on resume
  if (notes.has("initFrom")) checkInitFromResume(h.initFrom, resume);
  const logDir = stringFlag(f, "log-dir", "log");
  if (logDir === "") throw new Error('--log-dir expects a folder, found ""');
  const { init, resumedShape } = await startingShape(h, notes, resume, logDir, master);
  say(`preset ${presetName}: ${preset.description}\n${formatHyperparameters(h, notes)}`);
  if (resumedShape) say("resuming a fine-tuning run: its shape and weights are the checkpoint's");
  const asked = stringFlag(f, "precision");
  if (asked !== undefined) parsePrecision(asked); // a typo fails before the backend starts

  const { backend, reason } = await createBackend(stringFlag(f, "backend", "auto"));
  say(`backend: ${backend.name} (${reason})`);
  // the backend's own default (cuda: bf16) where --precision is not given
  const precision = checkPrecision(backend, asked ?? backend.trainingPrecision ?? "f32");
  if (asked === undefined && precision !== "f32") {
    say(
      `precision: ${precision} (the ${backend.name} backend's default; --precision f32 for full precision)`,
    );
  }
  let modelName = h.model;
  if (modelName === "auto" && !init && !resumedShape) {
    modelName = trainsGpt2InMinutes(backend) ? "gpt2" : "tiny";
    say(
      modelName === "gpt2"
        ? "model: gpt2 (124M)"
        : `model: tiny (${
          JSON.stringify(GPT_CONFIGS.tiny)
        }): GPT-2 124M takes over a minute per step on the ${backend.name} backend; --model gpt2 forces it`,
    );
  }
  const config = init
    ? initRunConfig(f, h, init)
    : resumedShape
    ? shapeWithFlags(f, resumedShape, notes.has("vocabSize") ? h.vocabSize : undefined)
    : modelConfig(f, modelName, h.vocabSize, say);
  withSpeedrunOptions(config, h, notes, init !== null || resumedShape !== null);
  if (h.T > config.block_size) {
    throw new Error(`-T ${h.T} exceeds the model's block size ${config.block_size}`);
  }
  const dataPath = await resolveData(h.data, preset.data, master);
  const timeoutS = numberFlag(f, "timeout", Number(Deno.env.get("GPT2_DDP_TIMEOUT") ?? 300), {
    min: 0.1,
  });
  const hellaswag = await hellaswagHook(h.hellaswag, stringFlag(f, "hellaswag-data"), master);
  const about = { model: modelTitle(modelName, undefined, { ...config }), data: dataTitle(h.data) };
  const plot = f.plot ? await plotHook(logDir, about) : null;

  let group: ProcessGroup | undefined;
  if (env) {
    group = await initProcessGroup(env, {
      timeoutMs: timeoutS * 1000,
      transport: Deno.env.get("GPT2_DDP_TRANSPORT") === "tcp" ? "tcp" : "shm",
      backend, // buffers in device memory (CUDA): the gradients go through NCCL
    });
  }
  const startedAt = new Date();
  try {
    const result = await train({
      backend,
      config,
      dataPath,
      B: h.B,
      T: h.T,
      totalBatchSize: h.totalBatchSize!, // made concrete by resolveHyperparameters
      steps: h.steps,
      maxLr: h.maxLr,
      minLr: h.minLr,
      warmupSteps: h.warmupSteps,
      weightDecay: h.weightDecay,
      seed: h.seed,
      optimizer: h.optimizer,
      muonLr: h.muonLr,
      logDir,
      evalEvery: h.evalEvery,
      valBatches: h.valBatches,
      checkpointEvery: h.checkpointEvery,
      keepCheckpoints: h.keepCheckpoints,
      resume,
      initFrom: init,
      overwrite: f.overwrite === true,
      group,
      hellaswag: hellaswag?.hook ?? null,
      precision,
      runInfo: { preset: presetName, initFrom: h.initFrom },
      onEval: plot ?? undefined,
    });
    // nothing left to do: the folder stays as it was, report included, and nothing to sum up
    if (!master || result.nothingLeft) return;
    const summary = summarizeRun(result, {
      wallSeconds: performance.now() / 1000, // since the process started
      tokensPerStep: h.totalBatchSize!,
      totalSteps: h.steps,
      flopsPerToken: flopsPerToken(result.model.numParameters(), config, h.T),
      hellaswagExamples: hellaswag?.examples ?? null,
      peak: groupPeakFlops(backend, precision, world),
      outputs: {
        model: result.modelDir,
        log: join(logDir, "log.txt"),
        report: null,
        figure: plot ? join(logDir, "figure.html") : null,
        checkpoint: result.checkpoint,
      },
    });
    const record = await runRecord({
      command: `deno task train ${Deno.args.join(" ")}`.trim(),
      preset: presetName,
      model: modelName,
      config,
      parameters: result.model.numParameters(),
      data: h.data,
      backend: `${backend.name}: ${reason}`,
      B: h.B,
      T: h.T,
      totalBatchSize: h.totalBatchSize!,
      startedAt,
      summary,
    });
    console.log(`wrote ${await writeRunRecord(logDir, record)}`);
    let report: string | null = null;
    if (!result.stoppedBy) {
      report = await writeReport(logDir, result, summary, {
        preset: presetName,
        model: modelName,
        config,
        backend: `${backend.name}: ${reason}`,
        B: h.B,
        T: h.T,
        data: h.data,
        startedAt,
      });
    }
    if (init && !resume) {
      console.log(
        `\n${
          formatFineTuneLosses(init.name, result.evals) ??
            `fine-tuning from ${init.name}: no evaluation ran (${
              h.steps === 0 ? "--steps 0" : "--eval-every 0"
            }): no val loss before or after`
        }`,
      );
    }
    console.log(`\n${formatRunSummary({ ...summary, outputs: { ...summary.outputs, report } })}`);
  } finally {
    group?.close();
  }
});

/** parseArgs options for every row of the hyperparameter table. */
function hyperparameterFlags(): Record<
  string,
  { type: "string" | "boolean"; short?: string }
> {
  return Object.fromEntries(
    Object.values(HYPERPARAMETERS).map((spec) => {
      const type = spec.kind === "boolean" ? "boolean" as const : "string" as const;
      return [spec.flag, spec.short ? { type, short: spec.short } : { type }];
    }),
  );
}

/**
 * The speedrun's architecture options of the settings `h` put into `config` (only those on,
 * so a GPT-2's config stays as it was). Where weights give the shape (`fromWeights`: fine-tuning
 * or resuming one), the weights' options stand, and a flag asking for others is refused.
 */
function withSpeedrunOptions(
  config: ModelConfig,
  h: Hyperparameters,
  notes: ReadonlyMap<keyof Hyperparameters, string>,
  fromWeights: boolean,
): void {
  const asked = speedrunConfigFields({
    mlp: h.mlp,
    qk_norm: h.qkNorm,
    pos: h.pos,
    zero_init_proj: h.zeroInitProj,
    untie_head: h.untieHead,
  });
  if (fromWeights) {
    const flagged = (["mlp", "qkNorm", "pos", "zeroInitProj", "untieHead"] as const)
      .filter((k) => notes.has(k));
    const have = JSON.stringify(speedrunConfigFields(config));
    if (flagged.length && JSON.stringify(asked) !== have) {
      throw new Error(
        `--${HYPERPARAMETERS[flagged[0]].flag} asks for ${JSON.stringify(asked)}, the weights ` +
          `being loaded have ${have}: their architecture options stand`,
      );
    }
    return;
  }
  Object.assign(config, asked);
}

/** Where a run's shape comes from when not from `--model`; both null when it does. */
interface StartingShape {
  /** What `--init-from` (the flag's or the preset's) loads, on a fresh run. */
  init: InitSource | null;
  /** A resumed fine-tuning run's config, from its checkpoint. */
  resumedShape: GPTConfig | null;
}

/**
 * The run's shape when weights give it: `--init-from`'s on a fresh run, or the checkpoint's
 * when `--resume` continues a fine-tuning run (the preset's `--init-from` is not loaded then).
 * The settings' model becomes that shape's name (`gpt2`, or `custom`); a `--model` that names
 * another shape than `--init-from`'s is an error, and on resume it is the shape asked for (a
 * checkpoint that does not match refuses the run).
 */
async function startingShape(
  h: Hyperparameters,
  notes: Map<keyof Hyperparameters, string>,
  resume: string | null,
  logDir: string,
  master: boolean,
): Promise<StartingShape> {
  const init = resume === null && h.initFrom !== null
    ? await resolveInitFrom(h.initFrom, { progress: master })
    : null;
  let resumedShape = resume === null ? null : await fineTunedShape(resume, logDir, h.initFrom);
  const namedModel = notes.has("model") && h.model !== "auto"; // --model gpt2, say
  if (namedModel) {
    if (init) checkInitShape(init, gptConfig(h.model), `--model ${h.model}`);
    if (resumedShape) resumedShape = gptConfig(h.model, resumedShape.vocab_size);
    return { init, resumedShape };
  }
  const shape = init?.config ?? resumedShape;
  if (shape) {
    const name = shapeName(shape);
    if (name !== h.model) {
      notes.set("model", `the shape ${init ? "--init-from loads" : "resumed"}; preset: ${h.model}`);
    }
    h.model = name;
  }
  return { init, resumedShape };
}

/** The name of the GPT-2 size (or `tiny`) of `shape`'s layers, or `custom`. */
function shapeName(shape: GPTConfig): string {
  const same = (c: GPTConfig) =>
    (["n_layer", "n_head", "n_embd", "block_size"] as const).every((k) => c[k] === shape[k]);
  return Object.keys(GPT_CONFIGS).find((n) => same(GPT_CONFIGS[n])) ?? "custom";
}

/**
 * When `--resume` continues a fine-tuning run (the preset has an `initFrom`, or the
 * checkpoint's settings record one), the checkpoint's config; else null (the run's shape
 * comes from `--model` as for any run).
 */
async function fineTunedShape(
  resume: string,
  logDir: string,
  initFrom: string | null,
): Promise<GPTConfig | null> {
  const state = await readCheckpointState(await resolveResume(resume, logDir), { files: [] });
  const fineTuned = initFrom !== null || typeof state.run.initFrom === "string";
  return fineTuned ? { ...state.config } : null;
}

/**
 * `shape` with the `--n-layer`, `--n-head`, `--n-embd`, `--block-size` given (a checkpoint
 * that does not match refuses the run) and `vocabSize` where given.
 */
function shapeWithFlags(f: FlagValues, shape: GPTConfig, vocabSize?: number): GPTConfig {
  return {
    ...shape,
    n_layer: numberFlag(f, "n-layer", shape.n_layer, { integer: true, min: 1 }),
    n_head: numberFlag(f, "n-head", shape.n_head, { integer: true, min: 1 }),
    n_embd: numberFlag(f, "n-embd", shape.n_embd, { integer: true, min: 1 }),
    block_size: numberFlag(f, "block-size", shape.block_size, { integer: true, min: 1 }),
    vocab_size: vocabSize ?? shape.vocab_size,
  };
}

/**
 * The config of a run from `init`: its shape with `--vocab-size` rows; `--n-layer`,
 * `--n-head`, `--n-embd`, `--block-size`, where given, must be that shape.
 */
function initRunConfig(f: FlagValues, h: Hyperparameters, init: InitSource): GPTConfig {
  const shapeFlags = [
    ["n-layer", "n_layer"],
    ["n-head", "n_head"],
    ["n-embd", "n_embd"],
    ["block-size", "block_size"],
  ] as const;
  const shape = { ...init.config };
  for (const [flag, key] of shapeFlags) {
    shape[key] = numberFlag(f, flag, shape[key], { integer: true, min: 1 });
  }
  // only the flags that disagree are named
  const differ = shapeFlags.filter(([, key]) => shape[key] !== init.config[key]);
  if (differ.length) {
    checkInitShape(init, shape, differ.map(([flag, key]) => `--${flag} ${shape[key]}`).join(" "));
  }
  return initConfig(init, h.vocabSize);
}

/** The named model's config with `--n-layer`, `--n-head`, `--n-embd`, `--block-size` applied. */
function modelConfig(
  f: FlagValues,
  modelName: string,
  vocabSize: number,
  say: (line: string) => void,
): GPTConfig {
  const config = gptConfig(modelName, vocabSize);
  config.n_layer = numberFlag(f, "n-layer", config.n_layer, { integer: true, min: 1 });
  config.n_head = numberFlag(f, "n-head", config.n_head, { integer: true, min: 1 });
  config.n_embd = numberFlag(f, "n-embd", config.n_embd, { integer: true, min: 1 });
  config.block_size = numberFlag(f, "block-size", config.block_size, { integer: true, min: 1 });
  if (config.n_embd % config.n_head !== 0) {
    throw new Error(`--n-embd ${config.n_embd} must be divisible by --n-head ${config.n_head}`);
  }
  if (["n-layer", "n-head", "n-embd", "block-size"].some((k) => f[k] !== undefined)) {
    say(`model shape overridden: ${JSON.stringify(config)}`);
  }
  return config;
}

/**
 * The run's data: a folder of shards as it is; Tiny Shakespeare found (data/, the shared
 * folder, or downloaded); a text file. A missing path is an error naming it, in the words of
 * the preset's kind of data (a text file, or FineWeb-EDU shards to make).
 */
async function resolveData(data: string, presetData: string, master: boolean): Promise<string> {
  // the preset's relative folder is the repository's; a flag's is the working directory's
  const path = data === presetData && data !== TINY_SHAKESPEARE && !isAbsolute(data)
    ? join(REPO_ROOT, data)
    : data;
  if (await isDirectory(path)) return path;
  if (data === TINY_SHAKESPEARE && !(await isFile(path))) {
    return await resolveTinyShakespeare(undefined, { quiet: !master });
  }
  if (presetData === TINY_SHAKESPEARE || (await isFile(path))) {
    return await resolveTinyShakespeare(path, { quiet: !master });
  }
  throw new Error(
    `Expected FineWeb-EDU shards in ${path} (--data DIR), found none: make them with deno task fineweb`,
  );
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * The HellaSwag hook of lib/eval/hellaswag.ts for `limit` examples, with a progress bar on rank
 * 0, and how many examples each evaluation scores over every rank; null when `limit` is 0.
 */
async function hellaswagHook(
  limit: number | "all",
  dataPath: string | undefined,
  master: boolean,
): Promise<{ hook: HellaswagHook; examples: number } | null> {
  if (limit === 0) return null;
  const hs = await import("../eval/hellaswag.ts");
  const path = await hs.resolveHellaswag(dataPath, { quiet: !master });
  const examples = await hs.loadHellaswag(path, limit === "all" ? undefined : limit);
  const hook: HellaswagHook = async (model, ctx) => {
    // rank 0 shows its own share: every rank scores about as many
    const label = ctx.world > 1 ? "hellaswag (rank 0's share)" : "hellaswag";
    const bar = new ProgressBar(label, { unit: "examples", enabled: master });
    try {
      const { counts } = await hs.evaluateHellaswag(model, examples, {
        rank: ctx.rank,
        world: ctx.world,
        onProgress: (done, of) => {
          bar.total = of;
          bar.update(done);
        },
      });
      return { total: counts.total, correctNorm: counts.correctNorm };
    } finally {
      bar.done();
    }
  };
  return { hook, examples: examples.length };
}

/**
 * Redraws the run's figure from log.txt after each evaluation (lib/plot), titled with the
 * run's model and data (run.json is written only at the end).
 */
async function plotHook(logDir: string, about: RunDescription): Promise<() => Promise<void>> {
  const { writeRunFigure } = await import("../plot/mod.ts");
  return async () => {
    await writeRunFigure(join(logDir, "log.txt"), logDir, { about });
  };
}

/**
 * Writes `report.html` into the log folder: settings, throughput and MFU (as the summary
 * measures them), the figure, the samples. Returns its path.
 */
async function writeReport(
  logDir: string,
  result: TrainResult,
  summary: RunSummary,
  run: {
    preset: string;
    model: string;
    config: GPTConfig;
    backend: string;
    B: number;
    T: number;
    data: string;
    startedAt: Date;
  },
): Promise<string> {
  // one step only: its own rate, warm-up and all, rather than none
  const tokensPerSec = summary.tokensPerSec ?? result.history[0]?.tokensPerSec ?? 0;
  const parameters = result.model.numParameters();
  const path = await writeRunReport(logDir, {
    command: `deno task train ${Deno.args.join(" ")}`.trim(),
    preset: run.preset,
    data: run.data,
    model: run.model,
    modelConfig: { ...run.config },
    parameters,
    training: { B: run.B, T: run.T, steps: result.history.length },
    backend: run.backend,
    throughput: {
      tokensPerSec,
      flopsPerToken: summary.flopsPerToken,
      peakFlops: summary.peak?.flops,
    },
    samples: result.evals.flatMap((e) => e.samples.map((text) => ({ step: e.step, text }))),
    startedAt: run.startedAt.toISOString(),
    durationSeconds: (Date.now() - run.startedAt.getTime()) / 1000,
  });
  console.log(`wrote the run report ${path.path}`);
  return path.path;
}
