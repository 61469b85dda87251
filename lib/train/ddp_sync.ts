/**
 * What DDP does to a model between the ranks of a process group: every rank starts from rank
 * 0's weights, and after the last micro-step of each optimizer step the gradients are
 * averaged.
 *
 * Where the gradients are reduced, fastest first:
 * - where {@linkcode placeGradients} put them in the group's gradient storage (shared memory
 *   on one node, a backend with `Backend.wrapHost`): where they are, nothing copied;
 * - on the device, where the group reduces device buffers itself (`allReduceDevice`, NCCL:
 *   the backend's buffers lie in device memory, `Backend.deviceMemory`);
 * - buffers in host memory (`Backend.hostView`): in place, through the group's `allReduce`
 *   (which copies them through its slots);
 * - other buffers: through the host with `read`/`write`.
 *
 * @module
 */

import type { Backend, DeviceBuffer } from "../backend.ts";
import type { GradientStorage, ProcessGroup } from "../ddp/process_group.ts";
import type { GPT } from "../model/gpt.ts";
import { gradBuffer, Tensor } from "../model/tensor.ts";

/**
 * Every rank's weights become rank 0's, as DDP does at construction: on the device where the
 * group broadcasts device buffers (NCCL), else through host views or copies.
 */
export async function broadcastParameters(model: GPT, group: ProcessGroup): Promise<void> {
  const buffers = model.parameters().map((p) => p.buffer);
  if (group.broadcastDevice && model.backend.deviceMemory) {
    await group.broadcastDevice(model.backend, buffers, 0);
    return;
  }
  await reduceHost(model.backend, buffers, (views) => group.broadcast(views, 0));
}

/** What {@linkcode placeGradients} did. */
export interface GradientPlacement {
  /** True when the gradients now live in the group's storage and are reduced there. */
  inPlace: boolean;
  /** One line for the run's log: where the gradients are, or why they stay where they were. */
  note: string;
}

/** Gradients that `placeGradients` put in a group's storage: the storage and the tensors. */
interface Placement {
  group: ProcessGroup;
  storage: GradientStorage;
  grads: Tensor[];
  note: string;
}

const placements = new WeakMap<GPT, Placement>();

/** The model's placement in `group`, while every parameter's gradient is still the placed one. */
function currentPlacement(model: GPT, group: ProcessGroup): Placement | null {
  const placed = placements.get(model);
  if (!placed || placed.group !== group) return null;
  const params = model.parameters();
  return params.every((p, i) => p.grad === placed.grads[i]) ? placed : null;
}

/**
 * Puts every parameter's gradient in the group's gradient storage, once, so that
 * {@linkcode allReduceGradients} averages them where they are: each `grad` becomes a tensor
 * over its slice of this rank's region (an existing gradient's values are kept), and stays
 * there across steps (`zeroGrad` zeroes in place). Where the group has no storage (TCP, a
 * single process), the backend cannot wrap host memory (WebGPU), or the storage cannot be
 * made (/dev/shm too small), nothing changes and the note says why.
 *
 * A collective: every rank calls it, at the same point, before the first backward pass.
 * When the group closes, the gradients move back to ordinary buffers.
 */
export async function placeGradients(
  model: GPT,
  group: ProcessGroup,
): Promise<GradientPlacement> {
  const backend = model.backend;
  const params = model.parameters();
  const placed = currentPlacement(model, group);
  if (placed) return { inPlace: true, note: placed.note };
  if (!group.gradientStorage) {
    return {
      inPlace: false,
      note:
        `gradients: copied for each all-reduce (the ${group.transport} group has no gradient storage)`,
    };
  }
  const wrapHost = backend.wrapHost?.bind(backend), hostView = backend.hostView?.bind(backend);
  if (!wrapHost || !hostView) {
    return {
      inPlace: false,
      note:
        `gradients: copied for each all-reduce (the ${backend.name} backend cannot wrap host memory)`,
    };
  }
  const result = await group.gradientStorage(params.map((p) => p.size));
  if (!result.ok) {
    return { inPlace: false, note: `gradients: ${result.reason}; copied for each all-reduce` };
  }
  const { storage } = result;
  const grads = params.map((p, i) => {
    const data = storage.arrays[i];
    if (p.grad) data.set(hostView(p.grad.buffer));
    p.grad = new Tensor(backend, wrapHost(data), p.shape);
    return p.grad;
  });
  storage.onClose(() => {
    // the memory goes with the group: gradients still in it move to buffers of their own
    params.forEach((p, i) => {
      if (p.grad === grads[i]) p.grad = Tensor.from(backend, storage.arrays[i], p.shape);
    });
  });
  const note = `gradients: ${storage.describe()}`;
  placements.set(model, { group, storage, grads, note });
  return { inPlace: true, note };
}

/**
 * Averages every parameter's gradient over the ranks, in one all-reduce over all of them
 * (DDP's `require_backward_grad_sync` on the last micro-step only).
 */
export async function allReduceGradients(model: GPT, group: ProcessGroup): Promise<void> {
  const placed = currentPlacement(model, group);
  if (placed) {
    await placed.storage.allReduce("avg"); // the gradients are in its memory: nothing to copy
    return;
  }
  const grads = model.parameters().map((p) => gradBuffer(p)); // a tensor with no gradient adds zeros
  if (group.allReduceDevice && model.backend.deviceMemory) {
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
