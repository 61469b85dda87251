/**
 * `deno task bench-gemm`: the GEMM benchmark of lib/bench/gemm.ts on the native backend,
 * GPT-2 124M's matmuls in their three orientations through the project's own GEMM and
 * OpenBLAS, as a Markdown table (each row on stderr as it is measured).
 *
 * @module
 */

import { createBackend } from "../backends/mod.ts";
import { benchGemm, gemmRowMarkdown, gemmTable, GPT2_LINEARS } from "../bench/gemm.ts";
import { numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task bench-gemm [flags]

GPT-2 124M's matmuls in their three orientations (forward, dinp, dweight) through the project's
own GEMM and OpenBLAS, interleaved, best of the rounds, against the FMA peak.

  --rounds N     interleaved rounds, the best of them reported (default 3)
  --shapes LIST  comma-separated, from ${GPT2_LINEARS.map((l) => l.name).join(", ")}
  --tokens N     rows of every Linear (B * T; default 512)
  -h, --help     this text`;

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    rounds: { type: "string" },
    shapes: { type: "string" },
    tokens: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) return console.log(HELP);
  const rounds = numberFlag(f, "rounds", 3, { integer: true, min: 1 });
  const tokens = numberFlag(f, "tokens", 512, { integer: true, min: 1 });
  const names = stringFlag(f, "shapes")?.split(",") ?? GPT2_LINEARS.map((s) => s.name);
  const shapes = names.map((n) => {
    const s = GPT2_LINEARS.find((l) => l.name === n);
    if (!s) {
      throw new Error(
        `Expected --shapes from ${GPT2_LINEARS.map((l) => l.name).join(", ")}, found "${n}"`,
      );
    }
    return { ...s, tokens };
  });
  const { backend } = await createBackend("native");
  console.log(`${backend.describe()}\n`);
  const report = benchGemm(backend, {
    shapes,
    rounds,
    onRow: (row, peak) => console.error(gemmRowMarkdown(row, peak)),
  });
  console.log(gemmTable(report));
});
