// gemm.h: the project's own fp32 GEMM (gemm.c), used by matmul.c when OpenBLAS is absent or
// switched off.
#ifndef GPT2_GEMM_H
#define GPT2_GEMM_H

// C (M, N) = beta * C + A' (M, K) @ B' (K, N), all row-major, where A' is A (M, K) or, with
// transA, A^T of A stored (K, M); B' is B (K, N) or, with transB, B^T of B stored (N, K).
// beta 0 never reads C. Runs on all OpenMP threads.
void gpt2_sgemm(int transA, int transB, int M, int N, int K, const float* A, const float* B,
                float beta, float* C);

// The micro-kernel this build compiled: shape[0] vector lanes (16 AVX-512, 8 AVX2, 4 portable),
// shape[1] its rows (MR), shape[2] its columns (NR).
void gpt2_sgemm_shape(int shape[3]);

// The FLOPs of `iters` rounds of 16 independent chains of the micro-kernel's FMA instruction
// on every thread, for a benchmark to divide by the time taken: the GEMM's ceiling.
double gpt2_sgemm_fma_peak(long iters);

#endif
