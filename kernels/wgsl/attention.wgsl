// attention.wgsl: fused causal self-attention, flash style (llm.c's attention_forward /
// attention_backward, without the (B, NH, T, T) matrices).
//
//   forward              qkv (B, T, 3C) -> out (B, T, C), heads of HS = C / NH channels;
//                        one invocation per (b, h, t) query row runs an online softmax over
//                        keys 0..t (running max, running sum, rescaled accumulator) and
//                        saves only lse (B, NH, T) = max + log(sum)
//   backward_query       D (B, NH, T) = dout . out per row, then
//                        dq += scale sum_t2 p (dout . v_t2 - D) k_t2, p = exp(s - lse)
//   backward_key_value   one invocation per key row t2, over queries t >= t2:
//                        dv += p dout_t, dk += scale p (dout_t . v - D_t) q_t
//
// Nothing of size T x T is stored: scores are recomputed from q, k and lse in the backward
// (as FlashAttention does), and the two backward kernels split the work by rows that own
// their outputs, so no atomics are needed. stats holds lse then D, 2 B NH T floats, and is
// indexed with the batch offset b0 when the host binds qkv in batch chunks.
// A head's vectors live in registers as HS4 = ceil(HS / 4) vec4s; lanes past HS are zero
// in q, dout, k, v and never stored. Working four channels at a time also keeps T = 1024
// under llvmpipe's budget of 65535 loop iterations per invocation (about 33 per key).
// HS, the head size, is a compile-time constant (it sizes those register arrays): the host
// declares `const HS: u32 = ...;` before this source, one compiled variant per head size.

const HS4: u32 = (HS + 3u) / 4u;

struct Params {
  nb: u32, // batches in this chunk
  T: u32,
  C: u32,
  NH: u32,
  b0: u32, // first batch of this chunk
  n_stats: u32, // B NH T: where D starts in stats
  scale: f32, // 1 / sqrt(HS)
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat(wg: vec3u, nwg: vec3u, l: vec3u) -> u32 {
  return (wg.y * nwg.x + wg.x) * 64u + l.x;
}

// 1 for the lanes of vec4 number i that are channels of the head, 0 past HS
fn lanes(i: u32) -> vec4f {
  return select(vec4f(0.0), vec4f(1.0), vec4u(4u * i) + vec4u(0u, 1u, 2u, 3u) < vec4u(HS));
}

@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

fn qkv4(j: u32) -> vec4f {
  return vec4f(qkv[j], qkv[j + 1u], qkv[j + 2u], qkv[j + 3u]);
}

@compute @workgroup_size(64)
fn attention_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let r = flat(wg, nwg, l);
  if (r >= p.nb * p.NH * p.T) {
    return;
  }
  let t = r % p.T;
  let h = (r / p.T) % p.NH;
  let b = r / (p.T * p.NH);
  let C3 = 3u * p.C;
  let q0 = (b * p.T + t) * C3 + h * HS;
  var q: array<vec4f, HS4>;
  var acc: array<vec4f, HS4>;
  for (var i = 0u; i < HS4; i++) {
    q[i] = qkv4(q0 + 4u * i) * lanes(i) * p.scale;
    acc[i] = vec4f(0.0);
  }
  var m = -3.0e38;
  var sum = 0.0;
  for (var t2 = 0u; t2 <= t; t2++) {
    let k0 = (b * p.T + t2) * C3 + p.C + h * HS;
    var s = 0.0;
    for (var i = 0u; i < HS4; i++) {
      s += dot(q[i], qkv4(k0 + 4u * i));
    }
    let m_new = max(m, s);
    let corr = exp(m - m_new);
    let e = exp(s - m_new);
    sum = sum * corr + e;
    let v0 = k0 + p.C;
    for (var i = 0u; i < HS4; i++) {
      acc[i] = acc[i] * corr + e * qkv4(v0 + 4u * i);
    }
    m = m_new;
  }
  let o0 = (b * p.T + t) * p.C + h * HS;
  let inv = 1.0 / sum;
  for (var i = 0u; i < HS; i++) {
    out[o0 + i] = acc[i / 4u][i % 4u] * inv;
  }
  stats[((p.b0 + b) * p.NH + h) * p.T + t] = m + log(sum);
}

@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> outc: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats_q: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;

fn dout4(j: u32) -> vec4f {
  return vec4f(dout[j], dout[j + 1u], dout[j + 2u], dout[j + 3u]);
}

@compute @workgroup_size(64)
fn attention_backward_query(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let r = flat(wg, nwg, l);
  if (r >= p.nb * p.NH * p.T) {
    return;
  }
  let t = r % p.T;
  let h = (r / p.T) % p.NH;
  let b = r / (p.T * p.NH);
  let C3 = 3u * p.C;
  let q0 = (b * p.T + t) * C3 + h * HS;
  let o0 = (b * p.T + t) * p.C + h * HS;
  var q: array<vec4f, HS4>;
  var d_o: array<vec4f, HS4>;
  var dq: array<vec4f, HS4>;
  var D = 0.0;
  for (var i = 0u; i < HS4; i++) {
    let j = o0 + 4u * i;
    q[i] = qkv4(q0 + 4u * i) * lanes(i) * p.scale;
    d_o[i] = dout4(j) * lanes(i);
    dq[i] = vec4f(0.0);
    D += dot(d_o[i], vec4f(outc[j], outc[j + 1u], outc[j + 2u], outc[j + 3u]));
  }
  let si = ((p.b0 + b) * p.NH + h) * p.T + t;
  let lse = stats_q[si];
  for (var t2 = 0u; t2 <= t; t2++) {
    let k0 = (b * p.T + t2) * C3 + p.C + h * HS;
    let v0 = k0 + p.C;
    var s = 0.0;
    var dp = 0.0;
    for (var i = 0u; i < HS4; i++) {
      s += dot(q[i], qkv4(k0 + 4u * i));
      dp += dot(d_o[i], qkv4(v0 + 4u * i));
    }
    let ds = exp(s - lse) * (dp - D);
    for (var i = 0u; i < HS4; i++) {
      dq[i] += ds * qkv4(k0 + 4u * i);
    }
  }
  for (var i = 0u; i < HS; i++) {
    dqkv[q0 + i] += dq[i / 4u][i % 4u] * p.scale;
  }
  stats_q[p.n_stats + si] = D;
}

@group(0) @binding(3) var<storage, read> stats_kv: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv_kv: array<f32>;

@compute @workgroup_size(64)
fn attention_backward_key_value(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let r = flat(wg, nwg, l);
  if (r >= p.nb * p.NH * p.T) {
    return;
  }
  let t2 = r % p.T;
  let h = (r / p.T) % p.NH;
  let b = r / (p.T * p.NH);
  let C3 = 3u * p.C;
  let k0 = (b * p.T + t2) * C3 + p.C + h * HS;
  let v0 = k0 + p.C;
  var k: array<vec4f, HS4>;
  var v: array<vec4f, HS4>;
  var dk: array<vec4f, HS4>;
  var dv: array<vec4f, HS4>;
  for (var i = 0u; i < HS4; i++) {
    k[i] = qkv4(k0 + 4u * i) * lanes(i) * p.scale;
    v[i] = qkv4(v0 + 4u * i) * lanes(i);
    dk[i] = vec4f(0.0);
    dv[i] = vec4f(0.0);
  }
  let s0 = ((p.b0 + b) * p.NH + h) * p.T;
  for (var t = t2; t < p.T; t++) {
    let q0 = (b * p.T + t) * C3 + h * HS;
    let o0 = (b * p.T + t) * p.C + h * HS;
    var s = 0.0;
    var dp = 0.0;
    for (var i = 0u; i < HS4; i++) {
      s += dot(qkv4(q0 + 4u * i), k[i]);
      dp += dot(dout4(o0 + 4u * i), v[i]);
    }
    let pr = exp(s - stats_kv[s0 + t]);
    let ds = pr * (dp - stats_kv[p.n_stats + s0 + t]);
    for (var i = 0u; i < HS4; i++) {
      dv[i] += pr * dout4(o0 + 4u * i);
      dk[i] += ds * qkv4(q0 + 4u * i);
    }
  }
  for (var i = 0u; i < HS; i++) {
    dqkv_kv[k0 + i] += dk[i / 4u][i % 4u] * p.scale;
    dqkv_kv[v0 + i] += dv[i / 4u][i % 4u];
  }
}
