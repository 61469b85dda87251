/**
 * The server of `deno task serve`: one page (`index.html` and its bundled script), the model
 * folder's `config.json` and `model.safetensors`, the WGSL kernels and tiktoken's files, on
 * 127.0.0.1 by default. Nothing else is served: the paths are a fixed table, so no request
 * reaches another file.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { WGSL_FILES } from "../backends/webgpu/kernels.ts";
import type { GPTConfig } from "../model/gpt.ts";
import { resolveWeights } from "../weights/resolve.ts";
import { bundlePage } from "./bundle.ts";
import { MODEL_URLS } from "./page/load_model.ts";
import { TOKENIZER_URLS } from "./page/tokenizer.ts";
import { wgslUrl } from "./page/webgpu.ts";

/** Where `deno task train` writes the trained model: serve's default `--weights`. */
export const DEFAULT_WEIGHTS = "log/model";

const repoFile = (path: string): string => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** A model folder ready to serve: its path, what it is, and its shape. */
export interface ModelFolder {
  dir: string;
  /** For the startup line: `a Hugging Face folder`, `gpt2 from the hub (...)`. */
  kind: string;
  config: GPTConfig;
}

/**
 * The folder `--weights` names, through the one loader (lib/weights: `resolveWeights`): a local
 * folder holding `config.json` and `model.safetensors` (a trained `log/model`, a checkpoint
 * folder, whose files are checked against its state.json, a Hugging Face folder), or a GPT-2
 * model type from the hub (downloaded into the cache unless already there). The page reads a
 * folder's two files, so an llm.c `.bin` model file is refused.
 *
 * @throws {Error} naming `--weights`, saying what was expected and what was found.
 */
export async function resolveModelFolder(weights: string): Promise<ModelFolder> {
  const source = await resolveWeights(weights, {
    missingHint: weights === DEFAULT_WEIGHTS
      ? " (deno task train writes it; or pass --weights)"
      : "",
  });
  if (source.dir === null) {
    throw new Error(
      `--weights ${weights}: expected a folder holding config.json and model.safetensors, ` +
        `found ${source.kind}: the page reads a Hugging Face folder`,
    );
  }
  return { dir: source.dir, kind: source.kind, config: source.config };
}

/** Options of {@linkcode startServer}. */
export interface ServeOptions {
  /** The model folder (`resolveModelFolder`). */
  model: ModelFolder;
  /** 0 picks a free port. */
  port: number;
  hostname: string;
}

/** A running server: its address, and how to stop it. */
export interface RunningServer {
  /** The page's address, e.g. `http://127.0.0.1:8000/`. */
  url: string;
  /** Stops listening and waits for open responses to end. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

/** One served path: a file of this machine, or text made at startup, and its type. */
interface Route {
  file?: string;
  text?: string;
  type: string;
}

const JS = "text/javascript; charset=utf-8";

/** The table of served paths (each without its leading slash). */
function routes(model: ModelFolder, script: string): Map<string, Route> {
  const table = new Map<string, Route>([
    ["", { file: repoFile("lib/web/index.html"), type: "text/html; charset=utf-8" }],
    ["app.js", { text: script, type: JS }],
    [MODEL_URLS.config, { file: join(model.dir, "config.json"), type: "application/json" }],
    [MODEL_URLS.weights, {
      file: join(model.dir, "model.safetensors"),
      type: "application/octet-stream",
    }],
    [TOKENIZER_URLS.ranks, {
      file: repoFile("node_modules/tiktoken/encoders/gpt2.json"),
      type: "application/json",
    }],
    [TOKENIZER_URLS.wasm, {
      file: repoFile("node_modules/tiktoken/lite/tiktoken_bg.wasm"),
      type: "application/wasm",
    }],
  ]);
  for (const name of WGSL_FILES) {
    table.set(wgslUrl(name), {
      file: repoFile(`kernels/wgsl/${name}.wgsl`),
      type: "text/plain; charset=utf-8",
    });
  }
  return table;
}

/** The response of one route: the file streamed with its length, or the text. */
async function respond(route: Route, method: string): Promise<Response> {
  // no-store: a model retrained into the same folder is fetched anew on reload
  const headers: Record<string, string> = {
    "content-type": route.type,
    "cache-control": "no-store",
  };
  if (route.text !== undefined) {
    return new Response(method === "HEAD" ? null : route.text, { headers });
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(route.file!);
  } catch (e) {
    return new Response(`Cannot read ${route.file}: ${(e as Error).message}\n`, { status: 500 });
  }
  const { size } = await file.stat();
  headers["content-length"] = String(size);
  if (method === "HEAD") {
    file.close();
    return new Response(null, { headers });
  }
  return new Response(file.readable, { headers });
}

/**
 * Bundles the page and starts serving it with the model of `options`.
 *
 * @throws {Error} when the port is taken (saying which and what to pass instead), or the
 * page cannot be bundled.
 */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const table = routes(options.model, await bundlePage());
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      port: options.port,
      hostname: options.hostname,
      onListen: () => {},
    }, async (request) => {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return new Response("Only GET and HEAD\n", {
          status: 405,
          headers: { allow: "GET, HEAD" },
        });
      }
      const route = table.get(new URL(request.url).pathname.slice(1));
      if (!route) return new Response("Not found\n", { status: 404 });
      return await respond(route, request.method);
    });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `Port ${options.port} on ${options.hostname} is taken (another program listens there): ` +
          `pass --port with a free one, or --port 0 for any`,
      );
    }
    // an address that does not resolve or is not this machine's
    throw new Error(
      `Cannot listen on ${options.hostname}:${options.port} (--host, --port): ${
        (e as Error).message
      }`,
      { cause: e },
    );
  }
  const { hostname, port } = server.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    url: `http://${host}:${port}/`,
    shutdown: () => server.shutdown(),
    finished: server.finished,
  };
}
