/**
 * `deno task device-check --rehearse OUTDIR`: `.gpu/run.sh OUTDIR --scaled-down` run here as
 * the GPU machine runs it. From a copy of what travels there (the working tree's tracked
 * files and its untracked files git does not ignore, `.gpu/` and `.gl/`: no `node_modules`, no
 * `.git`, no `../shared` beside it), with no `xz` on the PATH (the GPU image may lack it:
 * run.sh then unpacks with Python's lzma), offline (requests go to a proxy that refuses
 * them), every CUDA command on the CPU emulator's libraries through the real FFI where the
 * system's C++ compiler builds them (commands.ts: `REHEARSAL_CUDA_ENV`).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { REPO_ROOT } from "../../lib/data/datasets.ts";
import { REHEARSAL_CUDA_ENV, REHEARSAL_CUDA_NULL_ENV } from "./commands.ts";
import { GL_DIR, GPU_DIR } from "./prepare.ts";

/** The programs a rehearsal's PATH lacks: `xz` and its aliases. */
export const HIDDEN_PROGRAMS: readonly string[] = ["xz", "unxz", "xzcat", "lzma", "unlzma"];

/**
 * The files that travel to the GPU machine, relative to the repository: the working tree's
 * tracked files and untracked ones git does not ignore (as the remote GPU runner copies them), then
 * every file under `.gpu/` and `.gl/` (carried).
 */
export async function travellingFiles(root = REPO_ROOT): Promise<string[]> {
  const r = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) {
    throw new Error(
      `Expected git to list the working tree of ${root}, found: ${
        new TextDecoder().decode(r.stderr).trim()
      }`,
    );
  }
  const files = new Set(new TextDecoder().decode(r.stdout).split("\0").filter(Boolean));
  const walk = (dir: string): void => {
    for (const e of Deno.readDirSync(join(root, dir))) {
      const path = join(dir, e.name);
      if (e.isDirectory) walk(path);
      else files.add(path);
    }
  };
  for (const carried of [GPU_DIR, GL_DIR].map((d) => d.slice(REPO_ROOT.length + 1))) {
    if (existsSync(join(root, carried))) walk(carried);
  }
  // a tracked file deleted in the working tree does not travel
  return [...files].filter((f) => existsSync(join(root, f))).sort();
}

/** Copies `files` (relative to `from`) into `to`, keeping their folders and modes. */
export function copyFiles(files: readonly string[], from: string, to: string): void {
  for (const file of files) {
    const target = join(to, file);
    Deno.mkdirSync(dirname(target), { recursive: true });
    const info = Deno.lstatSync(join(from, file));
    if (info.isSymlink) Deno.symlinkSync(Deno.readLinkSync(join(from, file)), target);
    else Deno.copyFileSync(join(from, file), target);
  }
}

/**
 * A folder of links to every program on `path` but `hidden` (the first of a name wins, as
 * the shell finds it), to put alone on a child's PATH.
 */
export function pathWithout(path: string, hidden: readonly string[], into: string): string {
  Deno.mkdirSync(into, { recursive: true });
  const seen = new Set<string>();
  for (const dir of path.split(":").filter(Boolean)) {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      continue; // a PATH folder that does not exist
    }
    for (const e of entries) {
      if (seen.has(e.name) || hidden.includes(e.name)) continue;
      seen.add(e.name);
      Deno.symlinkSync(join(dir, e.name), join(into, e.name));
    }
  }
  return into;
}

/**
 * The CPU emulator's libraries built (tests/cuda_emulator/ffi.ts and nccl_ffi.ts, in children,
 * with the system's C++ compiler) and their variables for a rehearsal's CUDA commands, as
 * `REHEARSAL_CUDA_ENV` (the driver, cuBLASLt and NCCL) and `REHEARSAL_CUDA_NULL_ENV` (the null
 * device); none, saying why, where they cannot be built.
 */
async function emulatorVariables(): Promise<Record<string, string>> {
  const emulator = join(REPO_ROOT, "tests", "cuda_emulator");
  const build = async (script: string, args: string[] = []) => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, ...args],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(new TextDecoder().decode(r.stderr).split("\n")[0]);
    return new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!;
  };
  try {
    const cuda = JSON.parse(await build(join(emulator, "ffi.ts")));
    const nccl = JSON.parse(await build(join(emulator, "nccl_ffi.ts")));
    return {
      [REHEARSAL_CUDA_ENV]: JSON.stringify({ ...cuda, ...nccl }),
      [REHEARSAL_CUDA_NULL_ENV]: await build(join(emulator, "ffi.ts"), ["--null-device"]),
    };
  } catch (e) {
    console.log(
      `rehearsal: no CUDA emulator library (${(e as Error).message}): training on native, ` +
        "the bench stopped at the GPU",
    );
    return {};
  }
}

/**
 * Rehearses the check into `outDir` (`only`: `--only`'s steps) from a copy of what travels,
 * removed afterwards; returns whether every step passed.
 */
export async function rehearse(outDir: string, only: string | undefined): Promise<boolean> {
  const script = join(GPU_DIR, "run.sh");
  if (!existsSync(script)) {
    throw new Error(
      `Expected ${script} to rehearse, found none: run deno task device-check --prepare first`,
    );
  }
  const variables = await emulatorVariables();
  const place = await Deno.makeTempDir({ prefix: "device_check_rehearsal_" });
  try {
    const copy = join(place, "repo");
    const files = await travellingFiles();
    copyFiles(files, REPO_ROOT, copy);
    const bin = pathWithout(Deno.env.get("PATH") ?? "", HIDDEN_PROGRAMS, join(place, "bin"));
    console.log(
      `rehearsal: ${files.length} files of what travels copied to ${copy}; no ` +
        `${HIDDEN_PROGRAMS.join(", ")} on the PATH; offline`,
    );
    const refused = "http://127.0.0.1:9";
    const args = [
      join(copy, ".gpu", "run.sh"),
      resolve(outDir),
      "--scaled-down",
      ...(only ? ["--only", only] : []),
    ];
    const status = await new Deno.Command("bash", {
      args,
      cwd: copy,
      env: {
        ...variables,
        PATH: bin,
        HTTP_PROXY: refused,
        HTTPS_PROXY: refused,
        http_proxy: refused,
        https_proxy: refused,
        NO_PROXY: "127.0.0.1,localhost",
        no_proxy: "127.0.0.1,localhost",
      },
    }).spawn().status;
    return status.success;
  } finally {
    await Deno.remove(place, { recursive: true }).catch(() => {});
  }
}
