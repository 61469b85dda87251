// lib/io/npy.ts: numpy's exact header bytes, round trips, and bad files named in errors.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  decodeNpyUint16,
  encodeNpyUint16,
  npyHeaderUint16,
  npyUint16Length,
  readNpyUint16,
  readNpyUint16Sync,
  writeNpyUint16,
} from "../../lib/io/npy.ts";

const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0));

Deno.test("npy: the header is numpy 1.x's np.save header, byte for byte", () => {
  // As printed by numpy 1.24's np.save(np.zeros(5, np.uint16)): 128 bytes, the dict (57
  // characters) followed by 21 - len("5") spare spaces, padded to 64-byte alignment, "\n".
  const dict = "{'descr': '<u2', 'fortran_order': False, 'shape': (5,), }";
  assertEquals(dict.length, 57);
  const expected = [0x93, ...ascii("NUMPY"), 1, 0, 118, 0, ...ascii(dict + " ".repeat(60) + "\n")];
  assertEquals(expected.length, 128);
  assertEquals(Array.from(npyHeaderUint16(5)), expected);
  // 1e8 tokens (a full FineWeb shard) still fits in 128 bytes
  const big = npyHeaderUint16(100_000_000);
  assertEquals(big.length, 128);
  ok(new TextDecoder().decode(big).includes("'shape': (100000000,), }"));
});

Deno.test("npy: tokens follow the header as little-endian uint16", () => {
  const bytes = encodeNpyUint16(Uint16Array.of(1, 256, 50256));
  assertEquals(bytes.length, 128 + 6);
  assertEquals(Array.from(bytes.subarray(128)), [0x01, 0x00, 0x00, 0x01, 0x50, 0xc4]);
});

Deno.test("npy: write, read and length round trip", async () => {
  const dir = await Deno.makeTempDir();
  const tokens = Uint16Array.from({ length: 1001 }, (_, i) => (i * 7919) % 65536);
  const path = join(dir, "shard.npy");
  await writeNpyUint16(path, tokens);
  assertEquals(Array.from(await readNpyUint16(path)), Array.from(tokens));
  assertEquals(Array.from(readNpyUint16Sync(path)), Array.from(tokens));
  assertEquals(await npyUint16Length(path), 1001);
  assertEquals(readNpyUint16Sync(path).length, 1001);
  // empty arrays are valid too
  assertEquals(decodeNpyUint16(encodeNpyUint16(new Uint16Array(0)), "empty").length, 0);
  await Deno.remove(dir, { recursive: true });
});

/** A v1.0 `.npy` file with any dict (padded like numpy's) and `dataBytes` zero bytes. */
function npyWithDict(dict: string, dataBytes: number): Uint8Array {
  const pad = (64 - ((10 + dict.length + 1) % 64)) % 64;
  const header = dict + " ".repeat(pad) + "\n";
  const out = new Uint8Array(10 + header.length + dataBytes);
  out.set([0x93, ...ascii("NUMPY"), 1, 0, header.length & 255, header.length >> 8]);
  out.set(ascii(header), 10);
  return out;
}

Deno.test("npy: a truncated file, a wrong dtype, a 2-D array and a bad magic name the file", async () => {
  const dir = await Deno.makeTempDir();
  const truncated = join(dir, "edufineweb_train_000001.npy");
  const full = encodeNpyUint16(Uint16Array.from({ length: 100 }, (_, i) => i));
  await Deno.writeFile(truncated, full.subarray(0, full.length - 3));
  for (const read of [readNpyUint16Sync, npyUint16Length]) {
    let message = "";
    try {
      await read(truncated);
    } catch (e) {
      message = (e as Error).message;
    }
    ok(message.includes(truncated) && message.includes("truncated"), message);
    ok(message.includes("expected 328 bytes for 100 tokens, found 325"), message);
  }

  const int32 = join(dir, "int32.npy");
  await Deno.writeFile(
    int32,
    npyWithDict("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", 16),
  );
  throws(() => readNpyUint16Sync(int32), (e: Error) => {
    ok(e.message.includes(int32) && e.message.includes("expected dtype '<u2'"), e.message);
    ok(e.message.includes("found '<i4'"), e.message);
    return true;
  });

  const matrix = join(dir, "matrix.npy");
  await Deno.writeFile(
    matrix,
    npyWithDict("{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3), }", 12),
  );
  throws(
    () => readNpyUint16Sync(matrix),
    /matrix\.npy: expected a 1-D array, found shape \(2, 3\)/,
  );

  const text = join(dir, "text.npy");
  await Deno.writeTextFile(text, "not numpy at all");
  throws(() => readNpyUint16Sync(text), /text\.npy: expected the \.npy magic/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeNpyUint16: a full disk leaves neither the shard nor its temporary file", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "shard_000000.npy");
  // the temporary file is /dev/full: every write fails with ENOSPC, as on a full disk
  await Deno.symlink("/dev/full", `${path}.tmp`);
  let message = "";
  await writeNpyUint16(path, new Uint16Array(10)).catch((e) => message = e.message);
  ok(message.startsWith("No space left on device"), message);
  assertEquals([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir, { recursive: true });
});
