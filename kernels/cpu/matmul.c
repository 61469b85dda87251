// matmul.c: nn.Linear for the native backend, llm.c's matmul_forward/backward.
//   forward:  out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC)
//   backward: dinp (N, C) += dout @ weight;  dweight (OC, C) += dout^T @ inp;  dbias += sum_n dout
// GEMMs go to OpenBLAS's cblas_sgemm when built with -DUSE_CBLAS, otherwise to the blocked
// kernel below (packed panels, a 4x16 register tile of FMAs, OpenMP over row blocks).
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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

// C (M, N) = beta * C + A' (M, K) @ B' (K, N), where A' = A or A^T and B' = B or B^T as stored
// row-major. The fallback when there is no BLAS, in the BLIS style: A' is packed into strips
// of MR rows and B' into panels of NR columns, both k-major, so the micro-kernel streams
// through them contiguously and keeps an MR x NR tile of C in vector registers. Threads take
// whole panels of B', and each panel meets every strip of A' while it is in cache.
#define MR 6
#define NR 32
typedef float v16 __attribute__((vector_size(64)));

static void micro_kernel(int K, const float* ap, const float* bp, float acc[MR][NR]) {
  v16 c[MR][2];
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = (v16){0};
  for (int k = 0; k < K; k++) {
    v16 b0, b1;
    __builtin_memcpy(&b0, bp + (size_t)k * NR, sizeof b0);
    __builtin_memcpy(&b1, bp + (size_t)k * NR + 16, sizeof b1);
    const float* a = ap + (size_t)k * MR;
    for (int i = 0; i < MR; i++) {
      c[i][0] += a[i] * b0;
      c[i][1] += a[i] * b1;
    }
  }
  for (int i = 0; i < MR; i++) {
    __builtin_memcpy(acc[i], &c[i][0], sizeof c[i][0]);
    __builtin_memcpy(acc[i] + 16, &c[i][1], sizeof c[i][1]);
  }
}

static void gemm_fallback(int transA, int transB, int M, int N, int K, const float* A,
                          const float* B, float beta, float* C) {
  int nstrips = (M + MR - 1) / MR, npanels = (N + NR - 1) / NR;
  float* pa = malloc(sizeof(float) * (size_t)nstrips * MR * K);
  float* pb = malloc(sizeof(float) * (size_t)npanels * NR * K);
#pragma omp parallel
  {
    // pa[s][k][i] = A'[s*MR + i][k];  pb[p][k][j] = B'[k][p*NR + j]; zero past the edges
#pragma omp for schedule(static) nowait
    for (int s = 0; s < nstrips; s++) {
      for (int i = 0; i < MR; i++) {
        int m = s * MR + i;
        for (int k = 0; k < K; k++) {
          pa[((size_t)s * K + k) * MR + i] =
              m < M ? (transA ? A[(size_t)k * M + m] : A[(size_t)m * K + k]) : 0.0f;
        }
      }
    }
#pragma omp for schedule(static)
    for (int p = 0; p < npanels; p++) {
      for (int j = 0; j < NR; j++) {
        int n = p * NR + j;
        for (int k = 0; k < K; k++) {
          pb[((size_t)p * K + k) * NR + j] =
              n < N ? (transB ? B[(size_t)n * K + k] : B[(size_t)k * N + n]) : 0.0f;
        }
      }
    }
#pragma omp for schedule(static)
    for (int p = 0; p < npanels; p++) {
      int n0 = p * NR, nr = N - n0 < NR ? N - n0 : NR;
      for (int s = 0; s < nstrips; s++) {
        float acc[MR][NR];
        micro_kernel(K, pa + (size_t)s * K * MR, pb + (size_t)p * K * NR, acc);
        int m0 = s * MR, mr = M - m0 < MR ? M - m0 : MR;
        for (int i = 0; i < mr; i++) {
          float* c = C + (size_t)(m0 + i) * N + n0;
          for (int j = 0; j < nr; j++) c[j] = (beta == 0.0f ? 0.0f : beta * c[j]) + acc[i][j];
        }
      }
    }
  }
  free(pa);
  free(pb);
}

static void gemm(int transA, int transB, int M, int N, int K, const float* A, const float* B,
                 float beta, float* C) {
#ifdef USE_CBLAS
  if (use_cblas) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, transA ? M : K, B,
                transB ? K : N, beta, C, N);
    return;
  }
#endif
  gemm_fallback(transA, transB, M, N, K, A, B, beta, C);
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC) {
  if (bias) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, sizeof(float) * OC);
  }
  gemm(0, 1, N, OC, C, inp, weight, bias ? 1.0f : 0.0f, out);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC) {
  if (dinp) gemm(0, 0, N, C, OC, dout, weight, 1.0f, dinp);
  if (dweight) gemm(1, 0, OC, C, N, dout, inp, 1.0f, dweight);
  if (dbias) {
#pragma omp parallel for
    for (int o = 0; o < OC; o++) {
      double s = 0;
      for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o];
      dbias[o] += (float)s;
    }
  }
}

// For the benchmark: one GEMM of the given shape, C = A @ B^T, as matmul_forward does.
void gemm_nt(float* c, const float* a, const float* b, int M, int N, int K) {
  gemm(0, 1, M, N, K, a, b, 0.0f, c);
}
