// The import direction of lib/ (docs/architecture.md): no module imports from a layer above
// its own, and the benchmarks (lib/bench/, lib/cli/bench.ts) reach backends only through
// lib/backends/mod.ts and the interface lib/backend.ts, never a backend's folder.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Layers from the bottom; a module may import its own layer and those below it. */
const LAYERS: RegExp[] = [
  /^lib\/(io\/|backend\.ts$|interrupt\.ts$)/,
  /^lib\/(backends|model|data)\//,
  /^lib\/speedrun\//, // after the lecture, on the lecture's model; lib/model never imports it
  /^lib\/weights\//, // the one loader, of either model
  /^lib\/(ddp|eval)\//,
  /^lib\/train\//,
  /^lib\/(bench|plot|web|notebook)\//,
  /^lib\/cli\//,
];

function layerOf(path: string): number {
  const i = LAYERS.findIndex((re) => re.test(path));
  if (i < 0) throw new Error(`Expected ${path} in a layer of LAYERS, found none`);
  return i;
}

/** Every .ts file under lib/, relative to the repository root. */
function libFiles(dir = join(ROOT, "lib")): string[] {
  return [...Deno.readDirSync(dir)].flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory) return libFiles(path);
    return e.name.endsWith(".ts") ? [relative(ROOT, path)] : [];
  });
}

/** The relative imports of a file (static, dynamic and re-exports), as repository paths. */
function importsOf(file: string): string[] {
  const text = Deno.readTextFileSync(join(ROOT, file));
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s+["']([^"']+)["']/gm),
    ...text.matchAll(/^\s*import\s+["']([^"']+)["']/gm),
    ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
  ].map((m) => m[1]).filter((s) => s.startsWith("."));
  return specifiers.map((s) => relative(ROOT, resolve(dirname(join(ROOT, file)), s)));
}

const FILES = libFiles();

Deno.test("lib/: no module imports from a layer above its own", () => {
  const upward = FILES.flatMap((file) =>
    importsOf(file).filter((to) => layerOf(to) > layerOf(file)).map((to) => `${file} -> ${to}`)
  );
  assertEquals(upward, []);
});

Deno.test("lib/bench/ and lib/cli/bench.ts import no backend's folder, only lib/backends/mod.ts", () => {
  const benches = FILES.filter((f) => f.startsWith("lib/bench/") || f === "lib/cli/bench.ts");
  const concrete = benches.flatMap((file) =>
    importsOf(file).filter((to) => /^lib\/backends\/[^/]+\//.test(to)).map((to) =>
      `${file} -> ${to}`
    )
  );
  assertEquals(concrete, []);
});

Deno.test("lib/: no two modules import each other", () => {
  const imports = new Map(FILES.map((file) => [file, new Set(importsOf(file))]));
  const mutual = FILES.flatMap((file) =>
    [...imports.get(file)!].filter((to) => to > file && imports.get(to)?.has(file)).map((to) =>
      `${file} <-> ${to}`
    )
  );
  assertEquals(mutual, []);
});
