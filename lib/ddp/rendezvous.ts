/**
 * The rendezvous over TCP: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank
 * connects, proves it belongs to the job, and says who it is (rank, world size, node); rank 0
 * checks that every rank came once with the same world size, then sends a run id. The
 * connections stay open as the group's control channel.
 *
 * Only the job's ranks may join: a rank receives the weights and pushes gradients, so a
 * stranger that connects first must not become one. The launcher gives its ranks a random
 * secret (GPT2_DDP_SECRET, in the environment, never on a command line). Rank 0 sends each
 * connection a random challenge; the rank answers with HMAC-SHA256(secret, challenge and its
 * hello) and a challenge of its own, which rank 0 answers the same way in its welcome, so each
 * side knows the other holds the secret. A connection that fails (a wrong answer, no answer
 * within a few seconds, a frame too large, bytes that do not parse) is refused, logged, and
 * closed, and rank 0 goes on waiting for the real rank. Without a secret (ranks started by
 * hand) the rendezvous admits whoever says the right things, and only on a loopback address.
 *
 * @module
 */

import { Channel, type Header } from "./channel.ts";
import type { DistEnv } from "./dist_env.ts";
import { TcpProcessGroup } from "./tcp_group.ts";

/** What a joining rank tells rank 0. */
interface Hello extends Header {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  nodeRank: number;
  pid: number;
  /** HMAC of rank 0's challenge and this hello's fields; "" without a secret. */
  proof: string;
  /** The rank's own challenge, which rank 0 answers in its welcome. */
  challenge: string;
}

/** How long an unknown connection may take to prove itself. */
const HANDSHAKE_MS = 5_000;
/** The largest frame a connection may send before it is admitted. */
const HANDSHAKE_MAX_BYTES = 4096;

/** How rank 0 reports a refused connection; `console.warn` by default. */
export type RefusalLog = (message: string) => void;

/**
 * Meets every rank of `env`'s job within `timeoutMs`; the group it returns carries the
 * control traffic (and, through rank 0, the data of the TCP transport). Connections that
 * cannot prove they belong to the job are refused and reported through `log`.
 *
 * @throws {Error} naming the port when rank 0 cannot listen, the ranks that never joined,
 * a rank with another world size or twice the same rank, a rank 0 that cannot prove it holds
 * the secret, rank 0 out of reach, or a non-loopback MASTER_ADDR without a secret.
 */
export async function rendezvous(
  env: DistEnv,
  timeoutMs: number,
  log: RefusalLog = (m) => console.warn(m),
): Promise<TcpProcessGroup> {
  const deadline = performance.now() + timeoutMs;
  if (env.worldSize === 1) return new TcpProcessGroup(env, [], "solo", timeoutMs);
  if (!env.secret && !isLoopback(env.masterAddr)) {
    throw new Error(
      `MASTER_ADDR ${env.masterAddr} is not a loopback address and GPT2_DDP_SECRET is not set: ` +
        "any host that reaches the port could join the job; set GPT2_DDP_SECRET to the same " +
        "random value on every node (deno task ddp does so on one node)",
    );
  }
  if (env.rank === 0) return await acceptRanks(env, timeoutMs, deadline, log);
  return await joinRank0(env, timeoutMs, deadline);
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === "::1" || host === "[::1]" ||
    host === "localhost";
}

function whereOf(env: DistEnv): string {
  return `${env.masterAddr}:${env.masterPort}`;
}

function listen(env: DistEnv): Deno.TcpListener {
  try {
    return Deno.listen({ hostname: env.masterAddr, port: env.masterPort });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `Port ${env.masterPort} on ${env.masterAddr} is already in use (MASTER_PORT, --master-port): another job holds it; pick another port`,
      );
    }
    throw new Error(
      `Cannot listen on ${whereOf(env)} for the rendezvous: ${(e as Error).message}`,
    );
  }
}

/** A connection that did not prove it belongs to the job: refused, logged, not fatal. */
class Refused extends Error {}

/**
 * Rank 0: every other rank's connection, each checked on its own (a stranger that stalls holds
 * up no one), then the run id and rank 0's proof to all.
 */
async function acceptRanks(
  env: DistEnv,
  timeoutMs: number,
  deadline: number,
  log: RefusalLog,
): Promise<TcpProcessGroup> {
  const listener = listen(env);
  const channels: (Channel | null)[] = Array(env.worldSize).fill(null);
  const challenges: string[] = Array(env.worldSize).fill("");
  const open = new Set<Channel>();
  let joined = 1;
  let settle!: (error?: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });

  const admit = async (conn: Deno.Conn): Promise<void> => {
    const ch = new Channel(conn, "a joining rank");
    ch.maxFrameBytes = HANDSHAKE_MAX_BYTES;
    open.add(ch);
    const remote = ch.remote;
    try {
      const challenge = randomHex();
      await ch.send({ type: "challenge", challenge }).catch((e) => {
        throw new Refused((e as Error).message);
      });
      const wait = Math.max(1, Math.min(HANDSHAKE_MS, deadline - performance.now()));
      let h: Hello;
      try {
        h = (await ch.recv(wait, "rendezvous")).header as Hello;
      } catch (e) {
        throw new Refused((e as Error).message);
      }
      if (h.type !== "hello") throw new Refused(`sent ${JSON.stringify(h.type)}, not a hello`);
      if (!(await proves(env.secret, h.proof, joinText(challenge, h)))) {
        throw new Refused(
          env.secret ? "it could not prove it holds the job's secret" : "its hello is malformed",
        );
      }
      await refuseWrongRank(ch, h, env, channels);
      ch.peer = `rank ${h.rank}`;
      ch.maxFrameBytes = Infinity;
      channels[h.rank] = ch;
      challenges[h.rank] = String(h.challenge ?? "");
      open.delete(ch);
      if (++joined === env.worldSize) settle();
    } catch (e) {
      open.delete(ch);
      ch.close();
      if (e instanceof Refused) {
        log(`[rendezvous] refused a connection from ${remote}: ${e.message}`);
      } else {
        settle(e as Error);
      }
    }
  };

  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // the listener was closed
      }
      admit(conn);
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - performance.now()));
  });
  try {
    const outcome = await Promise.race([done, expired]);
    if (outcome === "timeout") {
      const missing = channels.map((c, r) => (r > 0 && !c ? r : -1)).filter((r) => r >= 0);
      throw new Error(
        `Rendezvous at ${whereOf(env)} timed out after ${timeoutMs / 1000} s: rank(s) ${
          missing.join(", ")
        } never joined (WORLD_SIZE=${env.worldSize}); see --timeout`,
      );
    }
  } catch (e) {
    for (const c of channels) c?.close();
    throw e;
  } finally {
    clearTimeout(timer);
    listener.close();
    for (const ch of open) ch.close(); // strangers still talking
    await accepting;
  }
  const runId = randomHex().slice(0, 8);
  for (const [r, c] of channels.entries()) {
    if (!c) continue;
    const proof = env.secret ? await hmac(env.secret, welcomeText(challenges[r], runId)) : "";
    await c.send({ type: "welcome", runId, proof });
  }
  return new TcpProcessGroup(env, channels, runId, timeoutMs);
}

/** Tells a rank that may not join why (on its channel), then fails with the same words. */
async function refuseWrongRank(
  ch: Channel,
  h: Hello,
  env: DistEnv,
  channels: (Channel | null)[],
): Promise<void> {
  let problem = "";
  if (h.worldSize !== env.worldSize) {
    problem =
      `Rank ${h.rank} has WORLD_SIZE=${h.worldSize}, rank 0 has ${env.worldSize}: every rank must be started with the same world size`;
  } else if (!Number.isInteger(h.rank) || h.rank <= 0 || h.rank >= env.worldSize) {
    problem = `A rank joined as RANK=${h.rank}, expected 1..${env.worldSize - 1}`;
  } else if (channels[h.rank]) {
    problem = `Rank ${h.rank} joined twice: two processes have RANK=${h.rank}`;
  }
  if (problem) {
    await ch.send({ type: "error", message: problem }).catch(() => {});
    ch.close();
    throw new Error(problem);
  }
}

/** Every other rank: connect (retrying while rank 0 starts), prove itself, get the run id. */
async function joinRank0(
  env: DistEnv,
  timeoutMs: number,
  deadline: number,
): Promise<TcpProcessGroup> {
  let conn: Deno.Conn | null = null;
  while (!conn) {
    try {
      conn = await Deno.connect({ hostname: env.masterAddr, port: env.masterPort });
    } catch (e) {
      if (performance.now() > deadline) {
        throw new Error(
          `Cannot reach rank 0 at ${whereOf(env)} after ${
            timeoutMs / 1000
          } s (MASTER_ADDR, MASTER_PORT): ${(e as Error).message}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const ch = new Channel(conn, "rank 0");
  const left = () => Math.max(1, deadline - performance.now());
  try {
    const { header: challenge } = await ch.recv(left(), "rendezvous");
    const hello: Hello = {
      type: "hello",
      rank: env.rank,
      worldSize: env.worldSize,
      localRank: env.localRank,
      localWorldSize: env.localWorldSize,
      nodeRank: env.nodeRank,
      pid: Deno.pid,
      proof: "",
      challenge: randomHex(),
    };
    const text = joinText(String(challenge.challenge ?? ""), hello);
    hello.proof = env.secret ? await hmac(env.secret, text) : "";
    await ch.send(hello);
    const { header } = await ch.recv(left(), "rendezvous");
    const runId = String(header.runId);
    if (!(await proves(env.secret, header.proof, welcomeText(hello.challenge, runId)))) {
      throw new Error(
        `Rank 0 at ${whereOf(env)} could not prove it holds the job's GPT2_DDP_SECRET: ` +
          "another process may hold MASTER_PORT",
      );
    }
    const channels: (Channel | null)[] = Array(env.worldSize).fill(null);
    channels[0] = ch;
    return new TcpProcessGroup(env, channels, runId, timeoutMs);
  } catch (e) {
    ch.close();
    throw e;
  }
}

/** What a joining rank signs: rank 0's challenge and the fields it claims. */
function joinText(challenge: string, h: Hello): string {
  return JSON.stringify([
    "join",
    challenge,
    h.rank,
    h.worldSize,
    h.localRank,
    h.localWorldSize,
    h.nodeRank,
    h.challenge,
  ]);
}

/** What rank 0 signs: the rank's challenge and the run id. */
function welcomeText(challenge: string, runId: string): string {
  return JSON.stringify(["welcome", challenge, runId]);
}

const ENCODER = new TextEncoder();

async function hmacKey(secret: string): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "raw",
    ENCODER.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/** HMAC-SHA256 of `text` under `secret`, hex. */
async function hmac(secret: string, text: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), ENCODER.encode(text));
  return toHex(new Uint8Array(mac));
}

/**
 * Whether `proof` is the HMAC of `text` under `secret` (checked by WebCrypto's verify, in
 * constant time); without a secret, whether the proof is empty, as the peer sends it.
 */
async function proves(secret: string | undefined, proof: unknown, text: string): Promise<boolean> {
  if (!secret) return proof === "";
  if (typeof proof !== "string" || !/^[0-9a-f]{64}$/.test(proof)) return false;
  const bytes = Uint8Array.from(proof.match(/../g)!.map((h) => parseInt(h, 16)));
  return await crypto.subtle.verify("HMAC", await hmacKey(secret), bytes, ENCODER.encode(text));
}

function randomHex(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)));
}

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
