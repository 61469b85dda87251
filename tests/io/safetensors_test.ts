// lib/io/safetensors.ts: round trips, the dtypes that convert, and the errors bad files give.
import { deepStrictEqual as assertEquals, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  toFloat32,
  toInt32,
  writeSafetensors,
} from "../../lib/io/safetensors.ts";
import { referenceDir } from "../support.ts";

const tinyDir = join(referenceDir, "tiny-gpt2");

Deno.test("safetensors: round trip of f32 and i32 tensors with metadata, data 8-byte aligned", () => {
  const bytes = serializeSafetensors([
    ["a", { data: Float32Array.from([1.5, -2, 3.25]), shape: [3] }],
    ["b.ü", { data: Int32Array.from([7, -8, 9, 10]), shape: [2, 2] }],
  ], { format: "pt" });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals((8 + headerLen) % 8, 0);
  const f = parseSafetensors(bytes, "mem");
  assertEquals([...f.tensors.keys()], ["a", "b.ü"]);
  assertEquals([...toFloat32(f.tensors.get("a")!)], [1.5, -2, 3.25]);
  assertEquals(f.tensors.get("b.ü")!.shape, [2, 2]);
  assertEquals([...toInt32(f.tensors.get("b.ü")!)], [7, -8, 9, 10]);
  assertEquals(f.metadata, { format: "pt" });
});

Deno.test("safetensors: F16, BF16 and I64 convert", () => {
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [2], data_offsets: [0, 4] },
    b: { dtype: "BF16", shape: [1], data_offsets: [4, 6] },
    i: { dtype: "I64", shape: [1], data_offsets: [8, 16] },
  });
  const data = new Uint8Array(16);
  const dv = new DataView(data.buffer);
  dv.setUint16(0, 0x3c00, true); // 1.0
  dv.setUint16(2, 0xc000, true); // -2.0
  dv.setUint16(4, 0x4049, true); // bf16 of 3.140625
  dv.setBigInt64(8, 50256n, true);
  const hb = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + hb.length + 16);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(hb.length), true);
  bytes.set(hb, 8);
  bytes.set(data, 8 + hb.length);
  const f = parseSafetensors(bytes);
  assertEquals([...toFloat32(f.tensors.get("h")!)], [1, -2]);
  assertEquals([...toFloat32(f.tensors.get("b")!)], [3.140625]);
  assertEquals([...toInt32(f.tensors.get("i")!)], [50256]);
});

Deno.test("safetensors: truncated and corrupt files fail naming the file and tensor", async () => {
  const good = await Deno.readFile(join(tinyDir, "model.safetensors"));
  throws(() => parseSafetensors(good.subarray(0, 5), "x.safetensors"), /x\.safetensors: truncated/);
  throws(
    () => parseSafetensors(good.subarray(0, 100), "x.safetensors"),
    /x\.safetensors: truncated or not safetensors/,
  );
  throws(
    () => parseSafetensors(good.subarray(0, good.length - 10), "x.safetensors"),
    /truncated, tensor "[^"]+" ends/,
  );
  const corrupt = good.slice();
  corrupt[9] = 0xff; // break the JSON
  throws(() => parseSafetensors(corrupt, "x.safetensors"), /x\.safetensors: corrupt header/);
  await rejects(
    readSafetensors("/nonexistent/model.safetensors"),
    /Cannot read \/nonexistent\/model\.safetensors/,
  );
});

Deno.test("writeSafetensors: a full disk leaves neither the file nor its temporary file", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "model.safetensors");
  // the temporary file is /dev/full: every write fails with ENOSPC, as on a full disk
  await Deno.symlink("/dev/full", `${path}.tmp`);
  const tensors = new Map([["w", { shape: [4], data: new Float32Array(4) }]]);
  await rejects(writeSafetensors(path, tensors), /No space left on device/);
  assertEquals([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir, { recursive: true });
});
