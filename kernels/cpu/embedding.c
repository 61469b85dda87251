// embedding.c: embedding lookup (llm.c calls it the encoder) without the position add (that is an add op).
//   forward:  out (N, C) = weight[idx[n]]      weight is (V, C)
//   backward: dweight[idx[n]] += dout[n]       deterministic: parallel over channels, rows in order
#include <string.h>

int embedding_forward(float* out, const int* idx, const float* weight, int N, int C, int V) {
  for (int n = 0; n < N; n++) {
    if (idx[n] < 0 || idx[n] >= V) return n + 1;  // 1-based position of the bad id
  }
#pragma omp parallel for
  for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, weight + (size_t)idx[n] * C, sizeof(float) * C);
  return 0;
}

void embedding_backward(float* dweight, const float* dout, const int* idx, int N, int C) {
  const int chunk = 64;  // each thread owns whole channel chunks, so no two write one value
#pragma omp parallel for
  for (int c0 = 0; c0 < C; c0 += chunk) {
    int c1 = c0 + chunk < C ? c0 + chunk : C;
    for (int n = 0; n < N; n++) {
      float* dw = dweight + (size_t)idx[n] * C;
      const float* d = dout + (size_t)n * C;
      for (int c = c0; c < c1; c++) dw[c] += d[c];
    }
  }
}
