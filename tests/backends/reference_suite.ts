/**
 * The PyTorch reference suite for the tiny GPT-2 (../shared/reference/README.md says how
 * the vectors were made), written once and run on every backend: logits, loss, every
 * gradient, gradient accumulation, greedy generation (with the KV cache and without), top-k,
 * three AdamW steps, GELU.
 *
 * @module
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join } from "node:path";
import type { Backend } from "../../lib/backend.ts";
import { fromPretrained } from "../../lib/model/pretrained.ts";
import { configureOptimizers, getLr } from "../../lib/train/optim.ts";
import * as ops from "../../lib/model/ops.ts";
import { generate, softmax, topK } from "../../lib/model/sample.ts";
import { toFloat32, toInt32 } from "../../lib/io/safetensors.ts";
import { Tensor } from "../../lib/model/tensor.ts";
import { assertClose, loadReference, referenceDir } from "../support.ts";

const tinyDir = join(referenceDir, "tiny-gpt2");

async function ref(name: string): Promise<Float32Array> {
  const t = (await loadReference()).tensors.get(name);
  if (!t) throw new Error(`reference.safetensors has no tensor ${name}`);
  return toFloat32(t, name);
}

async function batch(backend: Backend, which: "" | "2"): Promise<{ idx: Tensor; targets: Tensor }> {
  const r = await loadReference();
  const get = (n: string) => {
    const t = r.tensors.get(n)!;
    return Tensor.from(backend, toInt32(t, n), t.shape);
  };
  return { idx: get(`input.idx${which}`), targets: get(`input.targets${which}`) };
}

async function meta(key: string): Promise<string> {
  return (await loadReference()).metadata[key];
}

/** Registers the reference tests for one backend, made once on first use. */
export function referenceSuite(label: string, makeBackend: () => Backend | Promise<Backend>): void {
  let made: Promise<Backend> | null = null;
  const getBackend = (): Promise<Backend> => (made ??= Promise.resolve(makeBackend()));
  Deno.test(`${label}: tiny GPT-2: named_parameters order and count match PyTorch`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    assertEquals(model.namedParameters().map(([n]) => n), JSON.parse(await meta("param_names")));
    assertEquals(model.numParameters(), Number(await meta("num_params")));
  });

  Deno.test(`${label}: tiny GPT-2: logits and loss match PyTorch`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    const { idx, targets } = await batch(backend, "");
    const { logits, loss } = model.forward(idx, targets);
    assertEquals(logits.shape, [2, 8, 64]);
    assertClose("logits", await logits.toArray(), await ref("expected.logits"), {
      rtol: 1e-5,
      atol: 1e-5,
    });
    assertClose("loss", [await loss!.item()], await ref("expected.loss"), { rtol: 1e-5 });
  });

  Deno.test(`${label}: tiny GPT-2: every gradient matches PyTorch`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    const { idx, targets } = await batch(backend, "");
    model.forward(idx, targets).loss!.backward();
    for (const [name, p] of model.namedParameters()) {
      assertClose(`grad ${name}`, await p.grad!.toArray(), await ref(`grad.${name}`), {
        rtol: 1e-4,
        atol: 1e-6,
      });
    }
  });

  Deno.test(`${label}: tiny GPT-2: gradient accumulation over two micro-batches matches PyTorch`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    for (const which of ["", "2"] as const) {
      const { idx, targets } = await batch(backend, which);
      ops.scale(model.forward(idx, targets).loss!, 1 / 2).backward();
    }
    for (const [name, p] of model.namedParameters()) {
      assertClose(`grad_accum ${name}`, await p.grad!.toArray(), await ref(`grad_accum.${name}`), {
        rtol: 1e-4,
        atol: 1e-6,
      });
    }
  });

  Deno.test(`${label}: tiny GPT-2: greedy generation equals PyTorch's exactly`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    const r = await loadReference();
    const prompt = [...toInt32(r.tensors.get("generate.prompt")!)];
    const expected = [...toInt32(r.tensors.get("generate.greedy")!)];
    const [out] = await generate(model, [prompt], { maxLength: expected.length, greedy: true });
    assertEquals(out, expected);
  });

  Deno.test(`${label}: tiny GPT-2: greedy generation without the KV cache equals PyTorch's too`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    const r = await loadReference();
    const prompt = [...toInt32(r.tensors.get("generate.prompt")!)];
    const expected = [...toInt32(r.tensors.get("generate.greedy")!)];
    const options = { maxLength: expected.length, greedy: true, kvCache: false };
    assertEquals((await generate(model, [prompt], options))[0], expected);
  });

  Deno.test(`${label}: tiny GPT-2: top-50 next-token probabilities match PyTorch`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    const r = await loadReference();
    const prompt = toInt32(r.tensors.get("generate.prompt")!);
    const { logits } = model.forward(Tensor.from(backend, prompt, [1, prompt.length]));
    const all = (await logits.toArray()) as Float32Array;
    const V = model.config.vocab_size;
    const top = topK(softmax(all.subarray(all.length - V)), 50);
    assertClose("topk probs", top.probs, await ref("generate.topk_probs"), {
      rtol: 1e-5,
      atol: 1e-7,
    });
    assertEquals(top.indices, [...toInt32(r.tensors.get("generate.topk_idx")!)]);
  });

  Deno.test(`${label}: tiny GPT-2: three AdamW steps with clipping and the schedule match PyTorch`, async () => {
    const backend = await getBackend();
    const model = await fromPretrained(backend, tinyDir);
    const schedule = JSON.parse(await meta("schedule"));
    const sched = {
      maxLr: schedule.max_lr,
      minLr: schedule.min_lr,
      warmupSteps: schedule.warmup_steps,
      maxSteps: schedule.max_steps,
    };
    assertClose(
      "lr schedule",
      schedule.lr_at.map((_: number, i: number) => getLr(i, sched)),
      schedule.lr_at,
      {
        rtol: 1e-12,
        atol: 0,
      },
    );
    const optimizer = configureOptimizers(model, { weightDecay: 0.1, learningRate: sched.maxLr });
    const losses: number[] = [], norms: number[] = [], lrs: number[] = [];
    for (let step = 0; step < 3; step++) {
      const { idx, targets } = await batch(backend, step % 2 === 0 ? "" : "2");
      optimizer.zeroGrad();
      const { loss } = model.forward(idx, targets);
      loss!.backward();
      // (the training loop's clipping: folded into the AdamW step)
      norms.push(await optimizer.clipGradNorm(1.0));
      optimizer.lr = getLr(step, sched);
      lrs.push(optimizer.lr);
      optimizer.step();
      losses.push(await loss!.item());
    }
    assertClose("train losses", losses, JSON.parse(await meta("train.losses")), { rtol: 1e-5 });
    assertClose("pre-clip norms", norms, JSON.parse(await meta("train.norms")), { rtol: 1e-4 });
    assertClose("lrs", lrs, JSON.parse(await meta("train.lrs")), { rtol: 1e-12 });
    // The key bias has an exactly zero gradient (softmax ignores a constant added to every
    // score), so PyTorch's and ours are both rounding noise, which Adam scales to steps of
    // about lr. Those elements may drift apart by the sum of the lrs; the rest must agree.
    const C = model.config.n_embd;
    const noiseAtol = 2 * lrs.reduce((a, b) => a + b, 0);
    for (const [name, p] of model.namedParameters()) {
      const actual = (await p.toArray()) as Float32Array, expected = await ref(`after3.${name}`);
      if (name.endsWith("attn.c_attn.bias")) {
        const rest = (x: Float32Array) => [...x.subarray(0, C), ...x.subarray(2 * C)];
        assertClose(`after3 ${name} (q, v)`, rest(actual), rest(expected), {
          rtol: 1e-4,
          atol: 1e-6,
        });
        assertClose(`after3 ${name} (k)`, actual.subarray(C, 2 * C), expected.subarray(C, 2 * C), {
          rtol: 0,
          atol: noiseAtol,
        });
      } else {
        // Elements whose first-step gradient is at f32 rounding level (|g| < 1e-6: 2 of the
        // 3072 c_attn weights) also get Adam steps of about lr whatever their size, so they
        // may drift like the key bias; the rest must agree.
        const g = await ref(`grad.${name}`);
        const pick = (x: Float32Array, noisy: boolean) =>
          x.filter((_, i) => (Math.abs(g[i]) < 1e-6) === noisy);
        assertClose(`after3 ${name}`, pick(actual, false), pick(expected, false), {
          rtol: 1e-4,
          atol: 1e-6,
        });
        assertClose(
          `after3 ${name} (noise-level gradients)`,
          pick(actual, true),
          pick(expected, true),
          {
            rtol: 0,
            atol: noiseAtol,
          },
        );
      }
    }
  });

  Deno.test(`${label}: GELU (tanh) matches PyTorch on [-8, 8]`, async () => {
    const backend = await getBackend();
    const x = await ref("gelu.x");
    const y = ops.gelu(Tensor.from(backend, x, [x.length]));
    assertClose("gelu", await y.toArray(), await ref("gelu.y"), { rtol: 1e-6, atol: 1e-6 });
  });
}
