// residual.cu: elementwise adds with broadcast, gradient accumulation and scaling.
//   add_forward:   out[i] = a[i] + b[i % nb]                  (residual adds; wpe (T, C) onto (B, T, C))
//   accumulate:    dst[j] += sum of src[i] over i = j (mod nDst), in order of i
//                  (the gradient of a broadcast add; nDst = n is a plain +=); with
//                  `overwrite`, dst[j] = the sum (a gradient's first contribution)
//   scale_forward: out[i] = alpha * inp[i], or out[i] += alpha * inp[i]
// All memory-bound, one grid-stride pass. accumulate is deterministic: each dst element is
// owned by one thread, which adds its src elements in the reference's order; for a long,
// thin broadcast (few dst elements, many rows) lib/backends/cuda uses matmul_bias.cu's
// column sums instead. scale computes in double, as the reference does (alpha is a JS
// number), so results are the reference's bit for bit.
#include "common.cuh"

extern "C" __global__ void add_forward(float* out, const float* a, const float* b, long long n,
                                       long long nb) {
  if (nb == n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
  } else {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i % nb];
  }
}

extern "C" __global__ void accumulate(float* dst, const float* src, long long n, long long nDst,
                                      int overwrite) {
  GRID_STRIDE(j, nDst) {
    float s = overwrite ? 0.0f : dst[j];
    for (long long i = j; i < n; i += nDst) s += src[i];
    dst[j] = s;
  }
}

extern "C" __global__ void scale_forward(float* out, const float* inp, double alpha, long long n,
                                         int accumulate) {
  if (accumulate) {
    // __dadd_rn and __dmul_rn are never contracted into an FMA: two roundings, as in JS
    GRID_STRIDE(i, n) out[i] = (float)__dadd_rn((double)out[i], __dmul_rn(alpha, (double)inp[i]));
  } else {
    GRID_STRIDE(i, n) out[i] = (float)__dmul_rn(alpha, (double)inp[i]);
  }
}
