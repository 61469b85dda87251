/**
 * The rendezvous over TCP: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank
 * connects and says who it is (rank, world size, node); rank 0 checks that every rank came
 * once with the same world size, then sends a run id. The connections stay open as the
 * group's control channel.
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
}

/**
 * Meets every rank of `env`'s job within `timeoutMs`; the group it returns carries the
 * control traffic (and, through rank 0, the data of the TCP transport).
 *
 * @throws {Error} naming the port when rank 0 cannot listen, the ranks that never joined,
 * a rank with another world size or twice the same rank, or rank 0 out of reach.
 */
export async function rendezvous(env: DistEnv, timeoutMs: number): Promise<TcpProcessGroup> {
  const deadline = performance.now() + timeoutMs;
  if (env.worldSize === 1) return new TcpProcessGroup(env, [], "solo", timeoutMs);
  if (env.rank === 0) return await acceptRanks(env, timeoutMs, deadline);
  return await joinRank0(env, timeoutMs, deadline);
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

/** Rank 0: every other rank's connection, checked, then the run id to all. */
async function acceptRanks(
  env: DistEnv,
  timeoutMs: number,
  deadline: number,
): Promise<TcpProcessGroup> {
  const listener = listen(env);
  const channels: (Channel | null)[] = Array(env.worldSize).fill(null);
  try {
    for (let joined = 1; joined < env.worldSize; joined++) {
      const left = deadline - performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const conn = await Promise.race([
        listener.accept(),
        new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), Math.max(0, left))),
      ]);
      clearTimeout(timer);
      if (!conn) {
        const missing = channels.map((c, r) => (r > 0 && !c ? r : -1)).filter((r) => r >= 0);
        throw new Error(
          `Rendezvous at ${whereOf(env)} timed out after ${timeoutMs / 1000} s: rank(s) ${
            missing.join(", ")
          } never joined (WORLD_SIZE=${env.worldSize}); see --timeout`,
        );
      }
      const ch = new Channel(conn, "a joining rank");
      const { header } = await ch.recv(Math.max(1, deadline - performance.now()), "rendezvous");
      const h = header as Hello;
      await refuseWrongRank(ch, h, env, channels);
      ch.peer = `rank ${h.rank}`;
      channels[h.rank] = ch;
    }
  } catch (e) {
    for (const c of channels) c?.close();
    throw e;
  } finally {
    listener.close();
  }
  const runId = crypto.randomUUID().slice(0, 8);
  for (const c of channels) await c?.send({ type: "welcome", runId });
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

/** Every other rank: connect (retrying while rank 0 starts), say hello, get the run id. */
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
  const hello: Hello = {
    type: "hello",
    rank: env.rank,
    worldSize: env.worldSize,
    localRank: env.localRank,
    localWorldSize: env.localWorldSize,
    nodeRank: env.nodeRank,
    pid: Deno.pid,
  };
  await ch.send(hello);
  const { header } = await ch.recv(Math.max(1, deadline - performance.now()), "rendezvous");
  const channels: (Channel | null)[] = Array(env.worldSize).fill(null);
  channels[0] = ch;
  return new TcpProcessGroup(env, channels, String(header.runId), timeoutMs);
}
