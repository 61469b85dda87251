// peak.c: the machine's fp32 FMA peak, measured, for MFU. Each thread runs 16 independent
// chains of 16-wide fused multiply-adds (enough to hide FMA latency on AVX-512 and AVX2),
// so the loop is bound by FMA throughput alone. Returns the FLOPs done (2 per lane per FMA).
#include <omp.h>

typedef float v16 __attribute__((vector_size(64)));

double fma_peak_flops(long iters) {
  double flops = 0;
#pragma omp parallel reduction(+ : flops)
  {
    v16 acc[16];
    v16 a, b;
    for (int j = 0; j < 16; j++) {
      a[j] = 1.0f + 1e-7f * j;
      b[j] = 1e-7f;
    }
    for (int i = 0; i < 16; i++) acc[i] = b * (float)i;
    for (long it = 0; it < iters; it++) {
      for (int i = 0; i < 16; i++) acc[i] = acc[i] * a + b;
    }
    float sink = 0;
    for (int i = 0; i < 16; i++) sink += acc[i][0];
    // keep the result alive without changing the count
    flops += 2.0 * 16 * 16 * iters + (sink == 12345.0f ? 1 : 0);
  }
  return flops;
}
