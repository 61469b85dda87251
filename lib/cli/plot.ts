/**
 * `deno task plot LOG... [--out DIR] [--label NAME...]`: build-nanogpt's results figure (loss
 * and HellaSwag against step, with the GPT-2 and GPT-3 baselines) from training logs in our,
 * build-nanogpt's or llm.c's format, as HTML, SVG and PNG.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { checkOutputFolder, isOsError } from "../io/files.ts";
import { parseModelSize, plotLogs, PNG_SCALE_MAX, PNG_SCALE_MIN } from "../plot/mod.ts";
import { numberFlag, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task plot LOG... [flags]

Draws build-nanogpt's two-panel figure from training logs: train/val loss against step (log
scale) with the OpenAI GPT-2 checkpoint's val loss, and HellaSwag acc_norm with GPT-2's and
GPT-3's scores. Several logs overlay. Reads our log.txt, build-nanogpt's log.txt
("{step} train {loss}") and llm.c's main.log ("s:{step} trl:{loss}"), detected per file.

  --out DIR        where figure.html, figure.svg and figure.png go (default plots)
  --label NAME     a legend label per log, in order (default: each log's folder name)
  --model SIZE     baselines for 124M, 350M, 774M or 1558M (or gpt2, gpt2-medium, ...); default:
                   the model in the first log's run.json, else 124M
  --title TEXT     the figure's title
  --scale X        PNG pixels per SVG unit, 0.1 to 8 (default 2)
  -h, --help       this text`;

await runMain(async () => {
  let parsed;
  // Not flags.ts's parseFlags: logs are positional and --label repeats.
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      strict: true,
      options: {
        out: { type: "string" },
        label: { type: "string", multiple: true },
        model: { type: "string" },
        title: { type: "string" },
        scale: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new Error(`${(e as Error).message} (see --help)`);
  }
  const { values, positionals: logs } = parsed;
  const { label: labels, ...f } = values; // the one flag that repeats
  if (f.help) {
    console.log(HELP);
    return;
  }
  if (logs.length === 0) throw new Error("Expected one or more log files, found none (see --help)");
  const out = stringFlag(f, "out", "plots");
  await checkOutputFolder("--out", out);
  const written = await plotLogs(logs, out, {
    labels,
    // unset: plotLogs takes the size from the log's run.json (124M where there is none)
    size: f.model === undefined ? undefined : parseModelSize(stringFlag(f, "model", "124M")),
    title: stringFlag(f, "title"),
    pngScale: numberFlag(f, "scale", 2, { min: PNG_SCALE_MIN, max: PNG_SCALE_MAX }),
  }).catch((e) => {
    // the logs' own errors name them; an OS error left is one of writing the figure
    if (!isOsError(e)) throw e;
    throw new Error(`--out ${out}: cannot write the figure there (${(e as Error).message})`);
  });
  for (const run of written.runs) {
    const { train, val, hella } = run.log;
    console.log(
      `${run.path}: ${run.log.format} log, "${run.label}": ${train.steps.length} train, ${val.steps.length} val, ${hella.steps.length} hella points`,
    );
    for (const w of run.log.warnings.slice(0, 5)) console.error(`warning: ${w}`);
    if (run.log.warnings.length > 5) {
      console.error(`warning: ... and ${run.log.warnings.length - 5} more skipped lines`);
    }
  }
  console.log(written.summary);
  console.log(`wrote ${written.html}, ${written.svg}, ${written.png}`);
});
