// sum_of_squares.wgsl: the sum of squares of a buffer, for the global gradient norm (llm.c's
// global_norm_squared).
//
//   sum_of_squares  partial[base + g] = sum over i = g, g + G, g + 2G, ... < n of x[i]^2
//
// G = 64 x workgroups invocations each sum a strided share (adjacent invocations read
// adjacent floats); the host reads the G partials back and adds them in f64. No atomics,
// so the result is the same on every run. Buffers over one binding are summed per chunk,
// each chunk writing its own G partials at `base`.

struct Params {
  n: u32,
  base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(64)
fn sum_of_squares(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * 64u;
  var s = 0.0;
  for (var i = g.x; i < p.n; i += stride) {
    s += x[i] * x[i];
  }
  partial[p.base + g.x] = s;
}
