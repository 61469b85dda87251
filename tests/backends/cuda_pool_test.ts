// lib/backends/cuda/memory.ts's caching allocator over a stand-in driver (addresses only):
// a step served wholly from the pool runs no garbage collection, one that had to take
// memory from the driver runs one at the next read-back, and a released block serves the
// next allocation of its size class.
import { equal, ok } from "node:assert/strict";
import type { CudaDriver } from "../../lib/backends/cuda/driver.ts";
import { DevicePool } from "../../lib/backends/cuda/memory.ts";

/** The driver calls the pool makes, over a counter of addresses. */
function fakeDriver(): { driver: CudaDriver; allocs: () => number } {
  let next = 0x1000n, allocs = 0;
  const stand = {
    tryAlloc(bytes: number): bigint {
      allocs++;
      const p = next;
      next += BigInt(bytes);
      return p;
    },
    free(): void {},
    synchronize(): void {},
    memoryInfo: () => ({ free: 2 ** 34, total: 2 ** 34 }),
  };
  return { driver: stand as unknown as CudaDriver, allocs: () => allocs };
}

const MIB = 2 ** 20;

Deno.test("DevicePool: blocks the pool serves again trigger no collection at read-backs", () => {
  const { driver, allocs } = fakeDriver();
  const pool = new DevicePool(driver, { softLimit: 2 ** 33, collectEvery: 64 * MIB });
  // 1000 "steps" of the same eight 4 MiB tensors, each released after use: 32 GiB handed
  // out, 32 MiB taken from the driver
  for (let step = 0; step < 1000; step++) {
    const owners = Array.from({ length: 8 }, () => pool.allocate(4 * MIB, (p) => ({ p })));
    for (const o of owners) pool.release(o);
    pool.collectIfDue();
  }
  equal(allocs(), 8);
  equal(pool.collections, 0, `Expected no collection, found ${pool.collections}`);
  ok(pool.reused >= 7992, `reused ${pool.reused}`);
});

Deno.test("DevicePool: memory taken from the driver past collectEvery is collected at the next read-back", () => {
  const { driver } = fakeDriver();
  const pool = new DevicePool(driver, { softLimit: 2 ** 33, collectEvery: 64 * MIB });
  const kept: object[] = [];
  for (let i = 0; i < 15; i++) kept.push(pool.allocate(4 * MIB, (p) => ({ p })));
  pool.collectIfDue();
  equal(pool.collections, 0, "60 MiB from the driver: not yet due");
  kept.push(pool.allocate(4 * MIB, (p) => ({ p })));
  pool.collectIfDue();
  equal(pool.collections, 1, "64 MiB from the driver: due");
  pool.collectIfDue();
  equal(pool.collections, 1, "nothing taken since");
  equal(kept.length, 16);
});
