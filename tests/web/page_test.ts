// lib/web/ on the Deno side, no browser: the page's settings, its streamed fetch, and
// `deno task serve`'s server (started in this process) feeding the page's own loaders, the
// model onto the reference CPU backend and tiktoken's lite build, checked against PyTorch's
// continuation and the tasks' tokenizer; and the bundle a browser loads.
import { deepStrictEqual as assertEquals, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { decodePadded, getGpt2Tokenizer } from "../../lib/data/tokenizer.ts";
import { writeLlmcModel } from "../../lib/io/llmc.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { generate } from "../../lib/model/sample.ts";
import { fetchBytes, type FetchProgress } from "../../lib/web/page/fetch_progress.ts";
import { loadModel } from "../../lib/web/page/load_model.ts";
import {
  DEFAULT_SETTINGS,
  parseSettings,
  promptTokens,
  targetLength,
} from "../../lib/web/page/settings.ts";
import { decodePadded as decodePaddedInPage, loadTokenizer } from "../../lib/web/page/tokenizer.ts";
import { resolveModelFolder, type RunningServer, startServer } from "../../lib/web/server.ts";
import { WEIGHTS_EXPECTED } from "../../lib/weights/resolve.ts";
import { referenceDir, repoRoot } from "../support.ts";

const TINY = join(referenceDir, "tiny-gpt2");
const REFERENCE_GREEDY = [5, 40, 8, 43, 11, 46, 14, 49, 17, 52, 20, 55, 23, 58, 26, 61];
const LECTURE_PROMPT = "Hello, I'm a language model,";

async function withServer(fn: (server: RunningServer) => Promise<void>): Promise<void> {
  const server = await startServer({
    model: await resolveModelFolder(TINY),
    port: 0,
    hostname: "127.0.0.1",
  });
  try {
    await fn(server);
  } finally {
    await server.shutdown();
  }
}

Deno.test("page settings: defaults, the address's names, greedy spellings, and errors naming the setting", () => {
  assertEquals(parseSettings(new URLSearchParams()), DEFAULT_SETTINGS);
  assertEquals(
    parseSettings(new URLSearchParams("prompt-ids=5,40,8,43&greedy=1&max-new=12")),
    { ...DEFAULT_SETTINGS, promptIds: "5,40,8,43", greedy: true, maxNew: 12 },
  );
  assertEquals(
    parseSettings(new URLSearchParams("top-k=5&temperature=0.7&seed=0&greedy=0")),
    { ...DEFAULT_SETTINGS, topK: 5, temperature: 0.7, seed: 0, greedy: false },
  );
  for (const on of ["", "1", "true", "on"]) {
    ok(parseSettings(new URLSearchParams({ greedy: on })).greedy, `greedy=${on}`);
  }
  throws(() => parseSettings(new URLSearchParams("max-new=0")), {
    message: 'max-new expects an integer >= 1, found "0"',
  });
  throws(() => parseSettings(new URLSearchParams("top-k=2.5")), {
    message: 'top-k expects an integer >= 1, found "2.5"',
  });
  throws(() => parseSettings(new URLSearchParams("temperature=0")), {
    message: 'temperature expects a number > 0, found "0"',
  });
  throws(() => parseSettings(new URLSearchParams("seed=")), {
    message: 'seed expects an integer >= 0, found ""',
  });
});

Deno.test("page settings: prompt ids over text, ids and text checked against the vocabulary, the length limit", () => {
  const tokenizer = getGpt2Tokenizer();
  const settings = { ...DEFAULT_SETTINGS, promptIds: " 5, 40,8 " };
  assertEquals(promptTokens(settings, tokenizer, 64), [5, 40, 8]);
  assertEquals(
    promptTokens(DEFAULT_SETTINGS, tokenizer, 50257),
    [15496, 11, 314, 1101, 257, 3303, 2746, 11],
  );
  throws(() => promptTokens({ ...settings, promptIds: "5,64" }, tokenizer, 64), {
    message: 'prompt-ids expects comma-separated integers in [0, 64), found "64"',
  });
  throws(() => promptTokens({ ...settings, promptIds: "5,,6" }, tokenizer, 64), {
    message:
      "prompt-ids expects comma-separated integers in [0, 64), found an empty item (number 2)",
  });
  throws(() => promptTokens(DEFAULT_SETTINGS, tokenizer, 64), {
    message:
      "The prompt encodes to token 15496, outside this model's vocabulary of 64: give prompt ids",
  });
  throws(() => promptTokens({ ...DEFAULT_SETTINGS, prompt: "" }, tokenizer, 64), {
    message: "The prompt is empty: type some text or prompt ids",
  });
  assertEquals(targetLength(4, 12, 16), 16);
  assertEquals(targetLength(4, 252, 16), 256);
  throws(() => targetLength(4, 253, 16), {
    message:
      "max-new expects at most 252 new tokens after a prompt of 4 (16 x the block size 16 in all), found 253",
  });
});

Deno.test("fetchBytes: a body without Content-Length grows to its size; HTTP errors name the URL", async () => {
  const chunk = (i: number) => new Uint8Array(100_000).fill(i);
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    if (new URL(request.url).pathname !== "/chunked") return new Response("no", { status: 404 });
    let i = 0;
    return new Response(
      new ReadableStream({
        pull(controller) {
          if (i === 3) controller.close();
          else controller.enqueue(chunk(++i));
        },
      }),
    );
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const seen: FetchProgress[] = [];
    const bytes = await fetchBytes(`${base}/chunked`, (p) => seen.push({ ...p }));
    assertEquals(bytes.length, 300_000);
    assertEquals([bytes[0], bytes[100_000], bytes[299_999]], [1, 2, 3]);
    ok(seen.every((p) => p.total === undefined), "no total without Content-Length");
    assertEquals(seen.at(-1)!.received, 300_000);
    await rejects(fetchBytes(`${base}/missing`), {
      message: `Expected ${base}/missing to answer 200, found HTTP 404`,
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("serve: the page's loaders read the served tiny model onto the CPU backend, which continues 5,40,8,43 as PyTorch does", async () => {
  await withServer(async (server) => {
    const seen: FetchProgress[] = [];
    const model = await loadModel(new CpuBackend(), {
      base: server.url,
      onProgress: (p) => seen.push({ ...p }),
    });
    const size = (await Deno.stat(join(TINY, "model.safetensors"))).size;
    assertEquals(seen.at(-1), { received: size, total: size });
    ok(seen.every((p, i) => i === 0 || p.received >= seen[i - 1].received), "progress only grows");
    const [row] = await generate(model, [[5, 40, 8, 43]], { maxLength: 16, greedy: true });
    assertEquals(row, REFERENCE_GREEDY);
  });
});

Deno.test("serve: the page's tokenizer (tiktoken lite, files from the server) encodes and decodes as the tasks' tokenizer", async () => {
  await withServer(async (server) => {
    const page = await loadTokenizer(server.url);
    const tasks = getGpt2Tokenizer();
    assertEquals([page.eot, page.nVocab], [50256, 50257]);
    for (
      const text of [LECTURE_PROMPT, "  tabs\tand UTF-8: café, 日本語, 🙂", "<|endoftext|> as text"]
    ) {
      const ids = tasks.encode(text);
      assertEquals(page.encode(text), ids, text);
      assertEquals(page.decode(ids), text);
    }
    // a character split between tokens decodes to U+FFFD in both; padding ids are marked
    const split = tasks.encode("🙂").slice(0, 1);
    assertEquals(page.decode(split), tasks.decode(split));
    assertEquals(decodePaddedInPage(page, [15496, 50300, 11]), decodePadded([15496, 50300, 11]));
  });
});

Deno.test("serve: a fixed table of paths, the weights streamed with their length, one bundle with no static imports", async () => {
  await withServer(async (server) => {
    const html = await (await fetch(server.url)).text();
    ok(html.includes('<script type="module" src="app.js">'), "the page loads app.js");
    const weights = await fetch(new URL("model/model.safetensors", server.url));
    const bytes = new Uint8Array(await weights.arrayBuffer());
    assertEquals(bytes, await Deno.readFile(join(TINY, "model.safetensors")));
    assertEquals(weights.headers.get("content-length"), String(bytes.length));
    const wgsl = await (await fetch(new URL("kernels/matmul_register.wgsl", server.url))).text();
    assertEquals(
      wgsl,
      await Deno.readTextFile(join(repoRoot, "kernels/wgsl/matmul_register.wgsl")),
    );
    for (const path of ["deno.json", "lib/web/server.ts", "kernels/../deno.json", "model/x"]) {
      const response = await fetch(new URL(path, server.url));
      await response.body?.cancel();
      assertEquals(response.status, 404, path);
    }
    const post = await fetch(server.url, { method: "POST" });
    await post.body?.cancel();
    assertEquals(post.status, 405);
    const script = await (await fetch(new URL("app.js", server.url))).text();
    // a browser cannot resolve bare or node: imports: none are left in the bundle
    const imports = script.split("\n").filter((line) =>
      /^\s*(import|export)\b|\bimport\(/.test(line)
    );
    assertEquals(imports, []);
    ok(!script.includes("Deno.dlopen"), "no native backend in the page");
  });
});

Deno.test("serve: a --host that does not resolve is an error naming --host", async () => {
  const model = await resolveModelFolder(TINY);
  await rejects(startServer({ model, port: 0, hostname: "999.1.1.1" }), (e: Error) => {
    ok(e.message.startsWith("Cannot listen on 999.1.1.1:0 (--host, --port): "), e.message);
    return true;
  });
});

Deno.test("serve: --weights that is not a model folder is refused, saying what was expected", async () => {
  const expected = `expected ${WEIGHTS_EXPECTED}`;
  const dir = await Deno.makeTempDir({ prefix: "serve_test_" });
  try {
    await rejects(resolveModelFolder(join(dir, "nope")), {
      message: `--weights ${join(dir, "nope")}: ${expected}, found no such file or folder`,
    });
    await Deno.writeTextFile(join(dir, "config.json"), "{}");
    await rejects(resolveModelFolder(join(dir, "config.json")), {
      message: `--weights ${
        join(dir, "config.json")
      }: ${expected}, found a file that is not a .bin model file`,
    });
    await rejects(resolveModelFolder(dir), {
      message: `--weights ${dir}: ${expected}, found a folder without model.safetensors`,
    });
    // an llm.c model file loads elsewhere, but the page reads a folder's two files
    const bin = join(dir, "tiny.bin");
    await writeLlmcModel(bin, await fromPretrained(new CpuBackend(), TINY));
    await rejects(resolveModelFolder(bin), {
      message: `--weights ${bin}: expected a folder holding config.json and model.safetensors, ` +
        "found an llm.c model file (float32): the page reads a Hugging Face folder",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
