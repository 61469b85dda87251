// gelu.c: GELU with the tanh approximation, elementwise over n values.
//   forward:  out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   backward: dinp += gelu'(x) * dout
#include "gelu.h"

void gelu_forward(float* out, const float* inp, long n) {
#pragma omp parallel for simd
  for (long i = 0; i < n; i++) out[i] = gelu_tanh(inp[i]);
}

void gelu_backward(float* dinp, const float* inp, const float* dout, long n) {
#pragma omp parallel for simd
  for (long i = 0; i < n; i++) {
    float x = inp[i];
    float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
    float sech2 = 1.0f - th * th;
    float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] += local * dout[i];
  }
}
