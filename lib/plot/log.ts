/**
 * Training logs in the two line formats this project reads:
 *
 * - build-nanogpt's `log.txt`, which our training loop writes too: `{step} train {loss:.6f}`,
 *   `{step} val {loss:.4f}`, `{step} hella {acc_norm:.4f}`;
 * - llm.c's `main.log` (`llmc/logger.h`): `s:{step} trl:{loss} lr:{lr} norm:{norm}`,
 *   `s:{step} tel:{loss}`, `s:{step} eval:{acc}`.
 *
 * Parsing follows build-nanogpt's plotting cell (a `{step: value}` map per stream, then sorted by
 * step), so a step logged twice keeps its later value: a run resumed from a checkpoint appends
 * the steps it repeats, and those win. Unlike that cell it does not stop at a bad line: a line cut
 * off by a run still writing, or anything else it cannot read, is skipped and reported.
 *
 * @module
 */

/** The log formats {@linkcode parseLog} reads. */
export type LogFormat = "build-nanogpt" | "llm.c";

/** One stream of a log (train loss, val loss, HellaSwag...): points sorted by step. */
export interface Series {
  /** Steps, ascending, each once. */
  steps: number[];
  /** The value logged at each step (the last one logged for that step). */
  values: number[];
}

/** A parsed log. */
export interface RunLog {
  /** The format the lines were read as. */
  format: LogFormat;
  /** Training loss per step (`train`, llm.c's `trl`). */
  train: Series;
  /** Validation loss (`val`, llm.c's `tel`). */
  val: Series;
  /** HellaSwag acc_norm (`hella`, llm.c's `eval`). */
  hella: Series;
  /** Any other stream by name (llm.c's `lr` and `norm`, or a stream of ours yet to come). */
  other: Record<string, Series>;
  /** One message per line skipped, naming its line number. */
  warnings: string[];
}

/** Options for {@linkcode parseLog}. */
export interface ParseLogOptions {
  /** The format; by default detected from the first line that reads as either. */
  format?: LogFormat;
  /** A name for messages, e.g. the file's path; `log` by default. */
  source?: string;
}

const NANOGPT_LINE = /^(\d+)\s+([A-Za-z_][\w.-]*)\s+(\S+)$/;
const LLMC_LINE = /^s:(\d+)((?:\s+[A-Za-z_]\w*:\S+)+)$/;
const LLMC_NAMES: Record<string, string> = { trl: "train", tel: "val", eval: "hella" };

/** Which format a log's text is in, from its first line that reads as either; null if none. */
export function detectLogFormat(text: string): LogFormat | null {
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (LLMC_LINE.test(line)) return "llm.c";
    if (NANOGPT_LINE.test(line)) return "build-nanogpt";
  }
  return null;
}

/**
 * Parses a training log's text into sorted series. Lines that do not read are skipped and
 * listed in `warnings`; text with lines but none readable is an error, and empty text gives
 * empty series (a run that has not logged yet).
 */
export function parseLog(text: string, options: ParseLogOptions = {}): RunLog {
  const source = options.source ?? "log";
  const first = text.split("\n").find((l) => l.trim() !== "")?.trim();
  if (first === undefined) {
    // A run that has not logged yet (the training loop redraws from its first evaluation on)
    return {
      format: options.format ?? "build-nanogpt",
      train: emptySeries(),
      val: emptySeries(),
      hella: emptySeries(),
      other: {},
      warnings: [],
    };
  }
  const format = options.format ?? detectLogFormat(text);
  if (format === null) {
    throw new Error(
      `${source}: expected build-nanogpt lines ("{step} train {loss}") or llm.c lines ` +
        `("s:{step} trl:{loss}"), found ${JSON.stringify(first.slice(0, 80))}`,
    );
  }
  const streams = new Map<string, Map<number, number>>();
  const warnings: string[] = [];
  const record = (name: string, step: number, value: number): void => {
    let stream = streams.get(name);
    if (stream === undefined) streams.set(name, stream = new Map());
    stream.set(step, value); // a later line for the same step wins (a resumed run)
  };
  const lines = text.split("\n");
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === "") return;
    const where = `${source}:${index + 1}`;
    const unfinished = index === lines.length - 1
      ? " (the last line, perhaps still being written)"
      : "";
    if (format === "build-nanogpt") {
      const m = NANOGPT_LINE.exec(line);
      const value = m ? Number(m[3]) : NaN;
      if (m === null || !Number.isFinite(value)) {
        warnings.push(
          `${where}: expected "{step} {stream} {value}", found ${
            JSON.stringify(line)
          }${unfinished}`,
        );
        return;
      }
      record(m[2], Number(m[1]), value);
      return;
    }
    const m = LLMC_LINE.exec(line);
    if (m === null) {
      warnings.push(
        `${where}: expected "s:{step} key:value ...", found ${JSON.stringify(line)}${unfinished}`,
      );
      return;
    }
    const step = Number(m[1]);
    const pairs = m[2].trim().split(/\s+/).map((p) => {
      const colon = p.indexOf(":");
      return [p.slice(0, colon), Number(p.slice(colon + 1))] as const;
    });
    const bad = pairs.find(([, v]) => !Number.isFinite(v));
    if (bad !== undefined) {
      warnings.push(
        `${where}: expected a number for ${bad[0]}, found ${JSON.stringify(line)}${unfinished}`,
      );
      return;
    }
    for (const [key, value] of pairs) record(LLMC_NAMES[key] ?? key, step, value);
  });
  if (streams.size === 0) {
    throw new Error(`${source}: no readable ${format} lines (${warnings[0] ?? "empty"})`);
  }
  const take = (name: string): Series => {
    const stream = streams.get(name);
    streams.delete(name);
    return toSeries(stream);
  };
  const train = take("train"), val = take("val"), hella = take("hella");
  const other: Record<string, Series> = {};
  for (const [name, stream] of streams) other[name] = toSeries(stream);
  return { format, train, val, hella, other, warnings };
}

/**
 * Reads and parses a log file (see {@linkcode parseLog}).
 *
 * @throws {Error} naming the path when it is missing, a folder (the message names the
 * `log.txt` or `main.log` inside it, if there is one) or cannot be read.
 */
export async function readLog(path: string, options: ParseLogOptions = {}): Promise<RunLog> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`Log file ${path} not found: expected a log.txt or llm.c main.log`);
    }
    if (e instanceof Deno.errors.IsADirectory || (await isFolder(path))) {
      const inside = await logInFolder(path);
      throw new Error(
        `Expected a log file at ${path}, found a folder` +
          (inside ? `: pass ${inside}` : " (with no log.txt or main.log in it)"),
      );
    }
    throw new Error(`Cannot read the log file ${path}: ${(e as Error).message}`);
  }
  return parseLog(text, { source: path, ...options });
}

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** `log.txt` or `main.log` in the folder `dir` (a run's log folder), or null. */
async function logInFolder(dir: string): Promise<string | null> {
  for (const name of ["log.txt", "main.log"]) {
    const path = `${dir.replace(/\/+$/, "")}/${name}`;
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // not there: the next name
    }
  }
  return null;
}

/** A series with no points. */
export function emptySeries(): Series {
  return { steps: [], values: [] };
}

function toSeries(stream: Map<number, number> | undefined): Series {
  if (stream === undefined) return emptySeries();
  const steps = [...stream.keys()].sort((a, b) => a - b);
  return { steps, values: steps.map((s) => stream.get(s)!) };
}
