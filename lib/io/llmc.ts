/**
 * llm.c's two binary formats, so that its users' files work here:
 *
 * - **token shards** (`fineweb_train_000001.bin`, `tiny_shakespeare_val.bin`), as
 *   `dev/data/data_common.py`'s `write_datafile` writes them: a header of 256 little-endian
 *   int32 (`[0]` the magic 20240520, `[1]` the version 1, `[2]` the token count), then the
 *   tokens as uint16;
 * - **GPT-2 model files** (`gpt2_124M.bin`), as `train_gpt2.py`'s `write_model` writes them: a
 *   header of 256 int32 (`[0]` the magic 20240326, `[1]` the version, 3 for fp32 or 5 for
 *   bf16, then block size, vocabulary size, layers, heads, channels and `[7]` the padded
 *   vocabulary size), then every parameter, kind by kind and within a kind layer by layer:
 *   wte (padded to the padded vocabulary with zero rows), wpe, ln_1 weight and bias, c_attn
 *   weight and bias, attn.c_proj weight and bias, ln_2 weight and bias, c_fc weight and bias,
 *   mlp.c_proj weight and bias, ln_f weight and bias.
 *
 * llm.c's weights are nn.Linear's `[out, in]`, the layout this project's model holds (only
 * Hugging Face's Conv1D files are `[in, out]`), so they map one to one onto the model's
 * parameter names (`transformer.h.0.attn.c_attn.weight`) with no transpose.
 *
 * Values are read through typed arrays in the machine's byte order: little-endian, as on
 * every machine this project runs on.
 *
 * @module
 */

/** Both formats start with 256 int32. */
export const LLMC_HEADER_INTS = 256;
/** The header's size in bytes, where the data starts. */
export const LLMC_HEADER_BYTES: number = LLMC_HEADER_INTS * 4;
/** `header[0]` of a GPT-2 token shard. */
export const LLMC_SHARD_MAGIC = 20240520;
/** `header[1]` of a GPT-2 token shard: uint16 tokens. */
export const LLMC_SHARD_VERSION = 1;
/** `header[0]` of a GPT-2 model file. */
export const LLMC_MODEL_MAGIC = 20240326;
/** `header[1]` of a model file with fp32 parameters. */
export const LLMC_MODEL_FP32 = 3;
/** `header[1]` of a model file with bf16 parameters. */
export const LLMC_MODEL_BF16 = 5;
/** llm.c pads the vocabulary to a multiple of 128 rows (50257 to 50304). */
export const LLMC_VOCAB_MULTIPLE = 128;

/** llm.c's magic numbers, named in errors when one file is passed where another was meant. */
const OTHER_MAGICS: Record<number, string> = {
  [LLMC_SHARD_MAGIC]: "an llm.c GPT-2 token shard",
  [LLMC_MODEL_MAGIC]: "an llm.c GPT-2 model file",
  20240801: "an llm.c LLaMA 3 file (not read here)",
  20240803: "an llm.c LLaMA 3 model file (not read here)",
};

/** The magic found, with what it is where llm.c knows it. */
function describeMagic(magic: number): string {
  const what = OTHER_MAGICS[magic];
  return what ? `${magic} (${what})` : String(magic);
}

/** The first 256 int32 of `bytes`, or an error naming `name` for a file too short to hold them. */
function readHeader(bytes: Uint8Array, fileSize: number, name: string, kind: string): Int32Array {
  if (bytes.length < LLMC_HEADER_BYTES) {
    throw new Error(
      `${name}: expected an llm.c ${kind} of at least ${LLMC_HEADER_BYTES} bytes (its header), ` +
        `found ${fileSize}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, LLMC_HEADER_BYTES);
  return Int32Array.from({ length: LLMC_HEADER_INTS }, (_, i) => view.getInt32(4 * i, true));
}

// ---------------------------------------------------------------------------------------------
// Token shards

/**
 * Checks a token shard's header (its first 1024 bytes, or all of a shorter file) against
 * llm.c's layout and the file's size, and returns the token count.
 *
 * @throws {Error} naming the file, what was expected and what was found: a file shorter than
 * the header, another magic or version, or a size that does not match the token count.
 */
export function checkLlmcShardHeader(head: Uint8Array, fileSize: number, name: string): number {
  const header = readHeader(head, fileSize, name, "token shard");
  if (header[0] !== LLMC_SHARD_MAGIC) {
    throw new Error(
      `${name}: expected the llm.c token shard magic ${LLMC_SHARD_MAGIC}, found ${
        describeMagic(header[0])
      }`,
    );
  }
  if (header[1] !== LLMC_SHARD_VERSION) {
    throw new Error(
      `${name}: expected llm.c token shard version ${LLMC_SHARD_VERSION} (uint16 tokens), ` +
        `found ${header[1]}`,
    );
  }
  const length = header[2];
  if (length < 0) throw new Error(`${name}: expected a token count >= 0, found ${length}`);
  const expected = LLMC_HEADER_BYTES + 2 * length;
  if (fileSize !== expected) {
    const what = fileSize < expected ? "truncated" : "longer than its header says";
    throw new Error(
      `${name}: the shard is ${what}: expected ${expected} bytes for ${length} tokens, ` +
        `found ${fileSize}`,
    );
  }
  return length;
}

/** Whether `bytes` start with the token shard magic (one shard passed where a folder was meant). */
export function hasLlmcShardMagic(bytes: Uint8Array): boolean {
  return bytes.length >= 4 &&
    new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0, true) === LLMC_SHARD_MAGIC;
}

/**
 * The tokens of an llm.c token shard's bytes; `name` is used in errors.
 *
 * @throws {Error} naming the file, as {@linkcode checkLlmcShardHeader} does.
 */
export function decodeLlmcShard(bytes: Uint8Array, name: string): Uint16Array {
  const length = checkLlmcShardHeader(bytes, bytes.length, name);
  const start = bytes.byteOffset + LLMC_HEADER_BYTES;
  if (start % 2 === 0) return new Uint16Array(bytes.buffer, start, length);
  return new Uint16Array(bytes.slice(LLMC_HEADER_BYTES).buffer, 0, length); // unaligned: copy
}

/** Reads an llm.c token shard; see {@linkcode decodeLlmcShard}. */
export function readLlmcShardSync(path: string): Uint16Array {
  return decodeLlmcShard(Deno.readFileSync(path), path);
}

/**
 * The token count of an llm.c token shard, from its header and size alone (no tokens read).
 *
 * @throws {Error} naming the file, as {@linkcode checkLlmcShardHeader} does.
 */
export async function llmcShardLength(path: string): Promise<number> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const head = new Uint8Array(Math.min(size, LLMC_HEADER_BYTES));
    let got = 0;
    while (got < head.length) {
      const n = await file.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
    return checkLlmcShardHeader(head.subarray(0, got), size, path);
  } finally {
    file.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Model files

/** A GPT-2's shape, as `GPTConfig` of `lib/model/gpt.ts` has it. */
export interface LlmcModelConfig {
  /** max sequence length (`maxT`) */
  block_size: number;
  vocab_size: number;
  n_layer: number;
  n_head: number;
  n_embd: number;
  /** The speedrun's architecture options (lib/speedrun/config.ts), which the file cannot hold. */
  mlp?: "gelu" | "relu2";
  qk_norm?: boolean;
  pos?: "learned" | "rotary";
  untie_head?: boolean;
}

/** The parameters' type in a model file. */
export type LlmcDType = "float32" | "bfloat16";

/** What {@linkcode readLlmcModel} returns. */
export interface LlmcModel {
  /** The model's shape: pass it with the weights to `modelFromStateDict` (lib/weights). */
  config: LlmcModelConfig;
  /**
   * Every parameter by the model's names (`transformer.wte.weight`, ...) and in its order,
   * `[out, in]` for weights, wte without its padding rows: pass it to
   * `model.loadStateDict(weights, path)`.
   */
  weights: Map<string, Float32Array>;
  /** `header[7]`: the rows wte had in the file. */
  paddedVocabSize: number;
  /** What the file stored: fp32 (version 3) or bf16 (version 5, widened here exactly). */
  dtype: LlmcDType;
}

/** One kind of parameter in llm.c's order: its name in the model and its shape. */
interface ParameterKind {
  /** The model's name; `{i}` is the layer for per-layer kinds. */
  name: string;
  /** Whether there is one per layer. */
  perLayer: boolean;
  /** The shape of one (a layer's), from the config and the padded vocabulary. */
  shape(c: LlmcModelConfig, paddedVocab: number): number[];
}

/** llm.c's parameter order: `write_tensors` of train_gpt2.py, `fill_in_parameter_sizes` in C. */
const PARAMETER_KINDS: readonly ParameterKind[] = [
  { name: "transformer.wte.weight", perLayer: false, shape: (c, vp) => [vp, c.n_embd] },
  { name: "transformer.wpe.weight", perLayer: false, shape: (c) => [c.block_size, c.n_embd] },
  layerKind("ln_1.weight", (c) => [c.n_embd]),
  layerKind("ln_1.bias", (c) => [c.n_embd]),
  layerKind("attn.c_attn.weight", (c) => [3 * c.n_embd, c.n_embd]),
  layerKind("attn.c_attn.bias", (c) => [3 * c.n_embd]),
  layerKind("attn.c_proj.weight", (c) => [c.n_embd, c.n_embd]),
  layerKind("attn.c_proj.bias", (c) => [c.n_embd]),
  layerKind("ln_2.weight", (c) => [c.n_embd]),
  layerKind("ln_2.bias", (c) => [c.n_embd]),
  layerKind("mlp.c_fc.weight", (c) => [4 * c.n_embd, c.n_embd]),
  layerKind("mlp.c_fc.bias", (c) => [4 * c.n_embd]),
  layerKind("mlp.c_proj.weight", (c) => [c.n_embd, 4 * c.n_embd]),
  layerKind("mlp.c_proj.bias", (c) => [c.n_embd]),
  { name: "transformer.ln_f.weight", perLayer: false, shape: (c) => [c.n_embd] },
  { name: "transformer.ln_f.bias", perLayer: false, shape: (c) => [c.n_embd] },
];

function layerKind(suffix: string, shape: (c: LlmcModelConfig) => number[]): ParameterKind {
  return { name: `transformer.h.{i}.${suffix}`, perLayer: true, shape };
}

/** One tensor of a model file: the model's name, its values' count and where they start. */
interface TensorSlot {
  name: string;
  /** Values in the file (wte: with its padding rows). */
  size: number;
  /** Values the model keeps (wte: `vocab_size` rows). */
  kept: number;
  /** Offset in values from the end of the header. */
  offset: number;
  /** Its layer, or -1 for wte and wpe (before the blocks) and n_layer for ln_f (after them). */
  layer: number;
}

/** Every tensor of a model of shape `c` in file order, and the file's parameter count. */
function tensorSlots(
  c: LlmcModelConfig,
  paddedVocab: number,
): { slots: TensorSlot[]; total: number } {
  const slots: TensorSlot[] = [];
  let offset = 0;
  for (const kind of PARAMETER_KINDS) {
    const size = kind.shape(c, paddedVocab).reduce((a, b) => a * b, 1);
    const kept = kind.name === "transformer.wte.weight" ? c.vocab_size * c.n_embd : size;
    const layers = kind.perLayer ? c.n_layer : 1;
    for (let i = 0; i < layers; i++) {
      const layer = kind.perLayer ? i : kind.name.includes("ln_f") ? c.n_layer : -1;
      slots.push({ name: kind.name.replace("{i}", String(i)), size, kept, offset, layer });
      offset += size;
    }
  }
  return { slots, total: offset };
}

/** llm.c's padded vocabulary: `vocab_size` rounded up to a multiple of 128. */
export function llmcPaddedVocabSize(vocabSize: number): number {
  return Math.ceil(vocabSize / LLMC_VOCAB_MULTIPLE) * LLMC_VOCAB_MULTIPLE;
}

/**
 * The shape a model file's header holds, checked.
 *
 * @throws {Error} naming the file for another magic or version, a size that is not a positive
 * integer, heads that do not divide the channels, or a padded vocabulary below the vocabulary.
 */
function checkModelHeader(
  header: Int32Array,
  name: string,
): { config: LlmcModelConfig; paddedVocabSize: number; dtype: LlmcDType } {
  if (header[0] !== LLMC_MODEL_MAGIC) {
    throw new Error(
      `${name}: expected the llm.c GPT-2 model magic ${LLMC_MODEL_MAGIC}, found ${
        describeMagic(header[0])
      }`,
    );
  }
  const version = header[1];
  if (version !== LLMC_MODEL_FP32 && version !== LLMC_MODEL_BF16) {
    throw new Error(
      `${name}: expected llm.c model version ${LLMC_MODEL_FP32} (fp32) or ${LLMC_MODEL_BF16} ` +
        `(bf16), found ${version}`,
    );
  }
  const fields = ["block_size", "vocab_size", "n_layer", "n_head", "n_embd", "padded_vocab_size"];
  fields.forEach((field, i) => {
    if (!(header[2 + i] > 0)) {
      throw new Error(
        `${name}: expected a positive ${field} (header[${2 + i}]), found ${header[2 + i]}`,
      );
    }
  });
  // in the order parseHfConfig (lib/model/pretrained.ts) gives, so both print alike
  const config: LlmcModelConfig = {
    n_layer: header[4],
    n_head: header[5],
    n_embd: header[6],
    block_size: header[2],
    vocab_size: header[3],
  };
  const paddedVocabSize = header[7];
  if (config.n_embd % config.n_head !== 0) {
    throw new Error(
      `${name}: expected n_embd divisible by n_head, found n_embd ${config.n_embd} and ` +
        `n_head ${config.n_head}`,
    );
  }
  if (paddedVocabSize < config.vocab_size) {
    throw new Error(
      `${name}: expected padded_vocab_size (header[7]) >= vocab_size ${config.vocab_size}, ` +
        `found ${paddedVocabSize}`,
    );
  }
  return { config, paddedVocabSize, dtype: version === LLMC_MODEL_FP32 ? "float32" : "bfloat16" };
}

/**
 * Decodes the bytes of an llm.c GPT-2 model file (fp32 or bf16); `name` is used in errors.
 * fp32 weights are views into `bytes` (no copy); bf16 ones are widened to fp32 exactly.
 *
 * @throws {Error} naming the file, what was expected and what was found: a file shorter than
 * its header, another magic or version, a bad shape, or a size that does not match the shape.
 */
export function decodeLlmcModel(bytes: Uint8Array, name: string): LlmcModel {
  const header = readHeader(bytes, bytes.length, name, "model file");
  const { config, paddedVocabSize, dtype } = checkModelHeader(header, name);
  const { slots, total } = tensorSlots(config, paddedVocabSize);
  const width = dtype === "float32" ? 4 : 2;
  const expected = LLMC_HEADER_BYTES + total * width;
  if (bytes.length !== expected) {
    const what = bytes.length < expected ? "truncated" : "longer than its header says";
    throw new Error(
      `${name}: the model file is ${what}: expected ${expected} bytes for ${total} ${dtype} ` +
        `parameters of ${JSON.stringify({ ...config, padded_vocab_size: paddedVocabSize })}, ` +
        `found ${bytes.length}`,
    );
  }
  let data = bytes.subarray(LLMC_HEADER_BYTES);
  if (data.byteOffset % width !== 0) data = data.slice(); // unaligned: copy once
  const values = dtype === "float32"
    ? new Float32Array(data.buffer, data.byteOffset, total)
    : widenBf16(new Uint16Array(data.buffer, data.byteOffset, total));
  const weights = new Map<string, Float32Array>();
  // in the model's order (PyTorch's named_parameters): layer by layer, not kind by kind
  const modelOrder = [...slots].sort((a, b) => a.layer - b.layer); // stable: kinds keep order
  for (const s of modelOrder) weights.set(s.name, values.subarray(s.offset, s.offset + s.kept));
  return { config, weights, paddedVocabSize, dtype };
}

/** bf16 is the top half of an fp32: widening is a shift, exact. */
function widenBf16(halves: Uint16Array): Float32Array {
  const bits = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16;
  return new Float32Array(bits.buffer);
}

/**
 * Reads an llm.c GPT-2 model file (`gpt2_124M.bin`, or `gpt2_124M_bf16.bin`). Loading it:
 *
 * ```ts
 * const { config, weights } = await readLlmcModel(path);
 * const model = new GPT(backend, config, { skipInit: true });
 * model.loadStateDict(weights, path);
 * ```
 *
 * @throws {Error} naming the file when it cannot be read, or as {@linkcode decodeLlmcModel}.
 */
export async function readLlmcModel(path: string): Promise<LlmcModel> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`Cannot read the llm.c model file ${path}: ${(e as Error).message}`);
  }
  return decodeLlmcModel(bytes, path);
}

/** What {@linkcode writeLlmcModel} needs of a model: a `GPT` of `lib/model/gpt.ts` has both. */
export interface LlmcModelSource {
  config: LlmcModelConfig;
  /** The parameters by name, on the host. */
  stateDict(): Promise<Map<string, { data: Float32Array }>>;
}

/**
 * Writes `model` as an llm.c GPT-2 model file, version 3 (fp32), as `write_model` does: wte
 * padded with zero rows to a multiple of 128, which llm.c's `train_gpt2` reads.
 */
export async function writeLlmcModel(path: string, model: LlmcModelSource): Promise<void> {
  const weights = new Map<string, Float32Array>();
  for (const [name, t] of await model.stateDict()) weights.set(name, t.data);
  await writeLlmcWeights(path, model.config, weights);
}

/**
 * llm.c's file holds the lecture's GPT-2 only: a model with the speedrun's architecture options
 * (an MLP other than GELU, QK-norm, rotary positions, an untied head) has no place in it.
 */
function refuseArchitectureOptions(config: LlmcModelConfig): void {
  const c = config;
  const on = [
    c.mlp !== undefined && c.mlp !== "gelu" ? `mlp ${c.mlp}` : null,
    c.qk_norm ? "qk_norm" : null,
    c.pos !== undefined && c.pos !== "learned" ? `pos ${c.pos}` : null,
    c.untie_head ? "untie_head" : null,
  ].filter((x) => x !== null);
  if (on.length > 0) {
    throw new Error(
      `llm.c's model file holds GPT-2 as the lecture builds it; this model has ${on.join(", ")}`,
    );
  }
}

/**
 * Writes weights by the model's names (`[out, in]` layout, wte of `vocab_size` rows) as an
 * llm.c GPT-2 model file, version 3 (fp32). Written to a temporary file of this write beside it
 * and renamed, so `path` only ever holds a whole file, even with two writers at once.
 *
 * @throws {Error} for a missing or unexpected tensor, or one of the wrong size, before writing.
 */
export async function writeLlmcWeights(
  path: string,
  config: LlmcModelConfig,
  weights: Map<string, Float32Array>,
): Promise<void> {
  refuseArchitectureOptions(config);
  const paddedVocab = llmcPaddedVocabSize(config.vocab_size);
  const { slots } = tensorSlots(config, paddedVocab);
  checkWeights(slots, weights);
  const header = new Int32Array(LLMC_HEADER_INTS);
  header.set([
    LLMC_MODEL_MAGIC,
    LLMC_MODEL_FP32,
    config.block_size,
    config.vocab_size,
    config.n_layer,
    config.n_head,
    config.n_embd,
    paddedVocab,
  ]);
  // a name of this write's own: two exports to one file each rename a whole file into place
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    try {
      await writeAll(file, littleEndianBytes(header));
      for (const s of slots) {
        await writeAll(file, littleEndianBytes(weights.get(s.name)!));
        // the padding rows of wte: zeros, which no token reaches
        if (s.size > s.kept) await writeAll(file, new Uint8Array(4 * (s.size - s.kept)));
      }
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    // a full disk: the part written goes, leaving the space it took
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Every tensor the file needs, of its size, and no other. */
function checkWeights(slots: readonly TensorSlot[], weights: Map<string, Float32Array>): void {
  const names = new Set(slots.map((s) => s.name));
  const missing = slots.filter((s) => !weights.has(s.name)).map((s) => s.name);
  const unexpected = [...weights.keys()].filter((k) => !names.has(k));
  if (missing.length || unexpected.length) {
    const parts = [];
    if (missing.length) parts.push(`missing ${missing.join(", ")}`);
    if (unexpected.length) parts.push(`unexpected ${unexpected.join(", ")}`);
    throw new Error(`Expected the tensors of a GPT-2 for an llm.c model file: ${parts.join("; ")}`);
  }
  for (const s of slots) {
    const found = weights.get(s.name)!.length;
    if (found !== s.kept) {
      throw new Error(`Expected ${s.kept} values in tensor "${s.name}", found ${found}`);
    }
  }
}

/** The bytes of `values` (little-endian on every machine this runs on: no copy). */
function littleEndianBytes(values: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}
