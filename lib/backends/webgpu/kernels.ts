/**
 * The WebGPU backend's kernel table: every compute entry point of `kernels/wgsl/` with its
 * uniform layout and storage bindings, the preludes some files are compiled with, and the
 * kernel choices (`WebGpuKernels`) the backend switches between.
 *
 * @module
 */

/** The WGSL files the kernels come from (`kernels/wgsl/<name>.wgsl`). */
export const WGSL_FILES = [
  "matmul_register",
  "matmul_tiled",
  "matmul_naive",
  "matmul_bias",
  "residual",
  "gelu",
  "layernorm",
  "embedding",
  "attention",
  "crossentropy",
  "sum_of_squares",
  "adamw",
  "elementwise",
  "attention_naive",
  "attention_decode",
] as const;

/** A file of `kernels/wgsl/`, without its extension. */
export type WgslFile = typeof WGSL_FILES[number];

/** Reads every WGSL file's source, by file name. */
export async function readWgslSources(): Promise<Map<string, string>> {
  const sources = new Map<string, string>();
  for (const file of WGSL_FILES) {
    const url = new URL(`../../../kernels/wgsl/${file}.wgsl`, import.meta.url);
    sources.set(file, await Deno.readTextFile(url));
  }
  return sources;
}

/**
 * Declarations the host puts before a WGSL file's source, so that one shader text serves
 * several compiled variants: the file is written against the names the prelude declares.
 * - "operand": `alias Operand = f32;`, or `enable f16; alias Operand = f16;` (the tiled
 *   matmul's staged operands: f16 rounds them to half precision, sums stay f32);
 * - "headSize": `const HS: u32 = <hs>u;` (flash attention's and decode attention's head
 *   size, which sizes their register arrays).
 */
export type Prelude =
  | { kind: "operand"; type: "f32" | "f16" }
  | { kind: "headSize"; hs: number };

/** The WGSL text of a prelude ("" for none). */
export function preludeSource(prelude: Prelude | undefined): string {
  if (!prelude) return "";
  if (prelude.kind === "headSize") return `const HS: u32 = ${prelude.hs}u;\n`;
  return prelude.type === "f16" ? "enable f16;\nalias Operand = f16;\n" : "alias Operand = f32;\n";
}

/** A short name of a prelude, part of the keys its compiled module and pipelines are cached under. */
export function preludeKey(prelude: Prelude | undefined): string {
  if (!prelude) return "";
  return prelude.kind === "headSize" ? `hs${prelude.hs}` : prelude.type;
}

/** One compute entry point: its file, uniform layout (u32/f32) and storage bindings. */
export interface KernelSpec {
  file: WgslFile;
  entry: string;
  /** One letter per uniform field: "u" (u32), "f" (f32). */
  params: string;
  /** One letter per storage binding 1, 2, ...: "r" (read), "w" (read_write). */
  bindings: string;
  /** The prelude the file needs (`Prelude`); absent: none. */
  prelude?: Prelude["kind"];
}

/** The matmul kernels' uniforms: rows, C, the chunk's OC, row stride, OC offset, bias flag. */
const MATMUL = "uuuuuu";
/** The strided GEMMs' uniforms: M, N, K, A's offset and strides, B's, C's, flags. */
const GEMM = "uuuuuuuuuuuu";
/** residual.wgsl's uniforms. */
const RESIDUAL = "uuuuf";
/** attention.wgsl's uniforms: nb, T, C, NH, b0, n_stats, scale. */
const FLASH = "uuuuuuf";
/** attention_decode.wgsl's uniforms: nb, T, C, NH, pos, maxT, scale. */
const DECODE = "uuuuuuf";
/** attention_naive.wgsl's uniforms. */
const MATERIALIZED = "uuuufuuuu";
/** elementwise.wgsl's uniforms: n, op, nb, alpha, beta. */
const ELEMENTWISE = "uuuff";

/** Every compute entry point, by the name the backend dispatches it under. */
export const KERNELS = {
  matmulRegisterForward: {
    file: "matmul_register",
    entry: "matmul_register_forward",
    params: MATMUL,
    bindings: "rrrw",
  },
  matmulRegisterBackwardInput: {
    file: "matmul_register",
    entry: "matmul_register_backward_input",
    params: MATMUL,
    bindings: "rrw",
  },
  matmulRegisterBackwardWeight: {
    file: "matmul_register",
    entry: "matmul_register_backward_weight",
    params: MATMUL,
    bindings: "rrw",
  },
  matmulRegisterForwardVec4: {
    file: "matmul_register",
    entry: "matmul_register_forward_vec4",
    params: MATMUL,
    bindings: "rrrw",
  },
  matmulRegisterBackwardInputVec4: {
    file: "matmul_register",
    entry: "matmul_register_backward_input_vec4",
    params: MATMUL,
    bindings: "rrw",
  },
  matmulRegisterBackwardWeightVec4: {
    file: "matmul_register",
    entry: "matmul_register_backward_weight_vec4",
    params: MATMUL,
    bindings: "rrw",
  },
  matmulTiled: {
    file: "matmul_tiled",
    entry: "matmul_tiled",
    params: GEMM,
    bindings: "rrrw",
    prelude: "operand",
  },
  matmulNaive: { file: "matmul_naive", entry: "matmul_naive", params: GEMM, bindings: "rrrw" },
  matmulBackwardBias: {
    file: "matmul_bias",
    entry: "matmul_backward_bias",
    params: MATMUL,
    bindings: "rw",
  },
  addForward: { file: "residual", entry: "add_forward", params: RESIDUAL, bindings: "rrw" },
  accumulate: { file: "residual", entry: "accumulate", params: RESIDUAL, bindings: "rw" },
  accumulateBroadcast: {
    file: "residual",
    entry: "accumulate_broadcast",
    params: RESIDUAL,
    bindings: "rw",
  },
  scale: { file: "residual", entry: "scale", params: RESIDUAL, bindings: "rw" },
  scaleInplace: { file: "residual", entry: "scale_inplace", params: RESIDUAL, bindings: "w" },
  geluForward: { file: "gelu", entry: "gelu_forward", params: "u", bindings: "rw" },
  geluBackward: { file: "gelu", entry: "gelu_backward", params: "u", bindings: "rrw" },
  layernormForward: {
    file: "layernorm",
    entry: "layernorm_forward",
    params: "uu",
    bindings: "rrrwww",
  },
  layernormBackwardInput: {
    file: "layernorm",
    entry: "layernorm_backward_input",
    params: "uu",
    bindings: "rrrrrw",
  },
  layernormBackwardParams: {
    file: "layernorm",
    entry: "layernorm_backward_params",
    params: "uu",
    bindings: "rrrrww",
  },
  embeddingForward: {
    file: "embedding",
    entry: "embedding_forward",
    params: "uuuu",
    bindings: "rrw",
  },
  embeddingLinks: { file: "embedding", entry: "embedding_links", params: "uuuu", bindings: "rw" },
  embeddingBackward: {
    file: "embedding",
    entry: "embedding_backward",
    params: "uuuu",
    bindings: "rrrw",
  },
  attentionForward: {
    file: "attention",
    entry: "attention_forward",
    params: FLASH,
    bindings: "rww",
    prelude: "headSize",
  },
  attentionBackwardQuery: {
    file: "attention",
    entry: "attention_backward_query",
    params: FLASH,
    bindings: "rrrww",
    prelude: "headSize",
  },
  attentionBackwardKeyValue: {
    file: "attention",
    entry: "attention_backward_key_value",
    params: FLASH,
    bindings: "rrrw",
    prelude: "headSize",
  },
  kvCacheAppend: {
    file: "attention_decode",
    entry: "kv_cache_append",
    params: DECODE,
    bindings: "rww",
    prelude: "headSize",
  },
  attentionDecode: {
    file: "attention_decode",
    entry: "attention_decode",
    params: DECODE,
    bindings: "rrrw",
    prelude: "headSize",
  },
  crossEntropyForwardRows: {
    file: "crossentropy",
    entry: "crossentropy_forward_rows",
    params: "uuuu",
    bindings: "rrw",
  },
  crossEntropyMean: {
    file: "crossentropy",
    entry: "crossentropy_mean",
    params: "uuuu",
    bindings: "rw",
  },
  crossEntropyBackward: {
    file: "crossentropy",
    entry: "crossentropy_backward",
    params: "uuuu",
    bindings: "rrrw",
  },
  sumOfSquares: {
    file: "sum_of_squares",
    entry: "sum_of_squares",
    params: "uu",
    bindings: "rw",
  },
  adamw: { file: "adamw", entry: "adamw", params: "ufffffff", bindings: "rwww" },
  ewUnary: { file: "elementwise", entry: "ew_unary", params: ELEMENTWISE, bindings: "rw" },
  ewBinary: { file: "elementwise", entry: "ew_binary", params: ELEMENTWISE, bindings: "rrw" },
  ewAddBias: { file: "elementwise", entry: "ew_add_bias", params: ELEMENTWISE, bindings: "rw" },
  attnDots: {
    file: "attention_naive",
    entry: "attn_dots",
    params: MATERIALIZED,
    bindings: "rrw",
  },
  attnSoftmax: {
    file: "attention_naive",
    entry: "attn_softmax",
    params: MATERIALIZED,
    bindings: "w",
  },
  attnValues: {
    file: "attention_naive",
    entry: "attn_values",
    params: MATERIALIZED,
    bindings: "rrw",
  },
  attnSoftmaxBackward: {
    file: "attention_naive",
    entry: "attn_softmax_backward",
    params: MATERIALIZED,
    bindings: "rw",
  },
  attnDqkv: {
    file: "attention_naive",
    entry: "attn_dqkv",
    params: MATERIALIZED,
    bindings: "rrrrw",
  },
} satisfies Record<string, KernelSpec>;

/** Names of the compute entry points. */
export type KernelName = keyof typeof KERNELS;

/**
 * Which kernels the backend runs. The defaults are the fastest for the adapter; the
 * speedup ladder (`lib/backends/webgpu/ladder.ts`) switches them one rung at a time.
 */
export interface WebGpuKernels {
  /**
   * "naive": one output per invocation; "tiled": 64 x 64 tiles staged in workgroup memory
   * (real GPUs); "register": 32 x 32 tiles of 4 x 4 register blocks, no workgroup memory
   * (llvmpipe, where workgroup memory is slower than plain loads).
   */
  matmul: "naive" | "tiled" | "register";
  /** "materialized": the (B, NH, T, T) matrix stored; "flash": online softmax, never stored. */
  attention: "materialized" | "flash";
  /** GELU and matmul biases fused (true), or chains of elementwise kernels (eager style). */
  fusedElementwise: boolean;
  /** "fused": one kernel per parameter; "elementwise": PyTorch's for-loop AdamW, op by op. */
  adamw: "elementwise" | "fused";
}

/** The fastest kernels for an adapter: workgroup-memory tiles unless it is a software one. */
export function defaultKernels(isFallbackAdapter: boolean): WebGpuKernels {
  return {
    matmul: isFallbackAdapter ? "register" : "tiled",
    attention: "flash",
    fusedElementwise: true,
    adamw: "fused",
  };
}

/**
 * `GPT2_WEBGPU_MATMUL=naive|tiled|register` overrides the adapter's pick of matmul kernel
 * (to compare tiles on a new GPU); unset, or without env permission, the pick stands.
 */
export function matmulFromEnv(): WebGpuKernels["matmul"] | undefined {
  let value: string | undefined;
  try {
    value = Deno.env.get("GPT2_WEBGPU_MATMUL");
  } catch {
    return undefined;
  }
  if (value === undefined || value === "") return undefined;
  if (value === "naive" || value === "tiled" || value === "register") return value;
  throw new Error(`GPT2_WEBGPU_MATMUL must be naive, tiled or register, not "${value}"`);
}
