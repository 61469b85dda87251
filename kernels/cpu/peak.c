// peak.c: the machine's fp32 FMA peak, measured, for MFU. It runs gemm.c's
// gpt2_sgemm_fma_peak: on every thread, independent chains (16 on AVX-512, 12 where there are 16
// vector registers) of the micro-kernel's own fused multiply-add instruction (enough to hide its
// latency), so the loop is bound by FMA throughput alone. (A loop of `acc * a + b` in C is not that: under -std=c11 GCC compiles it
// to a multiply and an add, and the peak read about 12% low.) Returns the FLOPs done.
#include "gemm.h"

double fma_peak_flops(long iters) { return gpt2_sgemm_fma_peak(iters); }
