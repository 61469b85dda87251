// attention_decode.c: causal self-attention for generation, over a KV cache.
//   kv_cache_append:  the keys and values of qkv (B, T, 3C), T new positions, copied into the
//                     caches k, v (B, NH, maxT, hs) at positions pos .. pos + T - 1
//   attention_decode: out (B, T, C) = each new query (position pos + t) attending to cached
//                     positions 0 .. pos + t: scores, softmax, weighted sum of values
// A head's cached keys are contiguous (head-major), so a query walks one dense block of
// memory. Work is split over (b, h, t) rows, which own disjoint slices of out; with T = 1 at
// each step of generation that is B NH rows (12 per sequence for GPT-2 124M).
#include "attention_rows.h"
#include <stdlib.h>
#include <string.h>

void kv_cache_append(float* k, float* v, const float* qkv, int B, int T, int C, int NH, int pos,
                     int maxT) {
  int hs = C / NH;
  size_t C3 = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      for (int t = 0; t < T; t++) {
        const float* src = qkv + ((size_t)b * T + t) * C3 + h * hs;
        size_t dst = (((size_t)b * NH + h) * maxT + pos + t) * hs;
        memcpy(k + dst, src + C, sizeof(float) * hs);
        memcpy(v + dst, src + 2 * C, sizeof(float) * hs);
      }
    }
  }
}

void attention_decode(float* out, const float* qkv, const float* k, const float* v, int B,
                      int T, int C, int NH, int pos, int maxT) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  size_t C3 = 3 * (size_t)C;
#pragma omp parallel
  {
    float* score = malloc(sizeof(float) * ((size_t)pos + T));
#pragma omp for collapse(3) schedule(dynamic)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        for (int t = 0; t < T; t++) {
          const float* q = qkv + ((size_t)b * T + t) * C3 + h * hs;
          const float* kh = k + ((size_t)b * NH + h) * maxT * hs;
          const float* vh = v + ((size_t)b * NH + h) * maxT * hs;
          int n = pos + t + 1;  // the keys this query sees
          for (int j = 0; j < n; j++) {
            const float* kj = kh + (size_t)j * hs;
            float s = 0;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < hs; i++) s += q[i] * kj[i];
            score[j] = s;
          }
          softmax_scaled(score, n, scale);
          weighted_rows(out + ((size_t)b * T + t) * C + h * hs, score, vh, hs, n, hs);
        }
      }
    }
    free(score);
  }
}
