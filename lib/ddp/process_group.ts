/**
 * The process group of a data-parallel run: rendezvous, barrier, broadcast, all-gather and
 * all-reduce (sum, avg) between the ranks that `deno task ddp` starts (torch.distributed's
 * `init_process_group`, for Deno processes).
 *
 * - Rendezvous over TCP: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank
 *   connects and says who it is (rank, world size, node); rank 0 checks that every rank
 *   came once with the same world size, then sends a run id. These connections stay open
 *   as the control channel (small messages: `broadcastBytes`, `allGatherBytes`).
 * - Data within a node goes through shared memory: local rank 0 creates a file in /dev/shm,
 *   every rank maps it with libc `mmap` (FFI), and the file is unlinked as soon as all have
 *   mapped it, so a crash leaves nothing behind. An all-reduce copies each rank's chunk
 *   into its slot, each rank sums 1/N of the chunk for everyone (a reduce-scatter), and
 *   every rank copies the summed chunk out (the all-gather). Gradients can live in shared
 *   memory themselves (`gradientStorage`): then their all-reduce copies nothing. Ranks
 *   wait for each other on futexes: asleep in the kernel, not spinning.
 * - Across nodes (or with GPT2_DDP_TRANSPORT=tcp) data of the CPU backends goes through
 *   rank 0 over TCP: a correct, slow star.
 * - A backend whose buffers lie in device memory (`Backend.deviceMemory`: CUDA) gets NCCL,
 *   on one node and across nodes alike, as llm.c does: rank 0 calls `ncclGetUniqueId`,
 *   sends the 128 bytes to every rank with `broadcastBytes` over this rendezvous, each rank
 *   calls `ncclCommInitRank(comm, worldSize, id, rank)` on its backend's GPU (`LOCAL_RANK`),
 *   and the group's `allReduceDevice` and `broadcastDevice` run `ncclAllReduce(...,
 *   ncclAvg)` and `ncclBroadcast` on device buffers; the training loop uses them when a
 *   group has them, and the host round trip otherwise.
 *
 * Every collective must be called by every rank in the same order; each fails after the
 * group's timeout naming the rank it waited for.
 *
 * This entry module re-exports the folder's pieces:
 * - `collectives.ts`: the {@linkcode ProcessGroup} interface, and the group without DDP;
 * - `dist_env.ts`: torchrun's environment variables;
 * - `rendezvous.ts` and `tcp_group.ts`: the rendezvous, the control channel, the TCP path;
 * - `shm_group.ts`: the shared-memory group; `shm_gradients.ts`: gradients that live in
 *   shared memory, all-reduced where they are (`ProcessGroup.gradientStorage`);
 * - `nccl_group.ts`: the NCCL group of device backends (over lib/backends/cuda/nccl.ts),
 *   imported only by a run that uses it;
 * - `channel.ts` (framed TCP messages) and `libc.ts` (mmap, futex) underneath.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import type { ProcessGroup } from "./collectives.ts";
import type { DistEnv } from "./dist_env.ts";
import { rendezvous } from "./rendezvous.ts";
import { ShmProcessGroup } from "./shm_group.ts";

export {
  type GradientStorage,
  type GradientStorageResult,
  type ProcessGroup,
  type ReduceOp,
  SingleProcessGroup,
} from "./collectives.ts";
export { type DistEnv, distEnvFromEnv } from "./dist_env.ts";
export { ShmProcessGroup } from "./shm_group.ts";
export { TcpProcessGroup } from "./tcp_group.ts";

/** Options of {@linkcode initProcessGroup}. */
export interface InitOptions {
  /** How long any rendezvous or collective may wait, in milliseconds. */
  timeoutMs: number;
  /**
   * "shm" (default within one node) or "tcp" (forced through rank 0). A device backend gets
   * NCCL unless "tcp" is forced (then its buffers go through the host: slow, for debugging).
   */
  transport?: "shm" | "tcp";
  /** Chunk of an all-reduce, in floats per rank (default 4M: 16 MiB slots). */
  chunkFloats?: number;
  /**
   * The backend this rank computes on, created before the group: one whose buffers lie in
   * device memory (`Backend.deviceMemory`, CUDA on GPU `LOCAL_RANK`) gets an NCCL group.
   */
  backend?: Backend;
}

/** What carries a group's data: see {@linkcode chooseTransport}. */
export type Transport = "single" | "shm" | "tcp" | "nccl";

/**
 * The transport {@linkcode initProcessGroup} sets up: none for one rank; NCCL for a backend
 * with device memory (unless "tcp" is forced); shared memory for host backends on one node
 * (unless "tcp" is forced); else TCP through rank 0.
 */
export function chooseTransport(
  env: DistEnv,
  options: Pick<InitOptions, "transport" | "backend">,
): Transport {
  const transport = options.transport ?? "shm";
  if (env.worldSize === 1) return "single";
  if (transport === "tcp") return "tcp";
  if (options.backend?.deviceMemory) return "nccl";
  return env.localWorldSize === env.worldSize ? "shm" : "tcp";
}

/**
 * Joins the group described by `env`: rendezvous, then the transport's set-up (NCCL's in
 * nccl_group.ts, loaded only then: a CPU run never opens NCCL or the CUDA driver).
 */
export async function initProcessGroup(env: DistEnv, options: InitOptions): Promise<ProcessGroup> {
  const transport = chooseTransport(env, options);
  const backend = options.backend;
  if (transport === "nccl" && backend) {
    const { initNcclGroup } = await import("./nccl_group.ts");
    return await initNcclGroup(env, backend, options.timeoutMs);
  }
  const control = await rendezvous(env, options.timeoutMs);
  if (transport === "shm") {
    return await ShmProcessGroup.create(control, options.chunkFloats ?? 4 * 1024 * 1024);
  }
  return control;
}
