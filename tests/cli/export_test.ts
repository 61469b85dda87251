// `deno task export` (lib/cli/export.ts) and `--weights FILE.bin` (lib/weights/resolve.ts): the tiny
// reference model exported as an llm.c model file (header and size read here from llm.c's
// layout), sampled from that file to PyTorch's greedy continuation; strict flags; llm.c files
// loaded with the NaN warning safetensors folders give.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { EXPORT_HELP, exportOptions, runExport } from "../../lib/cli/export.ts";
import { writeLlmcModel } from "../../lib/io/llmc.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { loadWeights, resolveWeights, WEIGHTS_EXPECTED } from "../../lib/weights/resolve.ts";
import { referenceDir, runTask } from "../support.ts";

const tinyDir = join(referenceDir, "tiny-gpt2");

Deno.test("export task: the tiny reference model as an llm.c file, which sample reads to PyTorch's continuation", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "made", "tiny.bin"); // its folder is made
  const r = await runTask([
    "lib/cli/export.ts",
    "--format",
    "llmc",
    "--weights",
    tinyDir,
    "--out",
    out,
  ]);
  assertEquals(r.code, 0, r.stderr);
  ok(r.stdout.includes(`wrote ${out}: an llm.c GPT-2 model file, version 3 (fp32)`), r.stdout);
  const bytes = await Deno.readFile(out);
  const view = new DataView(bytes.buffer);
  // magic, version, block 16, vocab 64, 2 layers, 4 heads, 32 channels, vocab padded to 128
  const header = Array.from({ length: 8 }, (_, i) => view.getInt32(4 * i, true));
  assertEquals(header, [20240326, 3, 16, 64, 2, 4, 32, 128]);
  assertEquals(bytes.length, 1024 + 4 * (28032 + 64 * 32)); // 28032 parameters, 64 padding rows

  const sampled = await runTask([
    "lib/cli/sample.ts",
    "--weights",
    out,
    "--backend",
    "cpu",
    "--prompt-ids",
    "5,40,8,43",
    "--greedy",
    "--max-length",
    "16",
    "--json",
    "--num-return-sequences",
    "1",
  ]);
  assertEquals(sampled.code, 0, sampled.stderr);
  assertEquals(JSON.parse(sampled.stdout).tokens, [
    5,
    40,
    8,
    43,
    11,
    46,
    14,
    49,
    17,
    52,
    20,
    55,
    23,
    58,
    26,
    61,
  ]);
  ok(
    sampled.stderr.includes(`loaded ${out}, an llm.c model file (float32): 28,032 parameters`),
    sampled.stderr,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("export task: a bad flag fails with exit code 1 and a message naming it", async () => {
  const r = await runTask(["lib/cli/export.ts", "--format", "gguf", "--weights", tinyDir]);
  assertEquals(r.code, 1);
  assertEquals(r.stderr.trim(), 'error: --format expects one of llmc, found "gguf"');
});

Deno.test("exportOptions: --help, and each missing or bad flag named", () => {
  assertEquals(exportOptions(["--help"]), null);
  assertEquals(exportOptions(["-h"]), null);
  ok(EXPORT_HELP.includes("--format llmc") && EXPORT_HELP.includes("--out FILE.bin"));
  assertEquals(exportOptions(["--format", "llmc", "--weights", "log/model", "--out", "a.bin"]), {
    format: "llmc",
    weights: "log/model",
    out: "a.bin",
  });
  const fails = (args: string[], message: string | RegExp) =>
    throws(() => exportOptions(args), { message }, args.join(" "));
  fails(["--weights", "w", "--out", "a.bin"], "--format is required: llmc (see --help)");
  fails(
    ["--format", "llmc", "--out", "a.bin"],
    "--weights is required: a Hugging Face GPT-2 folder, a trained log/model, a checkpoint " +
      "folder or a hub name (see --help)",
  );
  fails(
    ["--format", "llmc", "--weights", "w"],
    "--out is required: the llm.c model file to write, e.g. gpt2_124M.bin (see --help)",
  );
  fails(
    ["--format", "llmc", "--weights", "w", "--out", "gpt2.safetensors"],
    '--out expects a file name ending in .bin (llm.c\'s, as --weights reads it), found "gpt2.safetensors"',
  );
  fails(
    ["--format", "llmc", "--weights"],
    "Option '--weights <value>' argument missing (see --help)",
  );
  fails(["--fromat", "llmc"], /Unknown option '--fromat' \(see --help\)/);
});

Deno.test("runExport: an --out that is a folder, and weights that do not load, are errors", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(join(dir, "x.bin"));
  const quiet = () => {};
  await rejects(
    runExport({ format: "llmc", weights: tinyDir, out: join(dir, "x.bin") }, quiet),
    { message: `--out ${join(dir, "x.bin")}: expected a file, found a folder` },
  );
  await rejects(
    runExport({ format: "llmc", weights: join(dir, "nothing"), out: join(dir, "y.bin") }, quiet),
    {
      message: `--weights ${
        join(dir, "nothing")
      }: expected ${WEIGHTS_EXPECTED}, found no such file or folder`,
    },
  );
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["x.bin"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("runExport: a full disk names --out and leaves no partial file; a folder that cannot be made names --out", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "m.bin");
  const quiet = () => {};
  const original = Deno.open;
  // the temporary file opened is /dev/full: every write fails with ENOSPC, as on a full disk
  Deno.open = ((path: string | URL, options?: Deno.OpenOptions) =>
    original(
      String(path).startsWith(`${out}.tmp`) ? "/dev/full" : path,
      options,
    )) as typeof Deno.open;
  try {
    await rejects(runExport({ format: "llmc", weights: tinyDir, out }, quiet), (e: Error) => {
      ok(
        e.message.startsWith(`--out ${out} cannot be written: No space left on device`),
        e.message,
      );
      return true;
    });
  } finally {
    Deno.open = original;
  }
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), []);
  await Deno.writeTextFile(join(dir, "a-file"), "");
  const under = join(dir, "a-file", "m.bin");
  await rejects(runExport({ format: "llmc", weights: tinyDir, out: under }, quiet), (e: Error) => {
    ok(e.message.startsWith(`--out ${under} cannot be written: `), e.message);
    return true;
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("runExport: three exports to one --out at once all succeed, and the file is whole", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "m.bin");
  const quiet = () => {};
  await Promise.all(
    [1, 2, 3].map(() => runExport({ format: "llmc", weights: tinyDir, out }, quiet)),
  );
  const alone = join(dir, "alone.bin");
  await runExport({ format: "llmc", weights: tinyDir, out: alone }, quiet);
  assertEquals(await Deno.readFile(out), await Deno.readFile(alone));
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["alone.bin", "m.bin"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--weights FILE.bin: a missing file names it; NaN weights load with a warning naming them", async () => {
  const backend = new CpuBackend();
  await rejects(
    loadWeights(backend, "/nonexistent/gpt2_124M.bin", () => {}),
    {
      message: "--weights /nonexistent/gpt2_124M.bin: expected " +
        `${WEIGHTS_EXPECTED}, found no such file or folder`,
    },
  );
  // a model file with one NaN
  const dir = await Deno.makeTempDir();
  const model = await fromPretrained(backend, tinyDir);
  const state = await model.stateDict();
  state.get("transformer.h.1.mlp.c_fc.weight")!.data[3] = NaN;
  model.loadStateDict(new Map([...state].map(([n, t]) => [n, t.data])));
  const path = join(dir, "nan.bin");
  await writeLlmcModel(path, model);
  const warnings: string[] = [];
  const loaded = await (await resolveWeights(path)).load(backend, {
    warn: (line) => warnings.push(line),
  });
  const fc = new Map(loaded.namedParameters()).get("transformer.h.1.mlp.c_fc.weight")!;
  ok(Number.isNaN(((await fc.toArray()) as Float32Array)[3]));
  assertEquals(warnings, [
    `warning: ${path}: 1 tensor holds NaN or infinite values: ` +
    `transformer.h.1.mlp.c_fc.weight (1 of 4096); what this model computes will not mean anything`,
  ]);
  await Deno.remove(dir, { recursive: true });
});
