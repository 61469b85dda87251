/**
 * Tests for lib/data/datasets.ts: an explicit path, the shared-data fallback, and a download from a
 * loopback server into an empty data folder (resolveHellaswag, its other user, is tested in
 * tests/eval/hellaswag_test.ts).
 */

import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { join, resolve } from "node:path";
import { REPO_ROOT, resolveTinyShakespeare, sharedDataDir } from "../../lib/data/datasets.ts";
import { shakespearePath } from "../support.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "datasets_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("resolveTinyShakespeare returns a given path that exists", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "mine.txt");
    await Deno.writeTextFile(path, "First Citizen:\n");
    assertEquals(await resolveTinyShakespeare(path, { quiet: true }), path);
  });
});

Deno.test("resolveTinyShakespeare names a given path that does not exist", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "nope.txt");
    await rejects(() => resolveTinyShakespeare(path, { quiet: true }), {
      message: `Expected a Tiny Shakespeare text file at ${path}, found none`,
    });
    await rejects(() => resolveTinyShakespeare(dir, { quiet: true }), {
      message: `Expected a Tiny Shakespeare text file at ${dir}, found none`,
    });
  });
});

Deno.test("resolveTinyShakespeare falls back to the shared data folder", async () => {
  await withTempDir(async (dir) => {
    // An empty data folder: the shared copy is found, nothing is downloaded.
    const found = await resolveTinyShakespeare(undefined, {
      dataDir: dir,
      url: "http://127.0.0.1:9/unreachable",
      quiet: true,
    });
    assertEquals(found, shakespearePath);
    assertEquals((await Deno.stat(found)).size, 1_115_394);
    assertEquals([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("sharedDataDir follows GPT2_SHARED_DATA, else sits beside the repository", () => {
  const saved = Deno.env.get("GPT2_SHARED_DATA");
  try {
    Deno.env.set("GPT2_SHARED_DATA", "/somewhere/data");
    assertEquals(sharedDataDir(), "/somewhere/data");
    Deno.env.delete("GPT2_SHARED_DATA");
    assertEquals(sharedDataDir(), resolve(REPO_ROOT, "..", "shared", "data"));
  } finally {
    if (saved === undefined) Deno.env.delete("GPT2_SHARED_DATA");
    else Deno.env.set("GPT2_SHARED_DATA", saved);
  }
});

Deno.test("resolveTinyShakespeare prefers the repository's data folder", async () => {
  await withTempDir(async (dir) => {
    const local = join(dir, "tinyshakespeare", "input.txt");
    await Deno.mkdir(join(dir, "tinyshakespeare"));
    await Deno.writeTextFile(local, "First Citizen:\n");
    assertEquals(await resolveTinyShakespeare(undefined, { dataDir: dir, quiet: true }), local);
  });
});

Deno.test("resolveTinyShakespeare downloads when no copy exists", async () => {
  const text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(text),
  );
  try {
    await withTempDir(async (dir) => {
      const found = await resolveTinyShakespeare(undefined, {
        dataDir: join(dir, "data"),
        sharedDataDir: join(dir, "shared"),
        url: `http://127.0.0.1:${server.addr.port}/input.txt`,
        quiet: true,
      });
      assertEquals(found, join(dir, "data", "tinyshakespeare", "input.txt"));
      assertEquals(await Deno.readTextFile(found), text);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("resolveTinyShakespeare says to pass --data when the download fails", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("gone", { status: 404 }),
  );
  try {
    await withTempDir(async (dir) => {
      const url = `http://127.0.0.1:${server.addr.port}/input.txt`;
      const error = await resolveTinyShakespeare(undefined, {
        dataDir: join(dir, "data"),
        sharedDataDir: join(dir, "shared"),
        url,
        quiet: true,
      }).then(() => undefined, (e: unknown) => e);
      assert(error instanceof Error, `expected an error, found ${error}`);
      assert(error.message.includes("pass --data PATH"), error.message);
      assert(error.message.includes(url), error.message);
      assert(error.message.includes("HTTP 404"), error.message);
    });
  } finally {
    await server.shutdown();
  }
});
