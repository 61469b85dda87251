// gemm.h: the project's own fp32 GEMM (gemm.c), used by matmul.c when OpenBLAS is absent or
// switched off.
#ifndef GPT2_GEMM_H
#define GPT2_GEMM_H

// C (M, N) = beta * C + A' (M, K) @ B' (K, N), all row-major, where A' is A (M, K) or, with
// transA, A^T of A stored (K, M); B' is B (K, N) or, with transB, B^T of B stored (N, K).
// beta 0 never reads C. Runs on all OpenMP threads.
void gpt2_sgemm(int transA, int transB, int M, int N, int K, const float* A, const float* B,
                float beta, float* C);

// gpt2_sgemm, with bf16 nonzero: every element of A' and B' rounded to bf16 (to nearest even)
// before it is multiplied, the products summed in fp32 (PyTorch's autocast to bf16).
void gpt2_gemm(int transA, int transB, int M, int N, int K, const float* A, const float* B,
               float beta, float* C, int bf16);

// gpt2_gemm with an epilogue (kernel fusion): bias (N), where not null, added to every row of
// C as the first block of K is stored; gelu (M, N), where not null, = GELU(C) written as the
// last block is stored, while the tile is still in L1. C itself is written in full as ever.
void gpt2_gemm_epilogue(int transA, int transB, int M, int N, int K, const float* A,
                        const float* B, float beta, float* C, const float* bias, float* gelu,
                        int bf16);

// The paths of bf16 GEMMs: vdpbf16ps (AVX-512 BF16, where the CPU has it: supported) or bf16
// operands on the fp32 FMA micro-kernel (everywhere). gpt2_set_bf16_dot(0) forces the FMA
// path, (1) takes vdpbf16ps where supported; each returns whether vdpbf16ps is used now.
// (compiled: whether this build has the vdpbf16ps micro-kernel at all; every x86-64 build with
// GCC 10+ or Clang whose NR is a multiple of 16 does)
int gpt2_bf16_dot_compiled(void);
int gpt2_bf16_dot_supported(void);
int gpt2_set_bf16_dot(int on);
int gpt2_bf16_dot(void);

// The FLOPs of `iters` rounds of 16 vdpbf16ps chains on every thread (0 without AVX-512 BF16).
double gpt2_bf16_dot_peak(long iters);

// The micro-kernel this build compiled: shape[0] vector lanes (16 AVX-512, 8 AVX2, 4 portable),
// shape[1] its rows (MR), shape[2] its columns (NR).
void gpt2_sgemm_shape(int shape[3]);

// The FLOPs of `iters` rounds of 16 independent chains of the micro-kernel's FMA instruction
// on every thread, for a benchmark to divide by the time taken: the GEMM's ceiling.
double gpt2_sgemm_fma_peak(long iters);

#endif
