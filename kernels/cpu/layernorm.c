// layernorm.c: LayerNorm over the last dim (eps 1e-5), llm.c's layernorm_forward/backward.
//   forward:  inp (N, C) -> out (N, C), saving mean (N) and rstd (N)
//   backward: dinp += ...; dweight (C) += sum_n dout * norm; dbias (C) += sum_n dout
// The weight and bias gradients are summed per thread, then reduced, so rows run in parallel.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float* x = inp + (size_t)n * C;
    double m = 0;
#pragma omp simd reduction(+ : m)
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    double v = 0;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    v /= C;
    float s = (float)(1.0 / sqrt(v + 1e-5));
    float mf = (float)m;
    float* o = out + (size_t)n * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - mf) * s * weight[c] + bias[c];
    mean[n] = mf;
    rstd[n] = s;
  }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
  int nt = omp_get_max_threads();
  float* partial = calloc((size_t)nt * 2 * C, sizeof(float));
#pragma omp parallel
  {
    float* dw = partial + (size_t)omp_get_thread_num() * 2 * C;
    float* db = dw + C;
#pragma omp for
    for (int n = 0; n < N; n++) {
      const float* x = inp + (size_t)n * C;
      const float* d = dout + (size_t)n * C;
      float* di = dinp + (size_t)n * C;
      float m = mean[n], s = rstd[n];
      float dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
      for (int c = 0; c < C; c++) {
        float norm = (x[c] - m) * s;
        float dnorm = weight[c] * d[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
      }
      dnorm_mean /= C;
      dnorm_norm_mean /= C;
      for (int c = 0; c < C; c++) {
        float norm = (x[c] - m) * s;
        float dnorm = weight[c] * d[c];
        db[c] += d[c];
        dw[c] += norm * d[c];
        di[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
      }
    }
  }
  for (int t = 0; t < nt; t++) {
    for (int c = 0; c < C; c++) {
      dweight[c] += partial[(size_t)t * 2 * C + c];
      dbias[c] += partial[(size_t)t * 2 * C + C + c];
    }
  }
  free(partial);
}
