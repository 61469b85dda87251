// matmul_register.wgsl: nn.Linear's products, register-blocked (llm.c's matmul_forward /
// matmul_backward); the bias's gradient is matmul_bias.wgsl's.
//
//   forward          out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC)
//   backward_input   dinp (N, C) += dout (N, OC) @ weight (OC, C)
//   backward_weight  dweight (OC, C) += dout^T (OC, N) @ inp (N, C)
//
// Register-blocked, no workgroup memory: each invocation keeps a 4x4 block of outputs in
// registers (rows and columns 8 apart, so a workgroup of 8x8 covers a 32x32 tile) and
// streams its operands straight from storage. That is the fastest shape on llvmpipe, where
// workgroup memory is slower than plain loads (real GPUs get matmul_tiled.wgsl). Loads are
// clamped to the last valid row and stores masked, so any N, C, OC works. The *_vec4 entry
// points at the end do the same with four-float loads when C and OC are multiples of 4
// (every GPT-2 shape); the scalar ones serve the rest.
//
// Loops run over C (forward), the chunk's OCc (backward_input) or the chunk's rows N
// (backward_weight): all far below llvmpipe's limit of 65535 loop iterations per
// invocation for GPT-2's shapes (C <= 3072, OCc <= 43690 per 128 MiB slice, N = B T <= 16384).
//
// The host binds large operands in slices (wte is (50304, 768), over 128 MiB): `weight`
// and `dweight` hold OCc rows starting at row oc_offset of the whole matrix, `inp`,
// `out`, `dout` and `dinp` hold N rows starting at some row chunk. Rows of `out` and
// `dout` are full width: `stride` (= OC) apart, the chunk's columns starting at oc_offset.
// The backward kernels accumulate (+=), so reductions over chunks are sequential passes.

struct Params {
  N: u32, // rows in this chunk
  C: u32, // input features
  OCc: u32, // output features in this chunk
  stride: u32, // row stride of out / dout (OC)
  oc_offset: u32, // first output feature of this chunk
  has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// forward
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(8, 8)
fn matmul_register_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let n0 = wg.y * 32u + l.y; // rows n0, n0 + 8, n0 + 16, n0 + 24
  let j0 = wg.x * 32u + l.x; // chunk columns j0, j0 + 8, ...
  let C = p.C;
  let a = vec4u(min(n0, p.N - 1u), min(n0 + 8u, p.N - 1u), min(n0 + 16u, p.N - 1u), min(n0 + 24u, p.N - 1u)) * C;
  let j = vec4u(min(j0, p.OCc - 1u), min(j0 + 8u, p.OCc - 1u), min(j0 + 16u, p.OCc - 1u), min(j0 + 24u, p.OCc - 1u));
  let w = j * C;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var k = 0u; k < C; k++) {
    let wv = vec4f(weight[w.x + k], weight[w.y + k], weight[w.z + k], weight[w.w + k]);
    acc0 += inp[a.x + k] * wv;
    acc1 += inp[a.y + k] * wv;
    acc2 += inp[a.z + k] * wv;
    acc3 += inp[a.w + k] * wv;
  }
  var b = vec4f(0.0);
  if (p.has_bias != 0u) {
    let o = j + p.oc_offset;
    b = vec4f(bias[o.x], bias[o.y], bias[o.z], bias[o.w]);
  }
  store_row(n0, j0, acc0 + b);
  store_row(n0 + 8u, j0, acc1 + b);
  store_row(n0 + 16u, j0, acc2 + b);
  store_row(n0 + 24u, j0, acc3 + b);
}

fn store_row(n: u32, j0: u32, v: vec4f) {
  if (n >= p.N) {
    return;
  }
  let base = n * p.stride + p.oc_offset;
  for (var j = 0u; j < 4u; j++) {
    let col = j0 + 8u * j;
    if (col < p.OCc) {
      out[base + col] = v[j];
    }
  }
}

// backward_input: dinp (N, C) += dout[:, chunk] (N, OCc) @ weight (OCc, C)
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> weight_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(8, 8)
fn matmul_register_backward_input(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let n0 = wg.y * 32u + l.y;
  let c0 = wg.x * 32u + l.x;
  let C = p.C;
  let d = vec4u(min(n0, p.N - 1u), min(n0 + 8u, p.N - 1u), min(n0 + 16u, p.N - 1u), min(n0 + 24u, p.N - 1u)) * p.stride + p.oc_offset;
  let c = vec4u(min(c0, C - 1u), min(c0 + 8u, C - 1u), min(c0 + 16u, C - 1u), min(c0 + 24u, C - 1u));
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var oc = 0u; oc < p.OCc; oc++) {
    let r = oc * C;
    let wv = vec4f(weight_b[r + c.x], weight_b[r + c.y], weight_b[r + c.z], weight_b[r + c.w]);
    acc0 += dout[d.x + oc] * wv;
    acc1 += dout[d.y + oc] * wv;
    acc2 += dout[d.z + oc] * wv;
    acc3 += dout[d.w + oc] * wv;
  }
  add_dinp(n0, c0, acc0);
  add_dinp(n0 + 8u, c0, acc1);
  add_dinp(n0 + 16u, c0, acc2);
  add_dinp(n0 + 24u, c0, acc3);
}

fn add_dinp(n: u32, c0: u32, v: vec4f) {
  if (n >= p.N) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + 8u * j;
    if (c < p.C) {
      dinp[n * p.C + c] += v[j];
    }
  }
}

// backward_weight: dweight (OCc, C) += dout[:, chunk]^T (OCc, N) @ inp (N, C)
@group(0) @binding(1) var<storage, read> dout_w: array<f32>;
@group(0) @binding(2) var<storage, read> inp_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> dweight: array<f32>;

@compute @workgroup_size(8, 8)
fn matmul_register_backward_weight(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let j0 = wg.y * 32u + l.y; // rows of dweight (chunk output features)
  let c0 = wg.x * 32u + l.x;
  let C = p.C;
  let o = vec4u(min(j0, p.OCc - 1u), min(j0 + 8u, p.OCc - 1u), min(j0 + 16u, p.OCc - 1u), min(j0 + 24u, p.OCc - 1u)) + p.oc_offset;
  let c = vec4u(min(c0, C - 1u), min(c0 + 8u, C - 1u), min(c0 + 16u, C - 1u), min(c0 + 24u, C - 1u));
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var n = 0u; n < p.N; n++) {
    let x = n * C;
    let xv = vec4f(inp_w[x + c.x], inp_w[x + c.y], inp_w[x + c.z], inp_w[x + c.w]);
    let r = n * p.stride;
    acc0 += dout_w[r + o.x] * xv;
    acc1 += dout_w[r + o.y] * xv;
    acc2 += dout_w[r + o.z] * xv;
    acc3 += dout_w[r + o.w] * xv;
  }
  add_dweight(j0, c0, acc0);
  add_dweight(j0 + 8u, c0, acc1);
  add_dweight(j0 + 16u, c0, acc2);
  add_dweight(j0 + 24u, c0, acc3);
}

fn add_dweight(j: u32, c0: u32, v: vec4f) {
  if (j >= p.OCc) {
    return;
  }
  for (var k = 0u; k < 4u; k++) {
    let c = c0 + 8u * k;
    if (c < p.C) {
      dweight[j * p.C + c] += v[k];
    }
  }
}

// ---- vec4 variants, for C % 4 == 0 and OC % 4 == 0 (every GPT-2 shape) -------------------
// The same products, loading four consecutive floats at a time: a 4x4 block then costs 8
// vec4 loads per 64 multiply-adds instead of 8 scalar loads per 16, which is what bounds
// llvmpipe (about 2x faster there). The host uses them when the shapes allow, and keeps
// chunk boundaries on multiples of 4 rows.

@group(0) @binding(1) var<storage, read> inp4: array<vec4f>;
@group(0) @binding(2) var<storage, read> weight4: array<vec4f>;

// forward: rows n0 + 8i, columns j0 + 8j, dot products four k at a time
@compute @workgroup_size(8, 8)
fn matmul_register_forward_vec4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let n0 = wg.y * 32u + l.y;
  let j0 = wg.x * 32u + l.x;
  let C4 = p.C / 4u;
  let a = vec4u(min(n0, p.N - 1u), min(n0 + 8u, p.N - 1u), min(n0 + 16u, p.N - 1u), min(n0 + 24u, p.N - 1u)) * C4;
  let j = vec4u(min(j0, p.OCc - 1u), min(j0 + 8u, p.OCc - 1u), min(j0 + 16u, p.OCc - 1u), min(j0 + 24u, p.OCc - 1u));
  let w = j * C4;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var k = 0u; k < C4; k++) {
    let w0 = weight4[w.x + k];
    let w1 = weight4[w.y + k];
    let w2 = weight4[w.z + k];
    let w3 = weight4[w.w + k];
    let x0 = inp4[a.x + k];
    let x1 = inp4[a.y + k];
    let x2 = inp4[a.z + k];
    let x3 = inp4[a.w + k];
    acc0 += vec4f(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
    acc1 += vec4f(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
    acc2 += vec4f(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
    acc3 += vec4f(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
  }
  var b = vec4f(0.0);
  if (p.has_bias != 0u) {
    let o = j + p.oc_offset;
    b = vec4f(bias[o.x], bias[o.y], bias[o.z], bias[o.w]);
  }
  store_row(n0, j0, acc0 + b);
  store_row(n0 + 8u, j0, acc1 + b);
  store_row(n0 + 16u, j0, acc2 + b);
  store_row(n0 + 24u, j0, acc3 + b);
}

@group(0) @binding(1) var<storage, read> dout4: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dinp4: array<vec4f>;

// backward_input: rows n0 + 8i, channel vec4s c4 and c4 + 8, four output features a step
@compute @workgroup_size(8, 8)
fn matmul_register_backward_input_vec4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let n0 = wg.y * 32u + l.y;
  let c4 = wg.x * 16u + l.x;
  let C4 = p.C / 4u;
  let ca = min(c4, C4 - 1u);
  let cb = min(c4 + 8u, C4 - 1u);
  let d = (vec4u(min(n0, p.N - 1u), min(n0 + 8u, p.N - 1u), min(n0 + 16u, p.N - 1u), min(n0 + 24u, p.N - 1u)) * p.stride + p.oc_offset) / 4u;
  var a0 = vec4f(0.0);
  var a1 = vec4f(0.0);
  var a2 = vec4f(0.0);
  var a3 = vec4f(0.0);
  var b0 = vec4f(0.0);
  var b1 = vec4f(0.0);
  var b2 = vec4f(0.0);
  var b3 = vec4f(0.0);
  let OC4 = p.OCc / 4u;
  for (var o4 = 0u; o4 < OC4; o4++) {
    let g0 = dout4[d.x + o4];
    let g1 = dout4[d.y + o4];
    let g2 = dout4[d.z + o4];
    let g3 = dout4[d.w + o4];
    let r = 4u * o4 * C4;
    let wax = weight4[r + ca];
    let wbx = weight4[r + cb];
    let way = weight4[r + 1u * C4 + ca];
    let wby = weight4[r + 1u * C4 + cb];
    let waz = weight4[r + 2u * C4 + ca];
    let wbz = weight4[r + 2u * C4 + cb];
    let waw = weight4[r + 3u * C4 + ca];
    let wbw = weight4[r + 3u * C4 + cb];
    a0 += g0.x * wax + g0.y * way + g0.z * waz + g0.w * waw;
    a1 += g1.x * wax + g1.y * way + g1.z * waz + g1.w * waw;
    a2 += g2.x * wax + g2.y * way + g2.z * waz + g2.w * waw;
    a3 += g3.x * wax + g3.y * way + g3.z * waz + g3.w * waw;
    b0 += g0.x * wbx + g0.y * wby + g0.z * wbz + g0.w * wbw;
    b1 += g1.x * wbx + g1.y * wby + g1.z * wbz + g1.w * wbw;
    b2 += g2.x * wbx + g2.y * wby + g2.z * wbz + g2.w * wbw;
    b3 += g3.x * wbx + g3.y * wby + g3.z * wbz + g3.w * wbw;
  }
  add_dinp4(n0, c4, a0, b0);
  add_dinp4(n0 + 8u, c4, a1, b1);
  add_dinp4(n0 + 16u, c4, a2, b2);
  add_dinp4(n0 + 24u, c4, a3, b3);
}

fn add_dinp4(n: u32, c4: u32, a: vec4f, b: vec4f) {
  let C4 = p.C / 4u;
  if (n >= p.N) {
    return;
  }
  if (c4 < C4) {
    dinp4[n * C4 + c4] += a;
  }
  if (c4 + 8u < C4) {
    dinp4[n * C4 + c4 + 8u] += b;
  }
}

@group(0) @binding(2) var<storage, read> inp4_w: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dweight4: array<vec4f>;

// backward_weight: output features 4 j4 .. 4 j4 + 3 (one vec4 of a dout row) times the
// channel vec4s c4 and c4 + 8, summed over the rows n
@compute @workgroup_size(8, 8)
fn matmul_register_backward_weight_vec4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let j4 = wg.y * 8u + l.y;
  let c4 = wg.x * 16u + l.x;
  let C4 = p.C / 4u;
  let OC4 = p.OCc / 4u;
  let jj = min(j4, OC4 - 1u);
  let ca = min(c4, C4 - 1u);
  let cb = min(c4 + 8u, C4 - 1u);
  let s4 = p.stride / 4u;
  let o4 = p.oc_offset / 4u + jj;
  var a0 = vec4f(0.0);
  var a1 = vec4f(0.0);
  var a2 = vec4f(0.0);
  var a3 = vec4f(0.0);
  var b0 = vec4f(0.0);
  var b1 = vec4f(0.0);
  var b2 = vec4f(0.0);
  var b3 = vec4f(0.0);
  for (var n = 0u; n < p.N; n++) {
    let g = dout4[n * s4 + o4];
    let xa = inp4_w[n * C4 + ca];
    let xb = inp4_w[n * C4 + cb];
    a0 += g.x * xa;
    a1 += g.y * xa;
    a2 += g.z * xa;
    a3 += g.w * xa;
    b0 += g.x * xb;
    b1 += g.y * xb;
    b2 += g.z * xb;
    b3 += g.w * xb;
  }
  if (j4 >= OC4) {
    return;
  }
  let r = 4u * j4 * C4;
  if (c4 < C4) {
    dweight4[r + c4] += a0;
    dweight4[r + C4 + c4] += a1;
    dweight4[r + 2u * C4 + c4] += a2;
    dweight4[r + 3u * C4 + c4] += a3;
  }
  if (c4 + 8u < C4) {
    dweight4[r + c4 + 8u] += b0;
    dweight4[r + C4 + c4 + 8u] += b1;
    dweight4[r + 2u * C4 + c4 + 8u] += b2;
    dweight4[r + 3u * C4 + c4 + 8u] += b3;
  }
}
