// layernorm.wgsl: LayerNorm over the last dimension, eps 1e-5 (llm.c's layernorm_forward /
// layernorm_backward).
//
//   forward          out (N, C) = (inp - mean) * rstd * weight (C) + bias (C);
//                    saves mean (N) and rstd (N) for backward
//   backward_input   dinp (N, C) += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd,
//                    dnorm = weight * dout; one invocation per row
//   backward_params  dweight (C) += sum_n norm * dout, dbias (C) += sum_n dout;
//                    one invocation per channel, rows in order (deterministic, no atomics)
//
// The variance is the biased one (two passes: mean first), as nn.LayerNorm computes it.

struct Params {
  N: u32,
  C: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const EPS: f32 = 1e-5;

@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(64)
fn layernorm_forward(@builtin(global_invocation_id) g: vec3u) {
  let n = g.x;
  if (n >= p.N) {
    return;
  }
  let x0 = n * p.C;
  var m = 0.0;
  for (var c = 0u; c < p.C; c++) {
    m += inp[x0 + c];
  }
  m /= f32(p.C);
  var v = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let d = inp[x0 + c] - m;
    v += d * d;
  }
  v /= f32(p.C);
  let s = 1.0 / sqrt(v + EPS);
  for (var c = 0u; c < p.C; c++) {
    out[x0 + c] = (inp[x0 + c] - m) * s * weight[c] + bias[c];
  }
  mean[n] = m;
  rstd[n] = s;
}

@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> inp_b: array<f32>;
@group(0) @binding(3) var<storage, read> weight_b: array<f32>;
@group(0) @binding(4) var<storage, read> mean_b: array<f32>;
@group(0) @binding(5) var<storage, read> rstd_b: array<f32>;
@group(0) @binding(6) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(64)
fn layernorm_backward_input(@builtin(global_invocation_id) g: vec3u) {
  let n = g.x;
  if (n >= p.N) {
    return;
  }
  let x0 = n * p.C;
  let m = mean_b[n];
  let s = rstd_b[n];
  var dnorm_mean = 0.0;
  var dnorm_norm_mean = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let norm = (inp_b[x0 + c] - m) * s;
    let dnorm = weight_b[c] * dout[x0 + c];
    dnorm_mean += dnorm;
    dnorm_norm_mean += dnorm * norm;
  }
  dnorm_mean /= f32(p.C);
  dnorm_norm_mean /= f32(p.C);
  for (var c = 0u; c < p.C; c++) {
    let norm = (inp_b[x0 + c] - m) * s;
    let dnorm = weight_b[c] * dout[x0 + c];
    dinp[x0 + c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

@group(0) @binding(3) var<storage, read> mean_p: array<f32>;
@group(0) @binding(4) var<storage, read> rstd_p: array<f32>;
@group(0) @binding(5) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn layernorm_backward_params(@builtin(global_invocation_id) g: vec3u) {
  let c = g.x;
  if (c >= p.C) {
    return;
  }
  var dw = dweight[c];
  var db = dbias[c];
  for (var n = 0u; n < p.N; n++) {
    let d = dout[n * p.C + c];
    db += d;
    dw += (inp_b[n * p.C + c] - mean_p[n]) * rstd_p[n] * d;
  }
  dweight[c] = dw;
  dbias[c] = db;
}
