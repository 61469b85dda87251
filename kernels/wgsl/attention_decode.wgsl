// attention_decode.wgsl: causal self-attention for generation, over a KV cache.
//
//   kv_cache_append    qkv (B, T, 3C) holds T new positions; their keys and values are copied
//                      into the caches k, v (B, NH, maxT, HS) at positions pos .. pos + T - 1,
//                      one invocation per channel of a new position
//   attention_decode   out (B, T, C): one invocation per (b, h, t) query row, at position
//                      pos + t, runs attention.wgsl's online softmax (running max, running
//                      sum, rescaled accumulator) over the cached keys 0 .. pos + t
//
// A head's cached keys are contiguous (head-major), a query reads one dense block. Vectors
// are walked four channels at a time in registers (HS4 vec4s), lanes past HS zero in q, so
// T = 1024 stays under llvmpipe's budget of 65535 loop iterations per invocation, as in
// attention.wgsl. The host binds qkv, out and the caches in batch chunks where they are over
// one binding; b is the batch within the chunk. HS, the head size, is a compile-time
// constant: the host declares `const HS: u32 = ...;` before this source.

const HS4: u32 = (HS + 3u) / 4u;

struct Params {
  nb: u32, // batches in this chunk
  T: u32, // new positions
  C: u32,
  NH: u32,
  pos: u32, // positions already cached: where the first new one goes
  maxT: u32, // the caches' capacity in positions
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
@group(0) @binding(2) var<storage, read_write> k_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> v_out: array<f32>;

@compute @workgroup_size(64)
fn kv_cache_append(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let e = flat(wg, nwg, l);
  if (e >= p.nb * p.T * p.C) {
    return;
  }
  let c = e % p.C;
  let t = (e / p.C) % p.T;
  let b = e / (p.C * p.T);
  let h = c / HS;
  let src = (b * p.T + t) * 3u * p.C + c;
  let dst = ((b * p.NH + h) * p.maxT + p.pos + t) * HS + c % HS;
  k_out[dst] = qkv[src + p.C];
  v_out[dst] = qkv[src + 2u * p.C];
}

@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn q4(j: u32) -> vec4f {
  return vec4f(qkv[j], qkv[j + 1u], qkv[j + 2u], qkv[j + 3u]);
}

fn k4(j: u32) -> vec4f {
  return vec4f(k_cache[j], k_cache[j + 1u], k_cache[j + 2u], k_cache[j + 3u]);
}

fn v4(j: u32) -> vec4f {
  return vec4f(v_cache[j], v_cache[j + 1u], v_cache[j + 2u], v_cache[j + 3u]);
}

@compute @workgroup_size(64)
fn attention_decode(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let r = flat(wg, nwg, l);
  if (r >= p.nb * p.NH * p.T) {
    return;
  }
  let t = r % p.T;
  let h = (r / p.T) % p.NH;
  let b = r / (p.T * p.NH);
  let q0 = (b * p.T + t) * 3u * p.C + h * HS;
  let head = (b * p.NH + h) * p.maxT * HS;
  var q: array<vec4f, HS4>;
  var acc: array<vec4f, HS4>;
  for (var i = 0u; i < HS4; i++) {
    q[i] = q4(q0 + 4u * i) * lanes(i) * p.scale;
    acc[i] = vec4f(0.0);
  }
  var m = -3.0e38;
  var sum = 0.0;
  for (var j = 0u; j <= p.pos + t; j++) {
    let k0 = head + j * HS;
    var s = 0.0;
    for (var i = 0u; i < HS4; i++) {
      s += dot(q[i], k4(k0 + 4u * i));
    }
    let m_new = max(m, s);
    let corr = exp(m - m_new);
    let e = exp(s - m_new);
    sum = sum * corr + e;
    for (var i = 0u; i < HS4; i++) {
      acc[i] = acc[i] * corr + e * v4(k0 + 4u * i);
    }
    m = m_new;
  }
  let o0 = (b * p.T + t) * p.C + h * HS;
  let inv = 1.0 / sum;
  for (var i = 0u; i < HS; i++) {
    out[o0 + i] = acc[i / 4u][i % 4u] * inv;
  }
}
