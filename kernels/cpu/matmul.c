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
// row-major. The fallback when there is no BLAS: pack B' into contiguous panels of 16 columns,
// then each thread takes 4-row strips of C and accumulates 4x16 tiles in registers.
#define MR 4
#define NR 16
static void gemm_fallback(int transA, int transB, int M, int N, int K, const float* A,
                          const float* B, float beta, float* C) {
  int npanels = (N + NR - 1) / NR;
  float* packed = aligned_alloc(64, sizeof(float) * (size_t)npanels * NR * K + 64);
  // packed[p][k][j] = B'[k][p*NR + j], zero beyond N
#pragma omp parallel for schedule(static)
  for (int p = 0; p < npanels; p++) {
    for (int k = 0; k < K; k++) {
      float* dst = packed + ((size_t)p * K + k) * NR;
      for (int j = 0; j < NR; j++) {
        int n = p * NR + j;
        dst[j] = n < N ? (transB ? B[(size_t)n * K + k] : B[(size_t)k * N + n]) : 0.0f;
      }
    }
  }
  int mstrips = (M + MR - 1) / MR;
#pragma omp parallel
  {
    float* arow = malloc(sizeof(float) * MR * (size_t)K);  // A' strip, [MR][K]
#pragma omp for schedule(dynamic, 4)
    for (int s = 0; s < mstrips; s++) {
      int m0 = s * MR, mr = M - m0 < MR ? M - m0 : MR;
      for (int i = 0; i < MR; i++) {
        for (int k = 0; k < K; k++) {
          int m = m0 + i;
          arow[(size_t)i * K + k] =
              i < mr ? (transA ? A[(size_t)k * M + m] : A[(size_t)m * K + k]) : 0.0f;
        }
      }
      for (int p = 0; p < npanels; p++) {
        float acc[MR][NR];
        memset(acc, 0, sizeof acc);
        const float* bp = packed + (size_t)p * K * NR;
        for (int k = 0; k < K; k++) {
          const float* b = bp + (size_t)k * NR;
          for (int i = 0; i < MR; i++) {
            float a = arow[(size_t)i * K + k];
            for (int j = 0; j < NR; j++) acc[i][j] += a * b[j];
          }
        }
        int n0 = p * NR, nr = N - n0 < NR ? N - n0 : NR;
        for (int i = 0; i < mr; i++) {
          float* c = C + (size_t)(m0 + i) * N + n0;
          for (int j = 0; j < nr; j++) c[j] = (beta == 0.0f ? 0.0f : beta * c[j]) + acc[i][j];
        }
      }
    }
    free(arow);
  }
  free(packed);
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
