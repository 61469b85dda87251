// attention_decode.cu: causal self-attention for generation, over a KV cache.
//   kv_cache_append:  the keys and values of qkv (B, T, 3C), T new positions, copied into the
//                     caches k, v (B, NH, maxT, hs) at positions pos .. pos + T - 1; a thread
//                     per channel of a new position
//   attention_decode: out (B, T, C) = each new query (position pos + t) attending to cached
//                     positions 0 .. pos + t; a block per (b, h, t) row: its threads stride
//                     over the keys (scores and an online softmax state each), merge the
//                     states, turn the scores into probabilities, then each of hs threads
//                     sums one output channel over the keys
// A head's cached keys are contiguous (head-major). Dynamic shared memory holds q (hs
// floats), the merge's scratch (64) and one probability per key (pos + T at most):
// attentionDecodeSmemBytes in lib/backends/cuda/kernels.ts, which must match this layout.
// Deterministic: every sum runs in a fixed order, no atomics.
#include "common.cuh"

#define DECODE_THREADS 128

extern "C" __global__ void kv_cache_append(float* k, float* v, const float* qkv, int B, int T,
                                           int C, int NH, int pos, int maxT) {
  int hs = C / NH;
  GRID_STRIDE(e, (long long)B * T * C) {
    int c = (int)(e % C), t = (int)((e / C) % T);
    long long b = e / ((long long)C * T);
    int h = c / hs, i = c % hs;
    long long src = (b * T + t) * 3LL * C + c;
    long long dst = ((b * NH + h) * maxT + pos + t) * (long long)hs + i;
    k[dst] = qkv[src + C];
    v[dst] = qkv[src + 2LL * C];
  }
}

extern "C" __global__ void __launch_bounds__(DECODE_THREADS)
    attention_decode(float* out, const float* qkv, const float* k, const float* v, int B, int T,
                     int C, int NH, int pos, int maxT) {
  int hs = C / NH;
  int row = blockIdx.x, t = row % T, bh = row / T, b = bh / NH, h = bh % NH;
  int n = pos + t + 1;  // the keys this query sees
  float* qs = reinterpret_cast<float*>(gpt2_dynamic_smem);  // [hs]
  float* scratch = qs + hs;                                   // [64]
  float* prob = scratch + 64;                                 // [pos + T]
  const float* q = qkv + ((long long)b * T + t) * 3LL * C + h * hs;
  const float* kh = k + ((long long)b * NH + h) * maxT * hs;
  const float* vh = v + ((long long)b * NH + h) * maxT * hs;
  float scale = 1.0f / sqrtf((float)hs);
  for (int i = threadIdx.x; i < hs; i += blockDim.x) qs[i] = q[i];
  __syncthreads();
  SoftmaxState state = {-GPT2_INF, 0.0f};
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float* kj = kh + (long long)j * hs;
    float s = 0.0f;
    for (int i = 0; i < hs; i++) s += qs[i] * kj[i];
    s *= scale;
    prob[j] = s;
    state = softmax_push(state, s);
  }
  state = block_softmax_merge(state, scratch);  // every thread: the row's max and sum
  float inv = 1.0f / state.sum;
  for (int j = threadIdx.x; j < n; j += blockDim.x) prob[j] = expf(prob[j] - state.max) * inv;
  __syncthreads();
  float* o = out + ((long long)b * T + t) * C + h * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < n; j++) acc += prob[j] * vh[(long long)j * hs + i];
    o[i] = acc;
  }
}
