// gelu.wgsl: GELU with the tanh approximation (llm.c's gelu_forward / gelu_backward;
// PyTorch's approximate="tanh", Hugging Face's "gelu_new").
//
//   forward   out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   backward  dinp (n) += gelu'(x) dout
//
// tanh's argument is clamped to +-15 (tanh is +-1 in f32 there) because some drivers build
// tanh from exp and return NaN for large arguments. 1-D grid as in residual.wgsl.

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const GELU_SCALE: f32 = 0.7978845608028654; // sqrt(2 / pi)

fn flat(wg: vec3u, nwg: vec3u, l: vec3u) -> u32 {
  return (wg.y * nwg.x + wg.x) * 64u + l.x;
}

@compute @workgroup_size(64)
fn gelu_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.n) {
    return;
  }
  let x = inp[i];
  let u = clamp(GELU_SCALE * (x + 0.044715 * x * x * x), -15.0, 15.0);
  out[i] = 0.5 * x * (1.0 + tanh(u));
}

@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(64)
fn gelu_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.n) {
    return;
  }
  let x = inp[i];
  let u = clamp(GELU_SCALE * (x + 0.044715 * x * x * x), -15.0, 15.0);
  let th = tanh(u);
  let sech2 = 1.0 - th * th;
  let local_grad = 0.5 * (1.0 + th) + 0.5 * x * sech2 * GELU_SCALE * (1.0 + 3.0 * 0.044715 * x * x);
  dinp[i] += local_grad * dout[i];
}
