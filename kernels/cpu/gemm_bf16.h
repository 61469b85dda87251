// gemm_bf16.h: gemm.c's path for bf16 operands on CPUs with AVX-512 BF16 (Zen 4 and 5, Intel
// from Cooper Lake): vdpbf16ps (_mm512_dpbf16_ps) multiplies pairs of bf16 and adds both
// products to one fp32 lane, dst[i] += a[2i + 1] * b[2i + 1] + a[2i] * b[2i], so the packed
// operands hold k in pairs: a strip of A' as [k / 2][MR] and a panel of B' as [k / 2][NR] of
// 32-bit slots, each slot two bf16 (the even k in the low half), zero past K. The micro-kernel
// is gemm.c's, with one vdpbf16ps doing two k of a tile's multiply-adds.
// The functions are compiled for avx512bf16 by attribute, whatever -march says, and chosen at
// run time (gpt2_bf16_dot_supported: cpuid and the OS's saving of the zmm registers), so the
// library builds and runs on every x86-64. This path is COMPILE-CHECKED ONLY where the
// project is developed (a Zen 3, AVX2 only): tests build it but run it only on a CPU that has
// the instruction. Where it differs from the bf16 model of the fp32-FMA path: the two
// products of a pair are summed before they are added (both exact, so one rounding fewer
// or more), and vdpbf16ps treats subnormal inputs and results as zero.
// Included by gemm.c after its tile sizes (MR, NR) and gemm_args.
#ifndef GPT2_GEMM_BF16_H
#define GPT2_GEMM_BF16_H
#include <stdint.h>

#include "bf16.h"

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10)) && \
    NR % 16 == 0
#define GEMM_HAS_BF16_DOT 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define GEMM_HAS_BF16_DOT 0
#endif

#define BF16_DOT_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// Whether this CPU has AVX-512 BF16 and the OS saves the zmm and mask registers.
static int cpu_has_avx512_bf16(void) {
#if GEMM_HAS_BF16_DOT
  unsigned a, b, c, d;
  if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  // OSXSAVE
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0xe6u) != 0xe6u) return 0;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  unsigned subleaves = a;
  // AVX512F (bit 16), AVX512BW (30), AVX512VL (31)
  if (!(b & (1u << 16)) || !(b & (1u << 30)) || !(b & (1u << 31)) || subleaves < 1) return 0;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return (a >> 5) & 1u;  // AVX512_BF16
#else
  return 0;
#endif
}

// dst[p * W + i] = the pair (src(i, 2p), src(i, 2p + 1)) rounded to bf16, where
// src(i, k) = src[i * ld_i + k * ld_k], for p < (kc + 1) / 2; zero for n <= i < W or k >= kc.
static void pack_pairs(const float* src, size_t ld_i, size_t ld_k, int n, int kc, int W,
                       uint32_t* restrict dst) {
  int kp = (kc + 1) / 2;
  for (int p = 0; p < kp; p++, dst += W) {
    const float* s = src + (size_t)(2 * p) * ld_k;
    int odd = 2 * p + 1 < kc;
    for (int i = 0; i < n; i++) {
      uint32_t lo = bf16_from_float(s[(size_t)i * ld_i]);
      uint32_t hi = odd ? bf16_from_float(s[(size_t)i * ld_i + ld_k]) : 0;
      dst[i] = lo | hi << 16;
    }
    for (int i = n; i < W; i++) dst[i] = 0;
  }
}

// A'[ic + s * MR + i][pc + k] as pairs into dst[s][k / 2][i].
static void pack_a_pairs(const gemm_args* g, int ic, int pc, int mc, int kc, uint32_t* dst) {
  size_t kp = (size_t)(kc + 1) / 2;
  for (int s = 0; s < mc; s += MR, dst += kp * MR) {
    int rows = mc - s < MR ? mc - s : MR;
    const float* src = g->A + (size_t)(ic + s) * g->rsa + (size_t)pc * g->csa;
    pack_pairs(src, g->rsa, g->csa, rows, kc, MR, dst);
  }
}

// B'[pc + k][jc + p * NR + j] as pairs into dst[p][k / 2][j].
static void pack_b_pairs(const gemm_args* g, int pc, int jc, int kc, int nc, uint32_t* dst) {
  size_t kp = (size_t)(kc + 1) / 2;
  for (int p = 0; p < nc; p += NR, dst += kp * NR) {
    int cols = nc - p < NR ? nc - p : NR;
    const float* src = g->B + (size_t)pc * g->rsb + (size_t)(jc + p) * g->csb;
    pack_pairs(src, g->csb, g->rsb, cols, kc, NR, dst);
  }
}

#if GEMM_HAS_BF16_DOT
#define NV16 (NR / 16)

// One MR x NR tile from kp pairs of k: C = beta * C + ap^T @ bp (+ bias; then g = GELU(C)),
// as gemm.c's micro_kernel.
BF16_DOT_TARGET static void micro_kernel_bf16_dot(int kp, const uint32_t* restrict ap,
                                                  const uint32_t* restrict bp, float* restrict c,
                                                  size_t ldc, float beta, int mr, int nr,
                                                  const float* restrict bias,
                                                  float* restrict g) {
  __m512 acc[MR][NV16];
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NV16; j++) acc[i][j] = _mm512_setzero_ps();
  }
  for (int p = 0; p < kp; p++) {
    __m512bh b[NV16];
    for (int j = 0; j < NV16; j++) b[j] = (__m512bh)_mm512_loadu_si512(bp + j * 16);
    for (int i = 0; i < MR; i++) {
      __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[i]);
      for (int j = 0; j < NV16; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, b[j]);
    }
    ap += MR;
    bp += NR;
  }
  float tile[MR][NR] __attribute__((aligned(64)));
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NV16; j++) _mm512_storeu_ps(&tile[i][j * 16], acc[i][j]);
  }
  for (int i = 0; i < mr; i++) {  // beta 0 must not read C: it may hold NaNs from before
    float* ci = c + (size_t)i * ldc;
    for (int j = 0; j < nr; j++) {
      ci[j] = (beta == 0.0f ? 0.0f : beta * ci[j]) + tile[i][j];
      if (bias) ci[j] += bias[j];
    }
  }
  if (g) gelu_tile(g, c, ldc, mr, nr);
}

// FLOPs of `iters` rounds of 16 independent vdpbf16ps chains on every thread (4 per lane:
// two multiply-adds), for the bf16 peak that MFU is taken against.
BF16_DOT_TARGET static double bf16_dot_peak(long iters) {
  double flops = 0;
#ifdef _OPENMP
#pragma omp parallel reduction(+ : flops)
#endif
  {
    __m512 acc[16];
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0);
    for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    }
    __m512 sum = acc[0];
    for (int i = 1; i < 16; i++) sum = _mm512_add_ps(sum, acc[i]);
    float sink[16];
    _mm512_storeu_ps(sink, sum);
    flops += 4.0 * 16 * 16 * (double)iters + (sink[0] == 12345.0f ? 1 : 0);
  }
  return flops;
}
#endif

#endif
