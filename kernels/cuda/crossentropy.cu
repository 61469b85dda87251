// crossentropy.cu: the fused classifier (llm.c's fused_classifier): softmax, cross-entropy and
// its backward without a probability tensor.
//   crossentropy_forward_rows: rowLoss (N) = logsumexp(logits[n]) - logits[n][target[n]],
//                              logits (N, V); a block per row, one pass over the row (an online
//                              max and sum of exponentials); a target outside [0, V) records
//                              a fault and a loss of 0
//   crossentropy_forward_mean: loss[0] = mean of rowLoss, summed in double in a fixed order
//                              (one block)
//   crossentropy_backward:     dlogits[n][v] += dloss[0] / N * (softmax(logits[n])[v] - (v == target[n])),
//                              dloss read on the device; a block per row, the log-sum-exp
//                              recomputed (one pass), then one pass writing dlogits
//   crossentropy_backward_inplace: the same gradient written over the logits (llm.c's
//                              classifier: one V-wide buffer for logits and dlogits); each
//                              thread overwrites only the elements it reads, after the
//                              block's log-sum-exp has read the whole row
// Rows need not be aligned (V = 50257 is odd): loads are scalar and coalesced.
#include "common.cuh"

#define CE_THREADS 1024

DEVICE float row_logsumexp(const float* z, int V, float* scratch) {
  SoftmaxState s;
  s.max = -GPT2_INF;
  s.sum = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s = softmax_push(s, z[v]);
  s = block_softmax_merge(s, scratch);
  return s.max + logf(s.sum);
}

// grid N (rows), block CE_THREADS
extern "C" __global__ void __launch_bounds__(CE_THREADS)
    crossentropy_forward_rows(float* rowLoss, const float* logits, const int* targets, int N, int V,
                              int* fault) {
  __shared__ float scratch[64];
  int n = blockIdx.x;
  if (n >= N) return;
  const float* z = logits + (long long)n * V;
  float lse = row_logsumexp(z, V, scratch);
  if (threadIdx.x == 0) {
    int t = targets[n];
    if (t < 0 || t >= V) {
      record_fault(fault, FAULT_TARGET, n, t, V);
      rowLoss[n] = 0.0f;
    } else {
      rowLoss[n] = lse - z[t];
    }
  }
}

// one block of CE_THREADS
extern "C" __global__ void __launch_bounds__(CE_THREADS)
    crossentropy_forward_mean(float* loss, const float* rowLoss, int N) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int n = threadIdx.x; n < N; n += blockDim.x) s += (double)rowLoss[n];
  s = block_sum_double(s, scratch);
  if (threadIdx.x == 0) loss[0] = (float)(s / N);
}

// grid N (rows), block CE_THREADS
extern "C" __global__ void __launch_bounds__(CE_THREADS)
    crossentropy_backward(float* dlogits, const float* dloss, const float* logits,
                          const int* targets, int N, int V) {
  __shared__ float scratch[64];
  int n = blockIdx.x;
  if (n >= N) return;
  const float* z = logits + (long long)n * V;
  float* dz = dlogits + (long long)n * V;
  float lse = row_logsumexp(z, V, scratch);
  float g = dloss[0] / (float)N;
  int t = targets[n];  // out of range: no one-hot term (the forward recorded the fault)
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    float p = expf(z[v] - lse);
    dz[v] += g * (p - (v == t ? 1.0f : 0.0f));
  }
}

// grid N (rows), block CE_THREADS; logits (N, V) become dlogits
extern "C" __global__ void __launch_bounds__(CE_THREADS)
    crossentropy_backward_inplace(float* logits, const float* dloss, const int* targets, int N,
                                  int V) {
  __shared__ float scratch[64];
  int n = blockIdx.x;
  if (n >= N) return;
  float* z = logits + (long long)n * V;
  float lse = row_logsumexp(z, V, scratch);
  float g = dloss[0] / (float)N;
  int t = targets[n];
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    float p = expf(z[v] - lse);
    z[v] = g * (p - (v == t ? 1.0f : 0.0f));
  }
}
