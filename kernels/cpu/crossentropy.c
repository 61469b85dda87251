// crossentropy.c: the fused classifier loss, no probability tensor kept.
//   forward:  loss[0] = mean over N rows of logsumexp(logits[n]) - logits[n][target[n]]
//   backward: dlogits[n] += (softmax(logits[n]) - onehot(target[n])) * dloss[0] / N,
//             recomputing the softmax row by row
// Rows run in parallel; sums are in double, so V = 50304 loses nothing.
#include "vecmath.h"
#include <stddef.h>

static double row_logsumexp(const float* z, int V) {
  float max = -INFINITY;
#pragma omp simd reduction(max : max)
  for (int v = 0; v < V; v++) max = z[v] > max ? z[v] : max;
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int v = 0; v < V; v++) sum += expf(z[v] - max);
  return max + log(sum);
}

// Returns 0, or 1 + the first row whose target is outside [0, V).
int crossentropy_forward(float* loss, const float* logits, const int* targets, int N, int V) {
  for (int n = 0; n < N; n++) {
    if (targets[n] < 0 || targets[n] >= V) return n + 1;
  }
  double total = 0;
#pragma omp parallel for reduction(+ : total)
  for (int n = 0; n < N; n++) {
    const float* z = logits + (size_t)n * V;
    total += row_logsumexp(z, V) - z[targets[n]];
  }
  loss[0] = (float)(total / N);
  return 0;
}

void crossentropy_backward(float* dlogits, const float* dloss, const float* logits,
                           const int* targets, int N, int V) {
  float g = dloss[0] / N;
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float* z = logits + (size_t)n * V;
    float* dz = dlogits + (size_t)n * V;
    float l = (float)row_logsumexp(z, V);
#pragma omp simd
    for (int v = 0; v < V; v++) dz[v] += g * expf(z[v] - l);
    dz[targets[n]] -= g;
  }
}
