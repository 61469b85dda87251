// lib/io/files.ts: text decoded strictly (a NUL byte or bytes that are not UTF-8 are errors
// naming the file and the offset), and output folders checked before anything is written.
import { deepStrictEqual as assertEquals, rejects, throws } from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  checkOutputFolder,
  decodeUtf8Strict,
  displayPath,
  invalidUtf8Offset,
  invalidUtf8OffsetChunked,
  isOsError,
  MAX_STRING_CHARS,
  readTextFileStrict,
} from "../../lib/io/files.ts";

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

Deno.test("decodeUtf8Strict: UTF-8 text as Deno.readTextFile reads it, byte-order mark dropped", () => {
  assertEquals(
    decodeUtf8Strict(utf8("First Citizen: é, 日本, 🙂\n"), "a.txt"),
    "First Citizen: é, 日本, 🙂\n",
  );
  assertEquals(decodeUtf8Strict(bytes(0xef, 0xbb, 0xbf, 0x41), "a.txt"), "A");
  assertEquals(decodeUtf8Strict(new Uint8Array(0), "a.txt"), "");
});

Deno.test("decodeUtf8Strict: a NUL byte, bytes that are not UTF-8 and a cut-off character name the file and offset", () => {
  throws(() => decodeUtf8Strict(bytes(0x41, 0x42, 0, 0x43), "w.bin"), {
    message: "Expected a UTF-8 text file at w.bin, found a binary file (a NUL byte at offset 2)",
  });
  // Latin-1 "café": 0xe9 then a byte that cannot continue it
  throws(() => decodeUtf8Strict(bytes(0x63, 0x61, 0x66, 0xe9, 0x21), "latin1.txt"), {
    message: "Expected a UTF-8 text file at latin1.txt, found bytes that are not UTF-8 at offset 3",
  });
  throws(() => decodeUtf8Strict(bytes(0x41, 0xff), "x.txt"), /not UTF-8 at offset 1$/);
  assertEquals(invalidUtf8Offset(bytes(0x41, 0x42, 0xe6, 0x97)), 2); // ends inside a character
  assertEquals(invalidUtf8Offset(utf8("fine")), 4);
});

Deno.test("readTextFileStrict names the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "shift_jis.txt");
    await Deno.writeFile(path, bytes(0x93, 0xfa, 0x96, 0x7b));
    await rejects(readTextFileStrict(path), {
      message: `Expected a UTF-8 text file at ${path}, found bytes that are not UTF-8 at offset 0`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkOutputFolder: a folder or nothing passes (nothing is made); a file fails naming the flag", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await checkOutputFolder("--out", dir);
    await checkOutputFolder("--out", join(dir, "new", "deeper"));
    assertEquals(existsSync(join(dir, "new")), false);
    const file = join(dir, "figure.txt");
    await Deno.writeTextFile(file, "not a folder");
    await rejects(checkOutputFolder("--out", file), {
      message: `--out ${file}: expected a folder, found a file`,
    });
    await rejects(
      checkOutputFolder("--out", join(file, "sub")),
      new RegExp(`^Error: --out ${file}/sub: cannot use it as a folder \\(Not a directory`),
    );
    assertEquals(await Deno.readTextFile(file), "not a folder");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeUtf8Strict: text past V8's string limit says so, and a bad byte in it is found where it is", () => {
  // all 'a': valid UTF-8, but more characters than one string holds
  const bytes = new Uint8Array(MAX_STRING_CHARS + 16).fill(0x61);
  throws(() => decodeUtf8Strict(bytes, "big.txt"), {
    message: `Expected a text file of at most ${MAX_STRING_CHARS} characters at big.txt, found ${
      MAX_STRING_CHARS + 16
    } bytes of UTF-8 text: more than one JavaScript string can hold`,
  });
  // a bad byte far in, and a character cut by one at a 64 MiB boundary of the scan
  bytes[300_000_000] = 0xff;
  throws(() => decodeUtf8Strict(bytes, "big.txt"), /not UTF-8 at offset 300000000$/);
  bytes[300_000_000] = 0x61;
  const boundary = 64 * 1024 * 1024;
  bytes[boundary - 1] = 0xc3;
  bytes[boundary] = 0x41;
  assertEquals(invalidUtf8OffsetChunked(bytes), boundary - 1);
  bytes[boundary] = 0xa9; // now a whole character across the boundary
  assertEquals(invalidUtf8OffsetChunked(bytes), bytes.length);
});

Deno.test("displayPath: relative to the working folder when near it, else as given", async () => {
  const root = await Deno.makeTempDir();
  const deep = join(root, "a", "b", "c");
  await Deno.mkdir(deep, { recursive: true });
  const before = Deno.cwd();
  Deno.chdir(deep);
  try {
    assertEquals(
      displayPath(join(root, "a", "shared", "in.txt")),
      join("..", "..", "shared", "in.txt"),
    );
    assertEquals(displayPath(join(deep, "log", "model")), join("log", "model"));
    assertEquals(displayPath("log/model"), "log/model");
    assertEquals(displayPath(join(root, "x.txt")), join(root, "x.txt")); // three folders up
  } finally {
    Deno.chdir(before);
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("isOsError: Deno's error classes, and the errors Deno reports only by their os error number (a read-only or full disk)", () => {
  assertEquals(isOsError(new Deno.errors.NotFound("No such file or directory (os error 2)")), true);
  assertEquals(isOsError(new Error("Read-only file system (os error 30): mkdir '/mnt/x'")), true);
  assertEquals(isOsError(new Error("No space left on device (os error 28)")), true);
  assertEquals(isOsError(new Error("Expected a log.txt, found none")), false);
  assertEquals(isOsError("os error 30"), false);
});
