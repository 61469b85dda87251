/**
 * Tests for what lib/io/download.ts and lib/io/hub.ts do when the network misbehaves, against
 * the loopback hub of `loopback_server.ts`: a connection that stalls, an HTML page instead of
 * the file, a body cut short, a wrong hash, a damaged file already in the cache, and two
 * downloads of one file at once. Every test is bounded by a stall timeout of a fraction of a
 * second.
 */

import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { join } from "node:path";
import { CachedFileError, downloadFile, stallTimeoutMs } from "../../lib/io/download.ts";
import { snapshotGpt2 } from "../../lib/io/hub.ts";
import { caught, DATA, type HubMode, TINY_GPT2, withServer } from "./loopback_server.ts";

const MODEL = "openai-community/gpt2/resolve/main/model.safetensors";

/** Runs `fn` with environment variables set, restoring them afterwards. */
async function withEnv(vars: Record<string, string>, fn: () => Promise<void>): Promise<void> {
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

/** Runs `fn` against a loopback hub in `mode`, its cache in a fresh folder, stalls at 0.3 s. */
function withHub(
  mode: HubMode,
  fn: (
    server: { url: string; gets: Map<string, number>; ranges: (string | null)[] },
    cache: string,
  ) => Promise<void>,
): Promise<void> {
  return withServer(
    (server, dir) =>
      withEnv(
        { HF_ENDPOINT: server.url, GPT2_CACHE_DIR: dir, GPT2_DOWNLOAD_STALL_S: "0.3" },
        () => fn(server, join(dir, "openai-community", "gpt2")),
      ),
    mode,
  );
}

/**
 * A snapshot that must end within 10 s: without the stall timeout a stalled connection would
 * hang it forever, and the test fails instead.
 */
function snapshot(retries = 2): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("Expected the download to end within 10 s")), 10_000);
  });
  const run = snapshotGpt2("gpt2", { progress: false, retries, retryDelayMs: 10 });
  return Promise.race([run, limit]).finally(() => clearTimeout(timer));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function assertSameFile(path: string, reference: string): Promise<void> {
  assertEquals(await Deno.readFile(path), await Deno.readFile(reference));
}

Deno.test("hub download: a connection that stops sending is dropped after the stall timeout and resumed", async () => {
  await withHub("stall", async (server, cache) => {
    const start = performance.now();
    await snapshot();
    assert(performance.now() - start < 5000, "bounded by the stall timeout");
    await assertSameFile(join(cache, "model.safetensors"), join(TINY_GPT2, "model.safetensors"));
    assertEquals(server.gets.get(`/${MODEL}`), 2);
    // the second request asked only for the rest
    const range = server.ranges.filter((r) => r !== null);
    assertEquals(range.length, 1);
    assert(/^bytes=\d+-$/.test(range[0]!) && range[0] !== "bytes=0-", String(range[0]));
  });
});

Deno.test("hub download: a server that never answers fails after the retries, naming the URL and the cache path", async () => {
  await withHub("stall-forever", async (server, cache) => {
    const start = performance.now();
    const error = await caught(() => snapshot(1), Error);
    assert(performance.now() - start < 5000, "bounded by the stall timeout");
    assert(error.message.includes(`${server.url}/${MODEL}`), error.message);
    assert(error.message.includes(join(cache, "model.safetensors")), error.message);
    assert(error.message.includes("no data from"), error.message);
    assert(error.message.includes("GPT2_DOWNLOAD_STALL_S"), error.message);
    assertEquals(server.gets.get(`/${MODEL}`), 2);
    assert(!(await exists(join(cache, "model.safetensors"))));
  });
});

for (const mode of ["html", "html-linked"] as const) {
  Deno.test(`hub download: an HTML page instead of model.safetensors never enters the cache (${mode})`, async () => {
    await withHub(mode, async (server, cache) => {
      const error = await caught(() => snapshot(), Error);
      assert(error.message.includes(`${server.url}/${MODEL}`), error.message);
      assert(error.message.includes(join(cache, "model.safetensors")), error.message);
      if (mode === "html") assert(/not safetensors|truncated/.test(error.message), error.message);
      else assert(error.message.includes("(an HTML page)"), error.message);
      assert(!(await exists(join(cache, "model.safetensors"))), "not in the cache");
      assert(!(await exists(join(cache, "model.safetensors.part"))), "no part file kept");
      // and a later, healthy download is not stopped by anything left behind
    });
  });
}

Deno.test("hub download: a body cut short is resumed, then checked against the stated size and hash", async () => {
  await withHub("truncated", async (server, cache) => {
    await snapshot();
    await assertSameFile(join(cache, "model.safetensors"), join(TINY_GPT2, "model.safetensors"));
    assertEquals(server.gets.get(`/${MODEL}`), 2);
  });
});

Deno.test("hub download: a body always cut short fails after the retries and keeps the part for a resume", async () => {
  await withHub("truncated-always", async (server, cache) => {
    const error = await caught(() => snapshot(2), Error);
    const part = join(cache, "model.safetensors.part");
    assert(error.message.includes(`${server.url}/${MODEL}`), error.message);
    assert(error.message.includes(part), error.message);
    assert(error.message.includes("after 3 tries"), error.message);
    assertEquals(server.gets.get(`/${MODEL}`), 3);
    assert(!(await exists(join(cache, "model.safetensors"))));
    assert(await exists(part));
  });
});

Deno.test("hub download: a file whose SHA-256 is not the hub's is refused and removed", async () => {
  await withHub("wrong-hash", async (server, cache) => {
    const error = await caught(() => snapshot(), Error);
    assert(error.message.includes(`${server.url}/${MODEL}`), error.message);
    assert(
      /Expected SHA-256 [0-9a-f]{64} .* found [0-9a-f]{64}/.test(error.message),
      error.message,
    );
    assert(error.message.includes(join(cache, "model.safetensors")), error.message);
    assertEquals(server.gets.get(`/${MODEL}`), 1, "a wrong hash is not retried");
    assert(!(await exists(join(cache, "model.safetensors"))));
    assert(!(await exists(join(cache, "model.safetensors.part"))));
  });
});

Deno.test("hub cache: a damaged cached file is named with what to delete, and no request is made", async () => {
  await withHub("ok", async (server, cache) => {
    await snapshot();
    const model = join(cache, "model.safetensors");
    const before = new Map(server.gets);
    // cut short: its size is not the one recorded when it was downloaded
    const bytes = await Deno.readFile(model);
    await Deno.writeFile(model, bytes.subarray(0, bytes.length - 10));
    const short = await caught(() => snapshot(), CachedFileError);
    assertEquals(short.path, model);
    assert(short.message.includes(`The cached file ${model} is damaged`), short.message);
    assert(short.message.includes(`delete it (rm "${model}")`), short.message);
    // an HTML page in the cache with no record of its download: its header does not read
    await Deno.remove(`${model}.download.json`);
    await Deno.writeTextFile(model, "<!DOCTYPE html><html><body>Not found</body></html>");
    const html = await caught(() => snapshot(), CachedFileError);
    assert(html.message.includes(model) && html.message.includes("delete it"), html.message);
    assertEquals(server.gets, before, "a cache hit makes no request");
    // once deleted, the next run downloads it again
    await Deno.remove(model);
    await snapshot();
    await assertSameFile(model, join(TINY_GPT2, "model.safetensors"));
  });
});

Deno.test("downloadFile: two downloads of one file into one cache fetch it once, on one part file", async () => {
  await withServer(async (server, dir) => {
    const dest = join(dir, "slow.bin");
    const url = `${server.url}/slow.bin`;
    const options = { progress: false, retryDelayMs: 10, stallTimeoutS: 5 };
    const [a, b] = await Promise.all([
      downloadFile(url, dest, options),
      downloadFile(url, dest, options),
    ]);
    assertEquals(server.gets.get("/slow.bin"), 1);
    assertEquals([a.cached, b.cached].sort(), [false, true]);
    assertEquals(await Deno.readFile(dest), DATA);
    await rejects(() => Deno.stat(`${dest}.part`), Deno.errors.NotFound);
  });
});

Deno.test("downloadFile: GPT2_DOWNLOAD_STALL_S sets the stall timeout and is checked", async () => {
  await withEnv({ GPT2_DOWNLOAD_STALL_S: "" }, () => {
    assertEquals(stallTimeoutMs(), 60_000);
    return Promise.resolve();
  });
  await withEnv({ GPT2_DOWNLOAD_STALL_S: "2.5" }, () => {
    assertEquals(stallTimeoutMs(), 2500);
    assertEquals(stallTimeoutMs(1), 1000);
    return Promise.resolve();
  });
  for (const bad of ["0", "-1", "abc", "1e9"]) {
    await withEnv({ GPT2_DOWNLOAD_STALL_S: bad }, () => {
      let message = "";
      try {
        stallTimeoutMs();
      } catch (e) {
        message = (e as Error).message;
      }
      assert(message.includes(`GPT2_DOWNLOAD_STALL_S`) && message.includes(`"${bad}"`), message);
      return Promise.resolve();
    });
  }
});

Deno.test("hub cache: a cache folder that cannot be made is named with GPT2_CACHE_DIR", async () => {
  await withServer(async (server, dir) => {
    const file = join(dir, "a-file");
    await Deno.writeTextFile(file, "not a folder");
    await withEnv({ HF_ENDPOINT: server.url, GPT2_CACHE_DIR: join(file, "cache") }, async () => {
      const error = await caught(() => snapshot(), Error);
      assert(
        error.message.startsWith(
          `Cannot write config.json into the cache folder ${
            join(file, "cache", "openai-community", "gpt2")
          } (GPT2_CACHE_DIR): Not a directory`,
        ),
        error.message,
      );
      assertEquals(server.gets.size, 0);
    });
  });
});
