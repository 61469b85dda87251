// lib/bench/ladder_chart.ts: the ladder's bars (tok/s and speedup per rung), and ours beside the
// lecture's rung for rung, each bar's length its speedup, a lecture rung without ours marked.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { besideLectureSvg, ladderSvg } from "../../lib/bench/ladder_chart.ts";

const row = (name: string, ms: number, lecture?: string) => ({
  rung: { name, change: `${name} on`, lecture },
  ms,
  tokensPerSec: 1000 / ms,
  speedup: 1,
});

/** The widths of the SVG's bars, in order (the background rectangle left out). */
function barWidths(svg: string): number[] {
  return [...svg.matchAll(/<rect x="\d+" y="[\d.]+" width="([\d.]+)" height="(\d+)"/g)]
    .filter((m) => m[2] !== "12").map((m) => Number(m[1]));
}

Deno.test("ladderSvg: one bar per rung, as long as its tok/s, labelled with the speedup", () => {
  const svg = ladderSvg([{ ...row("a", 100), speedup: 1 }, { ...row("b", 50), speedup: 2 }], "T");
  assertEquals(barWidths(svg), [200, 400]);
  ok(svg.includes("20.0 tok/s, 2.0x") && svg.includes(">b</text>"));
});

Deno.test("besideLectureSvg: the lecture's speedups and ours over our first rung, rung for rung", () => {
  const svg = besideLectureSvg(
    [row("plain", 9000), row("kernels", 200, "base"), row("half", 100, "bf16")],
    { base: 1000, tf32: 500, bf16: 250 },
    "beside & <lecture>",
  );
  // lecture 1x, ours 1x; lecture 2x, none of ours; lecture 4x, ours 2x: bars scaled to 4x
  assertEquals(barWidths(svg), [87.5, 87.5, 175, 350, 175]);
  ok(svg.includes("no rung here") && svg.includes("2.00x (half)") && svg.includes("4.0x (A100)"));
  ok(svg.includes("beside &amp; &lt;lecture&gt;") && svg.includes("here, over kernels"));
});
