// gelu.h: GELU with the tanh approximation on one value, shared by gelu.c (the elementwise
// kernel) and gemm.c (GELU in the GEMM's epilogue, kernel fusion), so both round alike.
#ifndef GPT2_GELU_H
#define GPT2_GELU_H
#include "vecmath.h"

#define GELU_SCALE 0.7978845608028654f

// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
static inline float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
}

// out (N, OC) = GELU(inp (N, OC)), elementwise over n values (gelu.c)
void gelu_forward(float* out, const float* inp, long n);

#endif
