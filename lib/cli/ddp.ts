/**
 * `deno task ddp`: torchrun for this project. Starts `--nproc-per-node` ranks of
 * `deno task train` on this node with torchrun's environment, e.g.
 *
 * ```sh
 * deno task ddp --nproc-per-node 2 -- --preset shakespeare --steps 10
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { REPO_ROOT } from "../data/datasets.ts";
import {
  DEFAULT_STOP_GRACE_S,
  launch,
  MAX_NNODES,
  MAX_NPROC_PER_NODE,
  MAX_TIMEOUT_S,
} from "../ddp/launcher.ts";
import { type FlagValues, numberFlag, parseFlags, runMain, stringFlag } from "./flags.ts";

const HELP = `deno task ddp --nproc-per-node N [launcher flags] -- [train flags]

Runs deno task train as N data-parallel ranks on this node (torchrun's environment: RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Each rank's output is
prefixed with [rankN]; SIGINT/SIGTERM/SIGHUP are forwarded (the ranks checkpoint and stop); when a
rank dies the others get SIGTERM (rank 0 saves a checkpoint and says how to resume), SIGKILL
after --stop-grace seconds, and the launcher exits 1, naming the rank that died.

  --nproc-per-node N      ranks on this node, 1 to ${MAX_NPROC_PER_NODE} (required)
  --nnodes M              nodes in the job, 1 to ${MAX_NNODES} (default 1)
  --node-rank R           this node's index, 0 to M-1 (default 0)
  --master-addr A         where rank 0 listens for the rendezvous (default 127.0.0.1, loopback:
                          only this machine can connect; another address is for several nodes)
  --master-port P         its port, 1 to 65535 (default 29500)
  --timeout S             seconds a rendezvous or collective may wait, 0.1 to ${MAX_TIMEOUT_S}
                          (default 300)
  --stop-grace S          seconds the other ranks get to save and end once one has died, before
                          SIGKILL, 0 to ${MAX_TIMEOUT_S} (default ${DEFAULT_STOP_GRACE_S})
  --transport shm|tcp     data between ranks of a node: shared memory (default) or TCP
  -h, --help              this text

Only the job's ranks can join: each gets a random secret in its environment (GPT2_DDP_SECRET)
and proves it holds it at the rendezvous; other connections are refused and logged. With
--nnodes above 1, set GPT2_DDP_SECRET to the same random value on every node yourself
(export GPT2_DDP_SECRET=$(openssl rand -hex 32)). Shared-memory files of the job are removed
when it ends, however it ends.`;

await runMain(async () => {
  const split = Deno.args.indexOf("--");
  const own = split >= 0 ? Deno.args.slice(0, split) : Deno.args;
  const trainArgs = split >= 0 ? Deno.args.slice(split + 1) : [];
  const f = parseLauncherFlags(own);
  if (f.help) {
    console.log(HELP);
    return;
  }
  if (f["nproc-per-node"] === undefined) {
    throw new Error("Expected --nproc-per-node N (see --help)");
  }
  const transport = stringFlag(f, "transport", "shm");
  if (transport !== "shm" && transport !== "tcp") {
    throw new Error(`--transport expects shm or tcp, found "${transport}"`);
  }
  const code = await launch({
    nprocPerNode: numberFlag(f, "nproc-per-node", 1, {
      integer: true,
      min: 1,
      max: MAX_NPROC_PER_NODE,
    }),
    nnodes: numberFlag(f, "nnodes", 1, { integer: true, min: 1, max: MAX_NNODES }),
    nodeRank: numberFlag(f, "node-rank", 0, { integer: true, min: 0, max: MAX_NNODES - 1 }),
    masterAddr: stringFlag(f, "master-addr", "127.0.0.1"),
    masterPort: numberFlag(f, "master-port", 29500, { integer: true, min: 1, max: 65535 }),
    timeoutS: f.timeout !== undefined
      ? numberFlag(f, "timeout", 300, { min: 0.1, max: MAX_TIMEOUT_S })
      : undefined,
    stopGraceS: numberFlag(f, "stop-grace", DEFAULT_STOP_GRACE_S, { min: 0, max: MAX_TIMEOUT_S }),
    transport,
    // --script: another rank program (the DDP benchmark); default the train task
    script: stringFlag(f, "script", join(REPO_ROOT, "lib", "cli", "train.ts")),
    args: trainArgs,
  });
  if (code !== 0) Deno.exit(code);
});

/**
 * The launcher's own flags. An unknown one is most likely a train flag given without `--`
 * (`deno task ddp --nproc-per-node 2 --steps 10`): the error says where train flags go.
 */
function parseLauncherFlags(args: string[]): FlagValues {
  try {
    return parseFlags(args, {
      "nproc-per-node": { type: "string" },
      nnodes: { type: "string" },
      "node-rank": { type: "string" },
      "master-addr": { type: "string" },
      "master-port": { type: "string" },
      timeout: { type: "string" },
      "stop-grace": { type: "string" },
      transport: { type: "string" },
      script: { type: "string" },
      help: { type: "boolean", short: "h" },
    });
  } catch (e) {
    const unknown = /^Unknown option '([^']+)'/.exec((e as Error).message);
    if (unknown === null) throw e;
    throw new Error(
      `Unknown launcher option '${unknown[1]}': train flags go after --, as in ` +
        `deno task ddp --nproc-per-node 2 -- ${unknown[1]} ... (see --help)`,
    );
  }
}
