/**
 * `deno task train`: build-nanogpt's training run from a preset (`shakespeare` by default,
 * the lecture's section-1 run; `gpt2-124M-fineweb`, the full GPT-2 124M recipe), every
 * constant a flag. Under `deno task ddp` each rank runs this file with torchrun's
 * environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
 *
 * @module
 */

import { join } from "node:path";
import { createBackend, trainsGpt2InMinutes } from "../backends/mod.ts";
import { REPO_ROOT, resolveTinyShakespeare } from "../data/datasets.ts";
import { distEnvFromEnv, initProcessGroup, type ProcessGroup } from "../ddp/process_group.ts";
import { GPT_CONFIGS, type GPTConfig, gptConfig } from "../model/gpt.ts";
import { flopsPerToken, writeRunReport } from "../plot/report.ts";
import { formatPreset, getPreset, PRESETS } from "../train/presets.ts";
import {
  checkPrecision,
  type HellaswagHook,
  parsePrecision,
  PRECISIONS,
  train,
  type TrainResult,
} from "../train/train.ts";
import { type FlagValues, numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task train [flags]

Trains GPT-2 from scratch as build-nanogpt does. A preset sets every constant (printed at
start); every flag overrides it. Under deno task ddp, each rank runs this.

  --preset NAME           ${Object.keys(PRESETS).join(", ")} (default shakespeare)
  --model NAME            ${Object.keys(GPT_CONFIGS).join(", ")}, or auto: gpt2 (124M)
                          where the backend trains it in minutes, tiny otherwise
  --n-layer N, --n-head N, --n-embd N, --block-size N
                          override the model's shape (small test models)
  --vocab-size N          50304 (50257 padded to a multiple of 128) or 50257
  --backend NAME          auto (default: the fastest present), native, webgpu or cpu
  --precision P           ${PRECISIONS.join(" or ")} (default f32): f16 runs the matmuls in half
                          precision (--backend webgpu on an adapter with shader-f16) with
                          dynamic loss scaling; weights and AdamW stay f32
  --data PATH             a text file (90% train, 10% val) or a folder of .npy shards;
                          default Tiny Shakespeare, or data/edu_fineweb10B for FineWeb
  --steps N               optimizer steps (max_steps, the end of the cosine)
  -B, --batch-size N      micro batch size
  -T, --seq-len N         sequence length
  --total-batch-size N    tokens per step, a multiple of B*T*world (the rest: accumulation)
  --max-lr X / --min-lr X peak and final learning rate
  --warmup-steps N        linear warmup steps
  --weight-decay X        AdamW weight decay on 2-D parameters
  --seed N                init seed
  --eval-every N          val loss, HellaSwag and samples every N steps and at the last (0: never)
  --val-batches N         batches per validation loss
  --hellaswag N|all       HellaSwag examples per evaluation (0: off)
  --hellaswag-data PATH   hellaswag_val.jsonl (default: data/, ../shared/data, or download)
  --checkpoint-every N    checkpoint every N steps and at the end (0: only at the end)
  --keep-checkpoints K    keep the newest K checkpoints
  --resume DIR|latest     continue from a checkpoint folder, or the newest in <log-dir>/checkpoints
  --log-dir DIR           log.txt, checkpoints/ and the final model/ (default log)
  --timeout S             DDP: seconds a rendezvous or collective may wait (default 300)
  --plot                  redraw <log-dir>/figure.{html,svg,png} after each evaluation
  -h, --help              this text`;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    preset: { type: "string" },
    model: { type: "string" },
    "n-layer": { type: "string" },
    "n-head": { type: "string" },
    "n-embd": { type: "string" },
    "block-size": { type: "string" },
    "vocab-size": { type: "string" },
    backend: { type: "string" },
    precision: { type: "string" },
    data: { type: "string" },
    steps: { type: "string" },
    "batch-size": { type: "string", short: "B" },
    "seq-len": { type: "string", short: "T" },
    "total-batch-size": { type: "string" },
    "max-lr": { type: "string" },
    "min-lr": { type: "string" },
    "warmup-steps": { type: "string" },
    "weight-decay": { type: "string" },
    seed: { type: "string" },
    "eval-every": { type: "string" },
    "val-batches": { type: "string" },
    hellaswag: { type: "string" },
    "hellaswag-data": { type: "string" },
    "checkpoint-every": { type: "string" },
    "keep-checkpoints": { type: "string" },
    resume: { type: "string" },
    "log-dir": { type: "string" },
    timeout: { type: "string" },
    plot: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
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
  say(formatPreset(presetName, preset));
  const precision = parsePrecision(stringFlag(f, "precision", "f32"));

  const { backend, reason } = await createBackend(stringFlag(f, "backend", "auto"));
  say(`backend: ${backend.name} (${reason})`);
  checkPrecision(backend, precision); // before any data is read
  let modelName = stringFlag(f, "model", preset.model);
  if (modelName === "auto") {
    modelName = trainsGpt2InMinutes(backend) ? "gpt2" : "tiny";
    say(
      modelName === "gpt2"
        ? "model: gpt2 (124M)"
        : `model: tiny (${
          JSON.stringify(GPT_CONFIGS.tiny)
        }): GPT-2 124M takes over a minute per step on the ${backend.name} backend; --model gpt2 forces it`,
    );
  }
  const vocabSize = numberFlag(f, "vocab-size", preset.vocabSize, { integer: true, min: 50257 });
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
  const B = numberFlag(f, "batch-size", preset.B, { integer: true, min: 1 });
  const T = numberFlag(f, "seq-len", preset.T, { integer: true, min: 1 });
  if (T > config.block_size) {
    throw new Error(`-T ${T} exceeds the model's block size ${config.block_size}`);
  }
  const world = env?.worldSize ?? 1;
  const maxLr = numberFlag(f, "max-lr", preset.maxLr, { min: 0 });
  const logDir = stringFlag(f, "log-dir", "log");
  const dataPath = await resolveData(f, preset.data, master);
  const timeoutS = numberFlag(f, "timeout", Number(Deno.env.get("GPT2_DDP_TIMEOUT") ?? 300), {
    min: 0.1,
  });
  const hellaswag = await hellaswagHook(f, preset.hellaswag, master);
  const plot = f.plot ? await plotHook(logDir) : null;

  let group: ProcessGroup | undefined;
  if (env) {
    group = await initProcessGroup(env, {
      timeoutMs: timeoutS * 1000,
      transport: Deno.env.get("GPT2_DDP_TRANSPORT") === "tcp" ? "tcp" : "shm",
    });
  }
  const startedAt = new Date();
  try {
    const result = await train({
      backend,
      config,
      dataPath,
      B,
      T,
      totalBatchSize: numberFlag(f, "total-batch-size", preset.totalBatchSize ?? B * T * world, {
        integer: true,
        min: 1,
      }),
      steps: numberFlag(f, "steps", preset.steps, { integer: true, min: 1 }),
      maxLr,
      minLr: numberFlag(f, "min-lr", f["max-lr"] !== undefined ? maxLr * 0.1 : preset.minLr, {
        min: 0,
      }),
      warmupSteps: numberFlag(f, "warmup-steps", preset.warmupSteps, { integer: true, min: 0 }),
      weightDecay: numberFlag(f, "weight-decay", preset.weightDecay, { min: 0 }),
      seed: numberFlag(f, "seed", preset.seed, { integer: true }),
      logDir,
      evalEvery: numberFlag(f, "eval-every", preset.evalEvery, { integer: true, min: 0 }),
      valBatches: numberFlag(f, "val-batches", preset.valBatches, { integer: true, min: 1 }),
      checkpointEvery: numberFlag(f, "checkpoint-every", preset.checkpointEvery, {
        integer: true,
        min: 0,
      }),
      keepCheckpoints: numberFlag(f, "keep-checkpoints", preset.keepCheckpoints, {
        integer: true,
        min: 1,
      }),
      resume: stringFlag(f, "resume") ?? null,
      group,
      hellaswag,
      precision,
      runInfo: { preset: presetName },
      onEval: plot ?? undefined,
    });
    if (master && logDir && !result.stoppedBy) {
      await writeReport(logDir, result, {
        preset: presetName,
        model: modelName,
        config,
        backend: `${backend.name}: ${reason}`,
        B,
        T,
        startedAt,
      });
    }
  } finally {
    group?.close();
  }
});

async function resolveData(f: FlagValues, kind: string, master: boolean): Promise<string> {
  const path = stringFlag(f, "data");
  if (path && !(await isFile(path))) {
    try {
      // a folder of .npy shards, whatever the preset
      if ((await Deno.stat(path)).isDirectory) return path;
    } catch {
      // neither a file nor a folder: the text-file path below names it
    }
  }
  if (kind === "shakespeare" || (path && (await isFile(path)))) {
    return await resolveTinyShakespeare(path, { quiet: !master });
  }
  const dir = path ?? join(REPO_ROOT, "data", "edu_fineweb10B");
  try {
    if ((await Deno.stat(dir)).isDirectory) return dir;
  } catch {
    // reported below
  }
  throw new Error(
    `Expected FineWeb-EDU shards in ${dir} (--data DIR), found none: make them with deno task fineweb`,
  );
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** The HellaSwag hook of lib/eval/hellaswag.ts, or null when off. */
async function hellaswagHook(
  f: FlagValues,
  presetOn: boolean,
  master: boolean,
): Promise<HellaswagHook | null> {
  const raw = stringFlag(f, "hellaswag", presetOn ? "all" : "0");
  const limit = raw === "all" ? Infinity : numberFlag({ hellaswag: raw }, "hellaswag", 0, {
    integer: true,
    min: 0,
  });
  if (limit === 0) return null;
  const hs = await import("../eval/hellaswag.ts");
  const path = await hs.resolveHellaswag(stringFlag(f, "hellaswag-data"), { quiet: !master });
  const examples = await hs.loadHellaswag(path, Number.isFinite(limit) ? limit : undefined);
  return async (model, ctx) => {
    const { counts } = await hs.evaluateHellaswag(model, examples, {
      rank: ctx.rank,
      world: ctx.world,
    });
    return { total: counts.total, correctNorm: counts.correctNorm };
  };
}

/** Redraws the run's figure from log.txt after each evaluation (lib/plot). */
async function plotHook(logDir: string): Promise<() => Promise<void>> {
  const { writeRunFigure } = await import("../plot/mod.ts");
  return async () => {
    await writeRunFigure(join(logDir, "log.txt"), logDir);
  };
}

/** Writes `report.html` into the log folder: settings, throughput, the figure, the samples. */
async function writeReport(
  logDir: string,
  result: TrainResult,
  run: {
    preset: string;
    model: string;
    config: GPTConfig;
    backend: string;
    B: number;
    T: number;
    startedAt: Date;
  },
): Promise<void> {
  const steady = result.history.slice(1); // step 0 pays for warm-up
  const tokensPerSec = steady.length
    ? steady.reduce((a, s) => a + s.tokensPerSec, 0) / steady.length
    : result.history[0]?.tokensPerSec ?? 0;
  const parameters = result.model.numParameters();
  const path = await writeRunReport(logDir, {
    command: `deno task train ${Deno.args.join(" ")}`.trim(),
    preset: run.preset,
    model: run.model,
    modelConfig: { ...run.config },
    parameters,
    training: { B: run.B, T: run.T, steps: result.history.length },
    backend: run.backend,
    throughput: { tokensPerSec, flopsPerToken: flopsPerToken(parameters, run.config, run.T) },
    samples: result.evals.flatMap((e) => e.samples.map((text) => ({ step: e.step, text }))),
    startedAt: run.startedAt.toISOString(),
    durationSeconds: (Date.now() - run.startedAt.getTime()) / 1000,
  });
  console.log(`wrote the run report ${path.path}`);
}
