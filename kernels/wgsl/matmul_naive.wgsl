// matmul_naive.wgsl: nn.Linear's three products as one general matrix product over strided
// operands, one output per invocation straight from storage: the speedup ladder's first
// rung (matmul_tiled.wgsl is the same product in workgroup-memory tiles, with the same
// parameters and bindings).
//
//   C (M, N) (+)= A (M, K) B (K, N) (+ bias (N))
//   A(m, k) = a[a_off + m a_sm + k a_sk]    B(k, n) = b[b_off + k b_sk + n b_sn]
//   C(m, n) = c[c_off + m c_sm + n]         bias(n) = bias[c_off + n]
//
// Strides express nn.Linear's three products without transposed copies:
//   forward          out = inp @ weight^T    A = inp (a_sk 1), B = weight^T (b_sk 1, b_sn C)
//   backward_input   dinp += dout @ weight   A = dout (a_sk 1), B = weight (b_sk C, b_sn 1)
//   backward_weight  dweight += dout^T @ inp A = dout^T (a_sm 1, a_sk OC), B = inp (b_sk C)
// flags: 1 accumulate into C, 2 add the bias.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  a_off: u32,
  a_sm: u32,
  a_sk: u32,
  b_off: u32,
  b_sk: u32,
  b_sn: u32,
  c_off: u32,
  c_sm: u32,
  flags: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn load_a(m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) {
    return 0.0;
  }
  return a[p.a_off + m * p.a_sm + k * p.a_sk];
}

fn load_b(k: u32, n: u32) -> f32 {
  if (k >= p.K || n >= p.N) {
    return 0.0;
  }
  return b[p.b_off + k * p.b_sk + n * p.b_sn];
}

fn store_c(m: u32, n: u32, acc: f32) {
  if (m >= p.M || n >= p.N) {
    return;
  }
  var v = acc;
  if ((p.flags & 2u) != 0u) {
    v += bias[p.c_off + n];
  }
  let i = p.c_off + m * p.c_sm + n;
  if ((p.flags & 1u) != 0u) {
    v += c[i];
  }
  c[i] = v;
}

@compute @workgroup_size(8, 8)
fn matmul_naive(@builtin(global_invocation_id) g: vec3u) {
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) {
    acc += load_a(g.y, k) * load_b(k, g.x);
  }
  store_c(g.y, g.x, acc);
}
