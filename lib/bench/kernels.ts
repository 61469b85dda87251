/**
 * A GPU backend's benchmark (WebGPU's by default): each kernel's time on GPT-2 124M's shapes
 * (GFLOP/s for the matmuls, each matmul kernel of the backend's `kernelVariants`, and
 * attention; GB/s for the memory-bound kernels), then GPT-2 124M training steps (ms/step,
 * tok/s, MFU against the backend's `peakFlops`) on the device at hand.
 * `deno run -A lib/bench/kernels.ts [--backend=webgpu]` prints both tables (`deno task bench
 * --backend webgpu` runs it); `benchKernels` and `timeDispatches` are for notebooks.
 *
 * Kernels are timed by recording `reps` dispatches and waiting for the queue to drain, so
 * the time includes the GPU work and the recording, not a read-back per call.
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";
import { backendRow } from "../backends/mod.ts";
import { gptConfig } from "../model/gpt.ts";
import { Generator } from "../model/random.ts";
import { timeSteps, trainFlopsPerToken } from "./step.ts";

/** One kernel's timing. */
export interface KernelTiming {
  /** What ran, e.g. "matmul c_fc backward". */
  kernel: string;
  /** The operand shapes, in words. */
  shape: string;
  /** Milliseconds per call. */
  ms: number;
  /** Useful FLOPs per second (model FLOPs), for the compute-bound kernels. */
  gflops: number | null;
  /** Bytes read and written per second, for the memory-bound kernels. */
  gbps: number | null;
}

/** Options of `benchKernels`. */
export interface KernelBenchOptions {
  /** Batch size. */
  B: number;
  /** Sequence length. */
  T: number;
  /** Timed repetitions per kernel (after one untimed call). */
  reps: number;
}

/**
 * Milliseconds per call of `fn`, which records kernels on `backend`: one untimed call, then
 * `reps` calls recorded back to back and timed until the queue drains.
 */
export async function timeDispatches(
  backend: Backend,
  fn: () => void,
  reps: number,
): Promise<number> {
  fn();
  await backend.sync?.();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  await backend.sync?.();
  return (performance.now() - t0) / reps;
}

/** Times every kernel at GPT-2 124M's shapes (C 768, 12 heads, vocab 50304) for B x T. */
export async function benchKernels(
  backend: Backend,
  o: KernelBenchOptions,
): Promise<KernelTiming[]> {
  const t = kernelTimer(backend, o.reps);
  await benchMatmuls(backend, t, o.B * o.T);
  await benchLayers(backend, t, o.B, o.T);
  return t.out;
}

/** Random device inputs, and a timer that appends each kernel's timing to `out`. */
interface KernelTimer {
  rand: (n: number, std?: number) => DeviceBuffer;
  ids: (n: number) => DeviceBuffer;
  time: (
    kernel: string,
    shape: string,
    work: { flops?: number; bytes?: number },
    fn: () => void,
  ) => Promise<void>;
  out: KernelTiming[];
  /** Dispatches recorded per timing. */
  reps: number;
}

function kernelTimer(backend: Backend, reps: number): KernelTimer {
  const rng = new Generator(0);
  const out: KernelTiming[] = [];
  return {
    rand: (n, std = 1) => backend.upload(rng.fillNormal(new Float32Array(n), 0, std)),
    ids: (n) =>
      backend.upload(Int32Array.from({ length: n }, () => Math.floor(rng.random() * 50257))),
    time: async (kernel, shape, work, fn) => {
      const ms = await timeDispatches(backend, fn, reps);
      out.push({
        kernel,
        shape,
        ms,
        gflops: work.flops ? work.flops / ms / 1e6 : null,
        gbps: work.bytes ? work.bytes / ms / 1e6 : null,
      });
    },
    out,
    reps,
  };
}

/** GPT-2's five matmuls, forward and backward, with every matmul kernel the backend has. */
async function benchMatmuls(backend: Backend, t: KernelTimer, N: number): Promise<void> {
  const { rand, time } = t, C = 768, V = 50304;
  // the backend's pick first, then its other kernels (on WebGPU: the other tiles, then f16
  // operands where the adapter has shader-f16); none declared: its one matmul
  const declared = backend.kernelVariants?.().filter((v) => v.kernel === "matmul");
  const variants = declared?.length
    ? declared.filter((v) => !v.unavailable)
    : [{ name: backend.name, isDefault: true, use: () => () => {} }];
  for (const variant of variants) {
    const restore = variant.use();
    const tag = `[${variant.name}${variant.isDefault ? ", default" : ""}]`;
    for (
      const [name, inF, outF] of [
        ["matmul c_attn", C, 3 * C],
        ["matmul attn.c_proj", C, C],
        ["matmul c_fc", C, 4 * C],
        ["matmul mlp.c_proj", 4 * C, C],
        ["matmul lm_head", C, V],
      ] as const
    ) {
      const x = rand(N * inF), w = rand(outF * inF, 0.02), b = rand(outF), y = rand(N * outF);
      const dx = rand(N * inF), dw = rand(outF * inF), db = rand(outF);
      const shape = `${N}x${inF} @ ${outF}x${inF}^T`;
      const flops = 2 * N * inF * outF;
      await time(`${name} forward ${tag}`, shape, { flops }, () => {
        const dims = { N, C: inF, OC: outF };
        backend.matmulForward(y, x, w, name === "matmul lm_head" ? null : b, dims);
      });
      await time(`${name} backward ${tag}`, shape, { flops: 2 * flops }, () => {
        const grads = { dinp: dx, dweight: dw, dbias: name === "matmul lm_head" ? null : db };
        backend.matmulBackward(grads, y, x, w, { N, C: inF, OC: outF });
      });
    }
    restore();
  }
}

/** Attention, LayerNorm, GELU, residual, embedding, cross-entropy, AdamW, sum of squares. */
async function benchLayers(
  backend: Backend,
  t: KernelTimer,
  B: number,
  T: number,
): Promise<void> {
  const { rand, ids, time, out } = t, C = 768, NH = 12, V = 50304, N = B * T, reps = t.reps;
  const dims = { B, T, C, NH }, hs = C / NH;
  const qkv = rand(N * 3 * C), att = rand(N * C), dqkv = rand(N * 3 * C), dAtt = rand(N * C);
  const attFlops = 4 * B * NH * (T * (T + 1) / 2) * hs;
  let saved = backend.attentionForward(att, qkv, dims);
  await time("attention forward", `B${B} T${T} NH${NH} hs${hs}`, { flops: attFlops }, () => {
    saved = backend.attentionForward(att, qkv, dims);
  });
  await time("attention backward", `B${B} T${T} NH${NH} hs${hs}`, { flops: 2 * attFlops }, () => {
    backend.attentionBackward(dqkv, dAtt, qkv, saved, dims);
  });

  const x = rand(N * C), w = rand(C), b = rand(C), y = rand(N * C), dy = rand(N * C);
  const mean = backend.alloc(N, "f32"), rstd = backend.alloc(N, "f32");
  const act = N * C * 4;
  await time("layernorm forward", `${N}x${C}`, { bytes: 2 * act }, () => {
    backend.layernormForward(y, mean, rstd, x, w, b, { N, C });
  });
  await time("layernorm backward", `${N}x${C}`, { bytes: 4 * act }, () => {
    backend.layernormBackward({ dinp: dy, dweight: rand(C), dbias: rand(C) }, y, {
      inp: x,
      weight: w,
      mean,
      rstd,
    }, { N, C });
  });
  const h = rand(N * 4 * C), g = rand(N * 4 * C), dh = rand(N * 4 * C);
  await time("gelu forward", `${N}x${4 * C}`, { bytes: 8 * act }, () => {
    backend.geluForward(g, h, N * 4 * C);
  });
  await time("gelu backward", `${N}x${4 * C}`, { bytes: 16 * act }, () => {
    backend.geluBackward(dh, h, g, N * 4 * C);
  });
  await time("residual add", `${N}x${C}`, { bytes: 3 * act }, () => {
    backend.addForward(y, x, dy, N * C, N * C);
  });
  const idx = ids(N), wte = rand(V * C, 0.02), dwte = backend.alloc(V * C, "f32");
  await time("embedding forward", `${N} of ${V}x${C}`, { bytes: 2 * act }, () => {
    backend.embeddingForward(y, idx, wte, N, C);
  });
  await time("embedding backward", `${N} into ${V}x${C}`, { bytes: 3 * act }, () => {
    backend.embeddingBackward(dwte, dy, idx, N, C);
  });
  const logits = rand(N * V, 2), dlogits = backend.alloc(N * V, "f32");
  const loss = backend.alloc(1, "f32"), dloss = backend.upload(new Float32Array([1]));
  await time("cross-entropy forward", `${N}x${V}`, { bytes: N * V * 4 }, () => {
    backend.crossEntropyForward(loss, logits, idx, N, V);
  });
  await time("cross-entropy backward", `${N}x${V}`, { bytes: 4 * N * V * 4 }, () => {
    backend.crossEntropyBackward(dlogits, dloss, logits, idx, N, V);
  });
  const n = V * C, m = backend.alloc(n, "f32"), v = backend.alloc(n, "f32");
  const hp = { lr: 6e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1 };
  await time("adamw (wte)", `${n}`, { bytes: 7 * n * 4 }, () => {
    backend.adamw(wte, dwte, m, v, n, hp);
  });
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await backend.sumOfSquares(dwte, n);
  const ms = (performance.now() - t0) / reps;
  out.push({
    kernel: "sum of squares (wte)",
    shape: `${n}`,
    ms,
    gflops: null,
    gbps: n * 4 / ms / 1e6,
  });
}

/** The kernel timings as a Markdown table. */
export function kernelTable(rows: KernelTiming[]): string {
  const lines = ["| kernel | shape | ms | GFLOP/s | GB/s |", "| --- | --- | --- | --- | --- |"];
  for (const r of rows) {
    lines.push(
      `| ${r.kernel} | ${r.shape} | ${r.ms.toFixed(2)} | ${r.gflops?.toFixed(2) ?? "-"} | ${
        r.gbps?.toFixed(2) ?? "-"
      } |`,
    );
  }
  return lines.join("\n");
}

/** Step sizes to time: the lecture's section-1 size, and its B=16, T=1024 on a real GPU. */
function stepSizes(backend: Backend, B: number | null, T: number | null): [number, number][] {
  if (B !== null || T !== null) return [[B ?? 4, T ?? 64]];
  // on a software adapter B=16, T=1024 takes about half an hour a step: skipped, said so
  return backend.isSoftwareAdapter ? [[4, 64]] : [[4, 64], [16, 1024]];
}

if (import.meta.main) {
  const args = new Map(
    Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
  );
  const num = (k: string) => args.has(k) ? Number(args.get(k)) : null;
  const B = num("B"), T = num("T");
  const reps = num("reps") ?? 3, steps = num("steps") ?? 2;
  const row = backendRow(args.get("backend") ?? "webgpu");
  const backend = await row.create({ device: 0 });
  const sizes = stepSizes(backend, B, T);
  console.log(
    `\n## ${row.title} kernels at GPT-2 124M shapes, B=${sizes[0][0]}, T=${sizes[0][1]}\n`,
  );
  console.log(
    kernelTable(await benchKernels(backend, { B: sizes[0][0], T: sizes[0][1], reps })),
  );
  if (backend.isSoftwareAdapter && B === null && T === null) {
    console.log(
      "\nB=16, T=1024 skipped: on a software adapter one step takes about half an hour " +
        "(pass --B=16 --T=1024 to run it anyway)",
    );
  }
  const known = backend.peakFlops?.("f32");
  const peak = known ? Math.round(known.flops / 1e9) / 1e3 : null; // 66.9e12 back to 66.9
  const device = backend.deviceInfo?.name ?? backend.describe();
  const config = gptConfig("gpt2", 50304);
  for (const [b, t] of steps > 0 ? sizes : []) {
    console.log(`\n## GPT-2 124M training step on ${row.title}, B=${b}, T=${t}\n`);
    let r;
    try {
      r = await timeSteps(backend, config, {
        mode: "train",
        B: b,
        T: t,
        warmup: 1,
        iters: steps,
        onIter: (i, ms, warm) =>
          console.log(
            `step ${i}${warm ? " (warmup)" : ""}: ${ms.toFixed(0)} ms, RSS ${
              (Deno.memoryUsage().rss / 2 ** 30).toFixed(2)
            } GiB`,
          ),
      });
    } catch (e) {
      console.log(`B=${b}, T=${t} did not run: ${(e as Error).message}`);
      continue;
    }
    const tflops = trainFlopsPerToken(config, t) * r.tokensPerSec / 1e12;
    const mfu = peak ? `, MFU ${(100 * tflops / peak).toFixed(1)}% of ${peak} TFLOP/s fp32` : "";
    console.log(
      `\n${r.medianMs.toFixed(0)} ms/step (median of ${steps}), ${
        r.tokensPerSec.toFixed(1)
      } tok/s, ${(tflops * 1000).toFixed(2)} GFLOP/s of model FLOPs${mfu}, RSS ${
        (r.rss / 2 ** 30).toFixed(2)
      } GiB on ${device}`,
    );
  }
}
