// residual.wgsl: the elementwise kernels of adds and scaling (llm.c's residual_forward and
// the gradient plumbing around it).
//
//   add_forward           out[i] = a[i] + b[(base + i) % nb]   residual adds; wpe (T, C)
//                                                             broadcast over (B, T, C)
//   accumulate            dst[i] += src[i]                     gradient of an add
//   accumulate_broadcast  dst[j] += src[j + k nDst], k = 0..   gradient of a broadcast add,
//                                                             summed in order, no atomics
//   scale                 out[i] = alpha inp[i]  (or +=)       loss / grad-accum steps, clipping
//   scale_inplace         x[i] = alpha x[i]      (or +=)       the same on one buffer
//
// 1-D kernels run 64 invocations per workgroup on a 2-D grid of workgroups (a dimension
// holds at most 65535), so i = (wg.y * nwg.x + wg.x) * 64 + local. The host binds buffers
// over 128 MiB in chunks; `base` is the chunk's first element.

struct Params {
  n: u32,
  nb: u32,
  base: u32,
  accumulate: u32,
  alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat(wg: vec3u, nwg: vec3u, l: vec3u) -> u32 {
  return (wg.y * nwg.x + wg.x) * 64u + l.x;
}

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn add_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i < p.n) {
    out[i] = a[i] + b[(p.base + i) % p.nb];
  }
}

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn accumulate(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i < p.n) {
    dst[i] += src[i];
  }
}

// one invocation per element of dst (nb of them), walking its n / nb sources in order
@compute @workgroup_size(64)
fn accumulate_broadcast(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let j = flat(wg, nwg, l);
  if (j >= p.nb) {
    return;
  }
  var s = dst[j];
  for (var i = j; i < p.n; i += p.nb) {
    s += src[i];
  }
  dst[j] = s;
}

@compute @workgroup_size(64)
fn scale(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.n) {
    return;
  }
  if (p.accumulate != 0u) {
    dst[i] += p.alpha * src[i];
  } else {
    dst[i] = p.alpha * src[i];
  }
}

@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn scale_inplace(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.n) {
    return;
  }
  if (p.accumulate != 0u) {
    x[i] += p.alpha * x[i];
  } else {
    x[i] = p.alpha * x[i];
  }
}
