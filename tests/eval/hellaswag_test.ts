// lib/eval/hellaswag.ts: build-nanogpt's rendering, the tiny vocab-50257 model's scores on the
// first 64 validation examples against PyTorch's (../shared/reference/hellaswag_reference.json),
// and where the validation file is found.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import {
  evaluateHellaswag,
  examplesForRank,
  loadHellaswag,
  renderExample,
  resolveHellaswag,
  sumCounts,
} from "../../lib/eval/hellaswag.ts";
import { referenceDir, sharedDataDir } from "../support.ts";

const VAL = join(sharedDataDir, "hellaswag", "hellaswag_val.jsonl");
const MODEL = join(referenceDir, "tiny-gpt2-vocab50257");

interface ReferenceExample {
  ind: number;
  label: number;
  sum_loss: number[];
  avg_loss: number[];
  pred: number;
  pred_norm: number;
}

Deno.test("hellaswag: an example renders as 4 rows, right-padded with 0, masked on the ending", () => {
  // "Hello, I'm a language model," = [15496, 11, 314, 1101, 257, 3303, 2746, 11]; " world" =
  // [995]; " Hello world" = [18435, 995] (a leading space belongs to the next token)
  const ex = renderExample({
    ctx: "Hello, I'm a language model,",
    endings: ["world", "Hello world", "world", "world"],
    label: 1,
  });
  assertEquals(ex.width, 10);
  assertEquals(ex.ctxTokens, [15496, 11, 314, 1101, 257, 3303, 2746, 11]);
  assertEquals(ex.endingTokens, [[995], [18435, 995], [995], [995]]);
  const ctx = [15496, 11, 314, 1101, 257, 3303, 2746, 11];
  assertEquals(Array.from(ex.tokens.subarray(0, 10)), [...ctx, 995, 0]);
  assertEquals(Array.from(ex.tokens.subarray(10, 20)), [...ctx, 18435, 995]);
  assertEquals(Array.from(ex.mask.subarray(0, 10)), [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
  assertEquals(Array.from(ex.mask.subarray(10, 20)), [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
});

Deno.test("hellaswag: examples are split across ranks as i % world", () => {
  assertEquals(examplesForRank(10, 0, 3), [0, 3, 6, 9]);
  assertEquals(examplesForRank(10, 2, 3), [2, 5, 8]);
  throws(() => examplesForRank(10, 3, 3), /Expected a rank in \[0, 3\), found 3/);
  assertEquals(
    sumCounts([{ total: 4, correct: 1, correctNorm: 2 }, { total: 3, correct: 2, correctNorm: 0 }]),
    { total: 7, correct: 3, correctNorm: 2, acc: 3 / 7, accNorm: 2 / 7 },
  );
});

Deno.test("hellaswag: the tiny vocab-50257 GPT-2 matches PyTorch on the first 64 examples", async () => {
  const reference = JSON.parse(
    await Deno.readTextFile(join(referenceDir, "hellaswag_reference.json")),
  ) as { n: number; acc: number; acc_norm: number; examples: ReferenceExample[] };
  const examples = await loadHellaswag(VAL, 64);
  assertEquals(examples.length, 64);
  const model = await fromPretrained(new CpuBackend(), MODEL);
  const { counts, scores } = await evaluateHellaswag(model, examples);
  for (let i = 0; i < 64; i++) {
    const [ours, theirs] = [scores[i], reference.examples[i]];
    assertEquals(examples[i].ind, theirs.ind);
    assertEquals([ours.index, ours.pred, ours.predNorm, ours.label], [
      i,
      theirs.pred,
      theirs.pred_norm,
      theirs.label,
    ]);
    for (let e = 0; e < 4; e++) {
      ok(
        Math.abs(ours.sumLoss[e] - theirs.sum_loss[e]) <= 1e-4 * Math.max(1, theirs.sum_loss[e]) &&
          Math.abs(ours.avgLoss[e] - theirs.avg_loss[e]) <= 1e-4,
        `example ${i} ending ${e}: ${ours.sumLoss[e]}/${ours.avgLoss[e]}, ` +
          `expected ${theirs.sum_loss[e]}/${theirs.avg_loss[e]}`,
      );
    }
  }
  const result = sumCounts([counts]);
  assertEquals([result.total, result.acc, result.accNorm], [64, reference.acc, reference.acc_norm]);

  // two ranks, one example per forward pass: the same scores, and the counts add up
  const parts = [];
  for (const rank of [0, 1]) {
    const part = await evaluateHellaswag(model, examples, {
      rank,
      world: 2,
      limit: 6,
      maxLogits: 1,
    });
    assertEquals(part.scores.map((s) => s.index), rank === 0 ? [0, 2, 4] : [1, 3, 5]);
    for (const s of part.scores) {
      assertEquals([s.pred, s.predNorm], [scores[s.index].pred, scores[s.index].predNorm]);
      ok(Math.abs(s.sumLoss[0] - scores[s.index].sumLoss[0]) < 1e-3, "unbatched = batched");
    }
    parts.push(part.counts);
  }
  const first6 = scores.slice(0, 6);
  assertEquals(sumCounts(parts).total, 6);
  assertEquals(sumCounts(parts).correctNorm, first6.filter((s) => s.predNorm === s.label).length);
});

Deno.test("hellaswag: a malformed line names the file and line", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "bad.jsonl");
  await Deno.writeTextFile(path, '{"ctx": "a", "endings": ["b", "c"], "label": 0}\n');
  await rejects(loadHellaswag(path), (e: Error) => e.message.startsWith(`${path}:1: expected`));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("hellaswag: a file with no example, or not UTF-8, is an error naming it (not 0/0 accuracy)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const empty = join(dir, "empty.jsonl");
    await Deno.writeTextFile(empty, "\n  \n");
    await rejects(loadHellaswag(empty), {
      message: `Expected HellaSwag examples (one JSON object a line) in ${empty}, found none`,
    });
    const binary = join(dir, "model.safetensors");
    await Deno.writeFile(binary, Uint8Array.of(8, 0, 0, 0, 0, 0, 0, 0, 123, 125));
    await rejects(loadHellaswag(binary), {
      message:
        `Expected a UTF-8 text file at ${binary}, found a binary file (a NUL byte at offset 1)`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hellaswag_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("resolveHellaswag: the same resolver, HellaSwag's file and messages", async () => {
  await withTempDir(async (dir) => {
    const missing = join(dir, "nope.jsonl");
    await rejects(() => resolveHellaswag(missing, { quiet: true }), {
      message: `Expected a HellaSwag jsonl file at ${missing}, found none`,
    });
    const found = await resolveHellaswag(undefined, {
      dataDir: dir,
      url: "http://127.0.0.1:9/unreachable",
      quiet: true,
    });
    assertEquals(found, VAL);
    await rejects(
      () => resolveHellaswag(undefined, { dataDir: dir, sharedDataDir: dir, download: false }),
      /^Error: Expected HellaSwag at .*hellaswag_val\.jsonl or .*, found neither; pass --data PATH/,
    );
  });
});
