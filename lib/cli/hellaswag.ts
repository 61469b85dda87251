/**
 * `deno task hellaswag`: a GPT-2 folder (or `gpt2` from the hub) on HellaSwag's validation
 * set, completion style, as build-nanogpt's `hellaswag.py`: prints acc and acc_norm, each
 * with its 95% Wilson interval (lib/eval/wilson.ts), after a progress bar with an ETA.
 *
 * @module
 */

import {
  evaluateHellaswag,
  loadHellaswag,
  resolveHellaswag,
  sumCounts,
} from "../eval/hellaswag.ts";
import { ProgressBar } from "../io/progress.ts";
import { formatAccuracy, wilsonInterval } from "../eval/wilson.ts";
import {
  BACKEND_HELP,
  loadModelFromFlags,
  numberFlag,
  parseFlags,
  runMain,
  stringFlag,
} from "./flags.ts";

const HELP = `deno task hellaswag [flags]

  --weights DIR|NAME   a Hugging Face GPT-2 folder (model.safetensors + config.json), a trained
                       log/model or checkpoint folder, an llm.c model FILE.bin, or gpt2,
                       gpt2-medium, gpt2-large, gpt2-xl from the hub (default gpt2)
  --data PATH          hellaswag_val.jsonl (default: data/hellaswag/, ../shared/data/hellaswag/,
                       else downloaded from rowanz/hellaswag)
  --limit N            only the first N examples (default: all 10,042)
  --backend NAME       ${BACKEND_HELP}
  --json               print the result as one JSON object (the 95% intervals as
                       accCi95 and accNormCi95: [low, high])
  -h, --help           this text`;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    weights: { type: "string" },
    data: { type: "string" },
    limit: { type: "string" },
    backend: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const log = f.json ? console.error : console.log; // keep stdout pure JSON with --json
  // the examples first: a bad --data or --limit is said before a model is downloaded
  const path = await resolveHellaswag(stringFlag(f, "data"), { quiet: Boolean(f.json) });
  const limit = f.limit === undefined
    ? undefined
    : numberFlag(f, "limit", 0, { integer: true, min: 1 });
  const examples = await loadHellaswag(path, limit);
  const { model } = await loadModelFromFlags(f, log);

  const bar = new ProgressBar("hellaswag", { total: examples.length, unit: "examples" });
  const start = performance.now();
  const { counts } = await evaluateHellaswag(model, examples, {
    onProgress: (done) => bar.update(done),
  });
  bar.done();
  const seconds = (performance.now() - start) / 1000;
  const result = sumCounts([counts]);
  const rate = result.total / seconds;
  if (f.json) {
    const ci = (correct: number): [number, number] => {
      const { low, high } = wilsonInterval(correct, result.total);
      return [low, high];
    };
    console.log(JSON.stringify({
      ...result,
      accCi95: ci(result.correct),
      accNormCi95: ci(result.correctNorm),
      seconds,
      examplesPerSecond: rate,
    }));
    return;
  }
  console.log(formatAccuracy("HellaSwag acc", result.correct, result.total));
  console.log(formatAccuracy("HellaSwag acc_norm", result.correctNorm, result.total));
  console.log(`${rate.toFixed(2)} examples/s on the ${model.backend.name} backend`);
});
