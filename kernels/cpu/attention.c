// attention.c: causal self-attention from packed qkv, flash style on the CPU.
//   forward:  qkv (B, T, 3C) -> out (B, T, C), heads of hs = C / NH; saves only the softmax
//             statistics lse (B, NH, T) = log(sum exp(score)) per query, never the (T, T) matrix
//   backward: recomputes each query's probabilities from q, k and lse, then
//             dv += p dout;  dp = dout . v;  ds = p (dp - dout . out);  dq += ds k scale;  dk += ds q scale
// Work is split over (b, h) pairs, which own disjoint slices of dqkv, so no atomics are needed.
// Each pair accumulates in its own scratch rows and writes the result once: heads' slices of a
// row can share a cache line, and repeated writes to it from two threads would bounce it.
#include "vecmath.h"
#include <stdlib.h>

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  size_t C3 = 3 * (size_t)C;
#pragma omp parallel
  {
    float* score = malloc(sizeof(float) * T);
    float* acc = malloc(sizeof(float) * hs);
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + (size_t)b * T * C3;
        for (int t = 0; t < T; t++) {
          const float* q = base + t * C3 + h * hs;
          float max = -INFINITY;
          for (int t2 = 0; t2 <= t; t2++) {
            const float* k = base + t2 * C3 + C + h * hs;
            float s = 0;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < hs; i++) s += q[i] * k[i];
            s *= scale;
            score[t2] = s;
            if (s > max) max = s;
          }
          float sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int t2 = 0; t2 <= t; t2++) {
            score[t2] = expf(score[t2] - max);
            sum += score[t2];
          }
          float inv = 1.0f / sum;
          for (int i = 0; i < hs; i++) acc[i] = 0;
          for (int t2 = 0; t2 <= t; t2++) {
            const float* v = base + t2 * C3 + 2 * C + h * hs;
            float p = score[t2] * inv;
#pragma omp simd
            for (int i = 0; i < hs; i++) acc[i] += p * v[i];
          }
          float* o = out + ((size_t)b * T + t) * C + h * hs;
          for (int i = 0; i < hs; i++) o[i] = acc[i];
          lse[((size_t)b * NH + h) * T + t] = max + logf(sum);
        }
      }
    }
    free(score);
    free(acc);
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int B, int T, int C, int NH) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  size_t C3 = 3 * (size_t)C;
#pragma omp parallel
  {
    float* dk_loc = malloc(sizeof(float) * (size_t)T * hs);
    float* dv_loc = malloc(sizeof(float) * (size_t)T * hs);
    float* dq_loc = malloc(sizeof(float) * hs);
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + (size_t)b * T * C3;
        float* dbase = dqkv + (size_t)b * T * C3;
        for (size_t i = 0; i < (size_t)T * hs; i++) dk_loc[i] = dv_loc[i] = 0;
        for (int t = 0; t < T; t++) {
          const float* q = base + t * C3 + h * hs;
          const float* d = dout + ((size_t)b * T + t) * C + h * hs;
          const float* o = out + ((size_t)b * T + t) * C + h * hs;
          float l = lse[((size_t)b * NH + h) * T + t];
          float D = 0;  // sum_t2 p dp = dout . out
#pragma omp simd reduction(+ : D)
          for (int i = 0; i < hs; i++) D += d[i] * o[i];
          for (int i = 0; i < hs; i++) dq_loc[i] = 0;
          for (int t2 = 0; t2 <= t; t2++) {
            const float* k = base + t2 * C3 + C + h * hs;
            const float* v = base + t2 * C3 + 2 * C + h * hs;
            float* dk = dk_loc + (size_t)t2 * hs;
            float* dv = dv_loc + (size_t)t2 * hs;
            float s = 0, dp = 0;
#pragma omp simd reduction(+ : s, dp)
            for (int i = 0; i < hs; i++) {
              s += q[i] * k[i];
              dp += d[i] * v[i];
            }
            float p = expf(s * scale - l);
            float ds = p * (dp - D) * scale;
#pragma omp simd
            for (int i = 0; i < hs; i++) {
              dv[i] += p * d[i];
              dq_loc[i] += ds * k[i];
              dk[i] += ds * q[i];
            }
          }
          float* dq = dbase + t * C3 + h * hs;
          for (int i = 0; i < hs; i++) dq[i] += dq_loc[i];
        }
        for (int t2 = 0; t2 < T; t2++) {
          float* dk = dbase + t2 * C3 + C + h * hs;
          float* dv = dbase + t2 * C3 + 2 * C + h * hs;
          for (int i = 0; i < hs; i++) {
            dk[i] += dk_loc[(size_t)t2 * hs + i];
            dv[i] += dv_loc[(size_t)t2 * hs + i];
          }
        }
      }
    }
    free(dk_loc);
    free(dv_loc);
    free(dq_loc);
  }
}
