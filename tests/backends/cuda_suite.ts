/**
 * The CUDA backend's suites beyond the kernel-by-kernel ones, for a backend that
 * `makeBackend` opens (a GPU's, or the CPU emulator's): the PyTorch reference suite and,
 * optionally, the full-size GPT-2 124M hash check in f32 at the tolerances every backend
 * meets; five training steps equal to the reference backend's; TF32 and bf16 matmuls within
 * the bound their operand rounding allows, and training with them close to f32; the
 * backend's device capabilities and precision switch.
 *
 * @module
 */
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import type { Backend, DeviceBuffer } from "../../lib/backend.ts";
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import type { CudaBackend, CudaPrecision } from "../../lib/backends/cuda/mod.ts";
import { gpt2HashSuite } from "./gpt2_124m_suite.ts";
import { randn } from "./kernel_suite.ts";
import { referenceSuite } from "./reference_suite.ts";
import { assertSameRun, type Run, TRAIN_STEPS_CONFIG, trainSteps } from "./train_steps.ts";
import { assertClose } from "../support.ts";

/** Options of `cudaSuite`. */
export interface CudaSuiteOptions {
  /** Run the GPT-2 124M hash check too (minutes on the emulator); default true. */
  hashCheck?: boolean;
}

/** Registers the suites under `label` for the backend `makeBackend` opens (once, shared). */
export function cudaSuite(
  label: string,
  makeBackend: () => Promise<CudaBackend>,
  { hashCheck = true }: CudaSuiteOptions = {},
): void {
  let made: Promise<CudaBackend> | null = null;
  const shared = (): Promise<CudaBackend> => made ??= makeBackend();
  /** The shared backend with f32 matmuls (a test that changes the precision puts it back). */
  const f32 = async (): Promise<CudaBackend> => {
    const backend = await shared();
    backend.setMatmulPrecision("f32");
    return backend;
  };
  referenceSuite(label, f32);
  if (hashCheck) gpt2HashSuite(label, f32);
  registerTrainingTests(label, f32);
  registerPrecisionTests(label, shared);
  registerDeviceTests(label, shared);
}

/** Five training steps against the reference backend, in f32, TF32 and bf16. */
function registerTrainingTests(label: string, f32: () => Promise<CudaBackend>): void {
  let reference: Promise<Run> | null = null, cudaF32: Promise<Run> | null = null;
  const cpuRun = () => reference ??= trainSteps(new CpuBackend());
  const cudaRun = async () => await (cudaF32 ??= f32().then(trainSteps));
  Deno.test(`${label}: five training steps equal the reference CPU backend's (f32)`, async () => {
    assertSameRun(await cudaRun(), await cpuRun());
  });
  // Tolerances: TF32 keeps 10 bits of mantissa, as f16 does, so the f16 tolerances that the
  // WebGPU f16 run meets serve (losses 2e-3, norms 3e-2). bf16 keeps 7 bits (unit roundoff
  // u = 2^-8, 8 times f16's): at initialisation the logits are small, so the loss (about
  // ln 101 = 4.6) moves by a few u of the logits' scale; 1e-2 is 2.5 u of the loss itself.
  // A gradient norm sums squares of many elements, each off by a few u relative, so its
  // relative error is about u; 5e-2 is 12 u.
  const tolerances: [CudaPrecision, number, number][] = [["tf32", 2e-3, 3e-2], [
    "bf16",
    1e-2,
    5e-2,
  ]];
  for (const [precision, lossRtol, normRtol] of tolerances) {
    Deno.test(`${label} ${precision} matmuls: five training steps close to the CPU's f32 ones`, async () => {
      const backend = await f32();
      backend.setMatmulPrecision(precision);
      try {
        const run = await trainSteps(backend), cpu = await cpuRun();
        assertClose(`${precision} losses`, run.losses, cpu.losses, { rtol: lossRtol });
        assertClose(`${precision} pre-clip norms`, run.norms, cpu.norms, { rtol: normRtol });
        // every kernel is deterministic, so equal losses would mean the precision is unused
        const same = await cudaRun();
        ok(
          run.losses.some((l, i) => l !== same.losses[i]),
          `${precision} losses are bit-identical to the f32 ones: ${precision} is not in use`,
        );
      } finally {
        backend.setMatmulPrecision("f32");
      }
    });
  }
  // GPT-2's head size, 64, so that bf16 autocast runs attention on the tensor-core kernels
  // (attention_bf16.cu) as well: the same bf16 bounds, and the run differs from one with the
  // f32 attention kernels forced, so those kernels did run
  Deno.test(`${label} bf16 matmuls and attention (head size 64): five training steps close to the CPU's f32 ones`, async () => {
    const config = { ...TRAIN_STEPS_CONFIG, n_embd: 128 };
    const backend = await f32();
    const cpu = await trainSteps(new CpuBackend(), config);
    backend.setMatmulPrecision("bf16");
    try {
      const run = await trainSteps(backend, config);
      assertClose("bf16 losses", run.losses, cpu.losses, { rtol: 1e-2 });
      assertClose("bf16 pre-clip norms", run.norms, cpu.norms, { rtol: 5e-2 });
      backend.kernels = { ...backend.kernels, attentionPrecision: "f32" };
      const f32Attention = await trainSteps(backend, config);
      ok(
        run.losses.some((l, i) => l !== f32Attention.losses[i]),
        "bf16 losses equal those with f32 attention: the bf16 attention kernels did not run",
      );
    } finally {
      backend.setMatmulPrecision("f32");
      backend.kernels = { ...backend.kernels, attentionPrecision: undefined };
    }
  });
}

/**
 * TF32 and bf16 matmuls, forward and backward, against the exact f32 product with a bound
 * per element that follows from the rounding. An operand rounded to p bits of mantissa is
 * off by a relative u at most (u = 2^-p when the hardware truncates: TF32 2^-10, bf16 2^-7;
 * half that when it rounds to nearest), so each product a·b is off by at most
 * (2u + u²)|a·b|, and a sum of K of them by (2u + u²)·Σ|a·b|, plus the f32 accumulation's
 * own error, at most about K·2^-24·Σ|a·b| (allowed 4 times over: tensor cores may truncate
 * when they align addends). The bound is computed per element from |A|·|B|ᵀ, which the
 * reference backend gives on the absolute values; it holds whatever the data. The bias and
 * the accumulation into gradients stay f32 (2^-24 relative). That rounding happens at all
 * (the precision is in use) is checked on the largest shape: the worst error relative to
 * Σ|a·b| must exceed u/64 with u the round-to-nearest roundoff (f32 gives about 2^-24).
 */
function registerPrecisionTests(label: string, shared: () => Promise<CudaBackend>): void {
  const cpu = new CpuBackend();
  const bits: [CudaPrecision, number][] = [["tf32", 10], ["bf16", 7]];
  for (const [precision, p] of bits) {
    Deno.test(`${label} ${precision} matmuls: forward and backward within the rounding bound`, async () => {
      const backend = await shared();
      backend.setMatmulPrecision(precision);
      try {
        let worstRatio = 0;
        for (const [N, C, OC] of [[5, 7, 3], [37, 64, 192], [130, 96, 66], [256, 768, 768]]) {
          worstRatio = await checkRoundingBound(backend, cpu, { N, C, OC }, 2 ** -p, precision);
        }
        const roundToNearest = 2 ** -(p + 1);
        ok(
          worstRatio > roundToNearest / 64,
          `${precision}: the worst error is ${worstRatio} of Σ|a·b|: no ${precision} rounding seen`,
        );
      } finally {
        backend.setMatmulPrecision("f32");
      }
    });
  }
}

/**
 * One matmul's forward and backward under the backend's low precision against the
 * reference, element by element within (2u + u² + (K + 2)·2^-22)·Σ|a·b| + 2^-23·|ref|;
 * returns the forward's worst error relative to Σ|a·b|.
 */
async function checkRoundingBound(
  backend: Backend,
  cpu: Backend,
  dims: { N: number; C: number; OC: number },
  u: number,
  precision: string,
): Promise<number> {
  const { N, C, OC } = dims;
  const x = randn(N * C), w = randn(OC * C, 0.3), b = randn(OC), dout = randn(N * OC);
  const abs = (v: Float32Array) => v.map(Math.abs);
  const run = async (be: Backend, inputs: Float32Array[]): Promise<Float32Array[]> => {
    const [xb, wb, bb, db] = inputs.map((v) => be.upload(v));
    const out = be.alloc(N * OC, "f32"), dx = be.alloc(N * C, "f32");
    const dw = be.alloc(OC * C, "f32"), dbias = be.alloc(OC, "f32");
    be.matmulForward(out, xb, wb, bb, dims);
    be.matmulBackward({ dinp: dx, dweight: dw, dbias }, db, xb, wb, dims);
    const read = async (buf: DeviceBuffer) => (await be.read(buf)) as Float32Array;
    return [await read(out), await read(dx), await read(dw), await read(dbias)];
  };
  const got = await run(backend, [x, w, b, dout]);
  const exact = await run(cpu, [x, w, b, dout]);
  // Σ|a·b| of each element: the same matmuls on absolute values (the bias's |b| included)
  const sums = await run(cpu, [abs(x), abs(w), abs(b), abs(dout)]);
  const names = ["forward", "dinp", "dweight", "dbias"], lengths = [C, OC, N, N];
  let forwardWorst = 0;
  got.forEach((g, k) => {
    const K = lengths[k], factor = 2 * u + u * u + (K + 2) * 2 ** -22;
    for (let i = 0; i < g.length; i++) {
      const err = Math.abs(g[i] - exact[k][i]);
      const bound = factor * sums[k][i] + 2 ** -23 * Math.abs(exact[k][i]);
      if (!(err <= bound)) {
        throw new Error(
          `${precision} matmul N=${N} C=${C} OC=${OC} ${names[k]}: element ${i} is ${g[i]}, ` +
            `expected ${exact[k][i]} within ${bound} (Σ|a·b| = ${sums[k][i]})`,
        );
      }
      if (k === 0 && sums[k][i] > 0) forwardWorst = Math.max(forwardWorst, err / sums[k][i]);
    }
  });
  return forwardWorst;
}

/** What the CUDA backend declares beyond the Backend seam, and its precision switch. */
function registerDeviceTests(label: string, shared: () => Promise<CudaBackend>): void {
  Deno.test(`${label}: the device, its memory, deviceMemory and the precision switch`, async () => {
    const backend = await shared();
    ok(backend.deviceName.length > 0, "Expected the GPU's name");
    ok(backend.describe().includes(backend.deviceName), `describe(): ${backend.describe()}`);
    const [major] = backend.computeCapability;
    ok(major >= 8, `Expected compute capability 8.0 or newer, found ${backend.computeCapability}`);
    ok(backend.totalMemoryBytes > 2 ** 30, `totalMemoryBytes: ${backend.totalMemoryBytes}`);
    assertEquals(backend.isReference, false);
    assertEquals(backend.isSoftwareAdapter, false);

    const before = backend.peakMemoryBytes();
    const n = 64 * 2 ** 20; // 256 MiB of f32
    const buf = backend.alloc(n, "f32");
    const mem = backend.deviceMemory(buf);
    ok(mem.pointer !== 0n, "Expected a device address");
    assertEquals(mem.bytes, 4 * n);
    assertEquals(mem.device, backend.driver.device);
    assertEquals(typeof mem.stream, "bigint");
    ok(
      backend.peakMemoryBytes() >= Math.max(before, 4 * n),
      `peakMemoryBytes ${backend.peakMemoryBytes()} after allocating ${4 * n} bytes`,
    );
    await backend.sync();

    for (const precision of ["tf32", "bf16", "f32"] as const) {
      backend.setMatmulPrecision(precision);
      assertEquals(backend.matmulPrecision, precision);
    }
    throws(() => backend.setMatmulPrecision("f16"), /not f16/);
    assertEquals(backend.matmulPrecision, "f32");
  });
}
