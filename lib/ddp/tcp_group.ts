/**
 * The control channel of every group, and the data path of the TCP transport: every
 * collective goes through rank 0 (it gathers, combines and scatters), over the connections
 * the rendezvous opened. Correct and slow: the transport across nodes, or with
 * GPT2_DDP_TRANSPORT=tcp; a multi-node run wants NCCL.
 *
 * @module
 */

import type { Channel, Message } from "./channel.ts";
import type { ProcessGroup, ReduceOp } from "./collectives.ts";
import type { DistEnv } from "./dist_env.ts";

/** The segments' values, concatenated, as bytes (a copy). */
function toBytes(segments: Float32Array[]): Uint8Array {
  const n = segments.reduce((a, s) => a + s.length, 0);
  const out = new Float32Array(n);
  let off = 0;
  for (const s of segments) {
    out.set(s, off);
    off += s.length;
  }
  return new Uint8Array(out.buffer);
}

/** Copies the floats in `bytes` back into the segments, in order. */
function fromBytes(bytes: Uint8Array, segments: Float32Array[]): void {
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let off = 0;
  for (const s of segments) {
    s.set(all.subarray(off, off + s.length));
    off += s.length;
  }
}

/** The control channel, and the data path through rank 0 over TCP (multi-node, or forced). */
export class TcpProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly transport: string = "tcp";
  readonly env: DistEnv;
  readonly runId: string;
  readonly timeoutMs: number;
  #channels: (Channel | null)[];

  /**
   * A group over the rendezvous' channels: rank 0 holds one per other rank, the others one
   * to rank 0 (`channels[0]`).
   */
  constructor(env: DistEnv, channels: (Channel | null)[], runId: string, timeoutMs: number) {
    this.env = env;
    this.rank = env.rank;
    this.worldSize = env.worldSize;
    this.localRank = env.localRank;
    this.localWorldSize = env.localWorldSize;
    this.#channels = channels;
    this.runId = runId;
    this.timeoutMs = timeoutMs;
  }

  /** Rank 0 gathers one message from every rank, in rank order. */
  async #gather(header: { type: string }, payload: Uint8Array | undefined): Promise<Message[]> {
    if (this.rank !== 0) {
      await this.#channels[0]!.send(header, payload);
      return [];
    }
    const out: Message[] = [{ header, payload: payload ?? new Uint8Array(0) }];
    for (let r = 1; r < this.worldSize; r++) {
      const m = await this.#channels[r]!.recv(this.timeoutMs, header.type);
      if (m.header.type !== header.type) {
        throw new Error(
          `Rank ${r} called ${m.header.type} while rank 0 called ${header.type}: collectives out of order`,
        );
      }
      out.push(m);
    }
    return out;
  }

  /** Rank 0 sends one message to every rank; the others receive it. */
  async #scatter(type: string, payload: Uint8Array | undefined, extra = {}): Promise<Message> {
    if (this.rank === 0) {
      for (let r = 1; r < this.worldSize; r++) {
        await this.#channels[r]!.send({ type, ...extra }, payload);
      }
      return { header: { type, ...extra }, payload: payload ?? new Uint8Array(0) };
    }
    const m = await this.#channels[0]!.recv(this.timeoutMs, type);
    if (m.header.type !== type) {
      throw new Error(`Rank 0 sent ${m.header.type} while this rank waited for ${type}`);
    }
    return m;
  }

  async barrier(): Promise<void> {
    if (this.worldSize === 1) return;
    await this.#gather({ type: "barrier" }, undefined);
    await this.#scatter("barrier", undefined);
  }

  async allReduce(segments: Float32Array[], op: ReduceOp): Promise<void> {
    if (this.worldSize === 1) return;
    const mine = toBytes(segments);
    const got = await this.#gather({ type: "allreduce" }, mine);
    let result: Uint8Array | undefined;
    if (this.rank === 0) {
      const sum = new Float32Array(mine.byteLength / 4);
      const views = got.map((m) =>
        new Float32Array(m.payload.buffer, m.payload.byteOffset, sum.length)
      );
      const scale = op === "avg" ? 1 / this.worldSize : 1;
      for (let i = 0; i < sum.length; i++) {
        let s = 0;
        for (const v of views) s += v[i];
        sum[i] = s * scale;
      }
      result = new Uint8Array(sum.buffer);
    }
    const m = await this.#scatter("allreduce", result);
    fromBytes(m.payload, segments);
  }

  async broadcast(segments: Float32Array[], root = 0): Promise<void> {
    if (this.worldSize === 1) return;
    if (root !== 0) throw new Error(`broadcast from rank ${root}: only rank 0 is supported`);
    const m = await this.#scatter("broadcast", this.rank === 0 ? toBytes(segments) : undefined);
    if (this.rank !== 0) fromBytes(m.payload, segments);
  }

  async broadcastBytes(data: Uint8Array | null): Promise<Uint8Array> {
    if (this.rank === 0 && !data) throw new Error("broadcastBytes: rank 0 must pass its bytes");
    if (this.worldSize === 1) return data!;
    const m = await this.#scatter("bytes", this.rank === 0 ? data! : undefined);
    return m.payload;
  }

  async allGatherBytes(data: Uint8Array): Promise<Uint8Array[]> {
    if (this.worldSize === 1) return [data];
    const got = await this.#gather({ type: "gather" }, data);
    let packed: Uint8Array | undefined, lengths: number[] = [];
    if (this.rank === 0) {
      lengths = got.map((m) => m.payload.length);
      packed = new Uint8Array(lengths.reduce((a, b) => a + b, 0));
      let off = 0;
      for (const m of got) {
        packed.set(m.payload, off);
        off += m.payload.length;
      }
    }
    const m = await this.#scatter("gather", packed, { lengths });
    const out: Uint8Array[] = [];
    let off = 0;
    for (const n of m.header.lengths as number[]) {
      out.push(m.payload.slice(off, off + n));
      off += n;
    }
    return out;
  }

  describe(): string {
    return `${this.worldSize} ranks over TCP through rank 0 at ${this.env.masterAddr}:${this.env.masterPort}`;
  }

  close(): void {
    for (const c of this.#channels) c?.close();
  }
}
