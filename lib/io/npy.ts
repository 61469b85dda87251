/**
 * NumPy's `.npy` format for 1-D uint16 token arrays: what build-nanogpt's `fineweb.py` writes
 * with `np.save` and what `np.load` reads.
 *
 * A file is the magic `\x93NUMPY`, a version (1.0 here), a little-endian header length, an
 * ASCII Python dict such as `{'descr': '<u2', 'fortran_order': False, 'shape': (2000,), }`
 * padded with spaces to a multiple of 64 bytes and ended by `\n`, then the raw values. The
 * writer reproduces numpy's header byte for byte (spare spaces for the shape to grow
 * included), so a shard from either pipeline is the same file.
 *
 * @module
 */

/** The six magic bytes every `.npy` file starts with. */
export const NPY_MAGIC: Uint8Array = Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59);

/** numpy pads the header so the data starts on a multiple of 64 bytes. */
const ARRAY_ALIGN = 64;
/** numpy leaves room for the growing axis to reach 21 digits without rewriting the file. */
const GROWTH_AXIS_MAX_DIGITS = 21;

/** What a `.npy` header says. */
export interface NpyHeader {
  /** The format version, `[major, minor]`. */
  version: [number, number];
  /** The dtype string, e.g. `<u2`. */
  descr: string;
  /** Whether the data is in Fortran order. */
  fortranOrder: boolean;
  /** The array's shape. */
  shape: number[];
  /** Where the data starts: the byte length of magic, version, length and header. */
  dataOffset: number;
}

/** The header bytes numpy's `np.save` writes for a 1-D `<u2` array of `length` values. */
export function npyHeaderUint16(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`Expected a non-negative integer length, found ${length}`);
  }
  const shape = String(length);
  let dict = `{'descr': '<u2', 'fortran_order': False, 'shape': (${shape},), }`;
  dict += " ".repeat(Math.max(GROWTH_AXIS_MAX_DIGITS - shape.length, 0));
  // magic (6) + version (2) + header length (2) + dict + padding + "\n"
  const unpadded = 10 + dict.length + 1;
  const padded = dict + " ".repeat((ARRAY_ALIGN - (unpadded % ARRAY_ALIGN)) % ARRAY_ALIGN) + "\n";
  const out = new Uint8Array(10 + padded.length);
  out.set(NPY_MAGIC, 0);
  out[6] = 1; // version 1.0: the header length is a uint16
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, padded.length, true);
  for (let i = 0; i < padded.length; i++) out[10 + i] = padded.charCodeAt(i);
  return out;
}

/** The whole `.npy` file for `tokens` (numpy's bytes exactly). */
export function encodeNpyUint16(tokens: Uint16Array): Uint8Array {
  const header = npyHeaderUint16(tokens.length);
  const out = new Uint8Array(header.length + tokens.length * 2);
  out.set(header, 0);
  const view = new DataView(out.buffer, header.length);
  for (let i = 0; i < tokens.length; i++) view.setUint16(i * 2, tokens[i], true);
  return out;
}

/**
 * Writes `tokens` as a `.npy` file atomically: to `path + ".tmp"`, then renamed, so `path`
 * only ever holds a complete shard.
 */
export async function writeNpyUint16(path: string, tokens: Uint16Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    try {
      const bytes = encodeNpyUint16(tokens);
      for (let n = 0; n < bytes.length;) n += await file.write(bytes.subarray(n));
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

/**
 * Parses the header of a `.npy` file from its first bytes (at least the whole header).
 * `name` is used in errors.
 *
 * @throws {Error} naming the file when the magic, version or header dict is not numpy's.
 */
export function parseNpyHeader(bytes: Uint8Array, name: string): NpyHeader {
  if (bytes.length < 10 || NPY_MAGIC.some((b, i) => bytes[i] !== b)) {
    const found = Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, "0"))
      .join(" ");
    throw new Error(
      `${name}: expected the .npy magic 93 4e 55 4d 50 59 ("\\x93NUMPY"), found ${
        found || "an empty file"
      }`,
    );
  }
  const major = bytes[6], minor = bytes[7];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLength: number, start: number;
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new Error(`${name}: the .npy header is truncated`);
    headerLength = view.getUint32(8, true);
    start = 12;
  } else {
    throw new Error(`${name}: expected .npy format version 1, 2 or 3, found ${major}.${minor}`);
  }
  const dataOffset = start + headerLength;
  if (bytes.length < dataOffset) {
    throw new Error(
      `${name}: the .npy header is truncated: expected ${dataOffset} bytes, found ${bytes.length}`,
    );
  }
  const dict = new TextDecoder().decode(bytes.subarray(start, dataOffset));
  const descr = dict.match(/'descr'\s*:\s*'([^']*)'/)?.[1];
  const fortran = dict.match(/'fortran_order'\s*:\s*(True|False)/)?.[1];
  const shapeText = dict.match(/'shape'\s*:\s*\(([^)]*)\)/)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new Error(
      `${name}: expected a .npy header dict with 'descr', 'fortran_order' and 'shape', found ${
        JSON.stringify(dict.trim())
      }`,
    );
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new Error(`${name}: expected a shape of non-negative integers, found (${shapeText})`);
  }
  return {
    version: [major, minor],
    descr,
    fortranOrder: fortran === "True",
    shape,
    dataOffset,
  };
}

/**
 * Checks that a header describes a 1-D `<u2` array and that the file holds all its values.
 *
 * @throws {Error} naming the file, what was expected and what was found.
 */
export function checkUint16Header(header: NpyHeader, fileSize: number, name: string): number {
  if (header.descr !== "<u2") {
    throw new Error(`${name}: expected dtype '<u2' (uint16 tokens), found '${header.descr}'`);
  }
  if (header.shape.length !== 1) {
    throw new Error(`${name}: expected a 1-D array, found shape (${header.shape.join(", ")})`);
  }
  const length = header.shape[0];
  const expected = header.dataOffset + length * 2;
  if (fileSize !== expected) {
    const what = fileSize < expected ? "truncated" : "longer than its header says";
    throw new Error(
      `${name}: the shard is ${what}: expected ${expected} bytes for ${length} tokens, found ${fileSize}`,
    );
  }
  return length;
}

/**
 * Reads a 1-D `<u2` `.npy` file as a Uint16Array.
 *
 * @throws {Error} naming the file for a bad magic, a dtype other than `<u2`, a shape that is
 * not 1-D, or a size that does not match the header (a truncated shard).
 */
export function readNpyUint16Sync(path: string): Uint16Array {
  const bytes = Deno.readFileSync(path);
  return decodeNpyUint16(bytes, path);
}

/** Reads a 1-D `<u2` `.npy` file as a Uint16Array; see {@linkcode readNpyUint16Sync}. */
export async function readNpyUint16(path: string): Promise<Uint16Array> {
  return decodeNpyUint16(await Deno.readFile(path), path);
}

/** Decodes the bytes of a 1-D `<u2` `.npy` file; `name` is used in errors. */
export function decodeNpyUint16(bytes: Uint8Array, name: string): Uint16Array {
  const header = parseNpyHeader(bytes, name);
  const length = checkUint16Header(header, bytes.length, name);
  const start = bytes.byteOffset + header.dataOffset;
  if (start % 2 === 0) return new Uint16Array(bytes.buffer, start, length);
  return new Uint16Array(bytes.slice(header.dataOffset).buffer, 0, length); // unaligned: copy
}

/**
 * The token count of a 1-D `<u2` `.npy` file, from its header and size alone (no data read).
 *
 * @throws {Error} naming the file, as {@linkcode readNpyUint16Sync} does.
 */
export async function npyUint16Length(path: string): Promise<number> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const head = new Uint8Array(Math.min(size, 4096));
    let got = 0;
    while (got < head.length) {
      const n = await file.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
    const header = parseNpyHeader(head.subarray(0, got), path);
    return checkUint16Header(header, size, path);
  } finally {
    file.close();
  }
}
