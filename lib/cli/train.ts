/**
 * `deno task train`: build-nanogpt's training run from a preset (`shakespeare` by default,
 * the lecture's section-1 run; `gpt2-124M-fineweb`, the full GPT-2 124M recipe;
 * `shakespeare-finetune`, nanoGPT's fine-tuning of OpenAI's GPT-2), every constant a flag;
 * `--init-from` starts from loaded weights (lib/train/init_from.ts) instead of random ones.
 * The flags are resolved into the run's settings by lib/train/settings.ts, the run is
 * lib/train/train.ts; this file reads the flags, prints, and writes the run's record, report
 * and summary at its end. Under `deno task ddp` each rank runs this file with torchrun's
 * environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
 *
 * @module
 */

import { join } from "node:path";
import { createBackend } from "../backends/mod.ts";
import { distEnvFromEnv, initProcessGroup } from "../ddp/process_group.ts";
import { flopsPerToken, writeRunReport } from "../plot/report.ts";
import { dataTitle, modelTitle, type RunDescription } from "../plot/run_meta.ts";
import { formatFineTuneLosses } from "../train/init_from.ts";
import { checkPrecision, PRECISIONS } from "../train/precision.ts";
import {
  formatRunSummary,
  groupPeakFlops,
  type RunFacts,
  runRecord,
  type RunSummary,
  summarizeRun,
  writeRunRecord,
} from "../train/run_summary.ts";
import {
  AFTER_LECTURE_PRESETS,
  formatHyperparameters,
  hyperparameterHelp,
  PRESETS,
  resolveData,
  resolveSettings,
  runModel,
  startingShape,
  trainFlagOptions,
} from "../train/settings.ts";
import { hellaswagHook, train, type TrainResult } from "../train/train.ts";
import { BACKEND_HELP, parseFlags, runMain } from "./flags.ts";

/** The lecture's presets, as help lists them: a few a line, under the flag's text. */
const PRESET_NAMES = Object.keys(PRESETS).reduce((lines: string[], name, i, all) => {
  const item = i < all.length - 1 ? `${name},` : name;
  const last = lines.at(-1);
  if (last !== undefined && last.length + 1 + item.length <= 70) {
    lines[lines.length - 1] += ` ${item}`;
  } else lines.push(item);
  return lines;
}, []).join(`\n${" ".repeat(26)}`);

/** The presets past the lecture, as help lists them. */
const AFTER_LECTURE_NAMES = Object.keys(AFTER_LECTURE_PRESETS).join(", ");

const HELP = `deno task train [flags]

Trains GPT-2 from scratch as build-nanogpt does, or fine-tunes one (--init-from, as nanoGPT's
init_from='gpt2'). A preset sets every hyperparameter (the settings are printed at start);
every flag overrides it. Under deno task ddp, each rank runs this.
Ctrl-C, SIGTERM and SIGHUP stop after the current step with a checkpoint; an error after a step
saves one too and prints the command that continues the run.
At the end (Ctrl-C included) a summary: time, steps, tokens, losses, HellaSwag with its 95%
interval, tok/s and MFU, and where the files went.

  --preset NAME           ${PRESET_NAMES} (default shakespeare);
                          after the lecture: ${AFTER_LECTURE_NAMES} (its settings print at start)
  --backend NAME          ${BACKEND_HELP}
  --precision P           ${PRECISIONS.join(", ")} (fp32 is f32; default f32, bf16 on cuda):
                          tf32 and bf16 run the matmuls on tensor cores (--backend cuda; bf16
                          as autocast: bf16 operands, f32 sums, on the CPU too with --backend
                          native); f16 runs them in half
                          precision (--backend webgpu with shader-f16) with dynamic loss
                          scaling; weights and AdamW stay f32
  --n-layer N, --n-head N, --n-embd N, --block-size N
                          override the model's shape (small test models); with --init-from
                          the shape is the loaded one's; gpt2-124M-fineweb-T2048 sets
                          --block-size 2048 (GPT-3's context)
  --hellaswag-data PATH   hellaswag_val.jsonl (default: data/, ../shared/data, or download)
  --resume DIR|latest     continue from a checkpoint folder, or the one last written or resumed
                          in <log-dir>/checkpoints (its HEAD): its weights, AdamW's moments,
                          the data position (not with --init-from, which takes weights alone);
                          changed schedule flags are listed, other data or batch settings refused
  --log-dir DIR           log.txt, checkpoints/ and the final model/ (default log); one run at
                          a time, and a fresh run is refused where an earlier run's outputs are
  --overwrite             start over in a --log-dir that holds an earlier run: its
                          checkpoints/, log.txt, model/, run.json, figure and report go first
  --timeout S             DDP: seconds a rendezvous or collective may wait (default 300)
  --plot                  redraw <log-dir>/figure.{html,svg,png} after each evaluation
  -h, --help              this text

Hyperparameters (the default of each preset in brackets):
${hyperparameterHelp(PRESETS)}`;

await runMain(async () => {
  const flags = parseFlags(Deno.args, trainFlagOptions());
  if (flags.help) {
    console.log(HELP);
    return;
  }
  // DDP: torchrun's environment makes this process one rank of a group
  const env = distEnvFromEnv();
  const master = !env || env.rank === 0;
  const say = (line: string): void => {
    if (master) console.log(line);
  };
  const run = resolveSettings(flags, env?.worldSize ?? 1);
  const h = run.values;
  const start = await startingShape(run, { progress: master });
  say(
    `preset ${run.presetName}: ${run.preset.description}\n${formatHyperparameters(h, run.notes)}`,
  );
  if (start.resumedShape) {
    say("resuming a fine-tuning run: its shape and weights are the checkpoint's");
  }

  const { backend, reason } = await createBackend(run.backend);
  say(`backend: ${backend.name} (${reason})`);
  // the backend's own default (cuda: bf16) where --precision is not given
  const precision = checkPrecision(backend, run.precision ?? backend.trainingPrecision ?? "f32");
  if (run.precision === null && precision !== "f32") {
    say(
      `precision: ${precision} (the ${backend.name} backend's default; --precision f32 for full precision)`,
    );
  }
  const model = runModel(run, start, backend, say);
  const dataPath = await resolveData(run, master);
  const hellaswag = await hellaswagHook(h.hellaswag, run.hellaswagData, master);
  const about = {
    model: modelTitle(model.name, undefined, { ...model.config }),
    data: dataTitle(h.data),
  };
  const plot = run.plot ? await plotHook(run.logDir, about) : null;
  const group = env
    ? await initProcessGroup(env, {
      timeoutMs: run.timeoutS * 1000,
      transport: run.transport,
      backend, // buffers in device memory (CUDA): the gradients go through NCCL
    })
    : undefined;
  const startedAt = new Date();
  try {
    const result = await train({
      ...h,
      backend,
      config: model.config,
      dataPath,
      logDir: run.logDir,
      resume: run.resume,
      initFrom: start.init,
      overwrite: run.overwrite,
      group,
      hellaswag: hellaswag?.hook ?? null,
      precision,
      runInfo: { preset: run.presetName, initFrom: h.initFrom },
      resumeCommand: resumeCommand(Deno.args, env?.worldSize ?? null),
      onEval: plot ?? undefined,
    });
    // nothing left to do: the folder stays as it was, report included, and nothing to sum up
    if (!master || result.nothingLeft) return;
    const summary = summarizeRun(result, {
      wallSeconds: performance.now() / 1000, // since the process started
      tokensPerStep: h.totalBatchSize,
      totalSteps: h.steps,
      flopsPerToken: flopsPerToken(result.model.numParameters(), model.config, h.T),
      hellaswagExamples: hellaswag?.examples ?? null,
      peak: groupPeakFlops(backend, precision, env?.worldSize ?? 1),
      outputs: {
        model: result.modelDir,
        log: join(run.logDir, "log.txt"),
        report: null,
        figure: plot ? join(run.logDir, "figure.html") : null,
        checkpoint: result.checkpoint,
      },
    });
    const facts: RunFacts = {
      command: `deno task train ${Deno.args.join(" ")}`.trim(),
      preset: run.presetName,
      model: model.name,
      config: model.config,
      parameters: result.model.numParameters(),
      data: h.data,
      backend: `${backend.name}: ${reason}`,
      B: h.B,
      T: h.T,
      totalBatchSize: h.totalBatchSize,
      startedAt,
    };
    console.log(
      `wrote ${await writeRunRecord(run.logDir, await runRecord({ ...facts, summary }))}`,
    );
    const report = result.stoppedBy ? null : await writeReport(run.logDir, result, summary, facts);
    if (start.init) {
      console.log(
        `\n${
          formatFineTuneLosses(start.init.name, result.evals) ??
            `fine-tuning from ${start.init.name}: no evaluation ran (${
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

/**
 * This command as a stopped run continues it: its flags without `--resume` and `--overwrite`
 * (the message appends `--resume <checkpoint>`); under DDP, the launcher's command.
 */
function resumeCommand(args: readonly string[], world: number | null): string {
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--overwrite" || args[i].startsWith("--resume=")) continue;
    if (args[i] === "--resume") {
      i++;
      continue;
    }
    kept.push(/^[\w./:=,@+-]+$/.test(args[i]) ? args[i] : `'${args[i].replaceAll("'", "'\\''")}'`);
  }
  const launch = world === null ? "deno task train" : `deno task ddp --nproc-per-node ${world} --`;
  return [launch, ...kept].join(" ");
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
  run: RunFacts,
): Promise<string> {
  // one step only: its own rate, warm-up and all, rather than none
  const tokensPerSec = summary.tokensPerSec ?? result.history[0]?.tokensPerSec ?? 0;
  const path = await writeRunReport(logDir, {
    command: run.command,
    preset: run.preset,
    data: run.data,
    model: run.model,
    modelConfig: { ...run.config },
    parameters: run.parameters,
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
