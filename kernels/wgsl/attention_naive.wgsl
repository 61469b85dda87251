// attention_naive.wgsl: causal self-attention the unfused way (the lecture's code before
// F.scaled_dot_product_attention): the (B, NH, T, T) attention matrix is computed, masked,
// softmaxed and stored, then multiplied with v; the backward reads it back. The ladder's
// rungs before "flash attention" use it; attention.wgsl never stores it.
//
//   dots (scores)    att[b,h,t,s] = scale q_t . k_s for s <= t          (B NH T T)
//   softmax          each row of att in place, over s <= t; zeros past t
//   values           out[b,t,h,:] = sum_s att[b,h,t,s] v_s
//   dots (datt)      datt[b,h,t,s] = dout_t . v_s for s <= t
//   softmax_backward datt = scale att (datt - sum_s att datt), per row, in place
//   dqkv             dq_t += sum_s datt[t,s] k_s, dk_t += sum_t' datt[t',t] q_t',
//                    dv_t += sum_t' att[t',t] dout_t'   (one invocation per output element)
//
// qkv is (B, T, 3C): q, k, v of head h at channels h HS, C + h HS, 2C + h HS. The host
// binds batch chunks; every index here is relative to the chunk.

struct Params {
  nb: u32, // batches in this chunk
  T: u32,
  C: u32,
  NH: u32,
  scale: f32, // 1 / sqrt(HS)
  lhs_stride: u32, // attn_dots only: row strides and offsets of its operands
  lhs_off: u32,
  rhs_stride: u32,
  rhs_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat(wg: vec3u, nwg: vec3u, l: vec3u) -> u32 {
  return (wg.y * nwg.x + wg.x) * 64u + l.x;
}

// row r = (b h) T + t of att: its (b, h, t)
fn row_bht(r: u32) -> vec3u {
  let t = r % p.T;
  let bh = r / p.T;
  return vec3u(bh / p.NH, bh % p.NH, t);
}

// element of qkv: batch b, position t, part (0 q, 1 k, 2 v), head h, channel d
fn qkv_at(b: u32, t: u32, part: u32, h: u32, d: u32) -> u32 {
  let hs = p.C / p.NH;
  return (b * p.T + t) * 3u * p.C + part * p.C + h * hs + d;
}

@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> dots: array<f32>;

// dots[b,h,t,s] = scale lhs_t . rhs_s over head h's channels, for s <= t (0 past t): the
// scores (lhs q, rhs k) and, in backward, datt (lhs dout, rhs v)
@compute @workgroup_size(64)
fn attn_dots(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.nb * p.NH * p.T * p.T) {
    return;
  }
  let s = i % p.T;
  let bht = row_bht(i / p.T);
  var acc = 0.0;
  if (s <= bht.z) {
    let hs = p.C / p.NH;
    let x = (bht.x * p.T + bht.z) * p.lhs_stride + p.lhs_off + bht.y * hs;
    let y = (bht.x * p.T + s) * p.rhs_stride + p.rhs_off + bht.y * hs;
    for (var d = 0u; d < hs; d++) {
      acc += lhs[x + d] * rhs[y + d];
    }
  }
  dots[i] = acc * p.scale;
}

@group(0) @binding(1) var<storage, read_write> rows: array<f32>;

@compute @workgroup_size(64)
fn attn_softmax(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let r = flat(wg, nwg, l);
  if (r >= p.nb * p.NH * p.T) {
    return;
  }
  let t = r % p.T;
  let base = r * p.T;
  var m = rows[base];
  for (var s = 1u; s <= t; s++) {
    m = max(m, rows[base + s]);
  }
  var sum = 0.0;
  for (var s = 0u; s <= t; s++) {
    let e = exp(rows[base + s] - m);
    rows[base + s] = e;
    sum += e;
  }
  for (var s = 0u; s < p.T; s++) {
    rows[base + s] = select(0.0, rows[base + s] / sum, s <= t);
  }
}

@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> qkv_v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn attn_values(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l); // element (b, t, c) of out
  if (i >= p.nb * p.T * p.C) {
    return;
  }
  let c = i % p.C;
  let t = (i / p.C) % p.T;
  let b = i / (p.C * p.T);
  let hs = p.C / p.NH;
  let h = c / hs;
  let row = ((b * p.NH + h) * p.T + t) * p.T;
  var acc = 0.0;
  for (var s = 0u; s <= t; s++) {
    acc += probs[row + s] * qkv_v[qkv_at(b, s, 2u, h, c % hs)];
  }
  out[i] = acc;
}

@group(0) @binding(1) var<storage, read> probs_s: array<f32>;
@group(0) @binding(2) var<storage, read_write> dpre: array<f32>;

@compute @workgroup_size(64)
fn attn_softmax_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let r = flat(wg, nwg, l);
  if (r >= p.nb * p.NH * p.T) {
    return;
  }
  let t = r % p.T;
  let base = r * p.T;
  var dot = 0.0;
  for (var s = 0u; s <= t; s++) {
    dot += probs_s[base + s] * dpre[base + s];
  }
  for (var s = 0u; s <= t; s++) {
    dpre[base + s] = p.scale * probs_s[base + s] * (dpre[base + s] - dot);
  }
}

@group(0) @binding(1) var<storage, read> probs_b: array<f32>;
@group(0) @binding(2) var<storage, read> dpre_b: array<f32>;
@group(0) @binding(3) var<storage, read> qkv_b: array<f32>;
@group(0) @binding(4) var<storage, read> dout_b: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;

@compute @workgroup_size(64)
fn attn_dqkv(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l); // element (b, t, part, c) of dqkv
  if (i >= p.nb * p.T * 3u * p.C) {
    return;
  }
  let c3 = i % (3u * p.C);
  let t = (i / (3u * p.C)) % p.T;
  let b = i / (3u * p.C * p.T);
  let part = c3 / p.C;
  let c = c3 % p.C;
  let hs = p.C / p.NH;
  let h = c / hs;
  let d = c % hs;
  let rows0 = (b * p.NH + h) * p.T; // row of (b, h, 0)
  var acc = 0.0;
  if (part == 0u) { // dq_t = sum over keys s <= t
    for (var s = 0u; s <= t; s++) {
      acc += dpre_b[(rows0 + t) * p.T + s] * qkv_b[qkv_at(b, s, 1u, h, d)];
    }
  } else if (part == 1u) { // dk_t = sum over queries t2 >= t
    for (var t2 = t; t2 < p.T; t2++) {
      acc += dpre_b[(rows0 + t2) * p.T + t] * qkv_b[qkv_at(b, t2, 0u, h, d)];
    }
  } else { // dv_t = sum over queries t2 >= t
    for (var t2 = t; t2 < p.T; t2++) {
      acc += probs_b[(rows0 + t2) * p.T + t] * dout_b[(b * p.T + t2) * p.C + c];
    }
  }
  dqkv[i] += acc;
}
