/**
 * Framed messages over a TCP connection, for the process group's rendezvous and control
 * traffic: a u32 length, a JSON header, then `header.bytes` bytes of payload. Every receive
 * has a deadline and names the peer when it fails, so a dead rank is an error, not a hang.
 *
 * @module
 */

/** A message header: a `type` and whatever fields that type carries. */
export interface Header {
  type: string;
  /** Length of the binary payload that follows the header. */
  bytes?: number;
  [key: string]: unknown;
}

/** A received message. */
export interface Message {
  header: Header;
  payload: Uint8Array;
}

/** One end of a framed connection to `peer` (a name for error messages, e.g. "rank 1"). */
export class Channel {
  #conn: Deno.Conn;
  #closed = false;
  /**
   * The largest header or payload accepted, in bytes: small while the peer is not yet known
   * (a stranger's length field must not make this process allocate gigabytes), unlimited once
   * the rendezvous has admitted it.
   */
  maxFrameBytes = Infinity;

  constructor(conn: Deno.Conn, public peer: string) {
    this.#conn = conn;
    // small control messages must not wait for Nagle's algorithm
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
  }

  /** Sends a header and an optional payload in one write. */
  async send(header: Header, payload?: Uint8Array): Promise<void> {
    const json = new TextEncoder().encode(
      JSON.stringify({ ...header, bytes: payload?.length ?? 0 }),
    );
    const out = new Uint8Array(4 + json.length + (payload?.length ?? 0));
    new DataView(out.buffer).setUint32(0, json.length, true);
    out.set(json, 4);
    if (payload) out.set(payload, 4 + json.length);
    try {
      let off = 0;
      while (off < out.length) off += await this.#conn.write(out.subarray(off));
    } catch (e) {
      throw new Error(`Lost the connection to ${this.peer} while sending: ${(e as Error).message}`);
    }
  }

  /** The next message; fails after `timeoutMs`, or when the peer closes the connection. */
  async recv(timeoutMs: number, what: string): Promise<Message> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `Timed out after ${
                timeoutMs / 1000
              } s waiting for ${this.peer} (${what}); see --timeout`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.#recv(what), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #recv(what: string): Promise<Message> {
    const head = await this.#read(4, what);
    const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
    if (len > this.maxFrameBytes) {
      throw new Error(
        `Expected a header of at most ${this.maxFrameBytes} bytes from ${this.peer}, found ${len}`,
      );
    }
    const header = JSON.parse(new TextDecoder().decode(await this.#read(len, what))) as Header;
    if (typeof header !== "object" || header === null || typeof header.type !== "string") {
      throw new Error(
        `Expected a message with a type from ${this.peer}, found ${JSON.stringify(header)}`,
      );
    }
    const bytes = Number(header.bytes ?? 0);
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > this.maxFrameBytes) {
      throw new Error(
        `Expected a payload of at most ${this.maxFrameBytes} bytes from ${this.peer}, found ${header.bytes}`,
      );
    }
    const payload = bytes ? await this.#read(bytes, what) : new Uint8Array(0);
    if (header.type === "error") {
      throw new Error(String(header.message));
    }
    return { header, payload };
  }

  async #read(n: number, what: string): Promise<Uint8Array> {
    // reads exactly n bytes straight into their final array (payloads can be 500 MB)
    const out = new Uint8Array(n);
    let have = 0;
    while (have < n) {
      let got: number | null;
      try {
        got = await this.#conn.read(out.subarray(have));
      } catch (e) {
        throw new Error(`Lost the connection to ${this.peer} (${what}): ${(e as Error).message}`);
      }
      if (got === null) {
        throw new Error(`${cap(this.peer)} closed the connection (${what}): it exited or died`);
      }
      have += got;
    }
    return out;
  }

  /** The peer's address, for messages. */
  get remote(): string {
    const addr = this.#conn.remoteAddr as Deno.NetAddr;
    return addr.hostname === undefined ? "a local peer" : `${addr.hostname}:${addr.port}`;
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
  }
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
