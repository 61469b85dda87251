// embedding.cu: embedding lookup (llm.c's encoder, without the position add: that is an
// add_forward) and its deterministic backward.
//   embedding_forward:          out (N, C) = weight[idx[n]], weight (V, C); an id outside
//                               [0, V) writes a zero row and records a fault
//   embedding_backward_buckets: dweight[token] += dout[n] for the positions n of each token,
//                               the positions of a token in ascending order (the host sorts
//                               them into buckets: token, start, count into `positions`), so
//                               each dweight row is summed by one thread per channel in the
//                               reference's order, with no atomics; with `overwrite` (every
//                               row has a bucket), dweight[token] = the sum
//   embedding_backward_columns: the same with no buckets: one thread per channel walks
//                               all N rows in order (slow: for ids the host never saw)
#include "common.cuh"

extern "C" __global__ void embedding_forward(float* out, const int* idx, const float* weight,
                                             int N, int C, int V, int* fault) {
  GRID_STRIDE(e, (long long)N * C) {
    int n = (int)(e / C), c = (int)(e % C);
    int token = idx[n];
    if (token < 0 || token >= V) {
      if (c == 0) record_fault(fault, FAULT_TOKEN, n, token, V);
      out[e] = 0.0f;
    } else {
      out[e] = weight[(long long)token * C + c];
    }
  }
}

// grid (buckets, ceil(C / blockDim.x)); bucket b is buckets[3b .. 3b + 2] = token, start, count
extern "C" __global__ void embedding_backward_buckets(float* dweight, const float* dout,
                                                      const int* positions, const int* buckets,
                                                      int numBuckets, int C, int overwrite) {
  int b = blockIdx.x;
  int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (b >= numBuckets || c >= C) return;
  int token = buckets[3 * b], start = buckets[3 * b + 1], count = buckets[3 * b + 2];
  float* dw = dweight + (long long)token * C + c;
  float s = overwrite ? 0.0f : *dw;
  for (int k = 0; k < count; k++) s += dout[(long long)positions[start + k] * C + c];
  *dw = s;
}

extern "C" __global__ void embedding_backward_columns(float* dweight, const float* dout,
                                                      const int* idx, int N, int C, int V) {
  GRID_STRIDE(c, C) {
    for (int n = 0; n < N; n++) {
      int token = idx[n];
      if (token < 0 || token >= V) continue;  // the forward recorded the fault
      dweight[(long long)token * C + c] += dout[(long long)n * C + c];
    }
  }
}
