/**
 * Where this rank sits in a data-parallel job, from torchrun's environment variables (which
 * `deno task ddp` sets the same way).
 *
 * @module
 */

/** Where this rank sits, as torchrun's environment says. */
export interface DistEnv {
  rank: number;
  localRank: number;
  worldSize: number;
  localWorldSize: number;
  /** GROUP_RANK: which node. */
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /**
   * The job's secret (GPT2_DDP_SECRET, which `deno task ddp` sets to a random value for its
   * ranks): a rank must prove it holds it to join the rendezvous.
   */
  secret?: string;
}

/**
 * torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK,
 * MASTER_ADDR, MASTER_PORT) and the job's GPT2_DDP_SECRET, or null when RANK is unset (not a
 * DDP run).
 */
export function distEnvFromEnv(
  get: (k: string) => string | undefined = (k) => Deno.env.get(k),
): DistEnv | null {
  if (get("RANK") === undefined) return null;
  const int = (name: string, fallback?: number): number => {
    const raw = get(name);
    if (raw === undefined && fallback !== undefined) return fallback;
    const n = Number(raw);
    if (raw === undefined || raw.trim() === "" || !Number.isInteger(n) || n < 0) {
      throw new Error(`Expected a non-negative integer in $${name}, found "${raw ?? ""}"`);
    }
    return n;
  };
  const worldSize = int("WORLD_SIZE");
  const rank = int("RANK");
  if (worldSize < 1 || rank >= worldSize) {
    throw new Error(`Expected RANK < WORLD_SIZE, found RANK=${rank}, WORLD_SIZE=${worldSize}`);
  }
  const localWorldSize = int("LOCAL_WORLD_SIZE", worldSize);
  const localRank = int("LOCAL_RANK", rank % localWorldSize);
  if (localRank >= localWorldSize) {
    throw new Error(
      `Expected LOCAL_RANK < LOCAL_WORLD_SIZE, found ${localRank} and ${localWorldSize}`,
    );
  }
  const secret = get("GPT2_DDP_SECRET");
  return {
    rank,
    localRank,
    worldSize,
    localWorldSize,
    nodeRank: int("GROUP_RANK", Math.floor(rank / localWorldSize)),
    masterAddr: get("MASTER_ADDR") ?? "127.0.0.1",
    masterPort: int("MASTER_PORT", 29500),
    ...(secret ? { secret } : {}),
  };
}
