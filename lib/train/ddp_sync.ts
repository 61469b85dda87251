/**
 * What DDP does to a model between the ranks of a process group: every rank starts from rank
 * 0's weights, and after the last micro-step of each optimizer step the gradients are
 * averaged. Buffers in host memory (`Backend.hostView`) are reduced in place; others go
 * through the host with `read`/`write`, or stay on the device where the group can reduce
 * device buffers itself (`ProcessGroup.allReduceDevice`, NCCL).
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";
import type { ProcessGroup } from "../ddp/process_group.ts";
import type { GPT } from "../model/gpt.ts";
import { gradBuffer } from "../model/tensor.ts";

/** Every rank's weights become rank 0's, as DDP does at construction. */
export async function broadcastParameters(model: GPT, group: ProcessGroup): Promise<void> {
  await reduceHost(
    model.backend,
    model.parameters().map((p) => p.buffer),
    (views) => group.broadcast(views, 0),
  );
}

/**
 * Averages every parameter's gradient over the ranks, in one all-reduce over all of them
 * (DDP's `require_backward_grad_sync` on the last micro-step only).
 */
export async function allReduceGradients(model: GPT, group: ProcessGroup): Promise<void> {
  const params = model.parameters();
  const grads = params.map((p) => gradBuffer(p)); // a tensor with no gradient adds zeros
  if (group.allReduceDevice) {
    await group.allReduceDevice(model.backend, grads, "avg");
    return;
  }
  await reduceHost(model.backend, grads, (views) => group.allReduce(views, "avg"));
}

/**
 * Runs `fn` on host views of `buffers`: the arrays themselves on the CPU backend (no copy),
 * else copies that are written back afterwards.
 */
async function reduceHost(
  backend: Backend,
  buffers: DeviceBuffer[],
  fn: (views: Float32Array[]) => Promise<void>,
): Promise<void> {
  const hostView = backend.hostView?.bind(backend);
  if (hostView) {
    await fn(buffers.map((b) => hostView(b) as Float32Array));
    return;
  }
  const views = await Promise.all(
    buffers.map(async (b) => (await backend.read(b)) as Float32Array),
  );
  await fn(views);
  buffers.forEach((b, i) => backend.write(b, views[i]));
}
