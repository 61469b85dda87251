/**
 * Tests for lib/io/hub.ts: its URLs and cache folder from the environment, and snapshots from a
 * loopback HTTP server (`loopback_server.ts`) laid out like the hub.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { gpt2HubRepo, hubCacheDir, hubFileUrl, snapshotGpt2 } from "../../lib/io/hub.ts";
import { caught, TINY_GPT2, withServer } from "./loopback_server.ts";

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
      assertEquals([...server.gets.values()], [1, 1]);
      // A second call, with the long name, is served from the cache: no request at all.
      const before = new Map(server.requests);
      assertEquals(await snapshotGpt2("openai-community/gpt2", { progress: false }), folder);
      assertEquals(server.requests, before);
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
