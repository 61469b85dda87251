/**
 * A loopback HTTP server (127.0.0.1, a free port) for the download and hub tests: it serves a
 * generated 1 MiB file with Range support, a redirect, a server that ignores Range, a dropped
 * connection, a 404 and the hub's layout for the tiny reference checkpoint, and counts the
 * requests and bytes it sends.
 *
 * @module
 */

import { join } from "node:path";
import { referenceDir } from "../support.ts";

/** The tiny reference checkpoint the server's hub layout serves. */
export const TINY_GPT2: string = join(referenceDir, "tiny-gpt2");

/** The size of the generated file. */
export const SIZE: number = 1 << 20;
/** The generated file's bytes. */
export const DATA: Uint8Array = new Uint8Array(SIZE).map((_, i) => (i * 31 + (i >> 8)) % 251);

/** A loopback server: `/file.bin` (ranges), `/redirect/file.bin` (302 to `/file.bin`),
 * `/norange.bin` (always 200), `/drop.bin` (the first response breaks after `DROP_AT` bytes),
 * `/missing` (404), and the hub layout `/openai-community/gpt2/resolve/main/<file>` from the
 * tiny reference checkpoint. */
export interface TestServer {
  url: string;
  /** Requests per path. */
  requests: Map<string, number>;
  /** Body bytes sent (or queued before a drop) per path. */
  served: Map<string, number>;
  /** The Range headers received, in order. */
  ranges: (string | null)[];
  close(): Promise<void>;
}

/** Where `/drop.bin` breaks its first response. */
export const DROP_AT = 300_000;

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

/** Runs `fn` with a fresh server and an empty temporary folder, both removed afterwards. */
export async function withServer(
  fn: (server: TestServer, dir: string) => Promise<void>,
): Promise<void> {
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
export async function caught<E extends Error>(
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
