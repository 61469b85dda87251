// matmul_bias.wgsl: the gradient of nn.Linear's bias (llm.c's matmul_backward's dbias),
// shared by the three matmul kernels (matmul_naive, matmul_tiled, matmul_register).
//
//   backward_bias    dbias (OC) += sum over n of dout (N, OC)
//
// One invocation per column, rows in order, so the sum is the same on every run. Its
// parameters are matmul_register.wgsl's; the host binds dout in row chunks (`stride` = OC
// apart) and runs one pass per chunk, each accumulating (+=).

struct Params {
  N: u32, // rows in this chunk
  C: u32, // input features
  OCc: u32, // output features in this chunk
  stride: u32, // row stride of out / dout (OC)
  oc_offset: u32, // first output feature of this chunk
  has_bias: u32, // unused here: the layout is matmul_register.wgsl's
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn matmul_backward_bias(@builtin(global_invocation_id) g: vec3u) {
  let oc = g.x;
  if (oc >= p.OCc) {
    return;
  }
  var s = 0.0;
  for (var n = 0u; n < p.N; n++) {
    s += dout[n * p.stride + oc];
  }
  dbias[oc] += s;
}
