/**
 * Fetching a file with a progress callback: the response body read chunk by chunk
 * (`ReadableStream`) into one buffer, sized from `Content-Length` when the server sends it,
 * so a 500 MB `model.safetensors` is copied once and its bar moves as it arrives.
 *
 * @module
 */

/** How far a download is: bytes received, and the total when the server said it. */
export interface FetchProgress {
  received: number;
  /** From `Content-Length`; undefined when the server did not send one. */
  total: number | undefined;
}

/**
 * The bytes at `url`, calling `onProgress` after each chunk (and once at the start).
 *
 * @throws {Error} naming the URL, for a network failure, an HTTP error status, or a body
 * shorter or longer than its `Content-Length`.
 */
export async function fetchBytes(
  url: string,
  onProgress: (progress: FetchProgress) => void = () => {},
): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`Cannot fetch ${url}: ${(e as Error).message}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`Expected ${url} to answer 200, found HTTP ${response.status}`);
  }
  const header = response.headers.get("content-length");
  const total = header !== null && /^\d+$/.test(header) ? Number(header) : undefined;
  onProgress({ received: 0, total });
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  let buffer = new Uint8Array(total ?? 1 << 16);
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.length > buffer.length) {
      if (total !== undefined) {
        await reader.cancel();
        throw new Error(`${url}: expected ${total} bytes (Content-Length), found more`);
      }
      // no length given: grow by doubling, so the copies add up to at most twice the file
      const grown = new Uint8Array(Math.max(2 * buffer.length, received + value.length));
      grown.set(buffer.subarray(0, received));
      buffer = grown;
    }
    buffer.set(value, received);
    received += value.length;
    onProgress({ received, total });
  }
  if (total !== undefined && received !== total) {
    throw new Error(`${url}: expected ${total} bytes (Content-Length), found ${received}`);
  }
  return received === buffer.length ? buffer : buffer.subarray(0, received);
}

/** Fetches `url` and parses its body as JSON. */
export async function fetchJson(url: string): Promise<unknown> {
  const bytes = await fetchBytes(url);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${url}: expected JSON, found a parse error (${(e as Error).message})`);
  }
}
