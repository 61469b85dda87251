/**
 * `deno task prepare-shakespeare`: Tiny Shakespeare through the FineWeb pipeline, so the same
 * sharded loader trains on it: the whole file is one document (`[EOT, ...tokens]`), cut into
 * shards of 32,768 tokens; shard 0 (`tinyshakespeare_val_000000.npy`) is the validation split,
 * the same size as llm.c's Tiny Shakespeare validation set, about 10% of the 338,026 tokens.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { repoDataDir, resolveTinyShakespeare } from "../data/datasets.ts";
import {
  localInputs,
  MAX_SHARD_SIZE,
  MIN_SHARD_SIZE,
  tokenizeToShards,
} from "../data/fineweb/mod.ts";
import { checkOutputFolder } from "../io/files.ts";
import { numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task prepare-shakespeare [flags]

Writes Tiny Shakespeare as uint16 .npy shards that deno task train --data DIR reads.

  --data PATH         input.txt (default: data/, then ../shared/data, else downloaded)
  --out DIR           default data/tinyshakespeare_shards
  --shard-size N      tokens per shard, ${MIN_SHARD_SIZE} to ${MAX_SHARD_SIZE} (default 32768; shard 0
                      is val)
  -h, --help          this text`;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    data: { type: "string" },
    out: { type: "string" },
    "shard-size": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const outDir = resolve(stringFlag(f, "out", join(repoDataDir(), "tinyshakespeare_shards")));
  await checkOutputFolder("--out", outDir); // before a download
  const input = await resolveTinyShakespeare(stringFlag(f, "data"));
  const shardSize = numberFlag(f, "shard-size", 32768, {
    integer: true,
    min: MIN_SHARD_SIZE,
    max: MAX_SHARD_SIZE,
  });
  const result = await tokenizeToShards(localInputs([input]), {
    outDir,
    shardSize,
    prefix: "tinyshakespeare",
    workers: 1, // one document: one worker
    restart: true, // seconds of work: always redo
  });
  console.log(
    `prepare-shakespeare: ${result.shards.length} shards (1 val, ${
      result.shards.length - 1
    } train), ${result.tokens.toLocaleString("en-US")} tokens in ${outDir}`,
  );
  if (result.shards.length === 1) {
    console.warn(
      `warning: only the validation shard was written (${result.tokens} tokens, fewer than ` +
        `--shard-size ${shardSize}): training needs a train shard too; pass a smaller --shard-size`,
    );
  }
});
