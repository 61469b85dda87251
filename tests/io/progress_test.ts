/**
 * Tests for lib/io/progress.ts: what the bar writes on a terminal and in a log, with a fake
 * clock and a writer that keeps the text.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  formatBytes,
  formatCount,
  formatDuration,
  ProgressBar,
  type ProgressWriter,
} from "../../lib/io/progress.ts";

/** A writer that keeps what it is given, and a clock the test moves. */
function fakes(): { writer: ProgressWriter; text: () => string; clock: { ms: number } } {
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  return {
    writer: {
      writeSync(p: Uint8Array): number {
        chunks.push(decoder.decode(p));
        return p.length;
      },
    },
    text: () => chunks.join(""),
    clock: { ms: 0 },
  };
}

Deno.test("formatBytes, formatCount and formatDuration use human units", () => {
  assertEquals(
    [formatBytes(512), formatBytes(1536), formatBytes(548_105_171), formatBytes(3 * 2 ** 30)],
    ["512 B", "1.5 KiB", "522.7 MiB", "3.0 GiB"],
  );
  assertEquals(
    [formatCount(950), formatCount(338_025), formatCount(1.2e6), formatCount(1e10)],
    ["950", "338.0k", "1.2M", "10.0G"],
  );
  assertEquals(
    [formatDuration(9.6), formatDuration(75), formatDuration(3725), formatDuration(Infinity)],
    ["0:10", "1:15", "1:02:05", "?"],
  );
});

Deno.test("off a terminal, the bar logs a line at most every few seconds and at the end", () => {
  const { writer, text, clock } = fakes();
  const bar = new ProgressBar("model.safetensors", {
    total: 100 * 2 ** 20,
    unit: "B",
    writer,
    tty: false,
    logEverySeconds: 5,
    now: () => clock.ms,
  });
  for (let second = 1; second <= 10; second++) {
    clock.ms = second * 1000;
    bar.update(second * 10 * 2 ** 20);
  }
  bar.done();
  bar.done();
  assertEquals(text().split("\n"), [
    "model.safetensors: 50%, 50.0/100.0 MiB, 10.0 MiB/s, ETA 0:05",
    "model.safetensors: 100%, 100.0/100.0 MiB, 10.0 MiB/s, ETA 0:00",
    "model.safetensors: 100%, 100.0/100.0 MiB, 10.0 MiB/s, in 0:10",
    "",
  ]);
});

Deno.test("on a terminal, the bar redraws one line with \\r and ends it with a newline", () => {
  const { writer, text, clock } = fakes();
  const bar = new ProgressBar("tokenizing", {
    total: 1000,
    unit: "docs",
    writer,
    tty: true,
    now: () => clock.ms,
  });
  clock.ms = 500;
  bar.tick(250);
  clock.ms = 550;
  bar.tick(10); // within 100 ms of the last draw: not drawn
  clock.ms = 1000;
  bar.tick(240);
  bar.done();
  const out = text();
  assertEquals(out.split("\r").length - 1, 3);
  assert(
    out.startsWith(
      "\rtokenizing [#####---------------]   25%  250/1.0k docs  500 docs/s  ETA 0:02",
    ),
    out,
  );
  assert(
    out.includes("\rtokenizing [##########----------]   50%  500/1.0k docs  500 docs/s  ETA 0:01"),
    out,
  );
  assert(/in 0:01 *\n$/.test(out), out);
});

Deno.test("a resumed count measures the rate from where it started; no total, no ETA", () => {
  const { writer, text, clock } = fakes();
  const bar = new ProgressBar("x.bin", {
    initial: 1000,
    unit: "B",
    writer,
    tty: false,
    now: () => clock.ms,
  });
  clock.ms = 2000;
  bar.update(3048);
  bar.done();
  assertEquals(text(), "x.bin: 3.0 KiB, 1.0 KiB/s, in 0:02\n");
});

Deno.test("a disabled bar writes nothing", () => {
  const { writer, text } = fakes();
  const bar = new ProgressBar("quiet", { total: 10, writer, enabled: false });
  bar.tick(10);
  bar.done();
  assertEquals(text(), "");
});
