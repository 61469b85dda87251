// elementwise.wgsl: one small kernel per arithmetic op, the way an eager framework runs
// unfused code (PyTorch without torch.compile: every op reads its inputs from memory and
// writes a new tensor). The ladder's unfused rungs build GELU, bias adds and AdamW from
// these; the fused kernels (gelu.wgsl, the matmul kernels' bias epilogue, adamw.wgsl) do the
// same math in one pass.
//
//   ew_unary    out[i] = f(a[i])          op: 0 alpha a + beta, 1 tanh a, 2 a^3, 3 a^2,
//                                         4 sqrt a
//   ew_binary   out[i] = g(a[i], b[i])    op: 0 a b, 1 a + alpha b, 2 a / b
//   ew_add_bias x[i] += b[i % nb]         a bias added to every row of x, in place
//
// 1-D kernels: 64 invocations per workgroup on a 2-D grid of workgroups.

struct Params {
  n: u32,
  op: u32,
  nb: u32,
  alpha: f32,
  beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat(wg: vec3u, nwg: vec3u, l: vec3u) -> u32 {
  return (wg.y * nwg.x + wg.x) * 64u + l.x;
}

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn ew_unary(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.n) {
    return;
  }
  let x = a[i];
  var y: f32;
  switch (p.op) {
    case 0u: { y = p.alpha * x + p.beta; }
    case 1u: { y = tanh(clamp(x, -20.0, 20.0)); } // tanh saturates; some drivers overflow exp
    case 2u: { y = x * x * x; }
    case 3u: { y = x * x; }
    default: { y = sqrt(x); }
  }
  out[i] = y;
}

@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> res: array<f32>;

@compute @workgroup_size(64)
fn ew_binary(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.n) {
    return;
  }
  let x = lhs[i];
  let y = rhs[i];
  var z: f32;
  switch (p.op) {
    case 0u: { z = x * y; }
    case 1u: { z = x + p.alpha * y; }
    default: { z = x / y; }
  }
  res[i] = z;
}

@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn ew_add_bias(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i < p.n) {
    x[i] += bias[i % p.nb];
  }
}
