// What the page of `deno task serve` needs from lib/model and lib/weights, tested on the
// reference CPU backend: modelFromSafetensors (a model from bytes, as the page has them) and
// parseModelConfig,
// generate's temperature, and onToken's rows (the tokens the page shows as they come).
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { parseSafetensors } from "../../lib/io/safetensors.ts";
import type { GPT } from "../../lib/model/gpt.ts";
import { modelFromSafetensors, parseModelConfig } from "../../lib/weights/folder.ts";
import { Generator } from "../../lib/model/random.ts";
import { generate } from "../../lib/model/sample.ts";
import { referenceDir } from "../support.ts";

const TINY = join(referenceDir, "tiny-gpt2");
/** The tiny model's greedy continuation of 5,40,8,43 (PyTorch's, `generate.greedy`). */
const REFERENCE_GREEDY = [5, 40, 8, 43, 11, 46, 14, 49, 17, 52, 20, 55, 23, 58, 26, 61];
/** A one-token prompt: the tiny model's next token is near uniform there, so seeds differ. */
const UNSURE_PROMPT = [5];

async function tinyFromBytes(): Promise<GPT> {
  const config = parseModelConfig(
    JSON.parse(await Deno.readTextFile(join(TINY, "config.json"))),
    "config.json",
  );
  const st = parseSafetensors(await Deno.readFile(join(TINY, "model.safetensors")));
  return modelFromSafetensors(new CpuBackend(), config, st, "model.safetensors");
}

Deno.test("modelFromSafetensors of the tiny model's bytes continues 5,40,8,43 greedily as PyTorch does", async () => {
  const model = await tinyFromBytes();
  assertEquals(model.config, { n_layer: 2, n_head: 4, n_embd: 32, block_size: 16, vocab_size: 64 });
  const [row] = await generate(model, [[5, 40, 8, 43]], { maxLength: 16, greedy: true });
  assertEquals(row, REFERENCE_GREEDY);
});

Deno.test("parseModelConfig names its source and the field it cannot use", () => {
  throws(() => parseModelConfig([], "page/config.json"), {
    message: "page/config.json: expected a JSON object (GPT2Config), found an array",
  });
  throws(() => parseModelConfig({ n_layer: 2, n_head: 4, n_embd: 32, n_positions: 16 }, "c.json"), {
    message: "c.json: expected a positive integer for vocab_size, found no such field",
  });
  const tiny = { n_layer: 2, n_head: 4, n_embd: 32, n_positions: 16, vocab_size: 64 };
  throws(() => parseModelConfig({ ...tiny, qk_norm: "yes" }, "c.json"), {
    message: 'c.json: expected qk_norm to be true or false, found "yes"',
  });
  assertEquals(parseModelConfig({ ...tiny, mlp: "relu2", qk_norm: false }, "c.json"), {
    n_layer: 2,
    n_head: 4,
    n_embd: 32,
    block_size: 16,
    vocab_size: 64,
    mlp: "relu2",
  });
});

Deno.test("generate: temperature 1 samples as no temperature; a tiny one samples the argmax; 0 is refused", async () => {
  const model = await tinyFromBytes();
  const sample = (temperature?: number) =>
    generate(model, [UNSURE_PROMPT], {
      maxLength: 12,
      topK: 50,
      temperature,
      generator: new Generator(7),
    });
  const plain = await sample();
  assertEquals(await sample(1), plain);
  const greedy = await generate(model, [UNSURE_PROMPT], { maxLength: 12, greedy: true });
  ok(plain[0].join() !== greedy[0].join(), "seed 7 samples other tokens than greedy here");
  // logits divided by 1e-4: the top token gets all the mass, whatever the draw
  assertEquals(await sample(1e-4), greedy);
  for (const bad of [0, -1, NaN, Infinity]) {
    await generate(model, [UNSURE_PROMPT], {
      maxLength: 4,
      temperature: bad,
      generator: new Generator(7),
    }).then(
      () => ok(false, `temperature ${bad} was accepted`),
      (e) => assertEquals((e as Error).message, `Expected a temperature above 0, found ${bad}`),
    );
  }
});

Deno.test("generate: onToken gets every row as it grows, one token longer each call", async () => {
  const model = await tinyFromBytes();
  const seen: { length: number; rows: number[][] }[] = [];
  const final = await generate(model, [[5, 40, 8, 43], [5, 40, 8, 43]], {
    maxLength: 9,
    topK: 50,
    generator: new Generator(3),
    onToken: (length, rows) => seen.push({ length, rows: rows.map((r) => [...r]) }),
  });
  assertEquals(seen.map((s) => s.length), [5, 6, 7, 8, 9]);
  for (const { length, rows } of seen) {
    assertEquals(rows, final.map((r) => r.slice(0, length)));
  }
});
