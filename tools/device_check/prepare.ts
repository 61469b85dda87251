/**
 * `deno task device-check --prepare`: fills `.gpu/` (git-ignored) with what the device
 * check needs on a GPU machine that has no network, and `.gl/` with the Vulkan loader's
 * Debian packages (the device README's recipe):
 *
 * - `deno.xz`: this Deno, packed with `xz -9` (about 95 MB to 30 MB; gzip would leave 41 MB,
 *   too much for what may travel); `run.sh` unpacks it with `xz`, else Python's `lzma`, so the
 *   GPU machine needs no `xz`;
 * - `node_modules.tar.xz`: the npm packages the suites, `train` and `bench` import
 *   (playwright-core, which only drives chromium for plots, left out);
 * - `shared/`: the files of `../shared` the CUDA and WebGPU suites, training and the bench
 *   read (the tiny models, `reference.safetensors`, the 124M hash reference, Tiny
 *   Shakespeare, the PyTorch GPU peer);
 * - `cache/`: the kernels' fatbin and nvcc's resource tables built here, so the GPU machine
 *   finds them by their hash when its nvcc is the same (else it compiles its own); only those
 *   of the sources now (what earlier prepares built is removed);
 * - `run.sh`: the entry there, which unpacks all of this and runs `tools/device_check/mod.ts`.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { REPO_ROOT, sharedDataDir } from "../../lib/data/datasets.ts";

/** The folder that travels to the GPU machine, in the repository root. */
export const GPU_DIR: string = join(REPO_ROOT, ".gpu");
/** The Vulkan loader's packages, in the repository root (the device README's `.gl/`). */
export const GL_DIR: string = join(REPO_ROOT, ".gl");
/** The most the working tree and the carried folders may weigh together. */
export const CARRY_LIMIT_BYTES: number = 64 * 2 ** 20;

/** The Debian packages of the device README's `.gl/` recipe (Vulkan, EGL and GL loaders). */
const GL_PACKAGES = [
  "libvulkan1",
  "libegl1",
  "libglvnd0",
  "libopengl0",
  "libgl1",
  "libglx0",
  "libgles2",
];

/** npm packages left out of `node_modules.tar.xz`: nothing the device check runs imports them. */
const NPM_LEFT_OUT = ["playwright-core", "@resvg+resvg-js-linux-x64-musl"];

/** What `../shared` holds that the device check reads, relative to the shared folders. */
const SHARED_REFERENCE = [
  "tiny-gpt2/config.json",
  "tiny-gpt2/model.safetensors",
  "reference.safetensors",
  "gpt2_124m_hash_reference.json",
];
const SHARED_DATA = ["tinyshakespeare/input.txt"];
const SHARED_BENCH = ["torch_gpt2_gpu.py"];

function say(line: string): void {
  console.log(`prepare: ${line}`);
}

/** Runs a command, failing with its output when it fails. */
async function run(cmd: string, args: string[], cwd = REPO_ROOT): Promise<string> {
  const r = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!r.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed with exit code ${r.code}: ${
        (dec.decode(r.stdout) + dec.decode(r.stderr)).slice(-1500)
      }`,
    );
  }
  return dec.decode(r.stdout);
}

/** Bytes under `path` (a file or a folder), links not followed. */
export function sizeOf(path: string): number {
  const info = Deno.lstatSync(path);
  if (!info.isDirectory) return info.size;
  let total = 0;
  for (const e of Deno.readDirSync(path)) total += sizeOf(join(path, e.name));
  return total;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** `.gpu/deno.xz` from this Deno, reused when it was packed from the same binary. */
async function packDeno(): Promise<void> {
  const exe = Deno.execPath(), info = Deno.statSync(exe);
  const stamp = `${Deno.version.deno} ${info.size} ${info.mtime?.getTime() ?? 0}`;
  const target = join(GPU_DIR, "deno.xz"), stampFile = join(GPU_DIR, "deno.xz.source");
  if (existsSync(target) && existsSync(stampFile) && Deno.readTextFileSync(stampFile) === stamp) {
    say(`deno.xz: kept (packed from this Deno ${Deno.version.deno} before)`);
    return;
  }
  say(`deno.xz: packing ${exe} (${mib(info.size)}) with xz -9, about a minute`);
  await run("bash", ["-c", `xz -9 -T1 -c "$0" > "$1.tmp" && mv "$1.tmp" "$1"`, exe, target]);
  Deno.writeTextFileSync(stampFile, stamp);
}

/** `.gpu/node_modules.tar.xz`: node_modules (made by `deno install` if missing), minus NPM_LEFT_OUT. */
async function packNodeModules(): Promise<void> {
  if (!existsSync(join(REPO_ROOT, "node_modules", "tiktoken"))) {
    say("node_modules is incomplete: deno install");
    await run(Deno.execPath(), ["install"]);
  }
  const excludes = NPM_LEFT_OUT.flatMap((name) => [
    `--exclude=node_modules/.deno/${name}@*`,
    `--exclude=node_modules/${name.replace("+", "/")}`,
  ]);
  const target = join(GPU_DIR, "node_modules.tar.xz");
  say(`node_modules.tar.xz: packing node_modules without ${NPM_LEFT_OUT.join(", ")}`);
  await run("bash", [
    "-c",
    `tar -C "$0" ${excludes.map((e) => `'${e}'`).join(" ")} -cf - node_modules | xz -9 -T1 > "$1"`,
    REPO_ROOT,
    target,
  ]);
}

/** The shared folders: `GPT2_SHARED_REFERENCE` / `_DATA` / `_BENCH`, else `../shared/*`. */
function sharedSources(): [string, string, string[]][] {
  const shared = join(REPO_ROOT, "..", "shared");
  return [
    [
      "reference",
      Deno.env.get("GPT2_SHARED_REFERENCE") ?? join(shared, "reference"),
      SHARED_REFERENCE,
    ],
    ["data", sharedDataDir(), SHARED_DATA],
    ["bench", Deno.env.get("GPT2_SHARED_BENCH") ?? join(shared, "bench"), SHARED_BENCH],
  ];
}

/** `.gpu/shared/{reference,data,bench}`: the files the device check reads. */
function copyShared(): void {
  for (const [name, from, files] of sharedSources()) {
    for (const file of files) {
      const source = join(from, file), target = join(GPU_DIR, "shared", name, file);
      if (!existsSync(source)) throw new Error(`Expected ${source} to copy, found none`);
      Deno.mkdirSync(dirname(target), { recursive: true });
      Deno.copyFileSync(source, target);
      Deno.chmodSync(target, 0o644);
    }
  }
  say(
    `shared/: ${mib(sizeOf(join(GPU_DIR, "shared")))} (${
      sharedSources().map(([n, , f]) => `${n}: ${f.join(", ")}`).join("; ")
    })`,
  );
}

/** `.gl/*.deb` by the device README's recipe (apt-get download, amd64 lists in /tmp). */
async function downloadGl(): Promise<void> {
  Deno.mkdirSync(GL_DIR, { recursive: true });
  const have = [...Deno.readDirSync(GL_DIR)].map((e) => e.name);
  const missing = GL_PACKAGES.filter((p) => !have.some((n) => n.startsWith(`${p}_`)));
  if (missing.length === 0) {
    say(`.gl/: kept (${have.length} packages)`);
    return;
  }
  const lists = "/tmp/amd64";
  Deno.mkdirSync(join(lists, "partial"), { recursive: true });
  const o = [
    "-oAPT::Architecture=amd64",
    "-oAPT::Architectures=amd64",
    `-oDir::State::Lists=${lists}`,
  ];
  try {
    say(`.gl/: apt-get download ${missing.join(" ")}`);
    await run("apt-get", [...o, "update"]);
    await run("apt-get", [...o, "download", ...missing], GL_DIR);
  } catch (e) {
    say(
      `.gl/: FAILED, WebGPU there will find no Vulkan loader unless the machine has one: ${
        (e as Error).message.split("\n")[0]
      }`,
    );
  }
}

/**
 * The resource table's file in `dir` whose contents are `table` (the one `kernelResources`
 * read or wrote), or null.
 */
export function resourceTableFile(dir: string, table: object): string | null {
  const wanted = JSON.stringify(table);
  for (const e of Deno.readDirSync(dir)) {
    if (!/^resources-.*\.json$/.test(e.name)) continue;
    try {
      if (JSON.stringify(JSON.parse(Deno.readTextFileSync(join(dir, e.name)))) === wanted) {
        return e.name;
      }
    } catch {
      // unreadable: not the table
    }
  }
  return null;
}

/**
 * Removes every file of `dir` but `keep` (names): builds of earlier sources are found by a
 * hash no later source has, and would only add to what travels. Returns the names removed.
 */
export function pruneCache(dir: string, keep: readonly string[]): string[] {
  const removed: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (keep.includes(e.name)) continue;
    Deno.removeSync(join(dir, e.name), { recursive: true });
    removed.push(e.name);
  }
  return removed.sort();
}

/**
 * `.gpu/cache`: the kernels built here and nvcc's resource tables of them, or why not (the
 * GPU machine then builds them); what earlier prepares left there for other sources removed.
 */
async function prebuildKernels(): Promise<void> {
  const cache = join(GPU_DIR, "cache"), cuda = join(cache, "cuda");
  Deno.mkdirSync(cuda, { recursive: true });
  const saved = Deno.env.get("GPT2_CACHE_DIR");
  Deno.env.set("GPT2_CACHE_DIR", cache);
  const keep: string[] = [];
  try {
    const { buildCudaKernels } = await import("../../lib/backends/cuda/build.ts");
    const build = await buildCudaKernels({ quiet: true });
    if (dirname(build.path) === cuda) keep.push(basename(build.path));
    say(`cache/: the CUDA kernels built by ${build.via} (${mib(sizeOf(build.path))})`);
    const { kernelResources } = await import("../../lib/backends/cuda/resources.ts");
    const table = await kernelResources({ quiet: true });
    const file = table ? resourceTableFile(cuda, table) : null;
    if (file) keep.push(file);
    say(`cache/: ${table ? "nvcc's resource tables of the kernels" : "no resource tables"}`);
  } catch (e) {
    say(`cache/: no prebuilt CUDA kernels (${(e as Error).message.split("\n")[0]})`);
  } finally {
    if (saved === undefined) Deno.env.delete("GPT2_CACHE_DIR");
    else Deno.env.set("GPT2_CACHE_DIR", saved);
  }
  const removed = pruneCache(cuda, keep);
  if (removed.length) say(`cache/: removed what earlier sources built: ${removed.join(", ")}`);
}

/** What was prepared, from which commit, for results.md there (the .git folder stays here). */
async function manifest(): Promise<Record<string, string>> {
  let commit = "unknown";
  try {
    commit = (await run("git", ["rev-parse", "--short", "HEAD"])).trim();
    if ((await run("git", ["status", "--porcelain", "--untracked-files=no"])).trim()) {
      commit += " (with uncommitted changes)";
    }
  } catch {
    // not a git checkout
  }
  return { commit, preparedAt: new Date().toISOString(), deno: Deno.version.deno };
}

/**
 * `.gpu/run.sh`: the entry on the GPU machine, in bash so that it runs before Deno is
 * unpacked. It unpacks Deno into $TMPDIR and node_modules (when absent), installs the Vulkan
 * loader from `.gl/` when the machine has none (root only), points Vulkan at NVIDIA's driver,
 * sets the paths to the carried shared files, then runs tools/device_check/mod.ts.
 */
const RUN_SCRIPT = `#!/usr/bin/env bash
# Made by deno task device-check --prepare. Usage: bash .gpu/run.sh OUTDIR [--only STEPS]
# (two calls: --only suites,train, then --only bench; env runs in each)
set -uo pipefail
gpu=$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$gpu")
out=\${1:?usage: bash .gpu/run.sh OUTDIR [--only suites,train,bench,webgpu] [--minutes M]}
shift
mkdir -p "$out"
fail() { echo "device-check: FAILED before any step: $1" | tee "$out/results.md"; exit 1; }
work=\${TMPDIR:-/tmp}/gpt2-device-check
mkdir -p "$work" "$work/cache"
# .xz unpacked by xz where there is one, else by Python's lzma (no xz on some machines)
unxz_to_stdout() {
  if command -v xz >/dev/null 2>&1; then xz -dc "$1"; return; fi
  for py in python3 /opt/torch/.venv/bin/python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer, 1 << 20)' "$1"
      return
    fi
  done
  echo "device-check: neither xz nor python3 here to unpack $1" >&2
  return 1
}
echo "device-check: unpacking Deno into $work"
unxz_to_stdout "$gpu/deno.xz" > "$work/deno.tmp" && mv "$work/deno.tmp" "$work/deno" ||
  fail "could not unpack $gpu/deno.xz"
chmod +x "$work/deno"
if [ ! -e "$repo/node_modules/tiktoken" ]; then
  echo "device-check: unpacking the npm packages into $repo/node_modules"
  unxz_to_stdout "$gpu/node_modules.tar.xz" | tar -xf - -C "$repo" ||
    fail "could not unpack node_modules.tar.xz"
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\\.so\\.1'; then
  if [ -d "$repo/.gl" ] && [ "$(id -u)" = 0 ]; then
    for f in "$repo"/.gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    echo "device-check: installed the Vulkan loader from .gl/"
  else
    echo "device-check: no Vulkan loader here and no .gl/ to install it from as root: WebGPU will find no adapter"
  fi
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "\${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -z "\${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$egl" ]; then
  export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
fi
cp -r "$gpu/cache/." "$work/cache/" 2>/dev/null || true
export DENO_DIR="$work/deno_dir" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 \\
  GPT2_SHARED_REFERENCE="$gpu/shared/reference" GPT2_SHARED_DATA="$gpu/shared/data" \\
  GPT2_SHARED_BENCH="$gpu/shared/bench" GPT2_CACHE_DIR="$work/cache" PATH="$work:$PATH"
cd "$repo"
exec "$work/deno" run --allow-all --no-check --node-modules-dir=manual tools/device_check/mod.ts "$out" "$@"
`;

/** Bytes of the working tree that travels: tracked files and untracked ones not ignored. */
async function workingTreeBytes(): Promise<number> {
  const list = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
  let total = 0;
  for (const path of new Set(list.split("\0").filter(Boolean))) {
    try {
      total += Deno.lstatSync(join(REPO_ROOT, path)).size;
    } catch {
      // deleted in the working tree: it does not travel
    }
  }
  return total;
}

/** Fills `.gpu/` and `.gl/`, then prints the sizes and the command to run there. */
export async function prepareDeviceCheck(): Promise<void> {
  Deno.mkdirSync(GPU_DIR, { recursive: true });
  await packDeno();
  await packNodeModules();
  copyShared();
  await downloadGl();
  await prebuildKernels();
  const script = join(GPU_DIR, "run.sh");
  Deno.writeTextFileSync(script, RUN_SCRIPT);
  Deno.writeTextFileSync(join(GPU_DIR, "manifest.json"), JSON.stringify(await manifest(), null, 2));
  Deno.chmodSync(script, 0o755);

  const parts = [...Deno.readDirSync(GPU_DIR)].map((e) => e.name).sort();
  for (const name of parts) say(`  .gpu/${name}: ${mib(sizeOf(join(GPU_DIR, name)))}`);
  const gpu = sizeOf(GPU_DIR), gl = existsSync(GL_DIR) ? sizeOf(GL_DIR) : 0;
  const tree = await workingTreeBytes(), total = gpu + gl + tree;
  say(
    `.gpu/ ${mib(gpu)}, .gl/ ${mib(gl)}, working tree ${mib(tree)}: ${mib(total)} of ${
      mib(CARRY_LIMIT_BYTES)
    } that may travel`,
  );
  if (total > CARRY_LIMIT_BYTES) {
    throw new Error(`Expected at most ${mib(CARRY_LIMIT_BYTES)} to travel, found ${mib(total)}`);
  }
  const rel = relative(REPO_ROOT, script);
  console.log(`
On the GPU machine (the remote GPU runner), two calls, each within one 10-minute call with the
machine's start (each writes results.json, results.md and a log per step into $OUT):
  run  command: bash ${rel} $OUT --only suites,train
       carry:   ["${basename(GPU_DIR)}", "${basename(GL_DIR)}"]
       timeout_s: 600
  run  command: bash ${rel} $OUT --only bench      (same carry and timeout_s)
WebGPU, where time is left: bash ${rel} $OUT --only webgpu. Rehearse all of it here first
(offline, scaled down, no GPU): deno task device-check --rehearse OUTDIR.`);
}
