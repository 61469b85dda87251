/**
 * safetensors, the format Hugging Face publishes GPT-2 in: an 8-byte little-endian header
 * length, a JSON header `{name: {dtype, shape, data_offsets}, __metadata__?}`, then the
 * raw little-endian bytes. Every malformed input fails with the file and tensor named.
 *
 * @module
 */

/** Element types read and written here. */
export type SafetensorsDType =
  | "F32"
  | "F16"
  | "BF16"
  | "F64"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL";

const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** One tensor as stored: its type, shape and bytes (a view into the file). */
export interface StoredTensor {
  dtype: SafetensorsDType;
  shape: number[];
  bytes: Uint8Array;
}

/** A parsed file: tensors in header order, and the string metadata. */
export interface SafetensorsFile {
  tensors: Map<string, StoredTensor>;
  metadata: Record<string, string>;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Parses safetensors bytes; `source` names the file in errors. */
export function parseSafetensors(bytes: Uint8Array, source = "safetensors data"): SafetensorsFile {
  if (bytes.length < 8) {
    throw new Error(
      `${source}: truncated, ${bytes.length} bytes is shorter than the 8-byte header length`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.length) {
    throw new Error(
      `${source}: truncated or not safetensors, header of ${headerLen} bytes exceeds the file's ${bytes.length}`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)),
    );
  } catch (e) {
    throw new Error(`${source}: corrupt header, expected JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new Error(`${source}: corrupt header, expected a JSON object`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, StoredTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const entry = raw as HeaderEntry;
    if (
      !entry || !(entry.dtype in DTYPE_BYTES) || !Array.isArray(entry.shape) ||
      !Array.isArray(entry.data_offsets)
    ) {
      throw new Error(
        `${source}: tensor "${name}" has a malformed header entry ${JSON.stringify(raw)}`,
      );
    }
    const dtype = entry.dtype as SafetensorsDType;
    const [begin, end] = entry.data_offsets;
    const expected = entry.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new Error(
        `${source}: tensor "${name}" of ${dtype}[${entry.shape}] needs ${expected} bytes, its offsets span ${
          end - begin
        }`,
      );
    }
    if (begin < 0 || end > dataLen) {
      throw new Error(
        `${source}: truncated, tensor "${name}" ends at byte ${end} of the data but the file holds ${dataLen}`,
      );
    }
    tensors.set(name, {
      dtype,
      shape: entry.shape,
      bytes: bytes.subarray(dataStart + begin, dataStart + end),
    });
  }
  return { tensors, metadata };
}

/**
 * Checks that the file at `path` is safetensors without reading its tensors: an 8-byte header
 * length, a JSON object of tensors, and a data section that ends where the file ends (so a
 * file cut short, or an HTML page saved under a `.safetensors` name, is refused).
 *
 * @throws {Error} saying what is wrong with the file, naming `path`.
 */
export async function checkSafetensorsFile(path: string): Promise<void> {
  const file = await Deno.open(path);
  try {
    const size = (await file.stat()).size;
    const head = new Uint8Array(8);
    if (size < 8 || (await readFull(file, head)) < 8) {
      throw new Error(
        `${path}: not safetensors, ${size} bytes is shorter than its 8-byte header length`,
      );
    }
    const headerLen = Number(new DataView(head.buffer).getBigUint64(0, true));
    // safetensors caps its header at 100 MB
    if (headerLen > Math.min(size - 8, 100_000_000)) {
      throw new Error(
        `${path}: truncated or not safetensors, a header of ${headerLen} bytes in a file of ${size}`,
      );
    }
    const header = new Uint8Array(headerLen);
    await readFull(file, header);
    let ends = 0;
    for (const [name, entry] of Object.entries(parseHeaderJson(header, path))) {
      if (name === "__metadata__") continue;
      const offsets = (entry as HeaderEntry | null)?.data_offsets;
      if (!Array.isArray(offsets) || typeof offsets[1] !== "number") {
        throw new Error(`${path}: tensor "${name}" has no data offsets`);
      }
      ends = Math.max(ends, offsets[1]);
    }
    if (8 + headerLen + ends !== size) {
      throw new Error(
        `${path}: truncated or padded, its tensors end at byte ${
          8 + headerLen + ends
        }, the file at ${size}`,
      );
    }
  } finally {
    file.close();
  }
}

function parseHeaderJson(bytes: Uint8Array, source: string): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`${source}: corrupt header, expected JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new Error(`${source}: corrupt header, expected a JSON object`);
  }
  return header as Record<string, unknown>;
}

async function readFull(file: Deno.FsFile, out: Uint8Array): Promise<number> {
  let have = 0;
  while (have < out.length) {
    const n = await file.read(out.subarray(have));
    if (n === null) break;
    have += n;
  }
  return have;
}

/** Reads and parses a safetensors file. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`Cannot read ${path}: ${(e as Error).message}`);
  }
  return parseSafetensors(bytes, path);
}

/** A tensor's values as f32 (F32, F16, BF16 and F64 are converted). */
export function toFloat32(t: StoredTensor, name = "tensor"): Float32Array {
  const b = aligned(t.bytes);
  switch (t.dtype) {
    case "F32":
      return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    case "F64":
      return Float32Array.from(new Float64Array(b.buffer, b.byteOffset, b.length / 8));
    case "F16": {
      const h = new Uint16Array(b.buffer, b.byteOffset, b.length / 2);
      return Float32Array.from(h, halfToFloat);
    }
    case "BF16": {
      const h = new Uint16Array(b.buffer, b.byteOffset, b.length / 2);
      const u = new Uint32Array(h.length);
      for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
      return new Float32Array(u.buffer);
    }
    default:
      throw new Error(`Expected a floating-point ${name}, found dtype ${t.dtype}`);
  }
}

/** A tensor's values as i32 (I64 must fit in 32 bits). */
export function toInt32(t: StoredTensor, name = "tensor"): Int32Array {
  const b = aligned(t.bytes);
  switch (t.dtype) {
    case "I32":
      return new Int32Array(b.buffer, b.byteOffset, b.length / 4);
    case "I64": {
      const big = new BigInt64Array(b.buffer, b.byteOffset, b.length / 8);
      const out = new Int32Array(big.length);
      for (let i = 0; i < big.length; i++) {
        if (big[i] > 2147483647n || big[i] < -2147483648n) {
          throw new RangeError(`${name}: value ${big[i]} at ${i} does not fit in 32 bits`);
        }
        out[i] = Number(big[i]);
      }
      return out;
    }
    default:
      throw new Error(`Expected an integer ${name}, found dtype ${t.dtype}`);
  }
}

function aligned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/** A tensor to write: f32 or i32 values with a shape. */
export interface TensorToWrite {
  data: Float32Array | Int32Array;
  shape: readonly number[];
}

/**
 * The file's parts: the length prefix and JSON header, then each tensor's bytes (views of its
 * data, no copy), in the given order.
 */
function safetensorsParts(
  tensors: Iterable<[string, TensorToWrite]>,
  metadata?: Record<string, string>,
): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) {
      throw new Error(
        `Tensor "${name}": shape [${t.shape}] needs ${n} values, found ${t.data.length}`,
      );
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = {
      dtype: t.data instanceof Float32Array ? "F32" : "I32",
      shape: [...t.shape],
      data_offsets: [offset, offset + bytes.length],
    };
    blobs.push(bytes);
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(8 + json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(head.length - 8), true);
  head.set(json, 8); // padded with spaces so the data stays 8-byte aligned
  return [head, ...blobs];
}

/** Serialises tensors (in the given order) and string metadata to safetensors bytes. */
export function serializeSafetensors(
  tensors: Iterable<[string, TensorToWrite]>,
  metadata?: Record<string, string>,
): Uint8Array {
  const parts = safetensorsParts(tensors, metadata);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/**
 * Writes a safetensors file atomically: a temporary file beside it, then a rename. The tensors'
 * bytes go to the file from their own arrays, one after another, so writing a checkpoint's
 * 1 GB of AdamW moments takes no second gigabyte.
 */
export async function writeSafetensors(
  path: string,
  tensors: Iterable<[string, TensorToWrite]>,
  metadata?: Record<string, string>,
): Promise<void> {
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    try {
      for (const part of safetensorsParts(tensors, metadata)) await writeAll(file, part);
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

/** Writes all of `bytes` (a write may take fewer). */
async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let pos = 0; pos < bytes.length;) {
    pos += await file.write(bytes.subarray(pos, Math.min(bytes.length, pos + WRITE_CHUNK)));
  }
}

/** Bytes per write call. */
const WRITE_CHUNK = 16 << 20;
