/**
 * A PNG decoder for the plot tests: enough of the format to read back what resvg writes.
 *
 * @module
 */

import assert from "node:assert/strict";

/** A decoded image: 3 (RGB) or 4 (RGBA) bytes a pixel, row by row. */
export interface DecodedPng {
  width: number;
  height: number;
  pixels: Uint8Array;
  channels: number;
}

/** Decodes an 8-bit RGB/RGBA PNG: its size and pixels (filters undone), checking every chunk. */
export async function decodePng(bytes: Uint8Array): Promise<DecodedPng> {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  assert.deepEqual([...bytes.subarray(0, 8)], signature, "PNG signature");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8, width = 0, height = 0, channels = 0;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (offset < bytes.length) {
    const length = view.getUint32(offset);
    const type = new TextDecoder().decode(bytes.subarray(offset + 4, offset + 8));
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(offset + 8);
      height = view.getUint32(offset + 12);
      assert.equal(data[8], 8, "bit depth");
      channels = ({ 2: 3, 6: 4 } as Record<number, number>)[data[9]];
      assert.ok(channels, `colour type ${data[9]}`);
    }
    if (type === "IDAT") idat.push(data);
    if (type === "IEND") ended = true;
    offset += 12 + length;
  }
  assert.ok(ended, "IEND chunk");
  const stream = new Blob(idat as BlobPart[]).stream().pipeThrough(
    new DecompressionStream("deflate"),
  );
  const raw = new Uint8Array(await new Response(stream).arrayBuffer());
  const stride = width * channels;
  assert.equal(raw.length, height * (stride + 1), "decompressed size");
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const predictor =
        [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      assert.ok(predictor !== undefined, `filter type ${filter}`);
      pixels[y * stride + x] = (line[x] + predictor) & 0xff;
    }
  }
  return { width, height, pixels, channels };
}

/** Whether some pixel is within 12 of the colour in each channel. */
export function hasColor(png: DecodedPng, r: number, g: number, b: number): boolean {
  for (let i = 0; i < png.pixels.length; i += png.channels) {
    const [pr, pg, pb] = png.pixels.subarray(i, i + 3);
    if (Math.abs(pr - r) < 12 && Math.abs(pg - g) < 12 && Math.abs(pb - b) < 12) return true;
  }
  return false;
}
