// The rendezvous admits only the job's ranks: strangers that connect first (silent, sending
// garbage, or claiming a rank without the secret) are refused and logged while the real rank
// joins; a rank checks rank 0's proof in turn. The launcher gives its ranks a secret in their
// environment (not their arguments), and no shared-memory file of a job outlives it, however
// it ends.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type DistEnv, initProcessGroup } from "../../lib/ddp/process_group.ts";
import { rendezvous } from "../../lib/ddp/rendezvous.ts";
import { launch } from "../../lib/ddp/launcher.ts";
import { freePort, repoRoot } from "../support.ts";

const SECRET = "a".repeat(64);

/** Rank `rank` of a 2-rank job on `port`, with `secret` (none for null). */
function env(rank: number, port: number, secret: string | null = SECRET): DistEnv {
  return {
    rank,
    localRank: rank,
    worldSize: 2,
    localWorldSize: 2,
    nodeRank: 0,
    masterAddr: "127.0.0.1",
    masterPort: port,
    ...(secret === null ? {} : { secret }),
  };
}

/** A framed message as the channel sends it: u32 length, JSON header. */
function frame(header: Record<string, unknown>): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify({ ...header, bytes: 0 }));
  const out = new Uint8Array(4 + json.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  return out;
}

async function connectWhenListening(port: number): Promise<Deno.TcpConn> {
  for (;;) {
    try {
      return await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

Deno.test("rendezvous: strangers that connect first are refused and logged, and the real rank joins", async () => {
  const port = freePort();
  const refusals: string[] = [];
  const rank0 = rendezvous(env(0, port), 20_000, (m) => refusals.push(m));
  // a silent stranger, one that sends a huge length, and one that claims rank 1 without the secret
  const silent = await connectWhenListening(port);
  const huge = await connectWhenListening(port);
  await writeAll(huge, Uint8Array.of(0xff, 0xff, 0xff, 0x7f));
  const liar = await connectWhenListening(port);
  await writeAll(
    liar,
    frame({
      type: "hello",
      rank: 1,
      worldSize: 2,
      localRank: 1,
      localWorldSize: 2,
      nodeRank: 0,
      pid: 1,
      proof: "0".repeat(64),
      challenge: "x",
    }),
  );
  const start = performance.now();
  const rank1 = rendezvous(env(1, port), 20_000);
  const groups = await Promise.all([rank0, rank1]);
  ok(performance.now() - start < 4000, "a silent stranger holds up no one");
  try {
    const x = [Float32Array.of(1, 2), Float32Array.of(10, 20)];
    await Promise.all(groups.map((g, r) => g.allReduce([x[r]], "sum")));
    assertEquals([...x[0]], [11, 22]);
    assertEquals([...x[1]], [11, 22]);
    ok(
      refusals.some((m) => /could not prove it holds the job's secret/.test(m)),
      refusals.join("\n"),
    );
    ok(refusals.some((m) => /header of at most 4096 bytes/.test(m)), refusals.join("\n"));
    for (const m of refusals) {
      ok(m.startsWith("[rendezvous] refused a connection from 127.0.0.1:"), m);
    }
    // the strangers' connections are closed
    for (const conn of [huge, liar]) {
      const buf = new Uint8Array(4096);
      let n: number | null = 0;
      while (n !== null) n = await conn.read(buf).catch(() => null);
    }
  } finally {
    for (const g of groups) g.close();
    for (const conn of [silent, huge, liar]) {
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  }
});

Deno.test("rendezvous: a rank refuses a rank 0 that cannot prove it holds the secret", async () => {
  const port = freePort();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const impostor = (async () => {
    const conn = await listener.accept();
    await writeAll(conn, frame({ type: "challenge", challenge: "c" }));
    await conn.read(new Uint8Array(4096)); // the hello
    await writeAll(conn, frame({ type: "welcome", runId: "evil", proof: "1".repeat(64) }));
    return conn;
  })();
  await rejects(
    rendezvous(env(1, port), 5000),
    /Rank 0 at 127\.0\.0\.1:\d+ could not prove it holds the job's GPT2_DDP_SECRET/,
  );
  (await impostor).close();
  listener.close();
});

Deno.test("rendezvous: without a secret only a loopback MASTER_ADDR is allowed", async () => {
  await rejects(
    rendezvous({ ...env(0, freePort(), null), masterAddr: "10.0.0.1" }, 1000),
    /MASTER_ADDR 10\.0\.0\.1 is not a loopback address and GPT2_DDP_SECRET is not set/,
  );
  await rejects(
    launch({ nprocPerNode: 1, nnodes: 2, script: "unused.ts", args: [], secret: "" }),
    /A job of --nnodes 2 needs GPT2_DDP_SECRET set to the same random value on every node/,
  );
});

/** A rank program: the rendezvous over TCP, one all-reduce, its sum and how it saw the secret. */
const RANK = (lib: string) => `
import { distEnvFromEnv, initProcessGroup } from "${lib}/ddp/process_group.ts";
const env = distEnvFromEnv()!;
const secret = Deno.env.get("GPT2_DDP_SECRET") ?? "";
const cmdline = Deno.readTextFileSync("/proc/self/cmdline");
const group = await initProcessGroup(env, { timeoutMs: 30_000, transport: "tcp" });
const x = Float32Array.of(env.rank + 1);
await group.allReduce([x], "sum");
const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret)));
console.log(JSON.stringify({
  sum: x[0], length: secret.length, inArgs: secret !== "" && cmdline.includes(secret),
  same: [...digest].join(","),
}));
group.close();
`;

Deno.test("ddp launcher: a stranger connecting first is refused and the job completes; the secret is in the ranks' environment only", async () => {
  const dir = await Deno.makeTempDir();
  const script = join(dir, "rank.ts");
  await Deno.writeTextFile(script, RANK(pathToFileURL(join(repoRoot, "lib")).href));
  const port = freePort();
  const lines: string[] = [];
  // the stranger polls the port from before the launch, so it connects before rank 1 does
  let stop = false;
  const stranger = (async () => {
    while (!stop) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await writeAll(
          conn,
          frame({ type: "hello", rank: 1, worldSize: 2, proof: "", challenge: "" }),
        );
        await conn.read(new Uint8Array(4096)).catch(() => null);
        conn.close();
        return true;
      } catch {
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    return false;
  })();
  try {
    const code = await launch({
      nprocPerNode: 2,
      masterPort: port,
      script,
      args: [],
      write: (_, line) => lines.push(line),
    });
    stop = true;
    ok(await stranger, "the stranger connected");
    assertEquals(code, 0, lines.join("\n"));
    const results = lines.filter((l) => /^\[rank\d\] \{/.test(l)).map((l) =>
      JSON.parse(l.slice(8))
    );
    assertEquals(results.length, 2, lines.join("\n"));
    for (const r of results) {
      assertEquals(r.sum, 3);
      assertEquals(r.length, 64);
      assertEquals(r.inArgs, false);
    }
    assertEquals(results[0].same, results[1].same);
    ok(
      lines.some((l) => l.startsWith("[rank0] [rendezvous] refused a connection")),
      lines.join("\n"),
    );
  } finally {
    stop = true;
    await Deno.remove(dir, { recursive: true });
  }
});

/** A rank program that leaves a file of the job's in /dev/shm and then fails (rank 1) or hangs. */
const LEAVER = `
const owner = Deno.env.get("GPT2_DDP_LAUNCHER_PID");
const rank = Deno.env.get("RANK");
Deno.writeTextFileSync(\`/dev/shm/gpt2-ddp-\${owner}-left\${rank}-node0\`, "x");
console.log("made");
if (rank === "1") Deno.exit(3);
await new Promise((r) => setTimeout(r, 60_000));
`;

Deno.test("ddp launcher: no shared-memory file of a job outlives it, and those of dead launchers are removed", async () => {
  const dir = await Deno.makeTempDir();
  const script = join(dir, "leaver.ts");
  await Deno.writeTextFile(script, LEAVER);
  // a file of a launcher that is gone, and one of a launcher that still runs
  const gone = new Deno.Command("true").spawn();
  await gone.status;
  const live = new Deno.Command("sleep", { args: ["30"] }).spawn();
  const stale = `/dev/shm/gpt2-ddp-${gone.pid}-zz-node0`;
  const kept = `/dev/shm/gpt2-ddp-${live.pid}-zz-node0`;
  await Deno.writeTextFile(stale, "x");
  await Deno.writeTextFile(kept, "x");
  const lines: string[] = [];
  try {
    const code = await launch({
      nprocPerNode: 2,
      masterPort: freePort(),
      script,
      args: [],
      write: (_, line) => lines.push(line),
    });
    assertEquals(code, 1, lines.join("\n"));
    const mine = [...Deno.readDirSync("/dev/shm")].filter((e) =>
      e.name.startsWith(`gpt2-ddp-${Deno.pid}-`)
    );
    assertEquals(mine, [], "the job's files are gone after a failed rank");
    ok(
      lines.some((l) => l.includes(`removed /dev/shm/gpt2-ddp-${Deno.pid}-left`)),
      lines.join("\n"),
    );
    ok(!(await exists(stale)), "a dead launcher's file is removed");
    ok(await exists(kept), "a live launcher's file is kept");
  } finally {
    live.kill();
    await live.status;
    await Deno.remove(kept).catch(() => {});
    await Deno.remove(stale).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("process group: ranks with the same secret form a group; a rank with another is refused", async () => {
  const port = freePort();
  const refusals: string[] = [];
  const rank0 = rendezvous(env(0, port), 1500, (m) => refusals.push(m));
  const wrong = rendezvous(env(1, port, "b".repeat(64)), 1500);
  await Promise.all([
    rejects(rank0, /timed out after 1\.5 s: rank\(s\) 1 never joined/),
    rejects(wrong),
  ]);
  ok(
    refusals.some((m) => /could not prove it holds the job's secret/.test(m)),
    refusals.join("\n"),
  );
  // with the same secret, the shared-memory group forms too
  const p2 = freePort();
  const groups = await Promise.all(
    [0, 1].map((r) => initProcessGroup(env(r, p2), { timeoutMs: 10_000 })),
  );
  for (const g of groups) g.close();
});
