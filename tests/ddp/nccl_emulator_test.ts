// The NCCL binding (lib/backends/cuda/nccl.ts) against the CPU emulator's NCCL
// (tests/cuda_emulator/libnccl_emu.cpp) through Deno FFI: GPT2_NCCL_LIB replaces the search
// for libnccl.so.2, a one-rank communicator is set up without blocking, reduces and
// broadcasts in place on host memory, and is finalized and destroyed; what NCCL refuses is
// refused with its result code and its words. The one-rank process group over the emulator's
// CUDA backend and CudaFence is tests/backends/cuda_nccl_test.ts, which the device check's
// rehearsal runs on these libraries (tests/device_check/).
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { findCudaLibrary } from "../../lib/backends/cuda/libraries.ts";
import {
  NCCL_UNIQUE_ID_BYTES,
  NcclDataType,
  NcclLibrary,
  NcclRedOp,
  NcclResult,
} from "../../lib/backends/cuda/nccl.ts";
import { buildNcclEmulatorLibrary } from "../cuda_emulator/nccl_ffi.ts";
import { hasCxx } from "../support.ts";

const ignore = !(await hasCxx());
if (ignore) console.log("nccl emulator: skipped: no C++ compiler to build libnccl_emu.cpp");

/** A host array's address, as NCCL takes a device pointer (the emulator's memory is the host's). */
function pointerOf(a: Float32Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a)));
}

/** A one-rank communicator of the emulator's NCCL, ready. */
function oneRank(nccl: NcclLibrary): bigint {
  const { rc: idRc, id } = nccl.uniqueId();
  assertEquals(idRc, NcclResult.success);
  assertEquals(id.byteLength, NCCL_UNIQUE_ID_BYTES);
  const { rc, comm } = nccl.initRankNonBlocking(1, id, 0);
  assertEquals(rc, NcclResult.inProgress); // non-blocking: the state says when it is ready
  ok(comm !== 0n);
  assertEquals(nccl.asyncError(comm), NcclResult.success);
  return comm;
}

Deno.test({
  name: "nccl emulator: GPT2_NCCL_LIB replaces the search, and NCCL opens the library it names",
  ignore,
  async fn() {
    const path = await buildNcclEmulatorLibrary();
    const saved = Deno.env.get("GPT2_NCCL_LIB");
    try {
      Deno.env.set("GPT2_NCCL_LIB", path);
      assertEquals(findCudaLibrary("nccl"), { path, tried: [`GPT2_NCCL_LIB: ${path}`] });
      const nccl = NcclLibrary.open();
      assertEquals([nccl.path, nccl.version], [path, "2.27.3"]);
      nccl.close();
      Deno.env.set("GPT2_NCCL_LIB", `${path}.missing`);
      assertEquals(findCudaLibrary("nccl").path, null);
    } finally {
      if (saved === undefined) Deno.env.delete("GPT2_NCCL_LIB");
      else Deno.env.set("GPT2_NCCL_LIB", saved);
    }
  },
});

Deno.test({
  name:
    "nccl emulator: a one-rank communicator reduces and broadcasts in place, then is finalized and destroyed",
  ignore,
  async fn() {
    const nccl = NcclLibrary.open(await buildNcclEmulatorLibrary());
    try {
      const comm = oneRank(nccl);
      assertEquals(nccl.commInfo(comm), { rc: 0, count: 1, device: 0, rank: 0 });
      const data = Float32Array.of(1.5, -2, 3);
      assertEquals(nccl.groupStart(), NcclResult.success);
      for (const op of [NcclRedOp.sum, NcclRedOp.avg]) {
        assertEquals(
          nccl.allReduce(pointerOf(data), 3, NcclDataType.float32, op, comm, 0n),
          NcclResult.success,
        );
      }
      assertEquals(
        nccl.broadcast(pointerOf(data), 3, NcclDataType.float32, 0, comm, 0n),
        NcclResult.success,
      );
      assertEquals(nccl.groupEnd(), NcclResult.success);
      assertEquals([...data], [1.5, -2, 3]);
      assertEquals(nccl.finalize(comm), NcclResult.inProgress);
      assertEquals(nccl.asyncError(comm), NcclResult.success);
      assertEquals(nccl.destroy(comm), NcclResult.success);
    } finally {
      nccl.close();
    }
  },
});

Deno.test({
  name: "nccl emulator: what NCCL refuses is refused, with the result code and the reason",
  ignore,
  async fn() {
    const nccl = NcclLibrary.open(await buildNcclEmulatorLibrary());
    try {
      const { id } = nccl.uniqueId();
      const two = nccl.initRankNonBlocking(2, id, 1);
      assertEquals(two.rc, NcclResult.invalidUsage);
      ok(/communicators of one rank, found 2 ranks/.test(nccl.lastError(0n)), nccl.lastError(0n));
      assertEquals(nccl.initRankNonBlocking(1, id, 1).rc, NcclResult.invalidArgument);
      const foreign = new Uint8Array(NCCL_UNIQUE_ID_BYTES).fill(7);
      assertEquals(nccl.initRankNonBlocking(1, foreign, 0).rc, NcclResult.invalidArgument);
      ok(/not ncclGetUniqueId's/.test(nccl.lastError(0n)), nccl.lastError(0n));
      const comm = oneRank(nccl);
      const data = Float32Array.of(1);
      assertEquals(
        nccl.broadcast(pointerOf(data), 1, NcclDataType.float32, 1, comm, 0n),
        NcclResult.invalidArgument,
      );
      ok(/root 1 of 1 ranks/.test(nccl.lastError(comm)), nccl.lastError(comm));
      assertEquals(
        nccl.allReduce(pointerOf(data), 1, NcclDataType.float32, 9, comm, 0n),
        NcclResult.invalidArgument,
      );
      assertEquals(
        nccl.allReduce(0n, 1, NcclDataType.float32, NcclRedOp.sum, comm, 0n),
        NcclResult.invalidArgument,
      );
      assertEquals(nccl.groupEnd(), NcclResult.invalidUsage); // no group open
      ok(nccl.errorString(NcclResult.invalidUsage).startsWith("invalid usage"));
      assertEquals(nccl.abort(comm), NcclResult.success);
      assertEquals(nccl.asyncError(comm), NcclResult.invalidArgument); // gone
    } finally {
      nccl.close();
    }
  },
});
