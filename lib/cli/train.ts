/**
 * `deno task train`: the lecture's section-1 run by default (Tiny Shakespeare, B=4, T=64,
 * 50 steps, from scratch), every constant a flag.
 *
 * @module
 */

import { createBackend, trainsGpt2InMinutes } from "../backends/mod.ts";
import { resolveTinyShakespeare } from "../datasets.ts";
import { GPT_CONFIGS, gptConfig } from "../gpt.ts";
import { train } from "../train.ts";
import { numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task train [flags]

Trains GPT-2 from scratch on a text file, as the lecture's first sections do.

  --model NAME            ${Object.keys(GPT_CONFIGS).join(", ")}, or auto (default): gpt2 (124M)
                          where the backend trains it in minutes, tiny otherwise
  --vocab-size N          50304 (default: 50257 padded to a multiple of 128) or 50257
  --backend NAME          auto (default) or cpu
  --data PATH             a text file; default Tiny Shakespeare (data/, ../shared/data, or download)
  --steps N               optimizer steps (default 50)
  -B, --batch-size N      micro batch size (default 4)
  -T, --seq-len N         sequence length (default 64)
  --total-batch-size N    tokens per step; B*T*k gives k gradient-accumulation steps (default B*T)
  --max-lr X              peak learning rate (default 6e-4)
  --min-lr X              final learning rate (default max-lr / 10)
  --warmup-steps N        linear warmup steps (default 10)
  --weight-decay X        AdamW weight decay on 2-D parameters (default 0.1)
  --seed N                init seed (default 1337)
  --log-dir DIR           log.txt and the final model/ go here (default log)
  -h, --help              this text`;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    model: { type: "string" },
    "vocab-size": { type: "string" },
    backend: { type: "string" },
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
    "log-dir": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const { backend, reason } = await createBackend(stringFlag(f, "backend", "auto"));
  console.log(`backend: ${backend.name} (${reason})`);

  let modelName = stringFlag(f, "model", "auto");
  if (modelName === "auto") {
    modelName = trainsGpt2InMinutes(backend) ? "gpt2" : "tiny";
    console.log(
      modelName === "gpt2"
        ? "model: gpt2 (124M)"
        : `model: tiny (${
          JSON.stringify(GPT_CONFIGS.tiny)
        }): GPT-2 124M takes over a minute per step on the ${backend.name} backend; --model gpt2 forces it`,
    );
  }
  const vocabSize = numberFlag(f, "vocab-size", 50304, { integer: true, min: 50257 });
  const config = gptConfig(modelName, vocabSize);
  const B = numberFlag(f, "batch-size", 4, { integer: true, min: 1 });
  const T = numberFlag(f, "seq-len", 64, { integer: true, min: 1 });
  if (T > config.block_size) {
    throw new Error(`-T ${T} exceeds the model's block size ${config.block_size}`);
  }
  const maxLr = numberFlag(f, "max-lr", 6e-4, { min: 0 });
  await train({
    backend,
    config,
    dataPath: await resolveTinyShakespeare(stringFlag(f, "data")),
    B,
    T,
    totalBatchSize: numberFlag(f, "total-batch-size", B * T, { integer: true, min: 1 }),
    steps: numberFlag(f, "steps", 50, { integer: true, min: 1 }),
    maxLr,
    minLr: numberFlag(f, "min-lr", maxLr * 0.1, { min: 0 }),
    warmupSteps: numberFlag(f, "warmup-steps", 10, { integer: true, min: 0 }),
    weightDecay: numberFlag(f, "weight-decay", 0.1, { min: 0 }),
    seed: numberFlag(f, "seed", 1337, { integer: true }),
    logDir: stringFlag(f, "log-dir", "log"),
  });
});
