// bf16.h: rounding fp32 to bfloat16 (8 significant bits), for the kernels that run their
// products on bf16 operands under --precision bf16 (gemm.c, attention.c), as PyTorch's CPU
// autocast does. A bf16 value is the top 16 bits of an fp32 one, so here it is kept in an fp32
// container with the low 16 bits zero: the product of two of them is exact in fp32, and the
// kernels' fp32 fused multiply-adds then compute exactly what bf16 dot products with fp32 sums
// compute (up to the order of the sums).
// Rounding is to nearest, ties to even (vcvtneps2bf16's and __float2bfloat16_rn's), NaNs stay
// NaNs (made quiet, so no payload rounds away into an infinity), and subnormals are kept.
#ifndef GPT2_BF16_H
#define GPT2_BF16_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// The bits of x rounded to bf16, in the top half of an fp32's bits.
static inline uint32_t bf16_round_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  uint32_t quiet = u | 0x00400000u;
  return ((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded) & 0xffff0000u;
}

// x rounded to bf16, as an fp32.
static inline float bf16_round(float x) {
  uint32_t u = bf16_round_bits(x);
  float r;
  memcpy(&r, &u, sizeof r);
  return r;
}

// x[0..n) rounded to bf16 in place (a loop the compiler vectorises: integer ops only).
static inline void bf16_round_array(float* x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
}

// dst[0..n) = src[0..n) rounded to bf16.
static inline void bf16_round_copy(float* restrict dst, const float* restrict src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bf16_round(src[i]);
}

// The bf16 (as its 16 bits) of x rounded to nearest even.
static inline uint16_t bf16_from_float(float x) { return (uint16_t)(bf16_round_bits(x) >> 16); }

#endif
