/// <reference lib="dom" />
/**
 * The page of `deno task serve`, bundled into `app.js`: opens WebGPU with the project's
 * kernels, loads the served model (a progress bar for the weights) and GPT-2's tokenizer,
 * then on Generate continues the prompt with `generate` of `lib/model/sample.ts` (KV cache,
 * top-k, temperature, the seeded `Generator` of `lib/model/random.ts`, so a seed gives what
 * `deno task sample --seed` gives), showing tokens as they come and the tokens per second.
 *
 * `body[data-state]` says where it is: loading, ready, generating, done, stopped, error,
 * no-webgpu (the browser test waits on it).
 *
 * @module
 */

import type { Gpt2Tokenizer } from "../../data/tokenizer.ts";
import { formatBytes } from "../../io/progress.ts";
import type { GPT } from "../../model/gpt.ts";
import { Generator } from "../../model/random.ts";
import { generate } from "../../model/sample.ts";
import type { FetchProgress } from "./fetch_progress.ts";
import { loadModel } from "./load_model.ts";
import {
  asksToGenerate,
  parseSettings,
  promptTokens,
  SETTING_NAMES,
  type Settings,
  targetLength,
} from "./settings.ts";
import { decodePadded, loadTokenizer } from "./tokenizer.ts";
import { NoWebGpuError, openWebGpuBackend } from "./webgpu.ts";

/** The page's states, as `body[data-state]` shows them. */
type PageState = "loading" | "ready" | "generating" | "done" | "stopped" | "error" | "no-webgpu";

/** Thrown from `onToken` to end a generation early (the Stop button). */
class Stopped extends Error {}

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`Expected an element #${id} in the page, found none`);
  return found as T;
}

const ui = {
  status: element<HTMLDivElement>("status"),
  progress: element<HTMLProgressElement>("progress"),
  model: element<HTMLDivElement>("model"),
  message: element<HTMLParagraphElement>("message"),
  form: element<HTMLFormElement>("controls"),
  generate: element<HTMLButtonElement>("generate"),
  stop: element<HTMLButtonElement>("stop"),
  output: element<HTMLPreElement>("output"),
  ids: element<HTMLElement>("ids"),
  speed: element<HTMLDivElement>("speed"),
};

function setState(state: PageState, message = ""): void {
  document.body.dataset.state = state;
  ui.message.textContent = message;
  ui.generate.disabled = state === "loading" || state === "generating" || state === "error" ||
    state === "no-webgpu";
  ui.stop.disabled = state !== "generating";
}

/** Puts `settings` into the form's fields. */
function fillForm(settings: Settings): void {
  for (const [key, name] of Object.entries(SETTING_NAMES)) {
    const input = ui.form.elements.namedItem(name) as HTMLInputElement | HTMLTextAreaElement;
    const value = settings[key as keyof Settings];
    if (input instanceof HTMLInputElement && input.type === "checkbox") {
      input.checked = Boolean(value);
    } else input.value = String(value);
  }
}

/** The form's fields as name-value pairs (an unchecked checkbox is absent: greedy off). */
function formValues(): URLSearchParams {
  const values = new URLSearchParams();
  for (const [name, value] of new FormData(ui.form)) values.append(name, String(value));
  if (!values.has(SETTING_NAMES.greedy)) values.set(SETTING_NAMES.greedy, "0");
  return values;
}

function showProgress({ received, total }: FetchProgress): void {
  if (total) {
    ui.progress.max = total;
    ui.progress.value = received;
  } else ui.progress.removeAttribute("value"); // indeterminate
  ui.status.textContent = `Downloading model.safetensors: ${formatBytes(received)}${
    total ? ` of ${formatBytes(total)}` : ""
  }`;
}

/** The prompt and what follows it: text where the ids are GPT-2's, ids in any case. */
function showTokens(tokens: readonly number[], promptLength: number, text: boolean): void {
  ui.ids.textContent = tokens.join(",");
  ui.ids.dataset.promptLength = String(promptLength);
  const prompt = document.createElement("span");
  const continuation = document.createElement("span");
  continuation.className = "new";
  if (text && tokenizer) {
    const all = decodePadded(tokenizer, [...tokens]);
    const head = decodePadded(tokenizer, tokens.slice(0, promptLength));
    // a prompt ending inside a character decodes differently alone: then show it whole
    const split = all.startsWith(head) ? head.length : 0;
    prompt.textContent = all.slice(0, split);
    continuation.textContent = all.slice(split);
  } else {
    prompt.textContent = tokens.slice(0, promptLength).join(" ");
    continuation.textContent = promptLength < tokens.length
      ? " " + tokens.slice(promptLength).join(" ")
      : "";
  }
  ui.output.replaceChildren(prompt, continuation);
}

let model: GPT | undefined;
let tokenizer: Gpt2Tokenizer | undefined;
let stopRequested = false;

async function run(): Promise<void> {
  if (!model || !tokenizer) return;
  stopRequested = false;
  let settings: Settings, prompt: number[], maxLength: number;
  try {
    settings = parseSettings(formValues());
    prompt = promptTokens(settings, tokenizer, model.config.vocab_size);
    maxLength = targetLength(prompt.length, settings.maxNew, model.config.block_size);
  } catch (e) {
    setState("ready", (e as Error).message);
    return;
  }
  history.replaceState(null, "", `?${formValues()}`);
  const text = model.config.vocab_size >= tokenizer.nVocab;
  setState("generating");
  showTokens(prompt, prompt.length, text);
  ui.speed.textContent = "";
  const started = performance.now();
  let firstAt = 0;
  try {
    await generate(model, [prompt], {
      maxLength,
      topK: settings.topK,
      greedy: settings.greedy,
      temperature: settings.temperature,
      generator: new Generator(settings.seed),
      onToken(length, rows) {
        const now = performance.now();
        const made = length - prompt.length;
        if (made === 1) firstAt = now;
        showTokens(rows[0], prompt.length, text);
        // after the first token, which includes the prompt's forward: one token per step
        const rate = made > 1
          ? ` (${((made - 1) / ((now - firstAt) / 1e3)).toFixed(1)} tokens/s)`
          : "";
        ui.speed.textContent = `${made} new token${made === 1 ? "" : "s"} in ${
          ((now - started) / 1e3).toFixed(2)
        } s${rate}; first after ${((firstAt - started) / 1e3).toFixed(2)} s`;
        if (stopRequested) throw new Stopped();
      },
    });
    setState("done");
  } catch (e) {
    if (e instanceof Stopped) setState("stopped");
    else setState("error", `Generation failed: ${(e as Error).message}`);
  }
}

async function start(): Promise<void> {
  const params = new URLSearchParams(location.search);
  try {
    fillForm(parseSettings(params));
  } catch (e) {
    fillForm(parseSettings(new URLSearchParams()));
    ui.message.textContent = (e as Error).message;
  }
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    void run();
  });
  ui.stop.addEventListener("click", () => stopRequested = true);
  try {
    ui.status.textContent = "Opening WebGPU…";
    const [backend, loadedTokenizer] = await Promise.all([openWebGpuBackend(), loadTokenizer()]);
    tokenizer = loadedTokenizer;
    ui.model.textContent = `WebGPU: ${backend.describe()}`;
    model = await loadModel(backend, { onProgress: showProgress });
    const c = model.config;
    ui.status.textContent = `Loaded: ${model.numParameters().toLocaleString("en-US")} ` +
      `parameters, ${c.n_layer} layers, ${c.n_head} heads, n_embd ${c.n_embd}, block size ` +
      `${c.block_size}, vocabulary ${c.vocab_size}${
        c.vocab_size >= tokenizer.nVocab ? "" : " (not GPT-2's: prompt ids, ids out)"
      }`;
  } catch (e) {
    ui.progress.value = 0;
    if (e instanceof NoWebGpuError) setState("no-webgpu", e.message);
    else setState("error", `Loading failed: ${(e as Error).message}`);
    ui.status.textContent = "Not loaded";
    return;
  }
  setState("ready", ui.message.textContent ?? "");
  if (asksToGenerate(params)) await run();
}

void start();
