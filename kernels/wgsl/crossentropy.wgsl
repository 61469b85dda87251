// crossentropy.wgsl: fused softmax + cross-entropy and its backward (llm.c's
// fused_classifier).
//
//   forward_rows  losses (N) = logsumexp(logits (N, V)) - logits[n, target[n]]
//   mean          loss (1) = sum(losses) / N, summed in order by one invocation
//   backward      dlogits (N, V) += dloss / N * (softmax(logits) - onehot(target))
//
// One workgroup of 64 per row: each invocation takes every 64th logit, then the row's max
// and sum of exp(logit - max) are tree-reduced in workgroup memory. No probability tensor
// is kept: the backward recomputes max and sum, then writes its share of the row.
// (Besides suiting GPUs, this keeps each invocation far below llvmpipe's budget: it stops
// any invocation after 65535 loop iterations in all, and a row is 50304 wide.)
// The logits may exceed one binding (N V floats): the host binds rows [n0, n0 + N) and
// dispatches per chunk; targets and losses are indexed with n0. A target outside [0, V)
// gives a NaN loss and no one-hot term.

struct Params {
  N: u32, // rows in this chunk
  V: u32,
  n0: u32, // first row of this chunk
  N_total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red: array<f32, 64>;

// the row's max over all 64 invocations (every invocation gets it)
fn row_max(z0: u32, l: u32) -> f32 {
  var m = -3.0e38;
  for (var v = l; v < p.V; v += 64u) {
    m = max(m, logits[z0 + v]);
  }
  red[l] = m;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (l < s) {
      red[l] = max(red[l], red[l + s]);
    }
    workgroupBarrier();
  }
  let out = red[0];
  workgroupBarrier();
  return out;
}

// the row's sum of exp(z - m)
fn row_sum(z0: u32, l: u32, m: f32) -> f32 {
  var t = 0.0;
  for (var v = l; v < p.V; v += 64u) {
    t += exp(logits[z0 + v] - m);
  }
  red[l] = t;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (l < s) {
      red[l] += red[l + s];
    }
    workgroupBarrier();
  }
  let out = red[0];
  workgroupBarrier();
  return out;
}

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;

@compute @workgroup_size(64)
fn crossentropy_forward_rows(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = wg.y * nwg.x + wg.x; // uniform across the workgroup, so barriers are fine
  if (n >= p.N) {
    return;
  }
  let l = lid.x;
  let z0 = n * p.V;
  let m = row_max(z0, l);
  let s = row_sum(z0, l, m);
  if (l == 0u) {
    let tgt = targets[p.n0 + n];
    // NaN for a target outside the vocabulary; from a var, not a constant: Chromium's compiler
    // (Tint) refuses a NaN constant ("value nan cannot be represented as 'f32'").
    var nan_bits = 0x7fc00000u;
    var loss = bitcast<f32>(nan_bits);
    if (tgt >= 0 && u32(tgt) < p.V) {
      loss = log(s) + m - logits[z0 + u32(tgt)];
    }
    losses[p.n0 + n] = loss;
  }
}

@group(0) @binding(1) var<storage, read> losses_m: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(1)
fn crossentropy_mean() {
  var s = 0.0;
  for (var n = 0u; n < p.N_total; n++) {
    s += losses_m[n];
  }
  loss[0] = s / f32(p.N_total);
}

@group(0) @binding(3) var<storage, read> dloss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(64)
fn crossentropy_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = wg.y * nwg.x + wg.x;
  if (n >= p.N) {
    return;
  }
  let l = lid.x;
  let z0 = n * p.V;
  let m = row_max(z0, l);
  let inv = 1.0 / row_sum(z0, l, m);
  let g = dloss[0] / f32(p.N_total);
  let tgt = targets[p.n0 + n];
  for (var v = l; v < p.V; v += 64u) {
    let pr = exp(logits[z0 + v] - m) * inv;
    dlogits[z0 + v] += g * (pr - select(0.0, 1.0, i32(v) == tgt));
  }
}
