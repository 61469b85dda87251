// adamw.c: one AdamW update in place over n parameters (torch.optim.AdamW's arithmetic):
//   g = grad * grad_scale (clipping's factor, folded in: clipping needs no pass of its own)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p = p (1 - lr wd) - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Memory-bound (16 bytes read and 12 written per parameter), so one pass, all threads.
#include <math.h>

#include "parallel.h"

void adamw_update(float* param, const float* grad, float* m, float* v, long n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int step,
                  float grad_scale) {
  float step_size = lr / (1.0f - powf(beta1, step));
  float sqrt_bc2 = sqrtf(1.0f - powf(beta2, step));
  float decay = 1.0f - lr * weight_decay;
#pragma omp parallel for simd if (n >= PAR_MIN_ELEMENTS)
  for (long i = 0; i < n; i++) {
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
  }
}
