/**
 * A run's report: `report.html` in its log folder, one page that opens offline (plotly.js
 * inlined) with what ran (command, preset, model and training config), where (hardware,
 * backend), how fast (tok/s, model FLOP/s, MFU where the hardware's peak is known), the figure,
 * the samples printed during training (under one heading per step) and the final numbers against
 * the GPT-2 and GPT-3 baselines, with a note where the run's data is not the baseline's.
 *
 * The training loop fills a {@linkcode RunReportInfo} and calls {@linkcode writeRunReport} at the
 * end of a run (or after each evaluation: it rewrites the page from `log.txt` each time).
 *
 * @module
 */

import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import {
  type Baselines,
  buildFigure,
  dataCaveat,
  describeModelAndData,
  type FigureData,
  type ModelSize,
  type Point,
  summarize,
} from "./figure.ts";
import { escapeHtml, figureDiv, plotlyScriptTag } from "./html.ts";
import { readLog } from "./log.ts";
import {
  dataTitle,
  gpt2Size,
  modelTitle,
  readRunMeta,
  runData,
  type RunDescription,
  type RunMeta,
} from "./run_meta.ts";
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
  /** The page's title; by default "Run report: {model} on {data}" ("tiny (7.3M) on Tiny Shakespeare"). */
  title?: string;
  /** The exact command, e.g. `deno task train --steps 200 --log-dir log`. */
  command?: string;
  /** The recipe, e.g. "section 1: Tiny Shakespeare" or "FineWeb-EDU 10B, 124M". */
  preset?: string;
  /** The model's name: gpt2, gpt2-medium, ..., tiny. */
  model: string;
  /**
   * The training data: a path or name (`tinyshakespeare`, `data/edu_fineweb10B`). By default
   * the preset's, else what the log's `run.json` records. A baseline measured on FineWeb-EDU is
   * flagged as not comparable when this is other data.
   */
  data?: string;
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
  const logPath = join(logDir, info.logFile ?? "log.txt");
  const log = await readLog(logPath);
  const meta = await readRunMeta(logPath);
  const size = info.size ?? gpt2Size(info.model, info.modelConfig) ?? "124M";
  const figure = buildFigure([{ label: info.label ?? "ours", log, about: reportRun(info, meta) }], {
    size,
  });
  const png = svgToPng(await renderSvg(figure), { scale: 1.5 });
  const html = await reportHtml(withMeta(info, meta), figure, png);
  const path = join(logDir, "report.html");
  await writeFileAtomic(path, html);
  return { path, figure };
}

/**
 * The run's model and data as the figure names them: the model from `info`, the data from
 * `info.data`, else the preset's (a name of lib/train/settings.ts, or a recipe naming its
 * data), else the `run.json` beside the log.
 */
export function reportRun(info: RunReportInfo, meta: RunMeta | null = null): RunDescription {
  const about: RunDescription = {
    model: modelTitle(info.model, info.parameters, info.modelConfig),
  };
  const preset = info.preset;
  const data = info.data ??
    (preset ? runData({ preset }) : undefined) ??
    (preset && /shakespeare|fineweb/i.test(preset) ? preset : undefined) ??
    (meta ? runData(meta) : undefined);
  if (data !== undefined) about.data = dataTitle(data);
  return about;
}

/** `info` with the throughput numbers it lacks taken from `run.json`. */
function withMeta(info: RunReportInfo, meta: RunMeta | null): RunReportInfo {
  const tokensPerSec = info.throughput?.tokensPerSec ?? meta?.tokensPerSec;
  if (meta === null || tokensPerSec === undefined) return info;
  return {
    ...info,
    throughput: {
      tokensPerSec,
      flopsPerToken: info.throughput?.flopsPerToken ?? meta.flopsPerToken,
      peakFlops: info.throughput?.peakFlops ?? meta.peakFlops,
      mfu: info.throughput?.mfu ?? meta.mfu,
    },
  };
}

/** The report page's HTML (see {@linkcode writeRunReport}). */
export async function reportHtml(
  info: RunReportInfo,
  figure: FigureData,
  png: Uint8Array,
): Promise<string> {
  const described = describeModelAndData(figure.runs[0]?.about ?? reportRun(info));
  const title = info.title ?? `Run report: ${described ?? info.model}`;
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
      "model FLOP/s",
      t?.flopsPerToken
        ? `${formatFlops(t.tokensPerSec * t.flopsPerToken)} (${
          (t.flopsPerToken / 1e6).toFixed(1)
        } MFLOP per token × ${t.tokensPerSec.toFixed(1)} tok/s)`
        : undefined,
    ],
    [
      "MFU",
      derivedMfu !== undefined
        ? `${(derivedMfu * 100).toFixed(2)}%${
          t?.peakFlops ? ` of ${formatFlops(t.peakFlops)} peak` : ""
        }${t?.flopsPerToken ? ` (${(t.flopsPerToken / 1e6).toFixed(1)} MFLOP per token)` : ""}`
        : t
        ? "not known: the hardware's peak FLOP/s was not recorded for this run"
        : undefined,
    ],
  ];
  const rows = facts.filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("\n");
  const samples = samplesHtml(info.samples ?? []);
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
p.caveat{color:#a33;max-width:900px}
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

/**
 * The samples under one heading per step ("step 0", then its samples), in the order the steps
 * first appear.
 */
export function samplesHtml(samples: RunSample[]): string {
  const byStep = new Map<number, string[]>();
  for (const s of samples) {
    const texts = byStep.get(s.step) ?? [];
    texts.push(s.text);
    byStep.set(s.step, texts);
  }
  return [...byStep].map(([step, texts]) =>
    `<h3>step ${step}</h3>\n${
      texts.map((text) => `<pre class="sample">${escapeHtml(text)}</pre>`).join("\n")
    }`
  ).join("\n");
}

/** One table per run: last and best values against the baselines of its size. */
function resultsTable(figure: FigureData): string {
  const b: Baselines = figure.baselines;
  const fmt = (p: Point | null): string =>
    p === null ? "not logged" : `${p.value.toFixed(4)} (step ${p.step})`;
  const last = (s: { steps: number[]; values: number[] }): Point | null =>
    s.steps.length === 0 ? null : { step: s.steps.at(-1)!, value: s.values.at(-1)! };
  /** The difference, and whether it is better; `verdict` false where they do not compare. */
  const vs = (p: Point | null, base: number | null, lowerIsBetter: boolean, verdict = true) => {
    if (p === null || base === null) return "";
    const d = p.value - base;
    const better = lowerIsBetter ? d < 0 : d > 0;
    const diff = `${d >= 0 ? "+" : ""}${d.toFixed(4)}`;
    return verdict ? `${diff} (${better ? "better" : "worse"})` : diff;
  };
  return summarize(figure).map((s, i) => {
    const run = figure.runs[i];
    // a loss on other data than the baseline's: the difference is shown, but not as a gap
    const caveat = dataCaveat([{ label: s.label, data: s.data }], b);
    const lossVs = caveat === null || s.minValLoss === null
      ? vs(s.minValLoss, b.valLoss, true)
      : `${vs(s.minValLoss, b.valLoss, true, false)} (not comparable: ${
        escapeHtml(s.data ?? "")
      }, not FineWeb-EDU)`;
    return `<table>
<tr><th>${
      escapeHtml(s.label)
    }</th><th>last</th><th>best</th><th>baseline</th><th>best − baseline</th></tr>
<tr><td>train loss</td><td>${fmt(last(run.train))}</td><td>${
      fmt(s.minTrainLoss)
    }</td><td></td><td></td></tr>
<tr><td>val loss</td><td>${fmt(last(run.val))}</td><td>${fmt(s.minValLoss)}</td><td>${
      b.valLoss === null ? "none published" : `${b.valLoss} (OpenAI GPT-2 ${b.size})`
    }</td><td>${lossVs}</td></tr>
<tr><td>HellaSwag acc_norm</td><td>${fmt(last(run.hella))}</td><td>${
      fmt(s.maxHella)
    }</td><td>${b.hellaGpt2} (GPT-2 ${b.size})</td><td>${
      vs(s.maxHella, b.hellaGpt2, false)
    }</td></tr>
<tr><td>HellaSwag acc_norm, against GPT-3</td><td></td><td></td><td>${b.hellaGpt3} (GPT-3 ${b.size})</td><td>${
      vs(s.maxHella, b.hellaGpt3, false)
    }</td></tr>
</table>${caveat === null ? "" : `\n<p class="caveat">${escapeHtml(caveat)}</p>`}`;
  }).join("\n");
}

/** FLOP/s in the unit that suits it: 1.2 GFLOP/s, 312.0 TFLOP/s. */
function formatFlops(flops: number): string {
  const [div, unit] = flops >= 1e12 ? [1e12, "T"] : flops >= 1e9 ? [1e9, "G"] : [1e6, "M"];
  return `${(flops / div).toFixed(1)} ${unit}FLOP/s`;
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
