// attention_naive.cu: causal self-attention with the (B, NH, T, T) matrix materialised, as
// the lecture's model does before flash attention (the speedup ladder's rung before it).
//   forward:  att_naive_scores:   att[b, h, t, t2] = q_t . k_t2 / sqrt(hs) for t2 <= t, else 0
//             att_naive_softmax:  each row of att softmaxed in place over t2 <= t (a warp per row)
//             att_naive_values:   out[b, t, h hs + i] = sum_t2 att[b, h, t, t2] v_t2[i]
//   backward: att_naive_datt:     datt[b, h, t, t2] = dout_t . v_t2 for t2 <= t
//             att_naive_dpre:     datt := att (datt - sum_t2 att datt) / sqrt(hs), in place
//             att_naive_dv:       dv_t2 += sum_{t >= t2} att[t, t2] dout_t
//             att_naive_dq:       dq_t  += sum_{t2 <= t} dpre[t, t2] k_t2
//             att_naive_dk:       dk_t2 += sum_{t >= t2} dpre[t, t2] q_t
// A thread per output element, each summing in a fixed order: deterministic, and slow on
// purpose (T^2 memory traffic), as the unfused model is.
#include "common.cuh"

extern "C" __global__ void att_naive_scores(float* att, const float* qkv, int B, int T, int C,
                                            int NH) {
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  GRID_STRIDE(e, (long long)B * NH * T * T) {
    int t2 = (int)(e % T);
    long long r = e / T;
    int t = (int)(r % T), bh = (int)(r / T), b = bh / NH, h = bh % NH;
    float s = 0.0f;
    if (t2 <= t) {
      const float* q = qkv + ((long long)b * T + t) * C3 + h * hs;
      const float* k = qkv + ((long long)b * T + t2) * C3 + C + h * hs;
      for (int i = 0; i < hs; i++) s += q[i] * k[i];
      s *= scale;
    }
    att[e] = s;
  }
}

// a warp per row (b, h, t)
extern "C" __global__ void att_naive_softmax(float* att, int B, int NH, int T) {
  int lane = threadIdx.x % WARP;
  long long rows = (long long)B * NH * T;
  long long warps = (long long)gridDim.x * (blockDim.x / WARP);
  for (long long r = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP; r < rows;
       r += warps) {
    int t = (int)(r % T);
    float* row = att + r * T;
    float m = -GPT2_INF;
    for (int t2 = lane; t2 <= t; t2 += WARP) m = fmaxf(m, row[t2]);
    m = warp_max(m);
    float s = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += WARP) s += expf(row[t2] - m);
    s = warp_sum(s);
    for (int t2 = lane; t2 <= t; t2 += WARP) row[t2] = expf(row[t2] - m) / s;
  }
}

extern "C" __global__ void att_naive_values(float* out, const float* att, const float* qkv, int B,
                                            int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  GRID_STRIDE(e, (long long)B * T * C) {
    int c = (int)(e % C), h = c / hs, i = c % hs;
    long long bt = e / C;
    int t = (int)(bt % T), b = (int)(bt / T);
    const float* a = att + (((long long)b * NH + h) * T + t) * T;
    const float* v = qkv + (long long)b * T * C3 + 2 * C + h * hs + i;
    float s = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) s += a[t2] * v[(long long)t2 * C3];
    out[e] = s;
  }
}

extern "C" __global__ void att_naive_datt(float* datt, const float* dout, const float* qkv, int B,
                                          int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  GRID_STRIDE(e, (long long)B * NH * T * T) {
    int t2 = (int)(e % T);
    long long r = e / T;
    int t = (int)(r % T), bh = (int)(r / T), b = bh / NH, h = bh % NH;
    float s = 0.0f;
    if (t2 <= t) {
      const float* d = dout + ((long long)b * T + t) * C + h * hs;
      const float* v = qkv + ((long long)b * T + t2) * C3 + 2 * C + h * hs;
      for (int i = 0; i < hs; i++) s += d[i] * v[i];
    }
    datt[e] = s;
  }
}

// a warp per row (b, h, t)
extern "C" __global__ void att_naive_dpre(float* datt, const float* att, int B, int NH, int T,
                                          float scale) {
  int lane = threadIdx.x % WARP;
  long long rows = (long long)B * NH * T;
  long long warps = (long long)gridDim.x * (blockDim.x / WARP);
  for (long long r = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP; r < rows;
       r += warps) {
    int t = (int)(r % T);
    float* d = datt + r * T;
    const float* a = att + r * T;
    float dot = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += WARP) dot += a[t2] * d[t2];
    dot = warp_sum(dot);
    for (int t2 = lane; t2 <= t; t2 += WARP) d[t2] = a[t2] * (d[t2] - dot) * scale;
  }
}

extern "C" __global__ void att_naive_dv(float* dqkv, const float* att, const float* dout, int B,
                                        int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  GRID_STRIDE(e, (long long)B * T * C) {
    int c = (int)(e % C), h = c / hs;
    long long bt = e / C;
    int t2 = (int)(bt % T), b = (int)(bt / T);
    const float* a = att + ((long long)b * NH + h) * T * T + t2;  // column t2
    const float* d = dout + (long long)b * T * C + c;
    float s = 0.0f;
    for (int t = t2; t < T; t++) s += a[(long long)t * T] * d[(long long)t * C];
    dqkv[bt * C3 + 2 * C + c] += s;
  }
}

extern "C" __global__ void att_naive_dq(float* dqkv, const float* dpre, const float* qkv, int B,
                                        int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  GRID_STRIDE(e, (long long)B * T * C) {
    int c = (int)(e % C), h = c / hs;
    long long bt = e / C;
    int t = (int)(bt % T), b = (int)(bt / T);
    const float* a = dpre + (((long long)b * NH + h) * T + t) * T;
    const float* k = qkv + (long long)b * T * C3 + C + c;
    float s = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) s += a[t2] * k[(long long)t2 * C3];
    dqkv[bt * C3 + c] += s;
  }
}

extern "C" __global__ void att_naive_dk(float* dqkv, const float* dpre, const float* qkv, int B,
                                        int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  GRID_STRIDE(e, (long long)B * T * C) {
    int c = (int)(e % C), h = c / hs;
    long long bt = e / C;
    int t2 = (int)(bt % T), b = (int)(bt / T);
    const float* a = dpre + ((long long)b * NH + h) * T * T + t2;  // column t2
    const float* q = qkv + (long long)b * T * C3 + c;
    float s = 0.0f;
    for (int t = t2; t < T; t++) s += a[(long long)t * T] * q[(long long)t * C3];
    dqkv[bt * C3 + C + c] += s;
  }
}
