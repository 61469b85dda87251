/**
 * `deno task export`: writes a GPT-2 in another program's format. One format so far,
 * `--format llmc`: llm.c's model file (`gpt2_124M.bin`, what `train_gpt2.py`'s `write_model`
 * writes and llm.c's `train_gpt2` reads), from a Hugging Face folder, a trained `log/model`, a
 * checkpoint folder or a hub name.
 *
 * @module
 */

import { dirname } from "node:path";
import { createBackend } from "../backends/mod.ts";
import { llmcPaddedVocabSize, writeLlmcModel } from "../io/llmc.ts";
import { formatBytes } from "../io/progress.ts";
import { loadWeights } from "../weights/resolve.ts";
import { parseFlags, runMain, stringFlag } from "./flags.ts";

/** The formats `--format` takes. */
export const EXPORT_FORMATS: readonly string[] = ["llmc"];

/** `deno task export --help`. */
export const EXPORT_HELP = `deno task export --format llmc --weights DIR|NAME --out FILE.bin

Writes a GPT-2 in another program's format.

  --format llmc        llm.c's GPT-2 model file: train_gpt2.py's write_model layout, version 3
                       (fp32, wte padded to a multiple of 128 rows), which llm.c's train_gpt2
                       and deno task sample --weights FILE.bin read
  --weights DIR|NAME   a Hugging Face GPT-2 folder (model.safetensors + config.json), a trained
                       log/model, a checkpoint folder (checked against its state.json), or
                       gpt2, gpt2-medium, gpt2-large, gpt2-xl from the hub
  --out FILE.bin       the file to write, e.g. gpt2_124M.bin (its folder is made if missing)
  -h, --help           this text`;

/** What the flags ask for. */
export interface ExportOptions {
  format: string;
  weights: string;
  out: string;
}

/**
 * The options of `args`, or null for `--help`.
 *
 * @throws {Error} naming the flag for an unknown flag, a missing `--format`, `--weights` or
 * `--out`, an unknown format, or an `--out` that does not end in `.bin`.
 */
export function exportOptions(args: string[]): ExportOptions | null {
  const f = parseFlags(args, {
    format: { type: "string" },
    weights: { type: "string" },
    out: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) return null;
  const required = (name: string, what: string): string => {
    const v = stringFlag(f, name);
    if (v === undefined || v === "") {
      throw new Error(`--${name} is required: ${what} (see --help)`);
    }
    return v;
  };
  const format = required("format", EXPORT_FORMATS.join(", "));
  if (!EXPORT_FORMATS.includes(format)) {
    throw new Error(`--format expects one of ${EXPORT_FORMATS.join(", ")}, found "${format}"`);
  }
  const weights = required(
    "weights",
    "a Hugging Face GPT-2 folder, a trained log/model, a checkpoint folder or a hub name",
  );
  const out = required("out", "the llm.c model file to write, e.g. gpt2_124M.bin");
  // `--weights FILE.bin` is how sample and hellaswag tell llm.c's files from folders
  if (!out.endsWith(".bin")) {
    throw new Error(
      `--out expects a file name ending in .bin (llm.c's, as --weights reads it), found "${out}"`,
    );
  }
  return { format, weights, out };
}

/**
 * Loads `o.weights` and writes it to `o.out` in `o.format`, saying what it did on `log`.
 *
 * @throws {Error} for an `--out` that is a folder (before loading), or weights that do not load.
 */
export async function runExport(o: ExportOptions, log: (line: string) => void): Promise<void> {
  const info = await Deno.stat(o.out).catch(() => null);
  if (info?.isDirectory) throw new Error(`--out ${o.out}: expected a file, found a folder`);
  // weights are only read and written: the reference backend's host buffers, no kernels
  const { backend } = await createBackend("cpu");
  const model = await loadWeights(backend, o.weights, log);
  try {
    await Deno.mkdir(dirname(o.out), { recursive: true });
    await writeLlmcModel(o.out, model);
  } catch (e) {
    throw new Error(`--out ${o.out} cannot be written: ${(e as Error).message}`, { cause: e });
  }
  const { vocab_size: V } = model.config;
  const size = (await Deno.stat(o.out)).size;
  log(
    `wrote ${o.out}: an llm.c GPT-2 model file, version 3 (fp32), vocabulary ${V} padded to ` +
      `${llmcPaddedVocabSize(V)} rows, ${formatBytes(size)}`,
  );
}

if (import.meta.main) {
  await runMain(async () => {
    const options = exportOptions(Deno.args);
    if (options === null) console.log(EXPORT_HELP);
    else await runExport(options, console.log);
  });
}
