// attention_rows.h: the steps of one query's attention that attention.c (training) and
// attention_decode.c (generation over the KV cache) share: the softmax of a row of scores and
// the weighted sum of value rows.
#ifndef GPT2_ATTENTION_ROWS_H
#define GPT2_ATTENTION_ROWS_H
#include <stddef.h>

#include "vecf.h"
#include "vecmath.h"

// s[0..n) = softmax(scale * s[0..n)) in place; returns log(sum exp(scale * s)), the statistic
// the backward pass recomputes the probabilities from
static inline float softmax_scaled(float* s, int n, float scale) {
  float max = -INFINITY;
#pragma omp simd reduction(max : max)
  for (int j = 0; j < n; j++) {
    s[j] *= scale;
    max = s[j] > max ? s[j] : max;
  }
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; j++) {
    s[j] = expf(s[j] - max);
    sum += s[j];
  }
  float inv = 1.0f / sum;
#pragma omp simd
  for (int j = 0; j < n; j++) s[j] *= inv;
  return max + logf(sum);
}

// o[0..hs) = sum_t2 p[t2] * v[t2][0..hs) over n rows of stride C3: up to four vectors of
// channels at a time, their sums in registers through all n rows
static inline void weighted_rows(float* o, const float* p, const float* v, size_t C3, int n, int hs) {
  int i0 = 0;
  for (; i0 + 4 * VL <= hs; i0 += 4 * VL) {
    vf a0 = vf_zero(), a1 = vf_zero(), a2 = vf_zero(), a3 = vf_zero();
    for (int t2 = 0; t2 < n; t2++) {
      const float* r = v + t2 * C3 + i0;
      vf pr = vf_splat(p[t2]);
      a0 = vf_fma(pr, vf_loadu(r), a0);
      a1 = vf_fma(pr, vf_loadu(r + VL), a1);
      a2 = vf_fma(pr, vf_loadu(r + 2 * VL), a2);
      a3 = vf_fma(pr, vf_loadu(r + 3 * VL), a3);
    }
    vf_storeu(o + i0, a0);
    vf_storeu(o + i0 + VL, a1);
    vf_storeu(o + i0 + 2 * VL, a2);
    vf_storeu(o + i0 + 3 * VL, a3);
  }
  for (; i0 + VL <= hs; i0 += VL) {
    vf a0 = vf_zero();
    for (int t2 = 0; t2 < n; t2++) a0 = vf_fma(vf_splat(p[t2]), vf_loadu(v + t2 * C3 + i0), a0);
    vf_storeu(o + i0, a0);
  }
  for (int i = i0; i < hs; i++) {  // a head size that is not a multiple of VL
    float a = 0;
    for (int t2 = 0; t2 < n; t2++) a += p[t2] * v[t2 * C3 + i];
    o[i] = a;
  }
}

#endif
