/**
 * build-nanogpt's evaluation in the loop: the validation loss over a freshly reset loader
 * (averaged over ranks, with a progress bar on rank 0), HellaSwag through a hook (its
 * acc_norm printed with a 95% interval), and four samples from the prompt
 * "Hello, I'm a language model," with a generator seeded 42 + rank.
 *
 * @module
 */

import type { ProcessGroup } from "../ddp/process_group.ts";
import type { TokenLoader } from "../data/shard_loader.ts";
import { decodePadded, getGpt2Tokenizer } from "../data/tokenizer.ts";
import { ProgressBar } from "../io/progress.ts";
import type { GPT } from "../model/gpt.ts";
import type { Generator } from "../model/random.ts";
import { generate } from "../model/sample.ts";
import { noGrad, Tensor } from "../model/tensor.ts";
import type { EvalStats, TrainOptions } from "./options.ts";
import { formatAccuracy } from "./wilson.ts";

/** The prompt build-nanogpt samples from at each evaluation. */
export const SAMPLE_PROMPT = "Hello, I'm a language model,";

/** Validation loss over a reset loader (averaged over ranks), HellaSwag, and 4 samples. */
export async function evaluate(
  model: GPT,
  valLoader: TokenLoader,
  o: TrainOptions,
  group: ProcessGroup,
  step: number,
  sampleRng: Generator,
): Promise<EvalStats> {
  const { backend, B, T } = o;
  const rank = group.rank, world = group.worldSize;
  const valLossSteps = o.valBatches ?? 20;
  valLoader.reset();
  let valLossAccum = 0;
  // GPT-2 124M's 20 batches take minutes on a CPU: a bar with an ETA (rank 0 speaks for all)
  const bar = new ProgressBar("validation", {
    total: valLossSteps,
    unit: "batches",
    enabled: rank === 0,
  });
  try {
    await noGrad(async () => {
      for (let i = 0; i < valLossSteps; i++) {
        const { x, y } = valLoader.nextBatch();
        const { loss } = model.forward(
          Tensor.from(backend, x, [B, T]),
          Tensor.from(backend, y, [B, T]),
        );
        valLossAccum += (await loss!.item()) / valLossSteps;
        bar.tick();
      }
    });
  } finally {
    bar.done();
  }
  if (world > 1) {
    const v = new Float32Array([valLossAccum]);
    await group.allReduce([v], "avg");
    valLossAccum = v[0];
  }

  let hellaAcc: number | null = null;
  if (o.hellaswag) {
    const c = await o.hellaswag(model, { rank, world, step });
    const v = new Float32Array([c.total, c.correctNorm]);
    if (world > 1) await group.allReduce([v], "sum");
    hellaAcc = v[0] > 0 ? v[1] / v[0] : 0;
    // the interval on the terminal only: log.txt keeps build-nanogpt's `{step} hella {acc}`
    if (rank === 0) console.log(formatAccuracy("HellaSwag acc_norm", v[1], v[0]));
  }

  // once in a while generate from the model (except step 0, which is noise)
  const samples: string[] = [];
  const lastStep = step === o.steps - 1;
  if ((step > 0 && step % (o.evalEvery ?? 1) === 0) || lastStep) {
    const enc = getGpt2Tokenizer();
    const prompt = enc.encode(SAMPLE_PROMPT);
    sampleRng.manualSeed(42 + rank);
    const maxLength = Math.min(o.sampleLength ?? 32, model.config.block_size);
    const rows = await generate(model, Array.from({ length: 4 }, () => prompt), {
      maxLength,
      topK: 50,
      generator: sampleRng,
    });
    rows.forEach((tokens, i) => {
      const text = decodePadded(tokens);
      samples.push(text);
      console.log(`rank ${rank} sample ${i}: ${text}`);
    });
  }
  return { step, valLoss: valLossAccum, hellaAcc, samples };
}
