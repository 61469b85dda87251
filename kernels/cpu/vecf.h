// vecf.h: one vector of floats, as wide as the build's -march allows, for the kernels that keep
// their sums in registers (gemm.c, attention.c): AVX-512 (VL 16), AVX2 + FMA (8), or GCC/Clang
// vector extensions (4) anywhere else. vf_fma is a fused multiply-add where the ISA has one
// (C11 mode turns off GCC's contraction of a * b + c, so plain code never fuses).
#ifndef GPT2_VECF_H
#define GPT2_VECF_H

#if defined(__AVX512F__)
#include <immintrin.h>
#define VL 16
typedef __m512 vf;
#define vf_load(p) _mm512_load_ps(p)
#define vf_loadu(p) _mm512_loadu_ps(p)
#define vf_storeu(p, v) _mm512_storeu_ps(p, v)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vf_splat(x) _mm512_set1_ps(x)
#define vf_zero() _mm512_setzero_ps()
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VL 8
typedef __m256 vf;
#define vf_load(p) _mm256_load_ps(p)
#define vf_loadu(p) _mm256_loadu_ps(p)
#define vf_storeu(p, v) _mm256_storeu_ps(p, v)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_splat(x) _mm256_set1_ps(x)
#define vf_zero() _mm256_setzero_ps()
#else
#define VL 4
typedef float vf __attribute__((vector_size(16)));
static inline vf vf_loadu(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
static inline void vf_storeu(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
#define vf_load(p) vf_loadu(p)
#define vf_fma(a, b, c) ((a) * (b) + (c))
#define vf_splat(x) ((vf){0} + (x))
#define vf_zero() ((vf){0})
#endif

#endif
