// gemm.c: the project's own fp32 GEMM, C (M, N) = beta * C + A' @ B' (gemm.h), in the
// BLIS/GotoBLAS style. A' is packed into strips of MR rows and B' into panels of NR columns,
// both k-major, so the micro-kernel reads both contiguously while it keeps an MR x NR tile of
// C in vector registers: per k, one broadcast of A' per row and NR / VL vector loads of B'
// feed MR * NR / VL fused multiply-adds. On AVX-512 the tile is 8 x 48 (24 of the 32 zmm
// registers): it divides every GPT-2 shape (tokens 512, widths 768, 2304, 3072, 50304), so no
// tile is partly wasted, and it needs fewer loads per FMA than 14 x 32 or 12 x 32, which
// measured no faster. The loops around it block for the caches (this CPU: 32 KiB L1d and
// 1 MiB L2 per core, 32 MiB L3):
//   ic (MC rows of A', the block in L3) > pc (KC of K) > jc (NC columns of B', the block in L2)
//     > ir (one strip of A', 24 KiB, in L1) > jr (the panels of B', from L2) > micro-kernel.
// Packing is vectorised: 16 x 16 transposes (8 x 8 with AVX2) for operands read along k (the
// weights of the forward pass, the rows of A'), masked copies for the rest.
// Threads split N when N >= M: they pack each A' block together (half the strips each, one
// spinning barrier per block) and each packs B' for its own columns; otherwise they split M
// and each packs all of the smaller B' for itself. Both cores are busy on every GPT-2 shape.
// The vector width follows the build's -march (vecf.h): AVX-512 (16 lanes), AVX2 + FMA (8),
// or GCC/Clang vector extensions (4) anywhere else. Each tile and block size may be overridden
// at compile time (-DGEMM_MR=... -DGEMM_KC=...) for tuning.
// bf16 operands (gpt2_gemm's bf16, for --precision bf16): by default the packers round A' and
// B' to bf16 as they pack them (bf16.h), into the same fp32 slots, and the fp32 micro-kernel
// runs unchanged: a product of two bf16 is exact in fp32, so its FMAs are bf16 products with
// fp32 sums, on every CPU, at the fp32 GEMM's speed (the rounding is a few integer operations
// per packed element, and no operand is converted in a pass of its own). Where the CPU has
// AVX-512 BF16, the packers pair k instead and a vdpbf16ps micro-kernel runs (gemm_bf16.h),
// chosen at run time (gpt2_set_bf16_dot).
#include "gelu.h"
#include "gemm.h"
#include "vecf.h"

#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

// the tile per vector width: VL 16 (AVX-512), 8 (AVX2 + FMA), 4 (anywhere else)
#if VL == 16
#ifndef GEMM_MR
#define GEMM_MR 8
#endif
#ifndef GEMM_NR
#define GEMM_NR 48
#endif
#elif VL == 8
#ifndef GEMM_MR
#define GEMM_MR 6
#endif
#ifndef GEMM_NR
#define GEMM_NR 16
#endif
#else
#ifndef GEMM_MR
#define GEMM_MR 4
#endif
#ifndef GEMM_NR
#define GEMM_NR 8
#endif
#endif

#define MR GEMM_MR
#define NR GEMM_NR
#define NV (NR / VL)

// A strip of A' (KC * MR floats, 24 KiB) stays in L1 across the jr loop, a block of B'
// (KC * NC floats, 576 KiB) in L2 across the ir loop; a K of 768 or 512 is one KC block.
// Measured on the GPT-2 shapes against KC 384 and 512, NC 96 to 384 and MC up to 4096.
#ifndef GEMM_KC
#define GEMM_KC 768
#endif
#ifndef GEMM_MC
#define GEMM_MC 576
#endif
#ifndef GEMM_NC
#define GEMM_NC 192
#endif

// Below this many multiply-adds a GEMM runs on one thread: waking the others costs more.
#define GEMM_SERIAL_FMAS (1 << 18)

_Static_assert(NR % VL == 0, "NR must be a multiple of the vector width");
_Static_assert(GEMM_MC % MR == 0 && GEMM_NC % NR == 0, "MC and NC must be whole strips/panels");

void gpt2_sgemm_shape(int shape[3]) {
  shape[0] = VL;
  shape[1] = MR;
  shape[2] = NR;
}

// FLOPs done by `iters` rounds of 16 independent chains of the micro-kernel's own FMA on
// every thread: the ceiling of this GEMM. (peak.c's loop is written as a multiply and an add,
// which GCC keeps apart under -std=c11; this one is the FMA instruction itself.)
// Independent FMA chains per thread: enough to cover the FMA latency on every unit, and few
// enough to stay in registers with the two operands (AVX-512 has 32 vector registers; AVX2 has
// 16, where 16 chains spill and the loop reads half the peak).
#if VL == 16
#define PEAK_CHAINS 16
#else
#define PEAK_CHAINS 12
#endif

double gpt2_sgemm_fma_peak(long iters) {
  double flops = 0;
#ifdef _OPENMP
#pragma omp parallel reduction(+ : flops)
#endif
  {
    vf acc[PEAK_CHAINS], a = vf_splat(1.0f + 1e-7f), b = vf_splat(1e-7f);
#pragma GCC unroll 16
    for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = vf_splat((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16  // the chains in registers, not in memory
      for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = vf_fma(acc[i], a, b);
    }
    float sink[VL];
    vf sum = acc[0];
#pragma GCC unroll 16
    for (int i = 1; i < PEAK_CHAINS; i++) sum = sum + acc[i];
    vf_storeu(sink, sum);
    flops += 2.0 * VL * PEAK_CHAINS * (double)iters + (sink[0] == 12345.0f ? 1 : 0);
  }
  return flops;
}

// The epilogue's GELU: g[i][0..nr) = GELU(c[i][0..nr)) for the tile's mr rows (ldc apart),
// read back from L1 just after the tile is stored.
static void gelu_tile(float* restrict g, const float* restrict c, size_t ldc, int mr, int nr) {
  for (int i = 0; i < mr; i++) {
    const float* ci = c + (size_t)i * ldc;
    float* gi = g + (size_t)i * ldc;
#pragma omp simd
    for (int j = 0; j < nr; j++) gi[j] = gelu_tanh(ci[j]);
  }
}

// One MR x NR tile: C = beta * C + ap (kc, MR)^T @ bp (kc, NR) (+ bias, one per column, where
// bias is not null); then, where g is not null, g = GELU(C) (the epilogue of kernel fusion).
// Only the top-left mr x nr of the tile is in C (the packed operands are zero past the edges).
static void micro_kernel(int kc, const float* restrict ap, const float* restrict bp,
                         float* restrict c, size_t ldc, float beta, int mr, int nr,
                         const float* restrict bias, float* restrict g) {
  vf acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; i++) {
#pragma GCC unroll 8
    for (int j = 0; j < NV; j++) acc[i][j] = vf_zero();
  }
  for (int i = 0; i < MR; i++) {  // the tile of C, wanted only at the end: fetch it now
    for (int j = 0; j < NR; j += 16) __builtin_prefetch(c + (size_t)i * ldc + j, 1, 3);
  }
  for (int k = 0; k < kc; k++) {
    vf b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; j++) b[j] = vf_load(bp + j * VL);
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++) {
      vf a = vf_splat(ap[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; j++) acc[i][j] = vf_fma(a, b[j], acc[i][j]);
    }
    ap += MR;
    bp += NR;
  }
  if (mr == MR && nr == NR) {
    vf vb = vf_splat(beta);
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++) {
      float* ci = c + (size_t)i * ldc;
#pragma GCC unroll 8
      for (int j = 0; j < NV; j++) {
        // beta 0 must not read C: it may hold NaNs from before
        vf v = beta == 0.0f ? acc[i][j] : vf_fma(vb, vf_loadu(ci + j * VL), acc[i][j]);
        if (bias) v = v + vf_loadu(bias + j * VL);
        vf_storeu(ci + j * VL, v);
      }
    }
    if (g) gelu_tile(g, c, ldc, mr, nr);
    return;
  }
  float tile[MR][NR] __attribute__((aligned(64)));
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NV; j++) vf_storeu(&tile[i][j * VL], acc[i][j]);
  }
  for (int i = 0; i < mr; i++) {
    float* ci = c + (size_t)i * ldc;
    for (int j = 0; j < nr; j++) {
      ci[j] = (beta == 0.0f ? 0.0f : beta * ci[j]) + tile[i][j];
      if (bias) ci[j] += bias[j];
    }
  }
  if (g) gelu_tile(g, c, ldc, mr, nr);
}

// One GEMM: A'[m][k] = A[m * rsa + k * csa] and B'[k][n] = B[k * rsb + n * csb], where one
// stride of each is 1.
typedef struct {
  int M, N, K;
  const float* A;
  size_t rsa, csa;
  const float* B;
  size_t rsb, csb;
  float beta;
  float* C;
  int bf16;  // GEMM_F32, or bf16 operands: GEMM_BF16_FMA or GEMM_BF16_DOT (the paths)
  const float* bias;  // (N), added to every row of C; or null
  float* gelu;        // (M, N), GELU(C) written beside C; or null
} gemm_args;

enum { GEMM_BF16_FMA = 1, GEMM_BF16_DOT = 2 };

#include "gemm_bf16.h"

// Whether bf16 GEMMs take the vdpbf16ps path: -1 until first asked (then: where the CPU has it).
static int bf16_dot = -1;

int gpt2_bf16_dot_compiled(void) { return GEMM_HAS_BF16_DOT; }

int gpt2_bf16_dot_supported(void) {
  static int supported = -1;
  if (supported < 0) supported = GEMM_HAS_BF16_DOT && cpu_has_avx512_bf16();
  return supported;
}

int gpt2_set_bf16_dot(int on) {
  bf16_dot = on && gpt2_bf16_dot_supported();
  return bf16_dot;
}

int gpt2_bf16_dot(void) {
  if (bf16_dot < 0) bf16_dot = gpt2_bf16_dot_supported();
  return bf16_dot;
}

double gpt2_bf16_dot_peak(long iters) {
#if GEMM_HAS_BF16_DOT
  if (gpt2_bf16_dot_supported()) return bf16_dot_peak(iters);
#endif
  (void)iters;
  return 0;
}

// The packed depth of kc values of k: kc slots of fp32, or (kc + 1) / 2 of bf16 pairs.
static int packed_depth(const gemm_args* g, int kc) {
  return g->bf16 == GEMM_BF16_DOT ? (kc + 1) / 2 : kc;
}

// The packers write one strip or panel, W wide (MR or NR) and kc deep, k-major:
// dst[k * W + i] for i < n from the source, zero for n <= i < W.

#if defined(__AVX2__) && !defined(__AVX512F__)
// All ones in the first n of 8 lanes (0 <= n <= 8), for AVX2's masked loads and stores.
static inline __m256i lane_mask8(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// From a source read along i: dst[k * W + i] = src[k * ld + i].
static void pack_copy(const float* src, size_t ld, int n, int kc, int W, float* restrict dst) {
#if defined(__AVX512F__)
  if (W % 16 == 0 && n == W) {
    for (int k = 0; k < kc; k++, src += ld, dst += W) {
      for (int j = 0; j < W; j += 16) _mm512_storeu_ps(dst + j, _mm512_loadu_ps(src + j));
    }
    return;
  }
  if (W <= 16) {  // a strip of A': masked loads never touch memory past the n floats
    __mmask16 in = (__mmask16)((1u << n) - 1), out = (__mmask16)((1u << W) - 1);
    for (int k = 0; k < kc; k++, src += ld, dst += W) {
      _mm512_mask_storeu_ps(dst, out, _mm512_maskz_loadu_ps(in, src));
    }
    return;
  }
#elif defined(__AVX2__)
  if (W % 8 == 0 && n == W) {
    for (int k = 0; k < kc; k++, src += ld, dst += W) {
      for (int j = 0; j < W; j += 8) _mm256_storeu_ps(dst + j, _mm256_loadu_ps(src + j));
    }
    return;
  }
  if (W <= 8) {  // a strip of A': masked loads never touch memory past the n floats
    __m256i in = lane_mask8(n), out = lane_mask8(W);
    for (int k = 0; k < kc; k++, src += ld, dst += W) {
      _mm256_maskstore_ps(dst, out, _mm256_maskload_ps(src, in));
    }
    return;
  }
#endif
  for (int k = 0; k < kc; k++, src += ld, dst += W) {
    for (int i = 0; i < W; i++) dst[i] = i < n ? src[i] : 0.0f;
  }
}

#if defined(__AVX512F__)
// r[j][c] becomes r[c][j] for a 16 x 16 block: four rounds of in-lane and cross-lane shuffles.
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
}
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
// r[j][c] becomes r[c][j] for an 8 x 8 block: in-lane unpacks and shuffles, then 128-bit halves.
static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}
#endif

// From a source read along k (the weights of the forward pass, the rows of A'):
// dst[k * W + i] = src[i * ld + k], 16 x 16 blocks at a time (8 x 8 with AVX2) so that
// neither side strides through more cache lines than L1 holds.
static void pack_transposed(const float* src, size_t ld, int n, int kc, int W,
                            float* restrict dst) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  for (int i0 = 0; i0 < W; i0 += 8) {  // 8 rows at a time: 8 streams, each read through
    int w = W - i0 < 8 ? W - i0 : 8, k0 = 0;
    __m256i out = lane_mask8(w);
    for (; k0 + 8 <= kc; k0 += 8) {
      __m256 r[8];
      for (int j = 0; j < 8; j++) {
        r[j] = i0 + j < n ? _mm256_loadu_ps(src + (size_t)(i0 + j) * ld + k0)
                          : _mm256_setzero_ps();
      }
      transpose8(r);
      for (int kk = 0; kk < 8; kk++) {
        float* d = dst + (size_t)(k0 + kk) * W + i0;
        if (w == 8) {
          _mm256_storeu_ps(d, r[kk]);
        } else if (w == 6) {  // a strip of A' (MR 6): vmaskmovps stores are slow on AMD
          _mm_storeu_ps(d, _mm256_castps256_ps128(r[kk]));
          _mm_storel_pi((__m64*)(d + 4), _mm256_extractf128_ps(r[kk], 1));
        } else {
          _mm256_maskstore_ps(d, out, r[kk]);
        }
      }
    }
    for (; k0 < kc; k0 += 8) {
      int kn = kc - k0 < 8 ? kc - k0 : 8;
      for (int i = i0; i < i0 + w; i++) {
        const float* row = src + (size_t)i * ld + k0;
        for (int kk = 0; kk < kn; kk++) dst[(size_t)(k0 + kk) * W + i] = i < n ? row[kk] : 0.0f;
      }
    }
  }
  return;
#endif
  for (int i0 = 0; i0 < W; i0 += 16) {  // 16 rows at a time: 16 streams, each read through
    int w = W - i0 < 16 ? W - i0 : 16, k0 = 0;
#if defined(__AVX512F__)
    __mmask16 out = (__mmask16)((1u << w) - 1);
    for (; k0 + 16 <= kc; k0 += 16) {
      __m512 r[16];
      for (int j = 0; j < 16; j++) {
        const float* row = src + (size_t)(i0 + j) * ld + k0;
        r[j] = i0 + j < n ? _mm512_loadu_ps(row) : _mm512_setzero_ps();
      }
      transpose16(r);
      for (int kk = 0; kk < 16; kk++) {
        _mm512_mask_storeu_ps(dst + (size_t)(k0 + kk) * W + i0, out, r[kk]);
      }
    }
#endif
    for (; k0 < kc; k0 += 16) {
      int kn = kc - k0 < 16 ? kc - k0 : 16;
      for (int i = i0; i < i0 + w; i++) {
        const float* row = src + (size_t)i * ld + k0;
        for (int kk = 0; kk < kn; kk++) dst[(size_t)(k0 + kk) * W + i] = i < n ? row[kk] : 0.0f;
      }
    }
  }
}

// A vector of floats rounded to bf16, as bf16.h's bf16_round does each (in the packing's copy
// itself: a separate pass over each packed row cost dweight's GEMMs about 10%).
static inline vf vf_bf16_round(vf v) {
  typedef unsigned int vu __attribute__((vector_size(sizeof(vf))));
  vu u = (vu)v;
  vu rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  vu quiet = (u | 0x00400000u) & 0xffff0000u;
  vu nan = (vu)((u & 0x7fffffffu) > 0x7f800000u);  // all ones where v is a NaN
  return (vf)((nan & quiet) | (~nan & rounded));
}

// A stored transposed (dweight's dout^T): A'[ic + s * MR + i][pc + k] into dst[s][k][i], k
// outermost. Each k's mc values of A' lie side by side in memory, so they are read through
// once and dealt out MR to a strip; strip by strip instead, every k of a strip read a cache
// line (and, one row of A being 3072 floats and more, a page) of its own, and the next strip
// read the same lines again: 3 cycles an element, 6% of the GEMM.
static void pack_a_across(const gemm_args* g, int ic, int pc, int mc, int kc,
                          float* restrict dst) {
  int full = mc / MR * MR;
  for (int k = 0; k < kc; k++) {
    const float* src = g->A + (size_t)(pc + k) * g->csa + ic;
    float* d = dst + (size_t)k * MR;
    int s = 0;
    if (g->bf16) {
      for (; s < full; s += MR, d += (size_t)kc * MR) {
        for (int i = 0; i < MR; i++) d[i] = bf16_round(src[s + i]);
      }
    } else {
      for (; s < full; s += MR, d += (size_t)kc * MR) {
        for (int i = 0; i < MR; i++) d[i] = src[s + i];
      }
    }
    if (s < mc) {  // the last strip, short: zeros past the rows of A'
      for (int i = 0; i < MR; i++) {
        float x = s + i < mc ? src[s + i] : 0.0f;
        d[i] = g->bf16 ? bf16_round(x) : x;
      }
    }
  }
}

// A'[ic + s * MR + i][pc + k] into dst[s][k][i] for mc rows and kc columns of A'.
static void pack_a(const gemm_args* g, int ic, int pc, int mc, int kc, float* restrict dst) {
  if (g->csa != 1) {  // A stored transposed: MR rows of A' side by side
    pack_a_across(g, ic, pc, mc, kc, dst);
    return;
  }
  for (int s = 0; s < mc; s += MR, dst += (size_t)kc * MR) {  // A as stored: rows along k
    int rows = mc - s < MR ? mc - s : MR;
    pack_transposed(g->A + (size_t)(ic + s) * g->rsa + pc, g->rsa, rows, kc, MR, dst);
    if (g->bf16) bf16_round_array(dst, (size_t)kc * MR);  // while the strip is in L1
  }
}

// B'[pc + k][jc + p * NR + j] into dst[p][k][j] for kc rows and nc columns of B'.
static void pack_b(const gemm_args* g, int pc, int jc, int kc, int nc, float* restrict dst) {
  if (g->csb == 1) {  // B as stored: each row of the block read through, NR columns per panel
    const float* src = g->B + (size_t)pc * g->rsb + jc;
    for (int k = 0; k < kc; k++, src += g->rsb) {
      float* d = dst + (size_t)k * NR;
      int p = 0;
      for (; p + NR <= nc; p += NR, d += (size_t)kc * NR) {
        for (int j = 0; j < NV; j++) {
          vf x = vf_loadu(src + p + j * VL);
          vf_storeu(d + j * VL, g->bf16 ? vf_bf16_round(x) : x);
        }
      }
      if (p < nc) {
        pack_copy(src + p, g->rsb, nc - p, 1, NR, d);
        if (g->bf16) bf16_round_array(d, NR);
      }
    }
    return;
  }
  for (int p = 0; p < nc; p += NR, dst += (size_t)kc * NR) {  // B stored transposed
    int cols = nc - p < NR ? nc - p : NR;
    pack_transposed(g->B + (size_t)(jc + p) * g->csb + pc, g->csb, cols, kc, NR, dst);
    if (g->bf16) bf16_round_array(dst, (size_t)kc * NR);
  }
}

// The packing buffers of GEMMs called from this thread, kept between calls.
static _Thread_local float* workspace;
static _Thread_local size_t workspace_cap;

static float* grow(float** buf, size_t* cap, size_t floats) {
  if (floats > *cap) {
    free(*buf);
    *buf = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    *cap = *buf ? floats : 0;
  }
  return *buf;
}

// The K blocks: as even as KC allows, so the last is never a sliver.
static int k_block(int K) {
  int blocks = (K + GEMM_KC - 1) / GEMM_KC;
  int kc = (K + blocks - 1) / blocks;
  return (kc + 7) / 8 * 8;
}

// The plain loop over rows [m0, m1) and columns [n0, n1) of C, for when the packing buffers
// cannot be had.
static void gemm_plain(const gemm_args* g, int m0, int m1, int n0, int n1) {
  for (int m = m0; m < m1; m++) {
    float* c = g->C + (size_t)m * g->N;
    for (int n = n0; n < n1; n++) c[n] = g->beta == 0.0f ? 0.0f : g->beta * c[n];
    for (int k = 0; k < g->K; k++) {
      float a = g->A[(size_t)m * g->rsa + (size_t)k * g->csa];
      const float* b = g->B + (size_t)k * g->rsb;
      if (g->bf16) {
        a = bf16_round(a);
        for (int n = n0; n < n1; n++) c[n] += a * bf16_round(b[(size_t)n * g->csb]);
      } else {
        for (int n = n0; n < n1; n++) c[n] += a * b[(size_t)n * g->csb];
      }
    }
    if (g->bias)
      for (int n = n0; n < n1; n++) c[n] += g->bias[n];
    if (g->gelu)
      for (int n = n0; n < n1; n++) g->gelu[(size_t)m * g->N + n] = gelu_tanh(c[n]);
  }
}

// Packs A' rows [ic, ic + mc) by k [pc, pc + kc) into dst, in the GEMM's packed form.
static void pack_a_any(const gemm_args* g, int ic, int pc, int mc, int kc, float* dst) {
  if (g->bf16 == GEMM_BF16_DOT) {
    pack_a_pairs(g, ic, pc, mc, kc, (uint32_t*)dst);
  } else {
    pack_a(g, ic, pc, mc, kc, dst);
  }
}

// Packs B' by k [pc, pc + kc) and columns [jc, jc + nc) into dst, in the GEMM's packed form.
static void pack_b_any(const gemm_args* g, int pc, int jc, int kc, int nc, float* dst) {
  if (g->bf16 == GEMM_BF16_DOT) {
    pack_b_pairs(g, pc, jc, kc, nc, (uint32_t*)dst);
  } else {
    pack_b(g, pc, jc, kc, nc, dst);
  }
}

// The team's barrier, between packing an A' block together and computing with it. OpenMP's
// own sleeps at once under OMP_WAIT_POLICY=PASSIVE (which the backend sets, for OpenBLAS's
// sake), and waking costs more than the wait: both threads are busy in this GEMM, so the
// waiter spins, and yields only if the other is long in coming (another process has its core).
typedef struct {
  atomic_int arrived, generation;
} team_barrier;

static void team_wait(team_barrier* b, int team) {
  int generation = atomic_load_explicit(&b->generation, memory_order_acquire);
  if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == team - 1) {
    atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->generation, 1, memory_order_release);
    return;
  }
  for (int spins = 0; atomic_load_explicit(&b->generation, memory_order_acquire) == generation;
       spins++) {
    if (spins > 4096) {
      sched_yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
}

// Splits [0, units) into `parts` near-equal runs; returns the start of run `i`.
static int split(int units, int parts, int i) {
  return (int)((long long)units * i / parts);
}

// Rows [m0, m1) and columns [n0, n1) of C, on thread t of a team of `team`, packing B'
// into pb. Alone, the thread packs its own A' blocks into pa. Shared, every thread of the
// team takes rows [m0, m1) and columns of its own, and the team packs each A' block together,
// a share of the strips each, into pa (two blocks, alternating, so that one barrier per
// block is enough: a thread can only start packing a block again once all have finished
// packing the one between, and so computing with it).
static void gemm_part(const gemm_args* g, int m0, int m1, int n0, int n1, size_t a_floats,
                      float* pa, float* pb, team_barrier* barrier, int t, int team) {
  int kcmax = k_block(g->K);
  int block = 0;
  for (int ic = m0; ic < m1; ic += GEMM_MC) {
    int mc = m1 - ic < GEMM_MC ? m1 - ic : GEMM_MC;
    for (int pc = 0; pc < g->K; pc += kcmax, block++) {
      int kc = g->K - pc < kcmax ? g->K - pc : kcmax, kd = packed_depth(g, kc);
      float beta = pc == 0 ? g->beta : 1.0f;
      int first = pc == 0, last = pc + kc >= g->K;  // the epilogue: bias first, GELU last
      float* ap = pa;
      if (barrier) {
        ap = pa + (size_t)(block & 1) * a_floats;
        int strips = (mc + MR - 1) / MR;
        int s0 = split(strips, team, t) * MR, s1 = split(strips, team, t + 1) * MR;
        if (s1 > mc) s1 = mc;
        if (s1 > s0) pack_a_any(g, ic + s0, pc, s1 - s0, kc, ap + (size_t)s0 * kd);
        team_wait(barrier, team);
      } else {
        pack_a_any(g, ic, pc, mc, kc, ap);
      }
      for (int jc = n0; jc < n1; jc += GEMM_NC) {
        int nc = n1 - jc < GEMM_NC ? n1 - jc : GEMM_NC;
        pack_b_any(g, pc, jc, kc, nc, pb);
        for (int ir = 0; ir < mc; ir += MR) {
          for (int jr = 0; jr < nc; jr += NR) {
            float* c = g->C + (size_t)(ic + ir) * g->N + jc + jr;
            int mr = mc - ir < MR ? mc - ir : MR, nr = nc - jr < NR ? nc - jr : NR;
            const float* bias = first && g->bias ? g->bias + jc + jr : NULL;
            float* gl = last && g->gelu ? g->gelu + (size_t)(ic + ir) * g->N + jc + jr : NULL;
#if GEMM_HAS_BF16_DOT
            if (g->bf16 == GEMM_BF16_DOT) {
              micro_kernel_bf16_dot(kd, (const uint32_t*)ap + (size_t)ir * kd,
                                    (const uint32_t*)pb + (size_t)jr * kd, c, (size_t)g->N,
                                    beta, mr, nr, bias, gl);
              continue;
            }
#endif
            micro_kernel(kc, ap + (size_t)ir * kc, pb + (size_t)jr * kc, c, (size_t)g->N, beta,
                         mr, nr, bias, gl);
          }
        }
      }
    }
  }
}

void gpt2_sgemm(int transA, int transB, int M, int N, int K, const float* A, const float* B,
                float beta, float* C) {
  gpt2_gemm(transA, transB, M, N, K, A, B, beta, C, 0);
}

void gpt2_gemm(int transA, int transB, int M, int N, int K, const float* A, const float* B,
               float beta, float* C, int bf16) {
  gpt2_gemm_epilogue(transA, transB, M, N, K, A, B, beta, C, NULL, NULL, bf16);
}

void gpt2_gemm_epilogue(int transA, int transB, int M, int N, int K, const float* A,
                        const float* B, float beta, float* C, const float* bias, float* gelu,
                        int bf16) {
  if (M <= 0 || N <= 0) return;
  gemm_args g = {M, N, K, A, transA ? 1 : (size_t)K, transA ? (size_t)M : 1,
                 B, transB ? 1 : (size_t)N, transB ? (size_t)K : 1, beta, C,
                 bf16 ? (gpt2_bf16_dot() ? GEMM_BF16_DOT : GEMM_BF16_FMA) : 0, bias, gelu};
  if (K <= 0) {  // C = beta * C
    gemm_plain(&g, 0, M, 0, N);
    return;
  }
  int threads = 1;
#ifdef _OPENMP
  if ((double)M * N * K >= GEMM_SERIAL_FMAS) threads = omp_get_max_threads();
#endif
  // Threads split N and share the packing of A' (each packs B' for its own columns), unless
  // M is larger: then they split M, and each packs all of the smaller B' for itself.
  int strips = (M + MR - 1) / MR, panels = (N + NR - 1) / NR;
  int by_n = (N >= M && panels >= threads) || strips < threads;
  int units = by_n ? panels : strips;
  if (units < threads) threads = units;
  int share = by_n && threads > 1;
  // One workspace, the caller's, lent to the team: the A' blocks (two shared ones, or one
  // per thread), then one B' block per thread.
  // (sized for a thread that takes the whole GEMM alone, should the team come short)
  int kcmax = k_block(K), mcmax = M < GEMM_MC ? M : GEMM_MC, ncmax = N < GEMM_NC ? N : GEMM_NC;
  // (each a whole number of cache lines, so every B' block is aligned for the vector loads)
  size_t a_floats = ((size_t)(mcmax + MR) * kcmax + 15) / 16 * 16;
  size_t b_floats = ((size_t)(ncmax + NR) * kcmax + 15) / 16 * 16;
  size_t a_total = (share ? 2 : (size_t)threads) * a_floats;
  float* work = grow(&workspace, &workspace_cap, a_total + (size_t)threads * b_floats);
  if (!work) {
    gemm_plain(&g, 0, M, 0, N);
    return;
  }
  team_barrier barrier;
  atomic_init(&barrier.arrived, 0);
  atomic_init(&barrier.generation, 0);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    int t = 0, short_team = 0;
#ifdef _OPENMP
    t = omp_get_thread_num();
    short_team = omp_get_num_threads() != threads;  // fewer threads than asked (nested, limits)
#endif
    if (short_team) {
      if (t == 0) gemm_part(&g, 0, M, 0, N, a_floats, work, work + a_total, NULL, 0, 1);
    } else {
      int u0 = split(units, threads, t), u1 = split(units, threads, t + 1);
      int m0 = by_n ? 0 : u0 * MR, m1 = by_n ? M : (u1 * MR < M ? u1 * MR : M);
      int n0 = by_n ? u0 * NR : 0, n1 = by_n ? (u1 * NR < N ? u1 * NR : N) : N;
      float* pb = work + a_total + (size_t)t * b_floats;
      if (share) {
        gemm_part(&g, m0, m1, n0, n1, a_floats, work, pb, &barrier, t, threads);
      } else {
        gemm_part(&g, m0, m1, n0, n1, a_floats, work + (size_t)t * a_floats, pb, NULL, t, 1);
      }
    }
  }
}
