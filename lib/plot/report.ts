/**
 * A run's report: `report.html` in its log folder, one page that opens offline (plotly.js
 * inlined) with what ran (command, preset, model and training config), where (hardware,
 * backend), how fast (tok/s, MFU), the figure, the samples printed during training and the final
 * numbers against the GPT-2 and GPT-3 baselines.
 *
 * The training loop fills a {@linkcode RunReportInfo} and calls {@linkcode writeRunReport} at the
 * end of a run (or after each evaluation: it rewrites the page from `log.txt` each time).
 *
 * @module
 */

import { join } from "node:path";
import {
  type Baselines,
  buildFigure,
  type FigureData,
  type ModelSize,
  type Point,
  summarize,
} from "./figure.ts";
import { escapeHtml, figureDiv, plotlyScriptTag } from "./html.ts";
import { readLog } from "./log.ts";
import { renderSvg, svgToPng } from "./svg.ts";

/** Throughput of a run. */
export interface Throughput {
  /** Training tokens per second (mean over the run, or of the steps after warm-up). */
  tokensPerSec: number;
  /** Model FLOPs per token (see {@linkcode flopsPerToken}); shown when given. */
  flopsPerToken?: number;
  /** The hardware's peak FLOP/s that MFU is measured against, e.g. 312e12 for an A100 (bf16). */
  peakFlops?: number;
  /** Model FLOPs utilisation, 0-1; computed from the three above when left out. */
  mfu?: number;
}

/** A sample printed during training. */
export interface RunSample {
  /** The step it was drawn at (-1 or 0 for the untrained model). */
  step: number;
  text: string;
}

/** What the training loop knows about a run; everything but `model` and `backend` is optional. */
export interface RunReportInfo {
  /** The page's title; by default "GPT-2 run: {model} on {preset}". */
  title?: string;
  /** The exact command, e.g. `deno task train --steps 200 --log-dir log`. */
  command?: string;
  /** The recipe, e.g. "section 1: Tiny Shakespeare" or "FineWeb-EDU 10B, 124M". */
  preset?: string;
  /** The model's name: gpt2, gpt2-medium, ..., tiny. */
  model: string;
  /** GPTConfig fields (n_layer, n_head, n_embd, block_size, vocab_size). */
  modelConfig?: Record<string, number>;
  /** The model's parameter count. */
  parameters?: number;
  /** Training settings by name (B, T, total batch size, steps, learning rates, seed...). */
  training?: Record<string, string | number | boolean>;
  /** The backend, e.g. "cpu (reference TypeScript)" or "webgpu". */
  backend: string;
  /** The accelerator, e.g. a WebGPU adapter's description. */
  device?: string;
  /** The machine; {@linkcode describeHardware} by default. */
  hardware?: string;
  throughput?: Throughput;
  /** Samples printed during training, in order. */
  samples?: RunSample[];
  /** When the run started (ISO 8601). */
  startedAt?: string;
  /** Wall-clock seconds the run took. */
  durationSeconds?: number;
  /** The model size whose baselines are compared; from `model` when it names one, else 124M. */
  size?: ModelSize;
  /** The log's file name in the log folder; `log.txt` by default. */
  logFile?: string;
  /** The run's label in the figure; `ours` by default. */
  label?: string;
  /** Free-form remarks, one paragraph each. */
  notes?: string[];
}

/**
 * Model FLOPs per training token as nanoGPT and llm.c count them for MFU: 6N for the forward and
 * backward matmuls plus 12·L·C·T for attention.
 */
export function flopsPerToken(
  parameters: number,
  config: { n_layer: number; n_embd: number },
  T: number,
): number {
  return 6 * parameters + 12 * config.n_layer * config.n_embd * T;
}

/** MFU (0-1) of a throughput given FLOPs per token and the hardware's peak FLOP/s. */
export function mfu(tokensPerSec: number, flopsPerTok: number, peakFlops: number): number {
  return (tokensPerSec * flopsPerTok) / peakFlops;
}

/** The machine in one line: CPU model and cores, memory, OS, Deno version. */
export function describeHardware(): string {
  let cpu = "unknown CPU";
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux, or no permission: the core count still says something
  }
  const cores = navigator.hardwareConcurrency;
  let memory = "";
  try {
    memory = `, ${(Deno.systemMemoryInfo().total / 2 ** 30).toFixed(1)} GiB`;
  } catch {
    // --allow-sys not granted
  }
  return `${cpu}, ${cores} cores${memory}, ${Deno.build.os}/${Deno.build.arch}, Deno ${Deno.version.deno}`;
}

const SIZES: Record<string, ModelSize> = {
  gpt2: "124M",
  "gpt2-medium": "350M",
  "gpt2-large": "774M",
  "gpt2-xl": "1558M",
};

/** What {@linkcode writeRunReport} wrote. */
export interface WrittenReport {
  /** The page's path. */
  path: string;
  figure: FigureData;
}

/**
 * Writes `report.html` into `logDir` from its `log.txt` (or `info.logFile`) and `info`. The page
 * inlines plotly.js and a PNG of the figure, so it opens offline.
 */
export async function writeRunReport(logDir: string, info: RunReportInfo): Promise<WrittenReport> {
  const log = await readLog(join(logDir, info.logFile ?? "log.txt"));
  const size = info.size ?? SIZES[info.model] ?? "124M";
  const figure = buildFigure([{ label: info.label ?? "ours", log }], {
    size,
    title: `${info.model}: loss and HellaSwag against the GPT-2 and GPT-3 ${size} baselines`,
  });
  const png = svgToPng(await renderSvg(figure), { scale: 1.5 });
  const html = await reportHtml(info, figure, png);
  const path = join(logDir, "report.html");
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, html);
  await Deno.rename(tmp, path);
  return { path, figure };
}

/** The report page's HTML (see {@linkcode writeRunReport}). */
export async function reportHtml(
  info: RunReportInfo,
  figure: FigureData,
  png: Uint8Array,
): Promise<string> {
  const title = info.title ?? `GPT-2 run: ${info.model}${info.preset ? ` on ${info.preset}` : ""}`;
  const t = info.throughput;
  const derivedMfu = t?.mfu ??
    (t?.flopsPerToken && t.peakFlops
      ? mfu(t.tokensPerSec, t.flopsPerToken, t.peakFlops)
      : undefined);
  const facts: [string, string | undefined][] = [
    ["command", info.command && `<code>${escapeHtml(info.command)}</code>`],
    ["preset", info.preset && escapeHtml(info.preset)],
    [
      "model",
      escapeHtml(info.model) +
      (info.parameters ? `, ${info.parameters.toLocaleString("en-US")} parameters` : ""),
    ],
    ["model config", info.modelConfig && escapeHtml(formatRecord(info.modelConfig))],
    ["training", info.training && escapeHtml(formatRecord(info.training))],
    ["backend", escapeHtml(info.backend)],
    ["device", info.device && escapeHtml(info.device)],
    ["hardware", escapeHtml(info.hardware ?? describeHardware())],
    ["started", info.startedAt && escapeHtml(info.startedAt)],
    [
      "duration",
      info.durationSeconds !== undefined ? formatDuration(info.durationSeconds) : undefined,
    ],
    ["throughput", t && `${t.tokensPerSec.toFixed(1)} tok/s`],
    [
      "MFU",
      derivedMfu !== undefined
        ? `${(derivedMfu * 100).toFixed(2)}%${
          t?.peakFlops ? ` of ${(t.peakFlops / 1e12).toFixed(1)} TFLOP/s peak` : ""
        }${t?.flopsPerToken ? ` (${(t.flopsPerToken / 1e6).toFixed(1)} MFLOP per token)` : ""}`
        : undefined,
    ],
  ];
  const rows = facts.filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("\n");
  const samples = (info.samples ?? []).map((s) =>
    `<h3>step ${s.step}</h3><pre class="sample">${escapeHtml(s.text)}</pre>`
  ).join("\n");
  const notes = (info.notes ?? []).map((n) => `<p>${escapeHtml(n)}</p>`).join("\n");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
${await plotlyScriptTag()}
<style>
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:16px 24px;max-width:1300px}
table{border-collapse:collapse;margin:8px 0 16px}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
pre.sample{white-space:pre-wrap;background:#f8f8f8;padding:8px;border-left:3px solid #08519c}
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<h2>Run</h2>
<table>
${rows}
</table>
${notes}
<h2>Loss and HellaSwag</h2>
${figureDiv(figure, { id: "figure", fallbackPng: png })}
<h2>Final numbers against the baselines</h2>
${resultsTable(figure)}
<h2>Samples</h2>
${samples || "<p>No samples were printed during this run.</p>"}
<p><small>Written by lib/plot/report.ts from the run's log; plotly.js is inlined, so this page opens offline.</small></p>
</body>
</html>
`;
}

/** One table per run: last and best values against the baselines of its size. */
function resultsTable(figure: FigureData): string {
  const b: Baselines = figure.baselines;
  const fmt = (p: Point | null): string =>
    p === null ? "not logged" : `${p.value.toFixed(4)} (step ${p.step})`;
  const last = (s: { steps: number[]; values: number[] }): Point | null =>
    s.steps.length === 0 ? null : { step: s.steps.at(-1)!, value: s.values.at(-1)! };
  const vs = (p: Point | null, base: number | null, lowerIsBetter: boolean): string => {
    if (p === null || base === null) return "";
    const d = p.value - base;
    const better = lowerIsBetter ? d < 0 : d > 0;
    return `${d >= 0 ? "+" : ""}${d.toFixed(4)} (${better ? "better" : "worse"})`;
  };
  return summarize(figure).map((s, i) => {
    const run = figure.runs[i];
    return `<table>
<tr><th>${
      escapeHtml(s.label)
    }</th><th>last</th><th>best</th><th>baseline</th><th>best − baseline</th></tr>
<tr><td>train loss</td><td>${fmt(last(run.train))}</td><td>${
      fmt(s.minTrainLoss)
    }</td><td></td><td></td></tr>
<tr><td>val loss</td><td>${fmt(last(run.val))}</td><td>${fmt(s.minValLoss)}</td><td>${
      b.valLoss === null ? "none published" : `${b.valLoss} (OpenAI GPT-2 ${b.size})`
    }</td><td>${vs(s.minValLoss, b.valLoss, true)}</td></tr>
<tr><td>HellaSwag acc_norm</td><td>${fmt(last(run.hella))}</td><td>${
      fmt(s.maxHella)
    }</td><td>${b.hellaGpt2} (GPT-2 ${b.size})</td><td>${
      vs(s.maxHella, b.hellaGpt2, false)
    }</td></tr>
<tr><td>HellaSwag acc_norm, against GPT-3</td><td></td><td></td><td>${b.hellaGpt3} (GPT-3 ${b.size})</td><td>${
      vs(s.maxHella, b.hellaGpt3, false)
    }</td></tr>
</table>`;
  }).join("\n");
}

function formatRecord(r: Record<string, string | number | boolean>): string {
  return Object.entries(r).map(([k, v]) => `${k}=${v}`).join(", ");
}

function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600),
    m = Math.floor(seconds / 60) % 60,
    s = Math.round(seconds % 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${seconds.toFixed(1)} s`;
}
