// adamw.wgsl: one fused AdamW update (llm.c's adamw_update; torch.optim.AdamW semantics).
//
//   g = grad grad_scale (gradient clipping's factor, folded in: no pass of its own)
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   param = param (1 - lr wd) - lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// Decoupled weight decay first, then the Adam step, as PyTorch does. The host folds the
// bias corrections into step_size and sqrt_bc2. One read and one write per buffer per
// element; tensors over one binding are updated per chunk. 1-D grid as in residual.wgsl.

struct Params {
  n: u32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  step_size: f32, // lr / (1 - beta1^t)
  sqrt_bc2: f32, // sqrt(1 - beta2^t)
  decay: f32, // 1 - lr weight_decay
  grad_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(64)
fn adamw(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = (wg.y * nwg.x + wg.x) * 64u + l.x;
  if (i >= p.n) {
    return;
  }
  let g = grad[i] * p.grad_scale;
  let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
  let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  param[i] = param[i] * p.decay - p.step_size * mi / (sqrt(vi) / p.sqrt_bc2 + p.eps);
}
