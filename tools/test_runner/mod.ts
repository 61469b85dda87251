/**
 * `deno task test` and `deno task test:quick`: runs `deno test` with the arguments given,
 * passing its output through as it comes, and at the end prints how long each test file took
 * (`tools/test_runner/file_times.ts`), just above deno test's own summary line
 * (`ok | N passed | N failed (T)`), which stays the last summary line. Exits with deno test's
 * exit code.
 *
 * Usage: `deno run --allow-all tools/test_runner/mod.ts [DENO TEST ARGUMENTS...]`, e.g.
 * `deno run --allow-all tools/test_runner/mod.ts -P tests/io/`. Per-file times need the files
 * run one after another: with `--parallel` the table is left out.
 *
 * @module
 */

import { FileTimer, isSummary, maybeSummary, timeTable } from "./file_times.ts";

type Sink = typeof Deno.stdout;

/** Whether what was written to stdout so far ends a line (a test killed mid-line does not). */
let stdoutAtLineStart = true;

/** One output stream of the child: forwarded as it comes, its lines fed to `onLine`. */
async function pump(
  stream: ReadableStream<Uint8Array>,
  sink: Sink,
  onLine: (line: string) => "show" | "hold",
  held: { sink: Sink; text: string }[],
  holding: () => boolean,
): Promise<void> {
  const encoder = new TextEncoder();
  let line = "", shown = 0; // the current line, and how much of it is already written
  const write = async (text: string) => {
    if (text === "") return;
    if (holding()) held.push({ sink, text });
    else {
      await sink.write(encoder.encode(text));
      if (sink === Deno.stdout) stdoutAtLineStart = text.endsWith("\n");
    }
  };
  const decoder = new TextDecoder();
  for await (const bytes of stream) {
    const chunk = decoder.decode(bytes, { stream: true });
    const parts = chunk.split("\n");
    for (let i = 0; i < parts.length - 1; i++) {
      line += parts[i];
      const decision = onLine(line);
      if (decision === "hold") held.push({ sink, text: line.slice(shown) + "\n" });
      else await write(line.slice(shown) + "\n");
      line = "";
      shown = 0;
    }
    line += parts[parts.length - 1];
    // show a partial line at once ("NAME ..." while the test runs), unless it may be the summary
    if (!maybeSummary(line)) {
      await write(line.slice(shown));
      shown = line.length;
    }
  }
  if (line !== "") {
    onLine(line);
    await write(line.slice(shown));
  }
}

async function main(args: string[]): Promise<number> {
  const started = performance.now();
  const timer = new FileTimer(started);
  const held: { sink: Sink; text: string }[] = [];
  let summarySeen = false;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", ...args],
    stdin: "inherit",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const onLine = (line: string): "show" | "hold" => {
    timer.line(line, performance.now());
    if (!summarySeen && isSummary(line)) summarySeen = true;
    return summarySeen ? "hold" : "show";
  };
  await Promise.all([
    pump(child.stdout, Deno.stdout, onLine, held, () => summarySeen),
    pump(child.stderr, Deno.stderr, (line) => onLine(line), held, () => summarySeen),
  ]);
  const { code, signal } = await child.status;
  const table = args.includes("--parallel") ? "" : timeTable(timer.times(), timer.beforeFirstMs);
  const encoder = new TextEncoder();
  if (!stdoutAtLineStart) await Deno.stdout.write(encoder.encode("\n"));
  if (table !== "") await Deno.stdout.write(encoder.encode(`${table}\n\n`));
  for (const { sink, text } of held) await sink.write(encoder.encode(text));
  if (!summarySeen) {
    const how = signal === null ? `exit code ${code}` : `signal ${signal}, exit code ${code}`;
    await Deno.stderr.write(
      encoder.encode(`error: deno test ended before its summary line (${how})\n`),
    );
    return code === 0 ? 1 : code;
  }
  return code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
