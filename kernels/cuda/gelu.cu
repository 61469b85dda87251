// gelu.cu: GELU, tanh approximation (PyTorch's approximate="tanh", HF's "gelu_new").
//   gelu_forward:  out[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   gelu_backward: dinp[i] += dout[i] * (0.5 (1 + th) + 0.5 x (1 - th^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)),
//                  or = with accumulate 0 (a gradient's first contribution: no zero fill before)
// Elementwise and memory-bound: one grid-stride pass each.
#include "common.cuh"

#define GELU_SCALE 0.7978845608028654f  // sqrt(2 / pi)

extern "C" __global__ void gelu_forward(float* out, const float* inp, long long n) {
  GRID_STRIDE(i, n) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
  }
}

extern "C" __global__ void gelu_backward(float* dinp, const float* inp, const float* dout,
                                         long long n, int accumulate) {
  GRID_STRIDE(i, n) {
    float x = inp[i];
    float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
    float sech2 = 1.0f - th * th;
    float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = accumulate ? dinp[i] + local * dout[i] : local * dout[i];
  }
}
