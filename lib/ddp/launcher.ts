/**
 * The launcher behind `deno task ddp` (torchrun for Deno): starts this node's ranks as Deno
 * subprocesses with torchrun's environment, prefixes their output with `[rankN]`, forwards
 * SIGINT/SIGTERM/SIGHUP to them, and when one rank dies, stops the others and exits non-zero naming
 * the rank and its last lines of output. The others are stopped as torchrun stops them:
 * SIGTERM (with SIGCONT, for a rank that was suspended), then SIGKILL for any still running
 * after a grace period, so that rank 0 can save its checkpoint and say how to resume.
 *
 * The ranks get a random secret for the rendezvous (GPT2_DDP_SECRET, in their environment,
 * never on a command line, so that other users' `ps` cannot read it): a process that is not
 * one of them cannot join the job. A job of several nodes needs the same secret on each, so
 * there it must be set by the user. Once the ranks have exited (however they ended) the
 * launcher removes the shared-memory files its job left, and at its start those of launchers
 * that are gone.
 *
 * @module
 */

import { removeJobSegments, removeStaleSegments } from "./shm_names.ts";

/**
 * The most ranks one node runs: each is a process with its own copy of the model, and more
 * than a node's accelerators or cores only slows the job down (and can exhaust the memory).
 */
export const MAX_NPROC_PER_NODE = 64;
/** The most nodes in a job. */
export const MAX_NNODES = 1024;
/**
 * The longest wait of a rendezvous or collective, one day: longer is never what a job wants,
 * and beyond 2^31 ms a timer fires at once.
 */
export const MAX_TIMEOUT_S = 86_400;
/**
 * The default seconds a rank is given to save and end after the launcher asks it to stop
 * (torchrun's 30 s): a 124M checkpoint is about 1.5 GB to write.
 */
export const DEFAULT_STOP_GRACE_S = 30;

/** Options of {@linkcode launch}. */
export interface LaunchOptions {
  /** Ranks on this node. */
  nprocPerNode: number;
  /** Nodes in the job (default 1). */
  nnodes?: number;
  /** This node's index (default 0). */
  nodeRank?: number;
  /** Where rank 0 listens for the rendezvous (default 127.0.0.1). */
  masterAddr?: string;
  /** Its port (default 29500). */
  masterPort?: number;
  /** The script each rank runs. */
  script: string;
  /** Its arguments. */
  args: string[];
  /** Seconds a collective may wait, passed to the ranks as GPT2_DDP_TIMEOUT. */
  timeoutS?: number;
  /** "shm" (default) or "tcp", passed as GPT2_DDP_TRANSPORT. */
  transport?: string;
  /**
   * Seconds the other ranks get, once one has died, between SIGTERM and SIGKILL
   * (default {@linkcode DEFAULT_STOP_GRACE_S}).
   */
  stopGraceS?: number;
  /** Lines of output kept per rank for the failure report (default 20). */
  tailLines?: number;
  /** Where prefixed output goes (default: this process's stdout/stderr). */
  write?: (stream: "stdout" | "stderr", line: string) => void;
  /**
   * The rendezvous secret given to the ranks: GPT2_DDP_SECRET of this process's environment
   * when set (required for several nodes, the same on each), else 32 random bytes.
   */
  secret?: string;
}

/** Why a rank ended. */
export interface RankExit {
  rank: number;
  pid: number;
  code: number;
  signal: Deno.Signal | null;
}

function defaultWrite(stream: "stdout" | "stderr", line: string): void {
  if (stream === "stdout") console.log(line);
  else console.error(line);
}

/**
 * Runs the job's ranks on this node; resolves to the exit code the launcher should end with:
 * 0 when every rank exited 0, 1 otherwise (the failed rank is reported on stderr).
 */
export async function launch(o: LaunchOptions): Promise<number> {
  const nnodes = o.nnodes ?? 1, nodeRank = o.nodeRank ?? 0, N = o.nprocPerNode;
  const masterAddr = o.masterAddr ?? "127.0.0.1", masterPort = o.masterPort ?? 29500;
  const write = o.write ?? defaultWrite;
  const tailLines = o.tailLines ?? 20;
  if (!Number.isInteger(N) || N < 1 || N > MAX_NPROC_PER_NODE) {
    throw new Error(
      `--nproc-per-node expects an integer in [1, ${MAX_NPROC_PER_NODE}], found ${N}`,
    );
  }
  if (!Number.isInteger(nnodes) || nnodes < 1 || nnodes > MAX_NNODES) {
    throw new Error(`--nnodes expects an integer in [1, ${MAX_NNODES}], found ${nnodes}`);
  }
  if (
    o.timeoutS !== undefined && !(o.timeoutS >= 0.1 && o.timeoutS <= MAX_TIMEOUT_S)
  ) {
    throw new Error(`--timeout expects a number in [0.1, ${MAX_TIMEOUT_S}], found ${o.timeoutS}`);
  }
  const stopGraceS = o.stopGraceS ?? DEFAULT_STOP_GRACE_S;
  if (!(stopGraceS >= 0 && stopGraceS <= MAX_TIMEOUT_S)) {
    throw new Error(`--stop-grace expects a number in [0, ${MAX_TIMEOUT_S}], found ${stopGraceS}`);
  }
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) {
    throw new Error(`--node-rank ${nodeRank} must be in [0, --nnodes ${nnodes})`);
  }
  const secret = o.secret ?? Deno.env.get("GPT2_DDP_SECRET") ?? "";
  if (nnodes > 1 && secret === "") {
    throw new Error(
      `A job of --nnodes ${nnodes} needs GPT2_DDP_SECRET set to the same random value on every ` +
        "node (e.g. export GPT2_DDP_SECRET=$(openssl rand -hex 32)), so that only the job's " +
        "ranks can join the rendezvous",
    );
  }
  if (nodeRank === 0) checkPortFree(masterAddr, masterPort);
  const world = N * nnodes;
  const runId = crypto.randomUUID().slice(0, 8);
  const place = {
    world,
    nodeRank,
    masterAddr,
    masterPort,
    runId,
    secret: secret || randomSecret(),
  };
  for (const path of removeStaleSegments()) {
    write("stderr", `[launcher] removed ${path}, left by a job whose launcher is gone`);
  }

  const children: { rank: number; child: Deno.ChildProcess; tail: string[] }[] = [];
  try {
    for (let local = 0; local < N; local++) {
      const rank = nodeRank * N + local;
      const child = spawnRank(o, { ...place, rank, local });
      write("stdout", `[launcher] rank ${rank}: pid ${child.pid}`);
      children.push({ rank, child, tail: [] });
    }
    return await supervise(children, write, tailLines, stopGraceS);
  } catch (e) {
    for (const { child } of children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    throw e;
  } finally {
    // however the ranks ended: no shared-memory file of this job outlives it
    for (const { child } of children) await child.status.catch(() => {});
    for (const path of removeJobSegments(Deno.pid)) {
      write("stderr", `[launcher] removed ${path}, left by a rank that ended early`);
    }
  }
}

/** 32 random bytes, hex: the rendezvous secret of a job on one node. */
function randomSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A rank's process, and its last lines of output. */
interface RankChild {
  rank: number;
  child: Deno.ChildProcess;
  tail: string[];
}

/** Sends `signal` to a rank unless it has ended already. */
function signalRank(c: RankChild, signal: Deno.Signal): void {
  try {
    c.child.kill(signal);
  } catch {
    // already gone
  }
}

/**
 * Pumps the ranks' output, forwards signals, and waits for them: the exit code of the
 * launcher (1 when a rank failed). A failed rank's peers wait on it in a collective: they
 * get SIGTERM at once, which a trainer answers by saving a checkpoint and ending (rank 0's
 * collective fails as soon as the dead rank is noticed), and SIGKILL after `stopGraceS`.
 */
async function supervise(
  children: RankChild[],
  write: (stream: "stdout" | "stderr", line: string) => void,
  tailLines: number,
  stopGraceS: number,
): Promise<number> {
  const pumps = children.flatMap(({ rank, child, tail }) =>
    (["stdout", "stderr"] as const).map((stream) =>
      pumpLines(child[stream], (line) => {
        tail.push(line);
        if (tail.length > tailLines) tail.shift();
        write(stream, `[rank${rank}] ${line}`);
      })
    )
  );

  // signals: forwarded once (the ranks checkpoint and stop); a second one kills
  let forwarded = 0;
  const forward = (sig: Deno.Signal) => () => {
    forwarded++;
    for (const { child } of children) {
      try {
        child.kill(forwarded > 1 ? "SIGKILL" : sig);
      } catch {
        // already gone
      }
    }
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGINT", forward("SIGINT")],
    ["SIGTERM", forward("SIGTERM")],
    // a closed terminal or a dropped ssh session: the ranks stop as on Ctrl-C, not the launcher alone
    ["SIGHUP", forward("SIGHUP")],
  ];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);

  try {
    const pending = new Map(
      children.map(({ rank, child }) => [
        rank,
        child.status.then((s): RankExit => ({
          rank,
          pid: child.pid,
          code: s.code,
          signal: s.signal,
        })),
      ]),
    );
    let failed: RankExit | null = null;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const stopped: StoppedRank[] = [];
    while (pending.size) {
      const done = await Promise.race(pending.values());
      pending.delete(done.rank);
      if (failed) {
        stopped.push({ ...done, killed: graceTimer === undefined && done.signal === "SIGKILL" });
      }
      if (done.code !== 0 && !failed) {
        failed = done;
        if (pending.size === 0) break;
        // the others wait on the dead rank in a collective: ask them to save and stop
        const others = children.filter((c) => pending.has(c.rank));
        for (const c of others) {
          signalRank(c, "SIGTERM");
          signalRank(c, "SIGCONT"); // a suspended rank could not act on the SIGTERM
        }
        graceTimer = setTimeout(() => {
          graceTimer = undefined;
          for (const c of others) if (pending.has(c.rank)) signalRank(c, "SIGKILL");
        }, stopGraceS * 1000);
      }
    }
    clearTimeout(graceTimer);
    await Promise.all(pumps);
    if (failed) {
      write("stderr", failureReport(failed, children, stopped, stopGraceS));
      return 1;
    }
    return 0;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

/** How a rank the launcher stopped ended; `killed`: by SIGKILL after the grace period. */
interface StoppedRank extends RankExit {
  killed: boolean;
}

/** Where a rank sits in the job, as torchrun's environment says it. */
interface RankPlace {
  rank: number;
  local: number;
  world: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  runId: string;
  secret: string;
}

/** Starts one rank with torchrun's environment, its output piped to the launcher. */
function spawnRank(o: LaunchOptions, p: RankPlace): Deno.ChildProcess {
  const N = o.nprocPerNode;
  const env: Record<string, string> = {
    RANK: String(p.rank),
    LOCAL_RANK: String(p.local),
    WORLD_SIZE: String(p.world),
    LOCAL_WORLD_SIZE: String(N),
    GROUP_RANK: String(p.nodeRank),
    ROLE_RANK: String(p.rank),
    ROLE_WORLD_SIZE: String(p.world),
    MASTER_ADDR: p.masterAddr,
    MASTER_PORT: String(p.masterPort),
    TORCHELASTIC_RUN_ID: p.runId,
    GPT2_DDP_LAUNCHER_PID: String(Deno.pid),
    // in the environment, which only this user can read, not in the arguments
    GPT2_DDP_SECRET: p.secret,
  };
  // as torchrun does: N ranks share the cores, so each gets its share of threads
  // (OpenMP and OpenBLAS in the native backend) unless the user said otherwise
  const threads = String(Math.max(1, Math.floor(navigator.hardwareConcurrency / N)));
  for (const k of ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"]) {
    if (Deno.env.get(k) === undefined) env[k] = threads;
  }
  if (o.timeoutS !== undefined) env.GPT2_DDP_TIMEOUT = String(o.timeoutS);
  if (o.transport) env.GPT2_DDP_TRANSPORT = o.transport;
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", o.script, ...o.args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** How a rank ended, in words. */
function howItEnded(e: RankExit): string {
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

/**
 * The failed rank, how it ended, its last lines; the ranks the launcher stopped and how they
 * ended; and the command to continue with, where one of them saved a checkpoint and said it.
 */
function failureReport(
  failed: RankExit,
  children: { rank: number; tail: string[] }[],
  stopped: StoppedRank[],
  stopGraceS: number,
): string {
  const tail = children.find((c) => c.rank === failed.rank)!.tail;
  const lines = [
    `error: rank ${failed.rank} (pid ${failed.pid}) ${howItEnded(failed)}; its last lines:`,
    ...(tail.length ? tail.map((l) => `  ${l}`) : ["  (no output)"]),
  ];
  if (stopped.length) {
    lines.push(
      `the launcher stopped rank(s) ${stopped.map((s) => s.rank).join(", ")} (SIGTERM, then ` +
        `SIGKILL after ${stopGraceS} s): ${
          stopped.map((s) =>
            `rank ${s.rank} ${
              s.killed ? `did not end within ${stopGraceS} s and was killed` : howItEnded(s)
            }`
          ).join(", ")
        }`,
    );
  }
  // rank 0's "... continue with <command> --resume <checkpoint>", the last thing to read
  const resume = children.flatMap((c) => c.tail).map((l) =>
    /continue with (.* --resume \S+)/.exec(l)
  )
    .filter((m) => m !== null).at(-1);
  if (resume) lines.push(`to continue: ${resume[1]}`);
  return lines.join("\n");
}

/** Fails with a clear message when nothing can listen on host:port. */
export function checkPortFree(host: string, port: number): void {
  try {
    Deno.listen({ hostname: host, port }).close();
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `Port ${port} on ${host} is already in use (--master-port): another job holds it; pick another, e.g. --master-port ${
          port + 1
        }`,
      );
    }
    throw new Error(
      `Cannot listen on ${host}:${port} (--master-addr, --master-port): ${(e as Error).message}`,
    );
  }
}

/** Calls `onLine` for each line of a byte stream (the last one even without a newline). */
async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = rest.indexOf("\n")) >= 0) {
      onLine(rest.slice(0, i));
      rest = rest.slice(i + 1);
    }
  }
  rest += decoder.decode();
  if (rest) onLine(rest);
}
