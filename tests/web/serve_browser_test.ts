/// <reference lib="dom" />
// `deno task serve` end to end: the task started as a user starts it, its page opened in
// Debian's headless Chromium on a software WebGPU adapter (SwiftShader; this machine has no
// GPU), the model run there by the project's WGSL kernels: greedy to PyTorch's reference, a
// seeded top-k sample and a text prompt typed into the form equal to `deno task sample`'s, a
// temperature passed through, and a clear message without WebGPU. Screenshots of the page go
// to a temp folder, printed. Skipped with a notice where /usr/bin/chromium is missing.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { Generator } from "../../lib/model/random.ts";
import { generate } from "../../lib/model/sample.ts";
import { freePort, referenceDir, repoRoot } from "../support.ts";
import { CHROMIUM, launchChromium, WEBGPU_FLAGS } from "../../tools/chromium.ts";

/**
 * WebGPU in headless Chromium without a GPU: WebGPU switched on for Linux, and SwiftShader
 * (Chromium's own software Vulkan) as the adapter, with ANGLE on it too.
 */
const TINY = join(referenceDir, "tiny-gpt2");
const TINY_GPT2_VOCAB = join(referenceDir, "tiny-gpt2-vocab50257");
/** The tiny model's greedy continuation of 5,40,8,43 (PyTorch's, `generate.greedy`). */
const REFERENCE_GREEDY = [5, 40, 8, 43, 11, 46, 14, 49, 17, 52, 20, 55, 23, 58, 26, 61];
/** States the page ends a run in (`body[data-state]`). */
const FINAL_STATES = ["done", "stopped", "error", "no-webgpu"];
const decoder = new TextDecoder();

/** `deno task NAME ARGS` in the repository, to its end. */
async function task(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", ...args],
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** `deno task sample --json` of one sequence: its tokens and text. */
async function sampleTask(args: string[]): Promise<{ tokens: number[]; text?: string }> {
  const out = await task(["sample", "--num-return-sequences", "1", "--json", ...args]);
  assertEquals(out.code, 0, out.stderr);
  return JSON.parse(out.stdout.trim());
}

/** A running `deno task serve`: its page's address, and a stop that waits for it to exit. */
interface Serve {
  url: string;
  stop(): Promise<void>;
}

/** Starts `deno task serve --weights WEIGHTS --port <free>` and waits for its address. */
async function startServe(weights: string): Promise<Serve> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "serve", "--weights", weights, "--port", String(freePort())],
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let printed = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    printed += value;
    const url = /serving at (\S+)/.exec(printed)?.[1];
    if (url) {
      const drained = (async () => {
        while (!(await reader.read()).done) { /* keep the pipe flowing */ }
      })();
      return {
        url,
        async stop() {
          child.kill("SIGTERM");
          await child.status;
          await drained;
          await stderr;
        },
      };
    }
  }
  const status = await child.status;
  throw new Error(
    `deno task serve exited ${status.code} before serving: ${printed}${await stderr}`,
  );
}

function launchWebGpuChromium(): Promise<Browser> {
  return launchChromium(WEBGPU_FLAGS);
}

/** A new page that records console errors and uncaught exceptions into `errors`. */
async function newPage(browser: Browser, errors: string[]): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 960, height: 600 } });
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return page;
}

/** Waits for the page's run to end; its state, message and shown token ids. */
async function finished(page: Page): Promise<{ state: string; message: string; ids: number[] }> {
  await page.waitForFunction(
    (states) => states.includes(document.body.dataset.state ?? ""),
    FINAL_STATES,
    { timeout: 120_000 },
  );
  const ids = await page.locator("#ids").textContent() ?? "";
  return {
    state: await page.evaluate(() => document.body.dataset.state ?? ""),
    message: await page.locator("#message").textContent() ?? "",
    ids: ids === "" ? [] : ids.split(",").map(Number),
  };
}

/** Opens `query` on the page at `url` and returns what the run ended with. */
async function runPage(page: Page, url: string, query: string) {
  await page.goto(`${url}?${query}`);
  return await finished(page);
}

/** Saves a screenshot of the page's content into `dir`, printing where. */
async function screenshot(page: Page, dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await page.locator("body").screenshot({ path });
  console.log(`screenshot: ${path}`);
  return path;
}

Deno.test({
  name:
    "serve: the tiny model in Chromium's WebGPU: greedy to PyTorch's reference, a seeded sample as deno task sample's, temperature passed through, Stop",
  ignore: !existsSync(CHROMIUM),
  async fn() {
    const shots = await Deno.makeTempDir({ prefix: "serve_page_" });
    const serve = await startServe(TINY);
    const browser = await launchWebGpuChromium();
    try {
      const errors: string[] = [];
      const page = await newPage(browser, errors);
      const greedy = await runPage(page, serve.url, "prompt-ids=5,40,8,43&greedy=1&max-new=12");
      assertEquals(greedy, { state: "done", message: "", ids: REFERENCE_GREEDY });
      ok(
        /architecture swiftshader/.test(await page.locator("#model").textContent() ?? ""),
        "the page ran on SwiftShader's WebGPU adapter",
      );
      ok(/12 new tokens in .* tokens\/s/.test(await page.locator("#speed").textContent() ?? ""));
      await screenshot(page, shots, "greedy.png");

      // one prompt token: the model is unsure of the next (about 1/64 each), so the seed shows
      const sampled = await runPage(page, serve.url, "prompt-ids=5&top-k=50&seed=7&max-new=15");
      const expected = await sampleTask([
        "--weights",
        TINY,
        "--prompt-ids",
        "5",
        "--top-k",
        "50",
        "--seed",
        "7",
        "--max-length",
        "16",
      ]);
      assertEquals(sampled, { state: "done", message: "", ids: expected.tokens });
      const greedyOfOne = await runPage(page, serve.url, "prompt-ids=5&greedy=1&max-new=15");
      ok(greedyOfOne.ids.join() !== sampled.ids.join(), "the sample is not the greedy row");

      const cool = await runPage(page, serve.url, "prompt-ids=5&seed=7&temperature=0.7&max-new=15");
      const model = await fromPretrained(new CpuBackend(), TINY);
      const [cooled] = await generate(model, [[5]], {
        maxLength: 16,
        topK: 50,
        temperature: 0.7,
        generator: new Generator(7),
      });
      assertEquals(cool.ids, cooled);
      ok(cooled.join() !== sampled.ids.join(), "temperature 0.7 changes seed 7's row");

      // Stop ends a long run early, keeping the tokens made so far
      await page.goto(`${serve.url}?prompt-ids=5&greedy=1&max-new=255`);
      await page.waitForFunction(() => document.body.dataset.state === "generating");
      await page.click("#stop");
      const stopped = await finished(page);
      assertEquals(stopped.state, "stopped");
      ok(stopped.ids.length < 256, `stopped after ${stopped.ids.length} of 256 tokens`);
      // the tokens before the stop are greedy's from the same prompt
      assertEquals(stopped.ids.slice(0, 16), greedyOfOne.ids.slice(0, stopped.ids.length));
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await serve.stop();
    }
  },
});

Deno.test({
  name:
    "serve: a text prompt typed into the form is encoded, continued and decoded in the page as deno task sample does",
  ignore: !existsSync(CHROMIUM),
  async fn() {
    const shots = await Deno.makeTempDir({ prefix: "serve_page_" });
    const serve = await startServe(TINY_GPT2_VOCAB);
    const browser = await launchWebGpuChromium();
    try {
      const errors: string[] = [];
      const page = await newPage(browser, errors);
      await page.goto(serve.url);
      await page.waitForFunction(() => document.body.dataset.state === "ready");
      const prompt = "The lecture's prompt, with café:";
      await page.fill("#prompt", prompt);
      await page.fill("#max-new", "10");
      await page.check("#greedy");
      await page.click("#generate");
      const shown = await finished(page);
      const expected = await sampleTask([
        "--weights",
        TINY_GPT2_VOCAB,
        "--prompt",
        prompt,
        "--greedy",
        "--max-length",
        String(shown.ids.length),
      ]);
      assertEquals(shown, { state: "done", message: "", ids: expected.tokens });
      ok(shown.ids.length > 10, "the prompt's tokens and 10 new ones");
      assertEquals(await page.locator("#output").textContent(), expected.text);
      assertEquals(
        new URL(page.url()).searchParams.get("prompt"),
        prompt,
        "the address holds the settings, to share",
      );
      await screenshot(page, shots, "text.png");
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await serve.stop();
    }
  },
});

Deno.test({
  name: "serve: a browser without WebGPU gets a message that says so and what to use",
  ignore: !existsSync(CHROMIUM),
  async fn() {
    const serve = await startServe(TINY);
    const browser = await launchWebGpuChromium();
    try {
      const errors: string[] = [];
      const page = await newPage(browser, errors);
      // as a browser without WebGPU has it: no navigator.gpu
      await page.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined });
      });
      const shown = await runPage(page, serve.url, "prompt-ids=5,40,8,43&greedy=1");
      assertEquals(shown.state, "no-webgpu");
      ok(shown.message.startsWith("This browser has no WebGPU (navigator.gpu is missing)"));
      ok(await page.locator("#generate").isDisabled(), "Generate stays off");
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await serve.stop();
    }
  },
});

Deno.test("serve: a port already taken is an error naming it, and what to pass instead", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = listener.addr.port;
    const out = await task(["serve", "--weights", TINY, "--port", String(port)]);
    assertEquals(out.code, 1);
    ok(
      out.stderr.includes(
        `error: Port ${port} on 127.0.0.1 is taken (another program listens there): pass --port with a free one, or --port 0 for any`,
      ),
      out.stderr,
    );
  } finally {
    listener.close();
  }
});
