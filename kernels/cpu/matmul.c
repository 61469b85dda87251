// matmul.c: nn.Linear for the native backend, llm.c's matmul_forward/backward.
//   forward:  out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC)
//   backward: dinp (N, C) += dout @ weight;  dweight (OC, C) += dout^T @ inp;  dbias += sum_n dout
// GEMMs go to OpenBLAS's cblas_sgemm when built with -DUSE_CBLAS (and not switched off),
// otherwise to the project's own blocked GEMM, gpt2_sgemm in gemm.c. With bf16 set (--precision
// bf16) every GEMM's operands are rounded to bf16 and its products summed in fp32, always in
// the own GEMM (gpt2_gemm), which rounds them as it packs them; the bias sums stay fp32.
// matmul_forward_fused (kernel fusion, torch.compile's rung) adds the bias in the GEMM's
// epilogue instead of copying it into out first, and can write GELU(out) in the same pass
// (the MLP's c_fc and GELU, as llm.c's matmul_forward_cublaslt with its GELU epilogue).
#include <stddef.h>
#include <string.h>

#include "gelu.h"
#include "gemm.h"

#ifdef USE_CBLAS
enum { CblasRowMajor = 101 };
enum { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);
#endif

#ifdef USE_CBLAS
static int use_cblas = 1;
#else
static int use_cblas = 0;
#endif

// Whether GEMMs go to OpenBLAS; tests switch it off to check the fallback in the same build.
int gpt2_has_cblas(void) { return use_cblas; }

void gpt2_set_cblas(int on) {
#ifdef USE_CBLAS
  use_cblas = on;
#else
  (void)on;
#endif
}

static void gemm(int transA, int transB, int M, int N, int K, const float* A, const float* B,
                 float beta, float* C, int bf16) {
#ifdef USE_CBLAS
  if (use_cblas && !bf16) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, transA ? M : K, B,
                transB ? K : N, beta, C, N);
    return;
  }
#endif
  gpt2_gemm(transA, transB, M, N, K, A, B, beta, C, bf16);
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC, int bf16) {
  if (bias) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, sizeof(float) * OC);
  }
  gemm(0, 1, N, OC, C, inp, weight, bias ? 1.0f : 0.0f, out, bf16);
}

// out (N, OC) = inp @ weight^T + bias, the bias added in the GEMM's epilogue; gelu_out, where
// not null, = GELU(out), written as each tile of out is finished. With OpenBLAS (f32) the
// bias is copied first and GELU is a pass of its own, as unfused.
void matmul_forward_fused(float* out, float* gelu_out, const float* inp, const float* weight,
                          const float* bias, int N, int C, int OC, int bf16) {
#ifdef USE_CBLAS
  if (use_cblas && !bf16) {
    matmul_forward(out, inp, weight, bias, N, C, OC, 0);
    if (gelu_out) gelu_forward(gelu_out, out, (long)N * OC);
    return;
  }
#endif
  gpt2_gemm_epilogue(0, 1, N, OC, C, inp, weight, 0.0f, out, bias, gelu_out, bf16);
}

// Columns of dout per block of dbias's sums: a few cache lines of each row, in registers.
#define DBIAS_COLUMNS 32

// dbias (OC) += the sum over the N rows of dout (N, OC), each column's sum in double, rows in
// order. A block of columns at a time walks the rows with its sums side by side (vectors across
// the columns), rather than one column at a time down a stride of OC floats, which read a new
// cache line for every element and waited on one add after another.
static void dbias_backward(float* dbias, const float* dout, int N, int OC) {
  int blocks = (OC + DBIAS_COLUMNS - 1) / DBIAS_COLUMNS;
#pragma omp parallel for
  for (int b = 0; b < blocks; b++) {
    int o0 = b * DBIAS_COLUMNS, w = OC - o0 < DBIAS_COLUMNS ? OC - o0 : DBIAS_COLUMNS;
    double s[DBIAS_COLUMNS] = {0};
    if (w == DBIAS_COLUMNS) {
      for (int n = 0; n < N; n++) {
        const float* row = dout + (size_t)n * OC + o0;
#pragma omp simd
        for (int j = 0; j < DBIAS_COLUMNS; j++) s[j] += row[j];
      }
    } else {
      for (int n = 0; n < N; n++) {
        const float* row = dout + (size_t)n * OC + o0;
        for (int j = 0; j < w; j++) s[j] += row[j];
      }
    }
    for (int j = 0; j < w; j++) dbias[o0 + j] += (float)s[j];
  }
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, int bf16) {
  if (dinp) gemm(0, 0, N, C, OC, dout, weight, 1.0f, dinp, bf16);
  if (dweight) gemm(1, 0, OC, C, N, dout, inp, 1.0f, dweight, bf16);
  if (dbias) dbias_backward(dbias, dout, N, OC);
}

// For the benchmark: one GEMM of the given shape, C = A @ B^T, as matmul_forward does.
void gemm_nt(float* c, const float* a, const float* b, int M, int N, int K, int bf16) {
  gemm(0, 1, M, N, K, a, b, 0.0f, c, bf16);
}
