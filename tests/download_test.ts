/**
 * Tests for lib/io/download.ts and lib/io/hub.ts against a loopback HTTP server (127.0.0.1, a free
 * port) that serves a generated 1 MiB file with Range support and counts the bytes it sends.
 */

import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { join, resolve } from "node:path";
import { DownloadError, downloadFile } from "../lib/io/download.ts";
import { gpt2HubRepo, hubCacheDir, hubFileUrl, snapshotGpt2 } from "../lib/io/hub.ts";

const REFERENCE = Deno.env.get("GPT2_SHARED_REFERENCE") ||
  resolve(import.meta.dirname ?? ".", "..", "..", "shared", "reference");
const TINY_GPT2 = join(REFERENCE, "tiny-gpt2");

const SIZE = 1 << 20;
const DATA = new Uint8Array(SIZE).map((_, i) => (i * 31 + (i >> 8)) % 251);

/** A loopback server: `/file.bin` (ranges), `/redirect/file.bin` (302 to `/file.bin`),
 * `/norange.bin` (always 200), `/drop.bin` (the first response breaks after `DROP_AT` bytes),
 * `/missing` (404), and the hub layout `/openai-community/gpt2/resolve/main/<file>` from the
 * tiny reference checkpoint. */
interface TestServer {
  url: string;
  /** Requests per path. */
  requests: Map<string, number>;
  /** Body bytes sent (or queued before a drop) per path. */
  served: Map<string, number>;
  /** The Range headers received, in order. */
  ranges: (string | null)[];
  close(): Promise<void>;
}

const DROP_AT = 300_000;

function startServer(): TestServer {
  const requests = new Map<string, number>();
  const served = new Map<string, number>();
  const ranges: (string | null)[] = [];
  const count = (map: Map<string, number>, key: string, n: number): void => {
    map.set(key, (map.get(key) ?? 0) + n);
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    count(requests, path, 1);
    ranges.push(req.headers.get("range"));
    if (path === "/redirect/file.bin") {
      // Like the hub, which redirects model files to a CDN; the Range header must survive.
      return new Response(null, { status: 302, headers: { location: "/file.bin" } });
    }
    let body: Uint8Array;
    if (path === "/file.bin" || path === "/norange.bin" || path === "/drop.bin") {
      body = DATA;
    } else if (path.startsWith("/openai-community/gpt2/resolve/main/")) {
      const file = path.slice(path.lastIndexOf("/") + 1);
      try {
        body = await Deno.readFile(join(TINY_GPT2, file));
      } catch {
        return new Response("Entry not found", { status: 404 });
      }
    } else {
      return new Response("not found", { status: 404, statusText: "Not Found" });
    }

    if (path === "/drop.bin" && requests.get(path) === 1) {
      // Promise the whole file, send DROP_AT bytes, then break the connection.
      count(served, path, DROP_AT);
      const stream = new ReadableStream<Uint8Array>({
        start(controller): void {
          controller.enqueue(body.slice(0, DROP_AT));
          // Ending the body short of Content-Length makes the server close the connection.
          setTimeout(() => controller.close(), 20);
        },
      });
      return new Response(stream, { headers: { "content-length": String(body.length) } });
    }

    const range = req.headers.get("range")?.match(/^bytes=(\d+)-$/);
    if (range && path !== "/norange.bin") {
      const start = Number(range[1]);
      if (start >= body.length) {
        return new Response(null, {
          status: 416,
          headers: { "content-range": `bytes */${body.length}` },
        });
      }
      count(served, path, body.length - start);
      return new Response(body.slice(start), {
        status: 206,
        headers: {
          "content-range": `bytes ${start}-${body.length - 1}/${body.length}`,
          "accept-ranges": "bytes",
        },
      });
    }
    count(served, path, body.length);
    return new Response(body.slice(), { headers: { "accept-ranges": "bytes" } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    served,
    ranges,
    close: () => server.shutdown(),
  };
}

async function withServer(fn: (server: TestServer, dir: string) => Promise<void>): Promise<void> {
  const server = startServer();
  const dir = await Deno.makeTempDir({ prefix: "download_test_" });
  try {
    await fn(server, dir);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Awaits `fn`, expecting it to reject with an instance of `type`, and returns the error. */
async function caught<E extends Error>(
  fn: () => Promise<unknown>,
  type: new (...args: never[]) => E,
): Promise<E> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof type) return error;
    throw new Error(`Expected a ${type.name}, found ${error}`, { cause: error });
  }
  throw new Error(`Expected a ${type.name}, found no error`);
}

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

// ---------------------------------------------------------------------------------------------
// lib/io/hub.ts

/** Runs `fn` with environment variables set, restoring them afterwards. */
async function withEnv(
  vars: Record<string, string>,
  fn: () => Promise<void>,
): Promise<void> {
  const saved = Object.keys(vars).map((key) => [key, Deno.env.get(key)] as const);
  for (const [key, value] of Object.entries(vars)) Deno.env.set(key, value);
  try {
    await fn();
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) Deno.env.delete(key);
      else Deno.env.set(key, value);
    }
  }
}

Deno.test("hubFileUrl follows HF_ENDPOINT like huggingface_hub", async () => {
  await withEnv({ HF_ENDPOINT: "http://mirror.test/" }, () => {
    assertEquals(
      hubFileUrl("openai-community/gpt2", "config.json"),
      "http://mirror.test/openai-community/gpt2/resolve/main/config.json",
    );
    assertEquals(
      hubFileUrl("openai-community/gpt2", "model.safetensors", "refs/pr/1"),
      "http://mirror.test/openai-community/gpt2/resolve/refs%2Fpr%2F1/model.safetensors",
    );
    return Promise.resolve();
  });
  await withEnv({ HF_ENDPOINT: "" }, () => {
    assertEquals(
      hubFileUrl("openai-community/gpt2", "config.json"),
      "https://huggingface.co/openai-community/gpt2/resolve/main/config.json",
    );
    return Promise.resolve();
  });
});

Deno.test("hubCacheDir prefers GPT2_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache", async () => {
  await withEnv({ GPT2_CACHE_DIR: "/tmp/c1", XDG_CACHE_HOME: "/tmp/x" }, () => {
    assertEquals(hubCacheDir(), "/tmp/c1");
    return Promise.resolve();
  });
  await withEnv({ GPT2_CACHE_DIR: "", XDG_CACHE_HOME: "/tmp/x", HOME: "/home/u" }, () => {
    assertEquals(hubCacheDir(), "/tmp/x/gpt2-deno");
    return Promise.resolve();
  });
  await withEnv({ GPT2_CACHE_DIR: "", XDG_CACHE_HOME: "", HOME: "/home/u" }, () => {
    assertEquals(hubCacheDir(), "/home/u/.cache/gpt2-deno");
    return Promise.resolve();
  });
});

Deno.test("gpt2HubRepo maps model types and rejects unknown ones", () => {
  assertEquals(gpt2HubRepo("gpt2"), "openai-community/gpt2");
  assertEquals(gpt2HubRepo("gpt2-xl"), "openai-community/gpt2-xl");
  assertEquals(gpt2HubRepo("openai-community/gpt2-medium"), "openai-community/gpt2-medium");
  let message = "";
  try {
    gpt2HubRepo("gpt3");
  } catch (error) {
    message = error instanceof Error ? error.message : String(error);
  }
  assertEquals(
    message,
    'Expected a GPT-2 model type (gpt2, gpt2-medium, gpt2-large, gpt2-xl), found "gpt3"',
  );
});

Deno.test("snapshotGpt2 downloads config.json and model.safetensors from HF_ENDPOINT", async () => {
  await withServer(async (server, dir) => {
    await withEnv({ HF_ENDPOINT: server.url, GPT2_CACHE_DIR: dir }, async () => {
      const folder = await snapshotGpt2("gpt2", { progress: false });
      assertEquals(folder, join(dir, "openai-community", "gpt2"));
      for (const file of ["config.json", "model.safetensors"]) {
        assertEquals(
          await Deno.readFile(join(folder, file)),
          await Deno.readFile(join(TINY_GPT2, file)),
        );
      }
      assertEquals(server.requests.size, 2);
      // A second call, with the long name, is served from the cache.
      assertEquals(await snapshotGpt2("openai-community/gpt2", { progress: false }), folder);
      assertEquals([...server.requests.values()], [1, 1]);
    });
  });
});

Deno.test("snapshotGpt2 says the hub is unreachable and a local folder works instead", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const endpoint = `http://127.0.0.1:${listener.addr.port}`;
  listener.close();
  const dir = await Deno.makeTempDir({ prefix: "hub_test_" });
  try {
    await withEnv({ HF_ENDPOINT: endpoint, GPT2_CACHE_DIR: dir }, async () => {
      const error = await caught(
        () => snapshotGpt2("gpt2-medium", { progress: false, retries: 0 }),
        Error,
      );
      assert(error.message.startsWith("Could not reach the Hugging Face hub at "), error.message);
      assert(error.message.includes(endpoint), error.message);
      assert(error.message.includes("model.safetensors and config.json"), error.message);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("snapshotGpt2 rejects an unknown model type before any request", async () => {
  const error = await caught(() => snapshotGpt2("gpt2-small"), Error);
  assert(error.message.includes("gpt2, gpt2-medium, gpt2-large, gpt2-xl"), error.message);
});
