// embedding.wgsl: token and position embeddings (llm.c's encoder_forward /
// encoder_backward, one table at a time).
//
//   forward   out (N, C) = weight (V, C)[idx (N)]
//   links     for each position n: next[n], the next position with the same id (or -1),
//             and head[n] = 1 when no earlier position has that id
//   backward  dweight[idx[n]] += dout[n] for every row n: one invocation per (head
//             position, channel) walks the positions of its id in order, so each table row
//             sums its gradients in the same order as the reference, with no float atomics
//             and no sort
//
// The table may exceed one binding (wte is (50304, 768), 154.5 MB): the host binds rows
// [row0, row0 + rows) and dispatches once per slice; ids outside the slice are skipped.
// Ids outside [0, V) touch nothing (the output row stays zero).
// links costs O(N^2) integer compares in the worst case (every id distinct): 2.7e8 at
// B=16, T=1024, a fraction of a millisecond on a GPU.

struct Params {
  N: u32,
  C: u32,
  row0: u32,
  rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat(wg: vec3u, nwg: vec3u, l: vec3u) -> u32 {
  return (wg.y * nwg.x + wg.x) * 64u + l.x;
}

@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn embedding_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.N * p.C) {
    return;
  }
  let n = i / p.C;
  let c = i % p.C;
  let row = idx[n] - i32(p.row0);
  if (row >= 0 && row < i32(p.rows)) {
    out[i] = weight[u32(row) * p.C + c];
  }
}

// links: next (N) then head (N), as i32
@group(0) @binding(2) var<storage, read_write> links: array<i32>;

@compute @workgroup_size(64)
fn embedding_links(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let n = flat(wg, nwg, l);
  if (n >= p.N) {
    return;
  }
  let id = idx[n];
  var next = -1;
  for (var m = n + 1u; m < p.N; m++) {
    if (idx[m] == id) {
      next = i32(m);
      break;
    }
  }
  var head = 1;
  for (var m = 0u; m < n; m++) {
    if (idx[m] == id) {
      head = 0;
      break;
    }
  }
  links[n] = next;
  links[p.N + n] = head;
}

@group(0) @binding(2) var<storage, read> links_b: array<i32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dweight: array<f32>;

@compute @workgroup_size(64)
fn embedding_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = flat(wg, nwg, l);
  if (i >= p.N * p.C) {
    return;
  }
  let n = i / p.C;
  let c = i % p.C;
  let row = idx[n] - i32(p.row0);
  if (links_b[p.N + n] == 0 || row < 0 || row >= i32(p.rows)) {
    return;
  }
  let at = u32(row) * p.C + c;
  var s = dweight[at];
  var m = i32(n);
  while (m >= 0) {
    s += dout[u32(m) * p.C + c];
    m = links_b[m];
  }
  dweight[at] = s;
}
