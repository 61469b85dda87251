// lib/data/fineweb/: shards as build-nanogpt's fineweb.py writes them, from jsonl and parquet,
// deterministic, resumable, and from a (loopback) Hugging Face hub.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import {
  type DocumentInput,
  fetchFinewebFiles,
  listHubDatasetFiles,
  localInputs,
  readDocuments,
  type ShardProgress,
  tokenizeToShards,
} from "../../lib/data/fineweb/mod.ts";
import { readNpyUint16 } from "../../lib/io/npy.ts";
import { getGpt2Tokenizer } from "../../lib/data/tokenizer.ts";
import { sharedDataDir } from "../support.ts";

const SAMPLE = join(sharedDataDir, "fineweb-edu-sample", "test_labels.jsonl");
const EOT = 50256;
const quiet = { progress: false };

async function readShards(dir: string, names: string[]): Promise<number[][]> {
  return await Promise.all(names.map(async (n) => Array.from(await readNpyUint16(join(dir, n)))));
}

async function shardNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".npy")) names.push(e.name);
  return names.sort((a, b) => a.slice(-10).localeCompare(b.slice(-10))); // by shard index
}

async function writeJsonl(path: string, texts: string[]): Promise<void> {
  await Deno.writeTextFile(
    path,
    texts.map((text, i) => JSON.stringify({ id: i, text })).join("\n"),
  );
}

Deno.test("fineweb: a hand-checked corpus gives fineweb.py's shards, byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  const input = join(dir, "docs.jsonl");
  // "Hello world" = [15496, 995]; "Hello, I'm a language model," = [15496, 11, 314, 1101, 257,
  // 3303, 2746, 11] (build-nanogpt's play.ipynb); each document starts with EOT 50256
  await writeJsonl(input, ["Hello world", "Hello, I'm a language model,"]);
  const out = join(dir, "shards");
  const result = await tokenizeToShards(localInputs([input]), {
    outDir: out,
    shardSize: 5,
    ...quiet,
  });
  assertEquals(result.documents, 2);
  assertEquals(result.tokens, 12);
  const names = await shardNames(out);
  assertEquals(names, [
    "edufineweb_val_000000.npy",
    "edufineweb_train_000001.npy",
    "edufineweb_train_000002.npy",
  ]);
  // the second document starts in shard 0 and goes on in shard 1; shard 2 holds the rest
  const header = (n: number): number[] => [
    0x93,
    ...Array.from("NUMPY", (c) => c.charCodeAt(0)),
    1,
    0,
    118,
    0,
    ...Array.from(
      `{'descr': '<u2', 'fortran_order': False, 'shape': (${n},), }`.padEnd(117, " ") + "\n",
      (c) => c.charCodeAt(0),
    ),
  ];
  const le = (tokens: number[]): number[] => tokens.flatMap((t) => [t & 255, t >> 8]);
  const expected = [
    [EOT, 15496, 995, EOT, 15496],
    [11, 314, 1101, 257, 3303],
    [2746, 11],
  ];
  for (let i = 0; i < 3; i++) {
    const bytes = await Deno.readFile(join(out, names[i]));
    assertEquals(Array.from(bytes), [...header(expected[i].length), ...le(expected[i])]);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb: the 5-document sample; the same bytes with 1 or 2 workers", async () => {
  const dir = await Deno.makeTempDir();
  const run = async (name: string, workers: number): Promise<number[][]> => {
    const out = join(dir, name);
    await tokenizeToShards(localInputs([SAMPLE]), {
      outDir: out,
      shardSize: 2000,
      workers,
      ...quiet,
    });
    return await readShards(out, await shardNames(out));
  };
  const two = await run("two", 2);
  assertEquals(await run("one", 1), two);
  // independently: each document's text through lib/data/tokenizer.ts, EOT first, concatenated
  const enc = getGpt2Tokenizer();
  const stream: number[] = [];
  const lines = (await Deno.readTextFile(SAMPLE)).trim().split("\n");
  assertEquals(lines.length, 5);
  for (const line of lines) stream.push(EOT, ...enc.encode(JSON.parse(line).text));
  assertEquals(two.flat(), stream);
  const sizes = two.map((s) => s.length);
  assertEquals(sizes.slice(0, -1), Array(sizes.length - 1).fill(2000));
  ok(sizes.at(-1)! > 0 && sizes.at(-1)! <= 2000, `last shard ${sizes.at(-1)}`);
  assertEquals(two.flat().filter((t) => t === EOT).length, 5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb: awkward text and Tiny Shakespeare, as lib/data/tokenizer.ts encodes them", async () => {
  const dir = await Deno.makeTempDir();
  const awkward = [
    "<|endoftext|> is text here",
    "  \n\n  spaces\t\ttabs\r\nand CRLF   ",
    "don't we'll I'M they'VE",
    "日本語のテキスト 😀👍🏽 ÅÄÖ café naïve",
    "a\u00a0b\u2003c 123456 1.5e10",
    "x".repeat(5000),
  ];
  const jsonl = join(dir, "awkward.jsonl");
  await writeJsonl(jsonl, awkward);
  const shakespeare = join(sharedDataDir, "tinyshakespeare", "input.txt");
  const out = join(dir, "out");
  await tokenizeToShards(localInputs([jsonl, shakespeare]), {
    outDir: out,
    shardSize: 100_000,
    ...quiet,
  });
  const shards = await readShards(out, await shardNames(out));
  const enc = getGpt2Tokenizer();
  const expected = awkward.flatMap((t) => [EOT, ...enc.encode(t)])
    .concat([EOT], enc.encode(await Deno.readTextFile(shakespeare)));
  const stream = shards.flat();
  // "<|endoftext|>" typed in a document is ordinary text, not token 50256
  assertEquals(stream.filter((t) => t === EOT).length, awkward.length + 1);
  // Tiny Shakespeare is 338,025 tokens (REFERENCE.md)
  assertEquals(stream.length - stream.lastIndexOf(EOT) - 1, 338025);
  assertEquals(stream.length, expected.length);
  assertEquals(stream.findIndex((t, i) => t !== expected[i]), -1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb: a parquet file (snappy, several row groups) gives the jsonl's shards", async () => {
  const dir = await Deno.makeTempDir();
  const texts = (await Deno.readTextFile(SAMPLE)).trim().split("\n").map((l) =>
    JSON.parse(l).text as string
  );
  const docs = [...texts, "A short one.", "", "Ünïcödé — and emoji 🤗."];
  const parquet = join(dir, "000_00000.parquet");
  const buffer = parquetWriteBuffer({
    columnData: [
      { name: "id", data: docs.map((_, i) => `doc-${i}`), type: "STRING" },
      { name: "text", data: docs, type: "STRING" },
      { name: "score", data: docs.map((_, i) => i / 2), type: "DOUBLE" },
    ],
    rowGroupSize: 3, // row groups of 3, 3 and 2 documents
  });
  await Deno.writeFile(parquet, new Uint8Array(buffer));
  const jsonl = join(dir, "same.jsonl");
  await writeJsonl(jsonl, docs);
  const fromParquet = join(dir, "p"), fromJsonl = join(dir, "j");
  const a = await tokenizeToShards(localInputs([parquet]), {
    outDir: fromParquet,
    shardSize: 1500,
    ...quiet,
  });
  await tokenizeToShards(localInputs([jsonl]), { outDir: fromJsonl, shardSize: 1500, ...quiet });
  assertEquals(a.documents, 8);
  const p = await readShards(fromParquet, await shardNames(fromParquet));
  assertEquals(p, await readShards(fromJsonl, await shardNames(fromJsonl)));
  assertEquals(p.flat().filter((t) => t === EOT).length, 8);
  // no text column: an error naming the file
  const bad = join(dir, "bad.parquet");
  await Deno.writeFile(
    bad,
    new Uint8Array(
      parquetWriteBuffer({ columnData: [{ name: "body", data: ["x"], type: "STRING" }] }),
    ),
  );
  await rejects(
    tokenizeToShards(localInputs([bad]), { outDir: join(dir, "b"), ...quiet }),
    /bad\.parquet: expected a "text" column, found body/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb: a stopped run resumes at its first incomplete shard", async () => {
  const dir = await Deno.makeTempDir();
  // two inputs; the second cannot be read the first time, as if the run were stopped there
  let broken = true;
  const inputs: DocumentInput[] = [
    { name: "a", path: () => Promise.resolve(SAMPLE) },
    {
      name: "b",
      path: () => broken ? Promise.reject(new Error("network down")) : Promise.resolve(SAMPLE),
    },
  ];
  const out = join(dir, "out");
  await rejects(
    tokenizeToShards(inputs, { outDir: out, shardSize: 3000, ...quiet }),
    /network down/,
  );
  const stopped = JSON.parse(
    await Deno.readTextFile(join(out, "edufineweb_progress.json")),
  ) as ShardProgress;
  assertEquals(stopped.complete, false);
  ok(stopped.shards >= 2, `shards ${stopped.shards}`);
  ok(stopped.next.offset > 0, "the next shard starts inside a document");
  const before = await shardNames(out);
  assertEquals(before.length, stopped.shards);
  broken = false;
  const resumed = await tokenizeToShards(inputs, { outDir: out, shardSize: 3000, ...quiet });
  ok(resumed.resumed);
  assertEquals(resumed.written, resumed.shards.length - stopped.shards);
  assertEquals(resumed.documents, 10);
  // the same shards as one uninterrupted run
  const clean = join(dir, "clean");
  await tokenizeToShards(localInputs([SAMPLE, SAMPLE]), {
    outDir: clean,
    shardSize: 3000,
    ...quiet,
  });
  const names = await shardNames(clean);
  assertEquals(await shardNames(out), names);
  assertEquals(await readShards(out, names), await readShards(clean, names));
  // a complete run is not redone, and other inputs are refused
  assertEquals(
    (await tokenizeToShards(inputs, { outDir: out, shardSize: 3000, ...quiet })).written,
    0,
  );
  await rejects(
    tokenizeToShards(inputs, { outDir: out, shardSize: 1000, ...quiet }),
    /other inputs or another shard size.*--restart/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb: a jsonl line without a text field is an error naming the line", async () => {
  const dir = await Deno.makeTempDir();
  const input = join(dir, "bad.jsonl");
  await Deno.writeTextFile(input, '{"text": "fine"}\n\n{"body": "no text"}\n');
  await rejects(
    tokenizeToShards(localInputs([input]), { outDir: join(dir, "o"), ...quiet }),
    (e: Error) => e.message.startsWith(`${input}:3: expected a string "text" field`),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb: jsonl lines longer than a read, with characters across reads, come back whole", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const texts = ["é".repeat(100_001), "short", "日本".repeat(70_000) + "🙂", ""];
    const path = join(dir, "long.jsonl");
    await writeJsonl(path, texts);
    const read: string[] = [];
    for await (const batch of readDocuments(localInputs([path]))) read.push(...batch.texts);
    assertEquals(read, texts);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fineweb: inputs without a document are an error, and nothing is written or removed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const empty = join(dir, "empty.jsonl"), blank = join(dir, "blank.jsonl");
    const none = join(dir, "none.txt");
    await Deno.writeTextFile(empty, "");
    await Deno.writeTextFile(blank, "\n\n  \n");
    await Deno.writeTextFile(none, "");
    const out = join(dir, "shards");
    await rejects(tokenizeToShards(localInputs([empty, blank, none]), { outDir: out, ...quiet }), {
      message: `Expected documents in the inputs (${empty}, ${blank}, ${none}), found none: ` +
        "nothing was written",
    });
    assertEquals(existsSync(out), false, "the folder it would have made is not left behind");
    // an earlier complete run's shards survive a --restart over empty input
    await tokenizeToShards(localInputs([SAMPLE]), { outDir: out, shardSize: 3000, ...quiet });
    const names = await shardNames(out);
    const record = await Deno.readTextFile(join(out, "edufineweb_progress.json"));
    await rejects(
      tokenizeToShards(localInputs([empty]), { outDir: out, restart: true, ...quiet }),
      /^Error: Expected documents in the input \(.*empty\.jsonl\), found none/,
    );
    assertEquals(await shardNames(out), names);
    assertEquals(await Deno.readTextFile(join(out, "edufineweb_progress.json")), record);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fineweb: a file as the output folder, and inputs that are not UTF-8, are errors naming them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "out.txt");
    await Deno.writeTextFile(file, "keep me");
    await rejects(tokenizeToShards(localInputs([SAMPLE]), { outDir: file, ...quiet }), {
      message: `Expected a folder for the shards at ${file}, found a file`,
    });
    assertEquals(await Deno.readTextFile(file), "keep me");
    const jsonl = join(dir, "latin1.jsonl"), text = join(dir, "latin1.txt");
    const cafe = [0x7b, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3a, 0x22, 0x63, 0xe9, 0x22, 0x7d];
    await Deno.writeFile(
      jsonl,
      Uint8Array.from([...new TextEncoder().encode('{"text":"ok"}\n'), ...cafe]),
    );
    await Deno.writeFile(text, Uint8Array.of(0x63, 0x61, 0x66, 0xe9));
    const out = join(dir, "o");
    await rejects(tokenizeToShards(localInputs([jsonl]), { outDir: out, ...quiet }), {
      message:
        `${jsonl}:2: expected UTF-8 text, found bytes that are not UTF-8 (at byte 11 of the line)`,
    });
    await rejects(tokenizeToShards(localInputs([text]), { outDir: out, ...quiet }), {
      message: `Expected a UTF-8 text file at ${text}, found bytes that are not UTF-8 at offset 3`,
    });
    assertEquals(await shardNames(out), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

Deno.test("fineweb: lists sample/10BT through the hub API (paginated) and downloads it", async () => {
  const dir = await Deno.makeTempDir();
  const texts = ["First document.", "Second document, a little longer.", "Third."];
  const parquet = new Uint8Array(parquetWriteBuffer({
    columnData: [{ name: "text", data: texts, type: "STRING" }],
  }));
  const requests: string[] = [];
  const tree = "/api/datasets/HuggingFaceFW/fineweb-edu/tree/main/sample/10BT";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    requests.push(url.pathname + url.search);
    if (url.pathname === tree && url.search === "") {
      const next = `<${url.origin}${tree}?cursor=2>; rel="next"`;
      return Response.json([
        { type: "file", path: "sample/10BT/001_00000.parquet", size: parquet.length },
        { type: "directory", path: "sample/10BT/sub" },
      ], { headers: { link: next } });
    }
    if (url.pathname === tree) {
      return Response.json([
        { type: "file", path: "sample/10BT/000_00000.parquet", size: parquet.length },
      ]);
    }
    if (url.pathname.startsWith("/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/")) {
      return new Response(parquet);
    }
    return new Response("not found", { status: 404 });
  });
  const endpoint = `http://127.0.0.1:${server.addr.port}`;
  try {
    await withEnv({ HF_ENDPOINT: endpoint, GPT2_CACHE_DIR: join(dir, "cache") }, async () => {
      const files = await listHubDatasetFiles("HuggingFaceFW/fineweb-edu", "sample/10BT");
      assertEquals(files.map((f) => f.path), [
        "sample/10BT/000_00000.parquet",
        "sample/10BT/001_00000.parquet",
      ]);
      const inputs = await fetchFinewebFiles({ progress: false });
      const result = await tokenizeToShards(inputs, { outDir: join(dir, "out"), ...quiet });
      assertEquals(result.documents, 6);
      const cached = join(
        dir,
        "cache",
        "datasets",
        "HuggingFaceFW",
        "fineweb-edu",
        "sample",
        "10BT",
      );
      assertEquals((await Deno.readFile(join(cached, "000_00000.parquet"))).length, parquet.length);
      const enc = getGpt2Tokenizer();
      const one = texts.flatMap((t) => [EOT, ...enc.encode(t)]);
      assertEquals(
        Array.from(await readNpyUint16(join(dir, "out", "edufineweb_val_000000.npy"))),
        [...one, ...one],
      );
    });
  } finally {
    await server.shutdown();
  }
  ok(
    requests.includes(
      `/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/000_00000.parquet`,
    ),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb task: --input jsonl --shard-size 2000 writes the shards and says so", async () => {
  const dir = await Deno.makeTempDir();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "lib/cli/fineweb.ts", "--input", SAMPLE, "--shard-size", "2000"]
      .concat(["--out", dir]),
    cwd: join(import.meta.dirname!, "..", ".."),
    env: { NO_COLOR: "1" },
  }).output();
  const [stdout, stderr] = [out.stdout, out.stderr].map((b) => new TextDecoder().decode(b));
  assertEquals(out.code, 0, stderr);
  ok(stdout.includes("5 shards (1 val, 4 train)") && stdout.includes("5 documents"), stdout);
  ok(/tokenizing 5 docs, 5 shards: 100%, 8\.6k\/8\.6k tokens, .* tokens\/s/.test(stderr), stderr);
  assertEquals((await shardNames(dir)).length, 5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fineweb task: a bad --shard-size or --limit-files is refused before the hub is asked", async () => {
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    requests++;
    return new Response("not found", { status: 404 });
  });
  try {
    for (const [flag, value] of [["--shard-size", "10"], ["--limit-files", "0"]]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "lib/cli/fineweb.ts", flag, value, "--out", "unused"],
        cwd: join(import.meta.dirname!, "..", ".."),
        env: { NO_COLOR: "1", HF_ENDPOINT: `http://127.0.0.1:${server.addr.port}` },
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 1, stderr);
      ok(stderr.includes(`error: ${flag} expects an integer in [`), stderr);
    }
  } finally {
    await server.shutdown();
  }
  assertEquals(requests, 0);
});

Deno.test("fineweb: a download that is not the listed parquet file never enters the cache; a silent hub is an error", async () => {
  const dir = await Deno.makeTempDir();
  const parquet = new Uint8Array(parquetWriteBuffer({
    columnData: [{ name: "text", data: ["One document."], type: "STRING" }],
  }));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", parquet.slice()));
  const sha = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  const html = new TextEncoder().encode("<html><body>Rate limited</body></html>");
  const tree = "/api/datasets/HuggingFaceFW/fineweb-edu/tree/main/sample/10BT";
  let listing = "ok";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === tree) {
      if (listing === "stall") {
        await new Promise((resolve) => req.signal.addEventListener("abort", resolve));
        return new Response(null, { status: 504 });
      }
      return Response.json([
        // an HTML page where the parquet file should be
        { type: "file", path: "sample/10BT/000.parquet", size: html.length },
        // the parquet file, listed with another hash
        {
          type: "file",
          path: "sample/10BT/001.parquet",
          size: parquet.length,
          lfs: { oid: "0".repeat(64), size: parquet.length },
        },
        // the parquet file, listed right
        {
          type: "file",
          path: "sample/10BT/002.parquet",
          size: parquet.length,
          lfs: { oid: sha, size: parquet.length },
        },
      ]);
    }
    if (url.pathname.endsWith("/000.parquet")) return new Response(html.slice());
    return new Response(parquet.slice());
  });
  const cache = join(dir, "cache", "datasets", "HuggingFaceFW", "fineweb-edu", "sample", "10BT");
  try {
    await withEnv({
      HF_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
      GPT2_CACHE_DIR: join(dir, "cache"),
      GPT2_DOWNLOAD_STALL_S: "0.3",
    }, async () => {
      const files = await listHubDatasetFiles("HuggingFaceFW/fineweb-edu", "sample/10BT");
      assertEquals(files.map((f) => f.sha256), [undefined, "0".repeat(64), sha]);
      const inputs = await fetchFinewebFiles(quiet);
      await rejects(inputs[0].path(), /expected a parquet file \(PAR1 at its start and end\)/);
      await rejects(inputs[1].path(), /Expected SHA-256 0{64} for .*001\.parquet/);
      ok(!existsSync(join(cache, "000.parquet")) && !existsSync(join(cache, "000.parquet.part")));
      ok(!existsSync(join(cache, "001.parquet")) && !existsSync(join(cache, "001.parquet.part")));
      assertEquals(await Deno.readFile(await inputs[2].path()), parquet);
      listing = "stall";
      const start = performance.now();
      await rejects(
        listHubDatasetFiles("HuggingFaceFW/fineweb-edu", "sample/10BT"),
        /Could not reach the Hugging Face hub at .* \(no answer for 0\.3 s \(GPT2_DOWNLOAD_STALL_S\)\)/,
      );
      ok(performance.now() - start < 5000);
    });
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
