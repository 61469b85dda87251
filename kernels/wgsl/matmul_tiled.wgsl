// matmul_tiled.wgsl: nn.Linear's three products as one general matrix product over strided
// operands, in workgroup-memory tiles: what real GPUs get (matmul_register.wgsl is what
// llvmpipe gets, matmul_naive.wgsl the ladder's first rung). The host picks per adapter.
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
//
// A workgroup of 16 x 16 invocations owns a 64 x 64 tile of C, walks K in steps of 16,
// staging A's 64 x 16 and B's 16 x 64 pieces in workgroup memory (each invocation loads 4
// of each, along whichever index is contiguous in memory), and keeps a 4 x 4 block of
// outputs in registers (rows and columns 16 apart, so neighbours read neighbouring words).
// Out-of-range elements load as zeros and are never stored, so any M, N, K works.
//
// The staged operands have type `Operand`, which the host declares before this source:
// `alias Operand = f32;`, or for f16 matmul precision `enable f16; alias Operand = f16;`,
// which rounds the operands to half precision as they are staged (half the workgroup
// memory) while products and sums stay f32, as tensor cores do under autocast.

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

const TILE: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> a_tile: array<Operand, 1024>; // [k][m], TK x TILE
var<workgroup> b_tile: array<Operand, 1024>; // [k][n], TK x TILE

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) li: u32) {
  let m0 = wg.y * TILE;
  let n0 = wg.x * TILE;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    for (var r = 0u; r < 4u; r++) {
      let e = li + 256u * r;
      // walk the contiguous index fastest, so a workgroup's loads are neighbouring words
      var am = e / TK;
      var ak = e % TK;
      if (p.a_sk != 1u) {
        am = e % TILE;
        ak = e / TILE;
      }
      a_tile[ak * TILE + am] = Operand(load_a(m0 + am, k0 + ak));
      var bn = e % TILE;
      var bk = e / TILE;
      if (p.b_sn != 1u) {
        bn = e / TK;
        bk = e % TK;
      }
      b_tile[bk * TILE + bn] = Operand(load_b(k0 + bk, n0 + bn));
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let ar = kk * TILE + l.y;
      let br = kk * TILE + l.x;
      let av = vec4f(f32(a_tile[ar]), f32(a_tile[ar + 16u]), f32(a_tile[ar + 32u]), f32(a_tile[ar + 48u]));
      let bv = vec4f(f32(b_tile[br]), f32(b_tile[br + 16u]), f32(b_tile[br + 32u]), f32(b_tile[br + 48u]));
      acc0 += av.x * bv;
      acc1 += av.y * bv;
      acc2 += av.z * bv;
      acc3 += av.w * bv;
    }
    workgroupBarrier();
  }
  let accs = array<vec4f, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      store_c(m0 + l.y + 16u * i, n0 + l.x + 16u * j, accs[i][j]);
    }
  }
}
