// residual.c: the elementwise pieces of the graph.
//   add_forward:  out[i] = a[i] + b[i % nb]     (residual adds; wpe (T, C) onto (B, T, C))
//   accumulate:   dst[i % nd] += src[i]          (gradient of an add, summed over broadcast rows)
//   scale:        out[i] = (out[i] if acc) + alpha * inp[i]
#include "parallel.h"

void add_forward(float* out, const float* a, const float* b, long n, long nb) {
#pragma omp parallel for if (n >= PAR_MIN_ELEMENTS)
  for (long r = 0; r < n / nb; r++) {
    for (long j = 0; j < nb; j++) out[r * nb + j] = a[r * nb + j] + b[j];
  }
}

void accumulate(float* dst, const float* src, long n, long nd) {
  if (n == nd) {
#pragma omp parallel for simd if (n >= PAR_MIN_ELEMENTS)
    for (long i = 0; i < n; i++) dst[i] += src[i];
    return;
  }
  // broadcast: parallel over the destination's elements, each summing its rows in order
#pragma omp parallel for if (n >= PAR_MIN_ELEMENTS)
  for (long j = 0; j < nd; j++) {
    float s = 0;
    for (long r = 0; r < n / nd; r++) s += src[r * nd + j];
    dst[j] += s;
  }
}

void scale(float* out, const float* inp, float alpha, long n, int acc) {
  if (acc) {
#pragma omp parallel for simd if (n >= PAR_MIN_ELEMENTS)
    for (long i = 0; i < n; i++) out[i] += alpha * inp[i];
  } else {
#pragma omp parallel for simd if (n >= PAR_MIN_ELEMENTS)
    for (long i = 0; i < n; i++) out[i] = alpha * inp[i];
  }
}

