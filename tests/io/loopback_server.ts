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

/**
 * How the hub layout serves `model.safetensors` (config.json is always served right):
 * - `ok`: as the hub does; a `HEAD` answers 302 with `X-Linked-Size` and `X-Linked-ETag`;
 * - `html`: an HTML error page with status 200, and a `HEAD` that states only its length;
 * - `html-linked`: the right `HEAD`, and an HTML page for the `GET`;
 * - `truncated`: a `GET` from byte 0 promises the file, sends half and breaks the connection;
 *   a range is served right;
 * - `truncated-always`: every `GET` sends half of what it promises and breaks the connection;
 * - `wrong-hash`: the `HEAD` states another SHA-256;
 * - `stall`: a `GET` from byte 0 sends half the file and then nothing, keeping the connection
 *   open; a range is served right;
 * - `stall-forever`: every `GET` sends no answer at all, keeping the connection open.
 */
export type HubMode =
  | "ok"
  | "html"
  | "html-linked"
  | "truncated"
  | "truncated-always"
  | "wrong-hash"
  | "stall"
  | "stall-forever";

/** The HTML page the faulty hub sends. */
export const HTML_PAGE: Uint8Array = new TextEncoder().encode(
  "<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>\n",
);

/** A loopback server: `/file.bin` (ranges), `/redirect/file.bin` (302 to `/file.bin`),
 * `/norange.bin` (always 200), `/drop.bin` (the first response breaks after `DROP_AT` bytes),
 * `/slow.bin` (the file in 16 pieces, 20 ms apart), `/missing` (404), and the hub layout
 * `/openai-community/gpt2/resolve/main/<file>` from the tiny reference checkpoint, served as
 * `hubMode` says. */
export interface TestServer {
  url: string;
  /** Requests per path. */
  requests: Map<string, number>;
  /** Body bytes sent (or queued before a drop) per path. */
  served: Map<string, number>;
  /** The Range headers received, in order (of GET requests). */
  ranges: (string | null)[];
  /** GET requests per path. */
  gets: Map<string, number>;
  close(): Promise<void>;
}

/** Where `/drop.bin` breaks its first response. */
export const DROP_AT = 300_000;

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes.slice());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A body that sends `head` and then nothing until the client goes away. */
function stalledBody(head: Uint8Array, signal: AbortSignal): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller): void {
      if (head.length > 0) controller.enqueue(head);
      signal.addEventListener("abort", () => controller.close(), { once: true });
    },
  });
}

function startServer(hubMode: HubMode): TestServer {
  const requests = new Map<string, number>();
  const served = new Map<string, number>();
  const gets = new Map<string, number>();
  const ranges: (string | null)[] = [];
  const count = (map: Map<string, number>, key: string, n: number): void => {
    map.set(key, (map.get(key) ?? 0) + n);
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    count(requests, path, 1);
    const hub = path.startsWith("/openai-community/gpt2/resolve/main/");
    if (req.method === "HEAD" && hub) return await hubHead(path);
    count(gets, path, 1);
    ranges.push(req.headers.get("range"));
    if (hub && hubMode === "stall-forever" && path.endsWith("/model.safetensors")) {
      // no answer at all until the client gives up
      await new Promise((resolve) => req.signal.addEventListener("abort", resolve));
      return new Response(null, { status: 504 });
    }
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
    } else if (path === "/slow.bin") {
      count(served, path, DATA.length);
      const pieces = 16, step = DATA.length / pieces;
      let i = 0;
      const stream = new ReadableStream<Uint8Array>({
        async pull(controller): Promise<void> {
          await new Promise((r) => setTimeout(r, 20));
          controller.enqueue(DATA.slice(i * step, (i + 1) * step));
          if (++i === pieces) controller.close();
        },
      });
      return new Response(stream, { headers: { "content-length": String(DATA.length) } });
    } else {
      return new Response("not found", { status: 404, statusText: "Not Found" });
    }
    const range = req.headers.get("range")?.match(/^bytes=(\d+)-$/);
    if (hub && path.endsWith("/model.safetensors") && hubMode !== "ok") {
      const fault = hubFault(body, range ? Number(range[1]) : 0, req.signal);
      if (fault) return fault;
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

  /** The hub's answer to a HEAD: an LFS file's size and hash on a redirect, else its length. */
  async function hubHead(path: string): Promise<Response> {
    const file = path.slice(path.lastIndexOf("/") + 1);
    let body: Uint8Array;
    try {
      body = await Deno.readFile(join(TINY_GPT2, file));
    } catch {
      return new Response(null, { status: 404 });
    }
    if (file !== "model.safetensors") {
      return new Response(null, { headers: { "content-length": String(body.length) } });
    }
    if (hubMode === "html") {
      return new Response(null, {
        headers: { "content-length": String(HTML_PAGE.length), "content-type": "text/html" },
      });
    }
    const sha = hubMode === "wrong-hash" ? await sha256Hex(HTML_PAGE) : await sha256Hex(body);
    return new Response(null, {
      status: 302,
      headers: {
        location: `/cdn/${file}`,
        "x-linked-size": String(body.length),
        "x-linked-etag": `"${sha}"`,
      },
    });
  }

  /** The faulty answer to a GET of model.safetensors from byte `start`, or undefined for the right one. */
  function hubFault(body: Uint8Array, start: number, signal: AbortSignal): Response | undefined {
    const half = body.slice(0, Math.floor(body.length / 2));
    switch (hubMode) {
      case "html":
      case "html-linked":
        return new Response(HTML_PAGE.slice(), { headers: { "content-type": "text/html" } });
      case "truncated":
      case "truncated-always": {
        if (hubMode === "truncated" && start !== 0) return undefined;
        // promise the rest, send half of it, then break the connection
        const rest = body.slice(start);
        const piece = rest.slice(0, Math.ceil(rest.length / 2));
        const stream = new ReadableStream<Uint8Array>({
          start(controller): void {
            controller.enqueue(piece);
            setTimeout(() => controller.close(), 20);
          },
        });
        const headers: Record<string, string> = { "content-length": String(rest.length) };
        if (start === 0) return new Response(stream, { headers });
        headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
        return new Response(stream, { status: 206, headers });
      }
      case "stall":
        if (start !== 0) return undefined;
        return new Response(stalledBody(half, signal), {
          headers: { "content-length": String(body.length) },
        });
      default:
        return undefined;
    }
  }

  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    served,
    ranges,
    gets,
    close: () => server.shutdown(),
  };
}

/** Runs `fn` with a fresh server and an empty temporary folder, both removed afterwards. */
export async function withServer(
  fn: (server: TestServer, dir: string) => Promise<void>,
  hubMode: HubMode = "ok",
): Promise<void> {
  const server = startServer(hubMode);
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
