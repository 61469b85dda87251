/**
 * `deno task fineweb`: FineWeb-EDU (sample-10BT) tokenized into build-nanogpt's shards. With a
 * network it lists and downloads the parquet files from the Hugging Face hub; `--input` takes
 * local parquet or jsonl files instead. `--bench` measures tokenizing throughput only.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { repoDataDir, sharedDataDir } from "../data/datasets.ts";
import {
  benchTokenize,
  DEFAULT_SHARD_SIZE,
  defaultWorkers,
  type DocumentInput,
  fetchFinewebFiles,
  FINEWEB_REPO,
  FINEWEB_SAMPLE_DIR,
  localInputs,
  MAX_SHARD_SIZE,
  MAX_WORKERS,
  MIN_SHARD_SIZE,
  readDocuments,
  tokenizeToShards,
} from "../data/fineweb/mod.ts";
import { checkOutputFolder } from "../io/files.ts";
import { formatBytes, formatCount } from "../io/progress.ts";
import { listFlag, numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task fineweb [flags]

Tokenizes FineWeb-EDU into shards of uint16 tokens, as build-nanogpt's fineweb.py does:
edufineweb_val_000000.npy (shard 0), edufineweb_train_000001.npy, ... Each document is
<|endoftext|> followed by its GPT-2 tokens. A stopped run resumes at its first incomplete shard.
--out must be empty, new, or an earlier run's (with its progress record); one run at a time.

  --input PATH            a local .parquet (a "text" column) or .jsonl (a "text" field per
                          line) file, or a folder of them; repeat for more files. Without it,
                          ${FINEWEB_REPO} ${FINEWEB_SAMPLE_DIR} is listed and downloaded from the
                          hub (HF_ENDPOINT is honoured; files are cached in GPT2_CACHE_DIR)
  --limit-files N         with the hub: only the first N parquet files (1 to 100000)
  --out DIR               where the shards go (default data/edu_fineweb10B)
  --shard-size N          tokens per shard, ${MIN_SHARD_SIZE} to ${MAX_SHARD_SIZE} (default 1e8); the last
                          shard holds the rest
  --workers N             tokenizing workers, 1 to ${MAX_WORKERS} (default: one per core,
                          ${defaultWorkers()} here)
  --restart               start over: delete the shards an earlier run's progress record in
                          --out lists (and nothing else) and write them anew
  --bench                 measure tokenizing throughput only (no files): the --input files,
                          else about 2.5M tokens of varied text from ../shared/data (HellaSwag's
                          10,042 examples and Tiny Shakespeare's paragraphs as documents)
  --bench-repeat N        tokenize the corpus N times, 1 to 1000 (default 1)
  -h, --help              this text`;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    input: { type: "string", multiple: true },
    "limit-files": { type: "string" },
    out: { type: "string" },
    "shard-size": { type: "string" },
    workers: { type: "string" },
    restart: { type: "boolean" },
    bench: { type: "boolean" },
    "bench-repeat": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const workers = numberFlag(f, "workers", defaultWorkers(), {
    integer: true,
    min: 1,
    max: MAX_WORKERS,
  });
  const rawInputs = listFlag(f, "input");
  const paths = rawInputs === undefined ? undefined : await expandInputs(rawInputs);

  if (f.bench) {
    const texts: string[] = [];
    if (paths !== undefined) {
      for await (const batch of readDocuments(localInputs(paths))) texts.push(...batch.texts);
    } else {
      texts.push(...await benchCorpus());
    }
    const repeat = numberFlag(f, "bench-repeat", 1, {
      integer: true,
      min: 1,
      max: 1000,
    });
    const { tokens, seconds } = await benchTokenize(texts, { workers, repeat });
    console.log(
      `bench: ${formatCount(tokens)} tokens (${texts.length} docs x ${repeat}) in ${
        seconds.toFixed(2)
      } s on ${workers} worker(s): ${(tokens / seconds / 1e6).toFixed(2)}M tokens/s`,
    );
    return;
  }

  // every flag checked before the hour-long download
  const shardSize = numberFlag(f, "shard-size", DEFAULT_SHARD_SIZE, {
    integer: true,
    min: MIN_SHARD_SIZE,
    max: MAX_SHARD_SIZE,
  });
  const limit = f["limit-files"] === undefined
    ? undefined
    : numberFlag(f, "limit-files", 0, { integer: true, min: 1, max: 100_000 });
  const outDir = resolve(stringFlag(f, "out", join(repoDataDir(), "edu_fineweb10B")));
  await checkOutputFolder("--out", outDir); // before any download
  let inputs: DocumentInput[];
  if (paths !== undefined) {
    inputs = localInputs(paths);
    console.log(`fineweb: ${paths.length} local file(s)${totalSize(inputs)}`);
  } else {
    inputs = await fetchFinewebFiles({ limit });
    console.log(
      `fineweb: ${inputs.length} parquet file(s) of ${FINEWEB_REPO} ${FINEWEB_SAMPLE_DIR}${
        totalSize(inputs)
      }`,
    );
  }
  const result = await tokenizeToShards(inputs, {
    outDir,
    shardSize,
    workers,
    restart: Boolean(f.restart),
  });
  if (result.written === 0 && result.resumed) {
    console.log(`fineweb: ${outDir} is already complete (${result.shards.length} shards)`);
    return;
  }
  const rate = result.tokenized / Math.max(result.seconds, 1e-9);
  console.log(
    `fineweb: ${result.shards.length} shards (1 val, ${
      result.shards.length - 1
    } train) in ${outDir}: ` +
      `${result.documents.toLocaleString("en-US")} documents, ${
        result.tokens.toLocaleString("en-US")
      } tokens` +
      (result.resumed ? `; resumed, wrote ${result.written} shard(s)` : "") +
      `; ${formatCount(rate)} tokens/s on ${workers} worker(s)`,
  );
  if (result.shards.length === 1) {
    console.warn(
      `warning: only the validation shard was written (${result.tokens} tokens, fewer than ` +
        `--shard-size ${shardSize}): training needs a train shard too; pass a smaller --shard-size`,
    );
  }
});

/**
 * `, 27.1 GiB in all (the total and ETA are estimated from how much of it is read)`, or
 * nothing when no size is known.
 */
function totalSize(inputs: DocumentInput[]): string {
  const bytes = inputs.reduce((a, i) => a + (i.size ?? 0), 0);
  if (bytes === 0) return "";
  return `, ${formatBytes(bytes)} in all (the progress line's total and ETA are estimated ` +
    "from how much of it is read)";
}

/** The files of each `--input`: a file as is, a folder's .parquet/.jsonl files sorted. */
async function expandInputs(inputs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const input of inputs) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(input);
    } catch {
      throw new Error(`--input ${input}: expected a file or a folder, found nothing there`);
    }
    if (!info.isDirectory) {
      out.push(input);
      continue;
    }
    const names: string[] = [];
    for await (const e of Deno.readDir(input)) {
      if (e.isFile && /\.(parquet|jsonl)$/i.test(e.name)) names.push(e.name);
    }
    if (names.length === 0) {
      throw new Error(
        `--input ${input}: expected .parquet or .jsonl files in the folder, found none`,
      );
    }
    out.push(...names.sort().map((n) => join(input, n)));
  }
  return out;
}

/**
 * Varied documents for `--bench` without FineWeb at hand: each HellaSwag example (context
 * and endings) and each paragraph of Tiny Shakespeare, about 2M tokens.
 */
async function benchCorpus(): Promise<string[]> {
  const shared = sharedDataDir();
  const texts: string[] = [];
  const hellaswag = await Deno.readTextFile(join(shared, "hellaswag", "hellaswag_val.jsonl"));
  for (const line of hellaswag.split("\n")) {
    if (line.trim() === "") continue;
    const ex = JSON.parse(line) as { ctx: string; endings: string[] };
    texts.push([ex.ctx, ...ex.endings].join(" "));
  }
  const shakespeare = await Deno.readTextFile(join(shared, "tinyshakespeare", "input.txt"));
  texts.push(...shakespeare.split("\n\n"));
  return texts;
}
