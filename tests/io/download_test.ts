/**
 * Tests for lib/io/download.ts against a loopback HTTP server (`loopback_server.ts`) that serves a
 * generated 1 MiB file with Range support and counts the bytes it sends.
 */

import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { join } from "node:path";
import { DownloadError, downloadFile } from "../../lib/io/download.ts";
import { caught, DATA, DROP_AT, SIZE, withServer } from "./loopback_server.ts";

const quiet = { progress: false, retryDelayMs: 10 };

Deno.test("downloadFile fetches the whole file and renames the part file", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "sub", "file.bin");
    const result = await downloadFile(`${server.url}/file.bin`, dest, quiet);
    assertEquals(result, { path: dest, bytes: SIZE, cached: false, resumedFrom: 0 });
    assertEquals(await Deno.readFile(dest), DATA);
    await rejects(() => Deno.stat(`${dest}.part`), Deno.errors.NotFound);
    assertEquals(server.served.get("/file.bin"), SIZE);
    assertEquals(server.ranges, [null]);
  });
});

Deno.test("downloadFile resumes from a partial .part file and fetches only the rest", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "file.bin");
    const have = 400_000;
    await Deno.writeFile(`${dest}.part`, DATA.subarray(0, have));
    const result = await downloadFile(`${server.url}/file.bin`, dest, quiet);
    assertEquals(result.resumedFrom, have);
    assertEquals(result.bytes, SIZE);
    assertEquals(await Deno.readFile(dest), DATA);
    assertEquals(server.ranges, [`bytes=${have}-`]);
    assertEquals(server.served.get("/file.bin"), SIZE - have);
  });
});

Deno.test("downloadFile resumes through a redirect, as the hub's files redirect", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "file.bin");
    const have = 123_456;
    await Deno.writeFile(`${dest}.part`, DATA.subarray(0, have));
    await downloadFile(`${server.url}/redirect/file.bin`, dest, quiet);
    assertEquals(await Deno.readFile(dest), DATA);
    assertEquals(server.ranges, [`bytes=${have}-`, `bytes=${have}-`]);
    assertEquals(server.served.get("/file.bin"), SIZE - have);
  });
});

Deno.test("downloadFile restarts when the server ignores Range and answers 200", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "norange.bin");
    // Garbage in the part file must not survive: the 200 body replaces it.
    await Deno.writeFile(`${dest}.part`, new Uint8Array(1000).fill(7));
    await downloadFile(`${server.url}/norange.bin`, dest, quiet);
    assertEquals(await Deno.readFile(dest), DATA);
    assertEquals(server.ranges, ["bytes=1000-"]);
  });
});

Deno.test("downloadFile finishes a complete .part file when the server answers 416", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "file.bin");
    await Deno.writeFile(`${dest}.part`, DATA);
    const result = await downloadFile(`${server.url}/file.bin`, dest, quiet);
    assertEquals(result.bytes, SIZE);
    assertEquals(await Deno.readFile(dest), DATA);
    assertEquals(server.requests.get("/file.bin"), 1);
    assertEquals(server.served.get("/file.bin") ?? 0, 0);
  });
});

Deno.test("downloadFile retries a dropped connection and resumes where it broke", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "drop.bin");
    const result = await downloadFile(`${server.url}/drop.bin`, dest, quiet);
    assertEquals(await Deno.readFile(dest), DATA);
    assertEquals(result.bytes, SIZE);
    assertEquals(server.requests.get("/drop.bin"), 2);
    assertEquals(server.ranges, [null, `bytes=${DROP_AT}-`]);
    // Only the remainder was fetched the second time.
    assertEquals(server.served.get("/drop.bin"), SIZE);
  });
});

Deno.test("downloadFile keeps the part file when retries run out, and resumes later", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "drop.bin");
    const error = await caught(
      () => downloadFile(`${server.url}/drop.bin`, dest, { ...quiet, retries: 0 }),
      DownloadError,
    );
    assert(error.message.includes(`${server.url}/drop.bin`), error.message);
    assertEquals((await Deno.stat(`${dest}.part`)).size, DROP_AT);
    await rejects(() => Deno.stat(dest), Deno.errors.NotFound);
    const result = await downloadFile(`${server.url}/drop.bin`, dest, quiet);
    assertEquals(result.resumedFrom, DROP_AT);
    assertEquals(await Deno.readFile(dest), DATA);
  });
});

Deno.test("downloadFile reports a 404 with the URL and the status", async () => {
  await withServer(async (server, dir) => {
    const url = `${server.url}/missing`;
    const error = await caught(
      () => downloadFile(url, join(dir, "missing"), quiet),
      DownloadError,
    );
    assertEquals(error.status, 404);
    assertEquals(error.url, url);
    assert(error.message.includes(url), error.message);
    assert(error.message.includes("HTTP 404"), error.message);
    assertEquals(server.requests.get("/missing"), 1, "a 404 is not retried");
    await rejects(() => Deno.stat(join(dir, "missing")), Deno.errors.NotFound);
  });
});

Deno.test("downloadFile makes no request when the destination exists", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "file.bin");
    await Deno.writeTextFile(dest, "cached");
    const result = await downloadFile(`${server.url}/file.bin`, dest, quiet);
    assertEquals(result, { path: dest, bytes: 6, cached: true, resumedFrom: 0 });
    assertEquals(server.requests.size, 0);
    assertEquals(await Deno.readTextFile(dest), "cached");
  });
});

Deno.test("downloadFile names the URL when nothing listens there", async () => {
  // Take a free port, then close it so that connecting is refused.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${listener.addr.port}/file.bin`;
  listener.close();
  const dir = await Deno.makeTempDir({ prefix: "download_test_" });
  try {
    const error = await caught(
      () => downloadFile(url, join(dir, "file.bin"), { ...quiet, retries: 1 }),
      DownloadError,
    );
    assertEquals(error.status, undefined);
    assert(error.message.includes(url), error.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
