// lib/weights/resolve.ts, the one loader behind --weights and --init-from, in process: each
// kind of source (a hub name from the cache, a Hugging Face folder, a checkpoint folder, an
// llm.c .bin file, a speedrun folder) resolves to its kind and shape and loads; a missing path,
// an empty name, a file that is not a model, a folder without the files and a damaged
// checkpoint are refused with one set of messages naming the flag and the path.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { writeLlmcModel } from "../../lib/io/llmc.ts";
import { GPT } from "../../lib/model/gpt.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { SpeedrunGPT } from "../../lib/speedrun/model.ts";
import { train } from "../../lib/train/train.ts";
import { saveModelFolder } from "../../lib/weights/folder.ts";
import { loadWeights, resolveWeights, WEIGHTS_EXPECTED } from "../../lib/weights/resolve.ts";
import { referenceDir, runCheckpoints, smallRecipe } from "../support.ts";

const backend = new CpuBackend();
const TINY = join(referenceDir, "tiny-gpt2");
const TINY_CONFIG = { n_layer: 2, n_head: 4, n_embd: 32, block_size: 16, vocab_size: 64 };

/** The parameters of `model` by name, on the host. */
async function weightsOf(model: GPT): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const [name, t] of await model.stateDict()) out.set(name, Array.from(t.data));
  return out;
}

Deno.test("resolveWeights: the expected sources, one sentence for every flag", () => {
  assertEquals(
    WEIGHTS_EXPECTED,
    "a Hugging Face folder (config.json and model.safetensors), a checkpoint folder, an llm.c " +
      ".bin model file or a GPT-2 model type (gpt2, gpt2-medium, gpt2-large, gpt2-xl)",
  );
});

Deno.test("resolveWeights: a Hugging Face folder, its shape before loading, then its weights", async () => {
  const lines: string[] = [];
  const source = await resolveWeights(TINY);
  assertEquals(
    [source.name, source.kind, source.dir, source.checkpointStep],
    [TINY, "a Hugging Face folder", TINY, null],
  );
  assertEquals(source.config, TINY_CONFIG);
  const model = await loadWeights(backend, TINY, (l) => lines.push(l));
  ok(!(model instanceof SpeedrunGPT));
  assertEquals(await weightsOf(model), await weightsOf(await fromPretrained(backend, TINY)));
  assertEquals(lines, [
    `loaded ${TINY}, a Hugging Face folder: 28,032 parameters, ${JSON.stringify(TINY_CONFIG)}`,
  ]);
});

Deno.test("resolveWeights: an llm.c .bin model file, and one that is not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bin = join(dir, "tiny.bin");
    const original = await fromPretrained(backend, TINY);
    await writeLlmcModel(bin, original);
    const source = await resolveWeights(bin, { flag: "--init-from" });
    assertEquals([source.kind, source.dir, source.config], [
      "an llm.c model file (float32)",
      null,
      TINY_CONFIG,
    ]);
    assertEquals(await weightsOf(await source.load(backend)), await weightsOf(original));
    const bad = join(dir, "bad.bin");
    await Deno.writeTextFile(bad, "not a model");
    await rejects(resolveWeights(bad, { flag: "--init-from" }), {
      message: new RegExp(`^--init-from ${bad}: .*llm\\.c`),
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveWeights: a missing path, an empty name, another file and an incomplete folder are refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const expected = (flag: string, path: string, found: string) => ({
      message: `${flag} ${path}: expected ${WEIGHTS_EXPECTED}, found ${found}`,
    });
    const nope = join(dir, "nope");
    await rejects(resolveWeights(nope), expected("--weights", nope, "no such file or folder"));
    await rejects(
      resolveWeights(nope, { flag: "--init-from", missingHint: " (make it first)" }),
      expected("--init-from", nope, "no such file or folder (make it first)"),
    );
    await rejects(resolveWeights(""), expected("--weights", '""', "an empty name"));
    const config = join(TINY, "config.json");
    await rejects(
      resolveWeights(config),
      expected("--weights", config, "a file that is not a .bin model file"),
    );
    await rejects(
      resolveWeights(dir),
      expected("--weights", dir, "a folder without config.json and model.safetensors"),
    );
    await Deno.copyFile(config, join(dir, "config.json"));
    await rejects(
      resolveWeights(dir),
      expected("--weights", dir, "a folder without model.safetensors"),
    );
    // a config.json that cannot be used names the flag, then the file and the field
    await Deno.copyFile(join(TINY, "model.safetensors"), join(dir, "model.safetensors"));
    const fields = JSON.parse(await Deno.readTextFile(config));
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ ...fields, pos: 1 }));
    await rejects(resolveWeights(dir), {
      message: `--weights ${dir}: ${
        join(dir, "config.json")
      }: expected pos to be one of learned, rotary, found 1`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveWeights: a hub name from the cache, with the hub unreachable", async () => {
  const cache = await Deno.makeTempDir();
  const cached = join(cache, "openai-community", "gpt2");
  await Deno.mkdir(cached, { recursive: true });
  for (const file of ["config.json", "model.safetensors"]) {
    await Deno.copyFile(join(TINY, file), join(cached, file));
  }
  const env = {
    GPT2_CACHE_DIR: Deno.env.get("GPT2_CACHE_DIR"),
    HF_ENDPOINT: Deno.env.get("HF_ENDPOINT"),
  };
  Deno.env.set("GPT2_CACHE_DIR", cache);
  Deno.env.set("HF_ENDPOINT", "http://127.0.0.1:9"); // nothing listens there
  try {
    const source = await resolveWeights("gpt2", { progress: false });
    assertEquals([source.name, source.dir, source.config], ["gpt2", cached, TINY_CONFIG]);
    assertEquals(source.kind, `gpt2 from the hub (${cached})`);
    const model = await source.load(backend);
    assertEquals(await weightsOf(model), await weightsOf(await fromPretrained(backend, TINY)));
  } finally {
    for (const [k, v] of Object.entries(env)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("resolveWeights: a checkpoint folder is verified against its state.json; a damaged one is refused", async () => {
  const logDir = await Deno.makeTempDir();
  try {
    await train(smallRecipe({ steps: 1, totalBatchSize: 32, logDir }));
    const [ckpt] = await runCheckpoints(logDir);
    const source = await resolveWeights(ckpt.path);
    assertEquals(source.checkpointStep, 1);
    assertEquals(
      source.kind,
      "a checkpoint folder (step 1, its model verified against its state.json)",
    );
    const lines: string[] = [];
    await loadWeights(backend, ckpt.path, (l) => lines.push(l));
    assertEquals(
      lines[0],
      `verified ${ckpt.path}: model.safetensors and config.json match its state.json (checkpoint of step 1)`,
    );
    const file = join(ckpt.path, "model.safetensors");
    const bytes = await Deno.readFile(file);
    bytes[bytes.length - 1] ^= 1; // one bit flipped, same size
    await Deno.writeFile(file, bytes);
    await rejects(resolveWeights(ckpt.path, { flag: "--init-from" }), {
      message: new RegExp(
        `^--init-from ${ckpt.path}: Checkpoint ${ckpt.path} is corrupt: model\\.safetensors has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}$`,
      ),
    });
  } finally {
    await Deno.remove(logDir, { recursive: true });
  }
});

Deno.test("resolveWeights: a folder whose config.json has the speedrun's options loads the speedrun's model", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = { ...TINY_CONFIG, mlp: "relu2" as const, pos: "rotary" as const };
    const model = new SpeedrunGPT(backend, { ...config, untie_head: true }, { seed: 2 });
    await saveModelFolder(model, dir);
    const source = await resolveWeights(dir);
    assertEquals(source.config, { ...config, untie_head: true });
    const loaded = await source.load(backend);
    ok(loaded instanceof SpeedrunGPT, "the speedrun's model");
    assertEquals(await weightsOf(loaded), await weightsOf(model));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
