/**
 * `deno task serve`: a local web page that samples a model trained here on the browser's GPU,
 * with the project's own model code and WGSL kernels on WebGPU (`lib/web/`).
 *
 * @module
 */

import { formatBytes } from "../io/progress.ts";
import { DEFAULT_WEIGHTS, resolveModelFolder, startServer } from "../web/server.ts";
import { numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const DEFAULT_PORT = 8000;
const DEFAULT_HOST = "127.0.0.1";

const HELP = `deno task serve [flags]

Serves a web page that loads the model into the browser's GPU (WebGPU) and samples it there.

  --weights DIR|NAME   a trained ${DEFAULT_WEIGHTS} (the default), a checkpoint folder, a Hugging
                       Face GPT-2 folder (model.safetensors + config.json), or gpt2,
                       gpt2-medium, gpt2-large, gpt2-xl from the hub (or its cache)
  --port N             default ${DEFAULT_PORT}; 0 picks a free one
  --host H             default ${DEFAULT_HOST} (this machine only)
  -h, --help           this text

The page takes its settings from the form or from its address, e.g.
  http://${DEFAULT_HOST}:${DEFAULT_PORT}/?prompt-ids=5,40,8,43&greedy=1&max-new=12
  http://${DEFAULT_HOST}:${DEFAULT_PORT}/?prompt=Hello&top-k=50&temperature=0.8&seed=42&max-new=30`;

/** Host names that are this machine: the only http origins where browsers offer WebGPU. */
const LOOPBACK = ["127.0.0.1", "localhost", "::1", "[::1]"];

await runMain(async () => {
  const f = parseFlags(Deno.args, {
    weights: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(HELP);
    return;
  }
  const port = numberFlag(f, "port", DEFAULT_PORT, { integer: true, min: 0 });
  if (port > 65535) throw new Error(`--port expects an integer in [0, 65535], found "${f.port}"`);
  const hostname = stringFlag(f, "host", DEFAULT_HOST);
  const model = await resolveModelFolder(stringFlag(f, "weights", DEFAULT_WEIGHTS));
  const size = (await Deno.stat(`${model.dir}/model.safetensors`)).size;
  console.log(
    `model: ${model.dir}, ${model.kind}: ${JSON.stringify(model.config)}, ${formatBytes(size)}`,
  );
  const server = await startServer({ model, port, hostname });
  console.log(`serving at ${server.url} (Ctrl-C to stop)`);
  if (!LOOPBACK.includes(hostname)) {
    console.log(
      "note: browsers offer WebGPU only on secure origins: over plain http that is " +
        "localhost alone, so a browser on another machine finds no WebGPU here",
    );
  }
  const stop = () => void server.shutdown();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
});
