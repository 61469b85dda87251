/**
 * The speedup ladder as a horizontal bar chart in plain SVG (no dependencies), one bar per
 * rung with its speedup over the first rung (the table with the spread of each rung's steps is
 * `rungTable` in `ladder.ts`).
 *
 * @module
 */

/** A timed rung of either ladder (CPU or WebGPU). */
export interface LadderRow {
  rung: { name: string; change: string };
  ms: number;
  tokensPerSec: number;
  speedup: number;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** An SVG bar chart of tokens/s per rung, labelled with ms/step and the speedup. */
export function ladderSvg(results: LadderRow[], title: string): string {
  const rowH = 30, left = 170, width = 720, barMax = width - left - 150, top = 40;
  const height = top + results.length * rowH + 20;
  const max = Math.max(...results.map((r) => r.tokensPerSec));
  const rows = results.map((r, i) => {
    const y = top + i * rowH, w = Math.max(1, (r.tokensPerSec / max) * barMax);
    return `<text x="${left - 8}" y="${y + 19}" text-anchor="end" font-size="13">${
      escapeXml(r.rung.name)
    }</text>` +
      `<rect x="${left}" y="${y + 5}" width="${w.toFixed(1)}" height="${
        rowH - 10
      }" fill="#4c78a8"/>` +
      `<text x="${left + w + 6}" y="${y + 19}" font-size="12">${r.tokensPerSec.toFixed(1)} tok/s, ${
        r.speedup.toFixed(1)
      }x</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>` +
    rows.join("") + `</svg>`;
}
