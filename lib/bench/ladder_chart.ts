/**
 * The speedup ladder as horizontal bar charts in plain SVG (no dependencies): one bar per rung
 * with its tok/s and speedup over the first rung (`ladderSvg`; the table with the spread of each
 * rung's steps is `rungTable` in `ladder.ts`), and ours beside the lecture's A100 ladder, rung
 * for rung (`besideLectureSvg`).
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

/** A timed rung that names the lecture's rung it stands for (none: a rung of our own). */
export interface LectureLadderRow extends LadderRow {
  rung: { name: string; change: string; lecture?: string };
}

/**
 * Ours beside the lecture's, as an SVG of paired bars: for each of the lecture's rungs
 * (`lectureMs`, its name to its A100 ms/step, in its order), its speedup over the lecture's
 * first rung, and the speedup of the rung of ours that stands for it over the first of ours
 * that stands for one (a lecture rung none of ours stands for gets its bar alone).
 */
export function besideLectureSvg(
  results: readonly LectureLadderRow[],
  lectureMs: Record<string, number>,
  title: string,
): string {
  const lecture = Object.entries(lectureMs);
  const ours = results.filter((r) => r.rung.lecture !== undefined);
  const base = ours[0]?.ms ?? 1, lectureBase = lecture[0]?.[1] ?? 1;
  const rows = lecture.map(([name, ms]) => {
    const r = ours.find((o) => o.rung.lecture === name);
    return { name, lecture: lectureBase / ms, ours: r ? base / r.ms : null, ourName: r?.rung.name };
  });
  const rowH = 44, left = 170, width = 720, barMax = width - left - 200, top = 58;
  const height = top + rows.length * rowH + 16;
  const max = Math.max(...rows.map((r) => Math.max(r.lecture, r.ours ?? 0)));
  const bar = (y: number, x: number, fill: string, label: string) => {
    const w = Math.max(1, (x / max) * barMax);
    return `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="16" fill="${fill}"/>` +
      `<text x="${left + w + 6}" y="${y + 13}" font-size="12">${escapeXml(label)}</text>`;
  };
  const body = rows.map((r, i) => {
    const y = top + i * rowH;
    return `<text x="${left - 8}" y="${y + 22}" text-anchor="end" font-size="13">${
      escapeXml(r.name)
    }</text>` +
      bar(y + 2, r.lecture, "#9d9d9d", `${r.lecture.toFixed(1)}x (A100)`) +
      (r.ours === null
        ? `<text x="${left + 4}" y="${y + 33}" font-size="12">no rung here</text>`
        : bar(y + 20, r.ours, "#4c78a8", `${r.ours.toFixed(2)}x (${r.ourName})`));
  });
  const legend = `<rect x="${left}" y="32" width="12" height="12" fill="#9d9d9d"/>` +
    `<text x="${left + 18}" y="42" font-size="12">the lecture, over its fp32 baseline</text>` +
    `<rect x="${left + 260}" y="32" width="12" height="12" fill="#4c78a8"/>` +
    `<text x="${left + 278}" y="42" font-size="12">here, over ${
      escapeXml(ours[0]?.rung.name ?? "the first rung")
    }</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="15">${escapeXml(title)}</text>` +
    legend + body.join("") + `</svg>`;
}
