/**
 * The page's generation settings: read from the form or from the page's address
 * (`?prompt-ids=5,40,8,43&greedy=1&max-new=12`), checked, and turned into a prompt of token
 * ids and `generate`'s options. The names are `deno task sample`'s flags where it has them
 * (`prompt`, `prompt-ids`, `top-k`, `seed`, `greedy`); `max-new` counts new tokens only.
 *
 * @module
 */

import type { Gpt2Tokenizer } from "../../data/tokenizer.ts";

/** What one click of Generate asks for. */
export interface Settings {
  /** Text to encode; used when `promptIds` is empty. */
  prompt: string;
  /** Comma-separated token ids instead of text (for models with their own vocabulary). */
  promptIds: string;
  /** New tokens to add to the prompt. */
  maxNew: number;
  topK: number;
  temperature: number;
  seed: number;
  greedy: boolean;
}

/** The settings the page opens with: `deno task sample`'s defaults, 30 new tokens. */
export const DEFAULT_SETTINGS: Readonly<Settings> = {
  prompt: "Hello, I'm a language model,",
  promptIds: "",
  maxNew: 30,
  topK: 50,
  temperature: 1,
  seed: 42,
  greedy: false,
};

/** The most tokens a sequence may reach, in block sizes (as `deno task sample` allows). */
export const MAX_LENGTH_BLOCKS = 16;

/** The query parameter (and form field) of each setting. */
export const SETTING_NAMES: Readonly<Record<keyof Settings, string>> = {
  prompt: "prompt",
  promptIds: "prompt-ids",
  maxNew: "max-new",
  topK: "top-k",
  temperature: "temperature",
  seed: "seed",
  greedy: "greedy",
};

/**
 * Settings from name-value pairs (a page address's query, a form's fields): missing ones
 * take `DEFAULT_SETTINGS`; `greedy` is on for "1", "true", "on" or an empty value.
 *
 * @throws {Error} naming the setting, for a number that is not one or is out of range.
 */
export function parseSettings(values: URLSearchParams): Settings {
  const get = (key: keyof Settings): string | null => values.get(SETTING_NAMES[key]);
  const number = (key: keyof Settings, integer: boolean, min: number, above = false): number => {
    const raw = get(key);
    if (raw === null) return DEFAULT_SETTINGS[key] as number;
    const n = raw.trim() === "" ? NaN : Number(raw);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || (above ? n <= min : n < min)) {
      const kind = integer ? "an integer" : "a number";
      throw new Error(
        `${SETTING_NAMES[key]} expects ${kind} ${above ? ">" : ">="} ${min}, found "${raw}"`,
      );
    }
    return n;
  };
  const greedy = get("greedy");
  return {
    prompt: get("prompt") ?? DEFAULT_SETTINGS.prompt,
    promptIds: get("promptIds") ?? DEFAULT_SETTINGS.promptIds,
    maxNew: number("maxNew", true, 1),
    topK: number("topK", true, 1),
    temperature: number("temperature", false, 0, true),
    seed: number("seed", true, 0),
    greedy: greedy === null ? DEFAULT_SETTINGS.greedy : ["", "1", "true", "on"].includes(greedy),
  };
}

/** Whether the address asks for a generation at once: it names a prompt. */
export function asksToGenerate(values: URLSearchParams): boolean {
  return values.has(SETTING_NAMES.prompt) || values.has(SETTING_NAMES.promptIds);
}

/**
 * The prompt's token ids: `promptIds` when given, else `prompt` encoded by `tokenizer`; every
 * id must be in the model's vocabulary of `V`.
 *
 * @throws {Error} for an empty prompt, a malformed id list, or ids outside [0, V).
 */
export function promptTokens(settings: Settings, tokenizer: Gpt2Tokenizer, V: number): number[] {
  const ids = settings.promptIds.trim();
  if (ids !== "") {
    const expects = `prompt-ids expects comma-separated integers in [0, ${V})`;
    return ids.split(",").map((item, i) => {
      const s = item.trim();
      const id = /^\d+$/.test(s) ? Number(s) : NaN;
      if (s === "") throw new Error(`${expects}, found an empty item (number ${i + 1})`);
      if (!(id < V)) throw new Error(`${expects}, found "${s}"`);
      return id;
    });
  }
  const tokens = tokenizer.encode(settings.prompt);
  if (tokens.length === 0) throw new Error("The prompt is empty: type some text or prompt ids");
  const bad = tokens.find((t) => t >= V);
  if (bad !== undefined) {
    throw new Error(
      `The prompt encodes to token ${bad}, outside this model's vocabulary of ${V}: give prompt ids`,
    );
  }
  return tokens;
}

/**
 * The sequence length to generate to: the prompt plus `maxNew`, at most
 * `MAX_LENGTH_BLOCKS` block sizes (past one block the context is cropped, as in
 * `deno task sample`).
 *
 * @throws {Error} when that is more than the limit.
 */
export function targetLength(promptLength: number, maxNew: number, blockSize: number): number {
  const limit = MAX_LENGTH_BLOCKS * blockSize;
  if (promptLength + maxNew > limit) {
    throw new Error(
      `max-new expects at most ${limit - promptLength} new tokens after a prompt of ` +
        `${promptLength} (${MAX_LENGTH_BLOCKS} x the block size ${blockSize} in all), found ${maxNew}`,
    );
  }
  return promptLength + maxNew;
}
