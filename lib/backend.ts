/**
 * The one interface every compute backend implements: buffers plus the kernels that the
 * GPT-2 ops need, in llm.c's shape (a `*Forward` and a `*Backward` per layer).
 *
 * Conventions shared by all kernels:
 * - Buffers are flat and row-major; shapes are passed as plain numbers.
 * - Every `*Backward` kernel ACCUMULATES (`+=`) into its gradient buffers, so tied weights
 *   (wte / lm_head) and gradient accumulation across micro-steps need no extra pass.
 * - Kernels are enqueued in order; only `read` and `sumOfSquares` wait for results.
 * - Nothing outside a backend's folder asks which backend it has: what differs between
 *   backends is a capability declared here (the optional members below), and callers test
 *   for the member, never for a name or a class.
 *
 * What a new backend implements (see docs/architecture.md for the whole checklist):
 * - required: `name`, `describe`, `isSoftwareAdapter`, `isReference`, the buffer calls
 *   (`alloc`, `upload`, `write`, `read`, `zero`) and every kernel, generation's KV-cache
 *   kernels (`kvCacheAppend`, `attentionDecode`) included;
 * - optional: `setMatmulPrecision` (lower-precision matmuls), `hostView` and `wrapHost` (buffers
 *   that live in host memory), `deviceMemory` (device buffers a collective reduces in place),
 *   `sumsOfSquares` (one wait for many reductions), `peakFlops` (the peak MFU is taken against),
 *   `recycle` (buffers reused as soon as they are dead), `empty` (buffers a kernel writes in
 *   full, not filled first), `crossEntropyBackwardInPlace` (the classifier's gradient over
 *   its logits), `matmulGeluForward` (a Linear and the GELU after it in one kernel), `sync`
 *   and `destroy`; and for the
 *   benchmarks, as data: `kernelVariants` (the kernel choices to time), `speedupLadder` (the
 *   lecture's speedups, one rung at a time), `deviceInfo`, `peakMemoryBytes` and
 *   `measurePeakGflops`.
 *
 * @module
 */

/** A device's peak FLOP/s and where the figure comes from. */
export interface PeakFlops {
  /** FLOP/s. */
  flops: number;
  /** E.g. "measured fp32 FMA peak, 2 threads" or "the H200 bf16 datasheet peak". */
  source: string;
  /**
   * True when every process on the machine shares this peak (a CPU's cores), so that a DDP
   * group's peak is this one; false or absent when each rank has its own device (a GPU).
   */
  sharedByRanks?: boolean;
  /**
   * The precision whose instructions set this figure, where it is not the one asked for:
   * "f32" for bf16 on a CPU without bf16 dot products (bf16 operands run on its fp32 FMAs, at
   * the fp32 rate). Absent: the precision asked for.
   */
  rateOf?: MatmulPrecision;
}

/** What `checkTrainingMemory` estimates a training step's memory from. */
export interface TrainingMemoryShape {
  config: {
    n_layer: number;
    n_head: number;
    n_embd: number;
    vocab_size: number;
    block_size: number;
  };
  B: number;
  T: number;
  /** Whether the step's backward writes dlogits over the logits (GPT.forward's overwriteLogits). */
  overwriteLogits: boolean;
}

/** What a backend has enqueued on its device so far (`Backend.deviceCalls`), by kind. */
export interface DeviceCalls {
  /** Kernel launches (GEMMs not included). */
  launches: number;
  /** GEMMs handed to the vendor's library (cuBLASLt). */
  gemms: number;
  /** Copies between host and device and on the device. */
  copies: number;
  /** Memory fills (zeroing a buffer). */
  memsets: number;
  /** Full garbage collections the backend's memory pool ran to reuse device memory. */
  collections: number;
}

/** The device a backend runs on, for a benchmark's header. */
export interface DeviceInfo {
  /** E.g. "NVIDIA H100 80GB HBM3", or a WebGPU adapter's summary. */
  name: string;
  /** A CUDA GPU's compute capability, e.g. [9, 0]. */
  computeCapability?: [number, number];
  /** The device's memory, bytes. */
  totalMemoryBytes?: number;
}

/**
 * One of a backend's choices for a kernel, which a benchmark times one after another: the
 * matmul's GEMM (the native backend's own or OpenBLAS; WebGPU's tiles and operand precision).
 */
export interface KernelVariant {
  /** The kernel chosen between: "matmul" is `matmulForward`/`matmulBackward`'s product. */
  readonly kernel: "matmul";
  /** Its name in a table, e.g. "OpenBLAS" or "tiled f16". */
  readonly name: string;
  /** True for the one the backend runs when nothing is chosen. */
  readonly isDefault: boolean;
  /** Why it cannot run here (a library or a device feature missing); absent where it can. */
  readonly unavailable?: string;
  /** What runs it, for a table's footnote (a library's path); absent where nothing to say. */
  readonly detail?: string;
  /** Switches the backend to it (between calls) and returns what switches it back. */
  use(): () => void;
}

/**
 * One rung of a speedup ladder: the lecture's speedups switched on one at a time. A backend's
 * rungs carry what it needs to run them (kernel choices, a precision) beside these fields.
 */
export interface LadderRung {
  name: string;
  /** What changed from the rung before, in the lecture's words. */
  change: string;
  /** The vocabulary of the rung's model (50257, or the nice 50304). */
  vocabSize: number;
}

/** A backend's speedup ladder: its rungs, bottom to top, and how the backend runs one. */
export interface SpeedupLadder<R extends LadderRung = LadderRung> {
  readonly rungs: readonly R[];
  /** Sets the backend up for `rung` (between steps); returns the backend its steps run on. */
  enter(rung: R): Backend;
  /** Puts the backend back as it was before the ladder. */
  restore(): void;
}

/** Element types a tensor can hold: activations and weights in f32, token ids in i32. */
export type DType = "f32" | "i32";

/** A flat buffer owned by a backend; what it wraps is the backend's business. */
export interface DeviceBuffer {
  /** Number of elements. */
  readonly length: number;
  /** Element type. */
  readonly dtype: DType;
}

/** Sizes of a causal self-attention call: qkv is (B, T, 3C), out is (B, T, C). */
export interface AttentionDims {
  B: number;
  T: number;
  C: number;
  NH: number;
}

/**
 * Sizes of a cached-attention call (generation with a KV cache): qkv (B, T, 3C) holds the T
 * new positions `pos .. pos + T - 1` of each sequence; the key and value caches are
 * (B, NH, maxT, C / NH) each, head-major, of which positions `0 .. pos - 1` are filled.
 */
export interface KVCacheDims extends AttentionDims {
  /** Positions already in the cache: where the first new one goes. */
  pos: number;
  /** The cache's capacity in positions (at most the block size); pos + T <= maxT. */
  maxT: number;
}

/** One AdamW update's hyperparameters (PyTorch's `torch.optim.AdamW` semantics). */
export interface AdamWParams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /**
   * Multiplies each gradient before the update, as if the gradient had been scaled in place
   * first (g is the f32 rounding of grad * gradScale): gradient clipping's factor, applied in
   * the same pass (llm.c's `grad_scale`), so clipping needs no pass of its own. The gradient
   * buffer is left as it is. Default 1.
   */
  gradScale?: number;
}

/**
 * The precision of the matmuls: "f32" (the reference semantics); "tf32" (tensor-core products
 * of f32 operands rounded to TF32's 10-bit mantissa, f32 storage: PyTorch's
 * `set_float32_matmul_precision("high")`); "bf16" (operands rounded to bfloat16, products
 * summed in f32, f32 master weights: autocast to bf16); "f16" (operands rounded to half
 * precision, products summed in f32: autocast to fp16, with loss scaling). A backend offers
 * those its `setMatmulPrecision` accepts.
 */
export type MatmulPrecision = "f32" | "tf32" | "bf16" | "f16";

/** The matmul precisions `--precision` accepts (f32 and f16 first, as before tf32 and bf16). */
export const MATMUL_PRECISIONS: readonly MatmulPrecision[] = ["f32", "f16", "tf32", "bf16"];

/** Sizes of a row-wise kernel (LayerNorm): N rows of C channels. */
export interface RowDims {
  N: number;
  C: number;
}

/** Sizes of a matmul (nn.Linear): inp (N, C) @ weight (OC, C)^T -> out (N, OC). */
export interface MatmulDims {
  N: number;
  C: number;
  OC: number;
}

/** Where `matmulBackward` accumulates; a null gradient is not computed. */
export interface MatmulGrads {
  dinp: DeviceBuffer | null;
  dweight: DeviceBuffer | null;
  dbias: DeviceBuffer | null;
}

/** Where `layernormBackward` accumulates. */
export interface LayerNormGrads {
  dinp: DeviceBuffer;
  dweight: DeviceBuffer;
  dbias: DeviceBuffer;
}

/** What LayerNorm's backward reads: its input and weight, and the forward's statistics. */
export interface LayerNormSaved {
  inp: DeviceBuffer;
  weight: DeviceBuffer;
  /** Per row (N), from `layernormForward`. */
  mean: DeviceBuffer;
  /** Per row (N), from `layernormForward`. */
  rstd: DeviceBuffer;
}

/** Where a buffer lies on a device (`Backend.deviceMemory`): what NCCL takes. */
export interface DeviceMemory {
  /** The device address of the buffer's first element. */
  pointer: bigint;
  /** The buffer's length in bytes. */
  bytes: number;
  /** The device's ordinal (CUDA's device number). */
  device: number;
  /** The stream the backend's kernels run on, so a collective orders after them. */
  stream: bigint;
}

/** The operations a backend provides. */
export interface Backend {
  /** Short name, as `--backend` takes it ("cpu", "native", "webgpu"). */
  readonly name: string;
  /** One line for a run's header: what runs the kernels (the adapter, the GEMM library). */
  describe(): string;
  /**
   * True for the reference backend: plain loops, written to be read, the oracle the others are
   * tested against; too slow to train GPT-2 124M (over a minute a step).
   */
  readonly isReference: boolean;
  /**
   * True when the device is a software emulation of a GPU (WebGPU on llvmpipe, lavapipe or
   * SwiftShader): correct, and far too slow to train GPT-2 124M.
   */
  readonly isSoftwareAdapter: boolean;

  // ---- capabilities: optional; a caller tests for the member ----

  /**
   * Optional: the matmul precision a training run takes when `--precision` is not given
   * (cuda: bf16, where the lecture ends up); absent: f32.
   */
  readonly trainingPrecision?: MatmulPrecision;
  /** The matmuls' precision now; "f32" where `setMatmulPrecision` is absent. */
  readonly matmulPrecision?: MatmulPrecision;
  /**
   * Optional: switches the matmuls' precision (between steps). Absent: f32 only. Throws,
   * saying what is missing, where the device cannot (WebGPU without shader-f16).
   */
  setMatmulPrecision?(precision: MatmulPrecision): void;
  /**
   * Optional: the buffer's own memory as a host array, no copy, for backends that keep their
   * buffers in host memory (cpu, native). Collectives (lib/ddp) reduce such buffers in place
   * and serialisers read them directly; for other backends they go through `read`/`write`.
   */
  hostView?(buf: DeviceBuffer): Float32Array | Int32Array;
  /**
   * Optional, with `hostView`: a buffer over host memory the caller owns (no copy), so that a
   * collective's shared-memory mapping can hold the gradients themselves and DDP reduces
   * them where they are.
   */
  wrapHost?(data: Float32Array): DeviceBuffer;
  /**
   * Optional, for collectives that reduce device memory where it lies (NCCL): the buffer's
   * address on the device, and the device and stream its kernels run on.
   */
  deviceMemory?(buf: DeviceBuffer): DeviceMemory;
  /**
   * Optional: the device's peak FLOP/s for matmuls at `precision`, the denominator of MFU, and
   * where the number comes from (a measurement, a datasheet); null where it is not known.
   */
  peakFlops?(precision: MatmulPrecision): PeakFlops | null;
  /**
   * Optional: takes back a buffer that nothing will read or write again (an intermediate
   * gradient once `backward` has passed it on), so a later `alloc` of that size reuses it.
   */
  recycle?(buf: DeviceBuffer): void;
  /** Optional: waits until every enqueued kernel has finished (for timing). */
  sync?(): Promise<void>;
  /** Optional: the device, for a benchmark's header (absent: `describe()` says it). */
  readonly deviceInfo?: DeviceInfo;
  /** Optional: the most device memory the backend has held at once, bytes. */
  peakMemoryBytes?(): number;
  /**
   * Optional: starts `peakMemoryBytes` again from what the backend holds now, after returning
   * the memory it holds free (so a benchmark's row reports its own peak).
   */
  resetPeakMemory?(): void;
  /** Optional: the calls enqueued on the device so far, by kind (a host-side benchmark's counts). */
  deviceCalls?(): DeviceCalls;
  /**
   * Optional: before a training run, throws (naming B, T and the backend's estimate of the
   * step's peak memory, with the micro batch size that would fit) when a step of GPT-2 of
   * `config` at micro-batch B, sequence length T in the current matmul precision cannot fit
   * in the device's free memory.
   */
  checkTrainingMemory?(shape: TrainingMemoryShape): void;
  /**
   * Optional: measures the fp32 peak now, GFLOP/s (a CPU: chains of its GEMM's FMA on every
   * thread, for about `seconds`), for a benchmark that measures it beside its own timings.
   */
  measurePeakGflops?(seconds?: number): number;
  /** Optional: the kernel choices a benchmark times (each switched to in turn). */
  kernelVariants?(): readonly KernelVariant[];
  /** Optional: the lecture's speedups on this backend, one rung at a time (lib/bench/ladder.ts). */
  speedupLadder?(): SpeedupLadder;
  /**
   * Optional: fills `buf` (f32) with N(0, std^2) on the device, from a counter-based generator
   * keyed by `seed` and `stream` (32-bit integers): the same law as `Generator.fillNormal`
   * (lib/model/random.ts), other values; the same numbers for the same key on every run.
   * A model's init then copies no parameters from the host.
   */
  initNormal?(buf: DeviceBuffer, std: number, seed: number, stream: number): void;
  /** Optional: releases the device and its memory; the backend is unusable afterwards. */
  destroy?(): void;

  /** A zero-filled buffer. */
  alloc(length: number, dtype: DType): DeviceBuffer;
  /**
   * Optional: a buffer whose contents are undefined, for a kernel's output that the kernel
   * writes in full (a forward's activations), so no fill runs first; absent: `alloc`.
   */
  empty?(length: number, dtype: DType): DeviceBuffer;
  /** A buffer holding a copy of `data`. */
  upload(data: Float32Array | Int32Array): DeviceBuffer;
  /** Overwrites a whole buffer with `data` (same length and type). */
  write(buf: DeviceBuffer, data: Float32Array | Int32Array): void;
  /** Copies a buffer back to the host. */
  read(buf: DeviceBuffer): Promise<Float32Array | Int32Array>;
  /** Sets every element to 0 (`zeroGrad` reuses gradient buffers across steps with it). */
  zero(buf: DeviceBuffer): void;

  /** out[i] = a[i] + b[i % nb]: residual adds, and adding wpe (T, C) to (B, T, C). */
  addForward(out: DeviceBuffer, a: DeviceBuffer, b: DeviceBuffer, n: number, nb: number): void;
  /** dst[i % nDst] += src[i]: the gradient of an add, summed over the broadcast rows. */
  accumulate(dst: DeviceBuffer, src: DeviceBuffer, n: number, nDst: number): void;
  /** out[i] = alpha * inp[i], or out[i] += alpha * inp[i] with `accumulate`. */
  scale(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    alpha: number,
    n: number,
    accumulate: boolean,
  ): void;

  /** out (N, C) = weight[idx] with idx (N); rows of a (V, C) table. */
  embeddingForward(
    out: DeviceBuffer,
    idx: DeviceBuffer,
    weight: DeviceBuffer,
    N: number,
    C: number,
  ): void;
  /** dweight[idx[n]] += dout[n] for every row n. */
  embeddingBackward(
    dweight: DeviceBuffer,
    dout: DeviceBuffer,
    idx: DeviceBuffer,
    N: number,
    C: number,
  ): void;

  /** out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC): nn.Linear. */
  matmulForward(
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    dims: MatmulDims,
  ): void;
  /**
   * Optional (kernel fusion): `matmulForward` into `pre`, and `out` = GELU(`pre`) in the same
   * pass (the MLP's c_fc and its GELU; GELU in the GEMM's epilogue, as llm.c and
   * torch.compile fuse it). The same numbers as `matmulForward` then `geluForward`.
   */
  matmulGeluForward?(
    pre: DeviceBuffer,
    out: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer | null,
    dims: MatmulDims,
  ): void;
  /** dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum of dout rows. */
  matmulBackward(
    grads: MatmulGrads,
    dout: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    dims: MatmulDims,
  ): void;

  /** LayerNorm over the last dim (eps 1e-5); saves mean and rstd (N each) for backward. */
  layernormForward(
    out: DeviceBuffer,
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    inp: DeviceBuffer,
    weight: DeviceBuffer,
    bias: DeviceBuffer,
    dims: RowDims,
  ): void;
  /** grads.dinp, dweight, dbias += LayerNorm's backward of dout (N, C). */
  layernormBackward(
    grads: LayerNormGrads,
    dout: DeviceBuffer,
    saved: LayerNormSaved,
    dims: RowDims,
  ): void;

  /** GELU, tanh approximation (PyTorch's `approximate="tanh"`, HF's "gelu_new"). */
  geluForward(out: DeviceBuffer, inp: DeviceBuffer, n: number): void;
  geluBackward(dinp: DeviceBuffer, inp: DeviceBuffer, dout: DeviceBuffer, n: number): void;

  /**
   * Causal self-attention from packed qkv (B, T, 3C) to out (B, T, C), heads of C / NH.
   * Returns whatever the backend saves for backward (probabilities, or softmax statistics).
   */
  attentionForward(out: DeviceBuffer, qkv: DeviceBuffer, dims: AttentionDims): DeviceBuffer;
  attentionBackward(
    dqkv: DeviceBuffer,
    dout: DeviceBuffer,
    qkv: DeviceBuffer,
    saved: DeviceBuffer,
    dims: AttentionDims,
  ): void;

  /**
   * Generation's KV cache, step 1: copies the keys and values of the T new positions out of
   * packed qkv (B, T, 3C) into the caches (B, NH, maxT, hs) at positions pos .. pos + T - 1.
   */
  kvCacheAppend(
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    qkv: DeviceBuffer,
    dims: KVCacheDims,
  ): void;
  /**
   * Generation's KV cache, step 2 (after `kvCacheAppend`): out (B, T, C) = the queries of
   * qkv (B, T, 3C), new position t at `pos + t`, attending causally to the cached keys and
   * values 0 .. pos + t. The same result as `attentionForward` over the whole prefix, at
   * those rows; nothing is saved (no backward).
   */
  attentionDecode(
    out: DeviceBuffer,
    qkv: DeviceBuffer,
    kCache: DeviceBuffer,
    vCache: DeviceBuffer,
    dims: KVCacheDims,
  ): void;

  /** loss (1) = mean over N rows of cross-entropy(softmax(logits (N, V)), targets (N)). */
  crossEntropyForward(
    loss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void;
  /** dlogits += (softmax(logits) - onehot(targets)) * dloss / N; no probabilities kept. */
  crossEntropyBackward(
    dlogits: DeviceBuffer,
    dloss: DeviceBuffer,
    logits: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void;
  /**
   * Optional: logits = (softmax(logits) - onehot(targets)) * dloss / N, the gradient written
   * over the logits (llm.c's classifier), for a caller that reads the logits no more: one
   * V-wide buffer instead of two.
   */
  crossEntropyBackwardInPlace?(
    logits: DeviceBuffer,
    dloss: DeviceBuffer,
    targets: DeviceBuffer,
    N: number,
    V: number,
  ): void;

  /** Sum of squares of the first n elements, read back to the host (grad-norm clipping). */
  sumOfSquares(buf: DeviceBuffer, n: number): Promise<number>;
  /**
   * Optional: `sumOfSquares` of several buffers (the first `ns[i]` elements of each) with
   * one wait, for the global gradient norm over every parameter. Backends whose read-backs
   * cost a round trip (WebGPU: about 10 ms each) provide it; `clipGradNorm` uses it.
   */
  sumsOfSquares?(bufs: DeviceBuffer[], ns: number[]): Promise<number[]>;
  /**
   * One AdamW update of n parameters in place, m and v being the moment buffers, the gradient
   * read times `hp.gradScale`.
   */
  adamw(
    param: DeviceBuffer,
    grad: DeviceBuffer,
    m: DeviceBuffer,
    v: DeviceBuffer,
    n: number,
    hp: AdamWParams,
  ): void;
}
