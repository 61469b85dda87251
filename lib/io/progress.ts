/**
 * A small progress bar for long work: downloads (in bytes), tokenizing, training.
 *
 * On a terminal it redraws one line on stderr with `\r`, at most every 100 ms:
 *
 *     model.safetensors [########------------]  41% 210.3/522.7 MiB  31.2 MiB/s  ETA 0:10
 *
 * Anywhere else (a log file, CI) it prints a plain line at most every few seconds and one at
 * the end, so logs stay readable:
 *
 *     model.safetensors: 41% 210.3/522.7 MiB, 31.2 MiB/s, ETA 0:10
 *
 * @module
 */

/** Where a progress bar writes; `Deno.stderr` by default. */
export interface ProgressWriter {
  /** Writes bytes synchronously, returning how many were written. */
  writeSync(p: Uint8Array): number;
}

/** Options for {@linkcode ProgressBar}. */
export interface ProgressBarOptions {
  /** The amount that means "finished" (bytes, tokens, steps); unknown when left out. */
  total?: number;
  /** Where counting starts, e.g. the bytes of a download being resumed; 0 by default. */
  initial?: number;
  /** `"B"` for bytes (shown as KiB, MiB, GiB); any other word is shown after the count. */
  unit?: string;
  /** Where to write; `Deno.stderr` by default. */
  writer?: ProgressWriter;
  /** Whether to redraw in place; by default, whether stderr is a terminal. */
  tty?: boolean;
  /** Seconds between plain log lines when not on a terminal; 5 by default. */
  logEverySeconds?: number;
  /** False to print nothing at all; true by default. */
  enabled?: boolean;
  /** A clock in milliseconds, for tests; `performance.now` by default. */
  now?: () => number;
}

const REDRAW_MS = 100;
const BAR_WIDTH = 20;
const ENCODER = new TextEncoder();

/**
 * A progress bar on stderr. Call {@linkcode ProgressBar.update} with the amount done so far
 * (or {@linkcode ProgressBar.tick} with an increment) and {@linkcode ProgressBar.done} at the
 * end.
 *
 * @example
 * ```ts
 * const bar = new ProgressBar("tokenizing", { total: docs.length, unit: "docs" });
 * for (const doc of docs) {
 *   encode(doc);
 *   bar.tick();
 * }
 * bar.done();
 * ```
 */
export class ProgressBar {
  /** The text before the bar, e.g. a file name. */
  readonly label: string;
  /** The amount that means "finished", if known. */
  total: number | undefined;
  /** The amount done so far. */
  value: number;
  readonly #unit: string;
  readonly #initial: number;
  readonly #writer: ProgressWriter;
  readonly #tty: boolean;
  readonly #logEveryMs: number;
  readonly #enabled: boolean;
  readonly #now: () => number;
  readonly #start: number;
  #lastDraw: number;
  #lastLength = 0;
  #finished = false;

  /** Makes a bar; it draws nothing until the first update. */
  constructor(label: string, options: ProgressBarOptions = {}) {
    this.label = label;
    this.total = options.total;
    this.#initial = options.initial ?? 0;
    this.value = this.#initial;
    this.#unit = options.unit ?? "";
    this.#writer = options.writer ?? Deno.stderr;
    this.#tty = options.tty ?? isStderrTerminal();
    this.#logEveryMs = (options.logEverySeconds ?? 5) * 1000;
    this.#enabled = options.enabled ?? true;
    this.#now = options.now ?? (() => performance.now());
    this.#start = this.#now();
    this.#lastDraw = this.#start;
  }

  /** Sets the amount done so far and redraws if it is time to. */
  update(value: number): void {
    this.value = value;
    if (!this.#enabled || this.#finished) return;
    const now = this.#now();
    if (now - this.#lastDraw < (this.#tty ? REDRAW_MS : this.#logEveryMs)) return;
    this.#lastDraw = now;
    this.#draw(now, false);
  }

  /** Adds `n` (1 by default) to the amount done. */
  tick(n = 1): void {
    this.update(this.value + n);
  }

  /** Draws the final state and ends the line; later calls do nothing. */
  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#enabled) this.#draw(this.#now(), true);
  }

  /** The line as it would be drawn now, without the bar on a non-terminal. */
  render(final = false): string {
    return this.#render(this.#now(), final);
  }

  #render(now: number, final: boolean): string {
    const seconds = Math.max((now - this.#start) / 1000, 1e-9);
    const rate = (this.value - this.#initial) / seconds;
    const total = this.total;
    const known = total !== undefined && total > 0;
    const parts: string[] = [];
    if (known) {
      const fraction = Math.min(Math.max(this.value / total, 0), 1);
      const percent = `${Math.floor(fraction * 100)}%`.padStart(this.#tty ? 4 : 0);
      if (this.#tty) {
        const filled = Math.round(fraction * BAR_WIDTH);
        parts.push(`[${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}]`);
      }
      parts.push(percent, this.#amount(this.value, total));
    } else {
      parts.push(this.#amount(this.value));
    }
    parts.push(`${this.#amount(rate)}/s`);
    if (final) {
      parts.push(`in ${formatDuration(seconds)}`);
    } else if (known && rate > 0) {
      parts.push(`ETA ${formatDuration(Math.max(total - this.value, 0) / rate)}`);
    }
    return this.#tty ? `${this.label} ${parts.join("  ")}` : `${this.label}: ${parts.join(", ")}`;
  }

  #amount(value: number, total?: number): string {
    if (this.#unit === "B") {
      if (total === undefined) return formatBytes(value);
      const [scale, unit] = scaleBytes(total);
      const digits = scale === 1 ? 0 : 1;
      return `${(value / scale).toFixed(digits)}/${(total / scale).toFixed(digits)} ${unit}`;
    }
    const suffix = this.#unit === "" ? "" : ` ${this.#unit}`;
    if (total === undefined) return `${formatCount(value)}${suffix}`;
    return `${formatCount(value)}/${formatCount(total)}${suffix}`;
  }

  #draw(now: number, final: boolean): void {
    const line = this.#render(now, final);
    let text: string;
    if (this.#tty) {
      const width = terminalColumns();
      const clipped = width > 0 && line.length >= width ? line.slice(0, width - 1) : line;
      const pad = " ".repeat(Math.max(this.#lastLength - clipped.length, 0));
      this.#lastLength = clipped.length;
      text = `\r${clipped}${pad}${final ? "\n" : ""}`;
    } else {
      text = `${line}\n`;
    }
    writeAllSync(this.#writer, ENCODER.encode(text));
  }
}

/** Formats a byte count with binary units: `512 B`, `1.5 KiB`, `522.7 MiB`. */
export function formatBytes(bytes: number): string {
  if (Math.abs(bytes) < 1024) return `${Math.round(bytes)} B`;
  const [scale, unit] = scaleBytes(bytes);
  return `${(bytes / scale).toFixed(1)} ${unit}`;
}

/** Formats a duration in seconds as `m:ss` or `h:mm:ss`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Formats a count with SI suffixes: `950`, `12.3k`, `338.0k`, `1.2M`, `10.0G`. */
export function formatCount(n: number): string {
  const a = Math.abs(n);
  if (a < 1000) return Number.isInteger(n) ? String(n) : n.toFixed(1);
  if (a < 1e6) return `${(n / 1e3).toFixed(1)}k`;
  if (a < 1e9) return `${(n / 1e6).toFixed(1)}M`;
  return `${(n / 1e9).toFixed(1)}G`;
}

function scaleBytes(bytes: number): [number, string] {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let scale = 1;
  let i = 0;
  while (Math.abs(bytes) >= scale * 1024 && i < units.length - 1) {
    scale *= 1024;
    i++;
  }
  return [scale, units[i]];
}

function isStderrTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 0;
  }
}

function writeAllSync(writer: ProgressWriter, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += writer.writeSync(bytes.subarray(offset));
}
