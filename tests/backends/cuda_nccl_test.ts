// NCCL and the CUDA fence on a GPU (lib/backends/cuda/nccl.ts, lib/ddp/nccl_group.ts): a
// one-rank NCCL communicator over the CUDA backend's stream (all-reduce sum and average and
// a broadcast leave one rank's buffers as they were, finalize and destroy), and the fence
// (CudaFence: the device count, the stream's context, a mark the stream passes). The 2-GPU
// run is in tests/ddp/nccl_test.ts. Ignored, with the reason printed, without a usable GPU or
// NCCL.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { createCudaBackend, cudaUnavailable } from "../../lib/backends/cuda/mod.ts";
import { CudaFence, NcclLibrary } from "../../lib/backends/cuda/nccl.ts";
import { NcclProcessGroup } from "../../lib/ddp/nccl_group.ts";
import { rendezvous } from "../../lib/ddp/rendezvous.ts";
import { freePort } from "../support.ts";

/** Why this file cannot run here, or null. */
async function unavailable(): Promise<string | null> {
  const missing = await cudaUnavailable();
  if (missing) return missing;
  try {
    NcclLibrary.open().close();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

const reason = await unavailable();
if (reason !== null) {
  console.log(`cuda nccl: skipped: ${reason}`);
  Deno.test({
    name: "cuda nccl: one rank and the fence (no usable GPU or NCCL)",
    ignore: true,
    fn() {},
  });
} else {
  Deno.test("cuda nccl: the fence sees the device, makes the stream's context current and passes a mark", async () => {
    const backend = await createCudaBackend({ quiet: true });
    const fence = CudaFence.open();
    try {
      const buf = backend.upload(Float32Array.of(1, 2, 3));
      const { stream, device } = backend.deviceMemory(buf);
      ok(fence.deviceCount() >= 1, `Expected a CUDA device, found ${fence.deviceCount()}`);
      assertEquals(fence.useStreamContext(stream), device);
      fence.mark(stream);
      const t0 = performance.now();
      while (!fence.passed()) {
        ok(performance.now() - t0 < 10_000, "Expected the stream to pass the mark within 10 s");
        await new Promise((r) => setTimeout(r, 1));
      }
      assertEquals([...await backend.read(buf)], [1, 2, 3]);
    } finally {
      fence.close();
      backend.destroy?.();
    }
  });

  Deno.test("cuda nccl: a one-rank communicator all-reduces and broadcasts on the backend's stream", async () => {
    const backend = await createCudaBackend({ quiet: true });
    const env = {
      rank: 0,
      localRank: 0,
      worldSize: 1,
      localWorldSize: 1,
      nodeRank: 0,
      masterAddr: "127.0.0.1",
      masterPort: freePort(),
    };
    const control = await rendezvous(env, 30_000);
    let group: NcclProcessGroup | null = null;
    try {
      group = await NcclProcessGroup.create(control, backend, {
        nccl: NcclLibrary.open(),
        device: CudaFence.open(),
      });
      ok(/^1 ranks? over NCCL \d+\.\d+\.\d+/.test(group.describe()), group.describe());
      const bufs = [backend.upload(Float32Array.of(1, 2)), backend.upload(Float32Array.of(-3))];
      for (const op of ["sum", "avg"] as const) {
        await group.allReduceDevice(backend, bufs, op);
        assertEquals([...await backend.read(bufs[0])], [1, 2]);
        assertEquals([...await backend.read(bufs[1])], [-3]);
      }
      await group.broadcastDevice(backend, bufs, 0);
      assertEquals([...await backend.read(bufs[0])], [1, 2]);
    } finally {
      if (group) group.close();
      else control.close();
      backend.destroy?.();
    }
  });
}
