// adamw.cu: AdamW with torch.optim.AdamW's arithmetic (decoupled weight decay, bias
// correction), the reference backend's exactly: in double, stored as f32.
//   adamw_update:  one fused pass over n parameters:
//                    g = grad * gradScale, rounded to f32 as a gradient scaled in place
//                    would be (gradient clipping's factor, folded in as llm.c does)
//                    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//                    p = p * decay - stepSize * m / (sqrt(v) / sqrtBc2 + eps)
//                  with decay = 1 - lr wd, stepSize = lr / (1 - b1^t), sqrtBc2 = sqrt(1 - b2^t)
//                  computed on the host; when paramBf16 is not null it also writes the bf16
//                  copy of the new parameter (bf16 matmuls read it), saving a pass
//   adamw_moments, adamw_apply: the same in two passes (m and v, then p from the stored f32
//                  moments), the unfused rung of the speedup ladder
// Memory-bound: 16 bytes read and 12 written per parameter. The double arithmetic uses the
// non-contracting intrinsics so each step rounds as JS's does.
#include "common.cuh"

// grad * gradScale rounded to f32, as the reference's Math.fround (exact for a scale of 1)
DEVICE double scaled_gradient(float grad, double gradScale) {
  return (double)(float)__dmul_rn((double)grad, gradScale);  // (a cast rounds to nearest)
}

DEVICE double adamw_step(double p, double m, double v, double eps, double stepSize,
                         double sqrtBc2, double decay) {
  double denom = __dadd_rn(__ddiv_rn(__dsqrt_rn(v), sqrtBc2), eps);
  return __dsub_rn(__dmul_rn(p, decay), __ddiv_rn(__dmul_rn(stepSize, m), denom));
}

// beta * old + (1 - beta) * x, and beta * old + (1 - beta) * x * x, in JS's order of operations
DEVICE double ema(double beta, double old, double x) {
  return __dadd_rn(__dmul_rn(beta, old), __dmul_rn(__dsub_rn(1.0, beta), x));
}

DEVICE double ema_sq(double beta, double old, double x) {
  return __dadd_rn(__dmul_rn(beta, old), __dmul_rn(__dmul_rn(__dsub_rn(1.0, beta), x), x));
}

extern "C" __global__ void adamw_update(float* param, const float* grad, float* m, float* v,
                                        unsigned short* paramBf16, long long n, double beta1,
                                        double beta2, double eps, double stepSize, double sqrtBc2,
                                        double decay, double gradScale) {
  GRID_STRIDE(i, n) {
    double g = scaled_gradient(grad[i], gradScale);
    double mi = ema(beta1, (double)m[i], g);
    double vi = ema_sq(beta2, (double)v[i], g);
    m[i] = (float)mi;
    v[i] = (float)vi;
    float p = (float)adamw_step((double)param[i], mi, vi, eps, stepSize, sqrtBc2, decay);
    param[i] = p;
    if (paramBf16) paramBf16[i] = f32_to_bf16_bits(p);
  }
}

extern "C" __global__ void adamw_moments(const float* grad, float* m, float* v, long long n,
                                         double beta1, double beta2, double gradScale) {
  GRID_STRIDE(i, n) {
    double g = scaled_gradient(grad[i], gradScale);
    m[i] = (float)ema(beta1, (double)m[i], g);
    v[i] = (float)ema_sq(beta2, (double)v[i], g);
  }
}

extern "C" __global__ void adamw_apply(float* param, const float* m, const float* v,
                                       unsigned short* paramBf16, long long n, double eps,
                                       double stepSize, double sqrtBc2, double decay) {
  GRID_STRIDE(i, n) {
    float p = (float)adamw_step((double)param[i], (double)m[i], (double)v[i], eps, stepSize,
                                sqrtBc2, decay);
    param[i] = p;
    if (paramBf16) paramBf16[i] = f32_to_bf16_bits(p);
  }
}
