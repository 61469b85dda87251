// attention.c: causal self-attention from packed qkv, flash style on the CPU.
//   forward:  qkv (B, T, 3C) -> out (B, T, C), heads of hs = C / NH; saves only the softmax
//             statistics lse (B, NH, T) = log(sum exp(score)) per query, never the (T, T) matrix
//   backward: recomputes each query's probabilities from q, k and lse, then
//             dv += p dout;  dp = dout . v;  ds = p (dp - dout . out);  dq += ds k scale;  dk += ds q scale
// Work is split over (b, h) pairs, which own disjoint slices of dqkv, so no atomics are needed.
// Each pair first copies its keys (and values) transposed, (hs, T), so that a query's scores
// against all earlier keys are hs vector multiply-adds along t2, with no horizontal sum per key
// (the dot product per key spent most of its time reducing 16 lanes to one), and the exp of a
// whole row goes through the vector expf. Each pair accumulates dk and dv in its own scratch
// rows and writes them once: heads' slices of a row can share a cache line, and repeated writes
// to it from two threads would bounce it.
// With bf16 set (--precision bf16) the two products take bf16 operands (bf16.h) and sum in
// fp32, as autocast's attention does: the forward's q . k and p v (p the softmax's
// probabilities, rounded after the softmax), the backward's dout . v, p dout, ds k and ds q,
// where ds = p (dp - dout . out) is rounded before the scale 1 / sqrt(hs) multiplies it; the
// softmax, its statistics and dout . out stay fp32. q, k, v and dout are rounded once per
// (b, h) pair into the pair's own copies.
#include <stdlib.h>

#include "attention_rows.h"
#include "bf16.h"

// Keys per block of scores: two vectors, each summed in two chains (even and odd channels),
// so four independent multiply-adds are in flight.
#define KB (2 * VL)

// T rounded up to whole blocks: the transposed rows are padded with zeros to it, so a block
// may read past the last key.
static int padded(int T) { return (T + KB - 1) / KB * KB; }

// The row stride of the transposed copies: padded(T) and one cache line more. A block of
// scores reads the same keys from all hs rows; rows a multiple of 4 KiB apart (T = 1024) all
// fall in one set of the 8-way L1, which then holds 8 of the 64, and every load went to L2
// (attention took 42% of a B=2, T=1024 step of GPT-2 124M).
static int row_stride(int T) { return padded(T) + 16; }

// dst (hs, row_stride(T)) = the head's slice at `offset` of each of the T rows of qkv
// (stride C3), transposed, zero from T to padded(T)
static void transpose_head(float* dst, const float* base, size_t C3, size_t offset, int T,
                           int hs) {
  int Tp = padded(T), ld = row_stride(T);
  for (int t2 = 0; t2 < T; t2++) {
    const float* row = base + t2 * C3 + offset;
    for (int i = 0; i < hs; i++) dst[(size_t)i * ld + t2] = row[i];
  }
  for (int i = 0; i < hs; i++)
    for (int t2 = T; t2 < Tp; t2++) dst[(size_t)i * ld + t2] = 0;
}

// s[0..n) = sum_i x[i] * rows[i][0..n) (rows Tp apart): one query against n keys, KB keys at
// a time with their sums in registers through all hs channels
static void scores(float* s, const float* x, const float* rows, int n, int Tp, int hs) {
  for (int t0 = 0; t0 < n; t0 += KB) {
    vf a0 = vf_zero(), a1 = vf_zero(), b0 = vf_zero(), b1 = vf_zero();
    int i = 0;
    for (; i + 1 < hs; i += 2) {
      const float* r = rows + (size_t)i * Tp + t0;
      vf x0 = vf_splat(x[i]), x1 = vf_splat(x[i + 1]);
      a0 = vf_fma(x0, vf_loadu(r), a0);
      a1 = vf_fma(x0, vf_loadu(r + VL), a1);
      b0 = vf_fma(x1, vf_loadu(r + Tp), b0);
      b1 = vf_fma(x1, vf_loadu(r + Tp + VL), b1);
    }
    if (i < hs) {  // an odd head size
      const float* r = rows + (size_t)i * Tp + t0;
      vf x0 = vf_splat(x[i]);
      a0 = vf_fma(x0, vf_loadu(r), a0);
      a1 = vf_fma(x0, vf_loadu(r + VL), a1);
    }
    float out[KB];
    vf_storeu(out, a0 + b0);
    vf_storeu(out + VL, a1 + b1);
    int m = n - t0 < KB ? n - t0 : KB;
    for (int j = 0; j < m; j++) s[t0 + j] = out[j];
  }
}

// row[0..hs) += a * x[0..hs)
static void axpy(float* row, float a, const float* x, int hs) {
  int i = 0;
  vf av = vf_splat(a);
  for (; i + VL <= hs; i += VL) vf_storeu(row + i, vf_fma(av, vf_loadu(x + i), vf_loadu(row + i)));
  for (; i < hs; i++) row[i] += a * x[i];
}

// dst (T, hs) = the head's slice at `offset` of each of the T rows of qkv (stride C3), rounded
// to bf16
static void bf16_head_rows(float* dst, const float* base, size_t C3, size_t offset, int T,
                           int hs) {
  for (int t = 0; t < T; t++) bf16_round_copy(dst + (size_t)t * hs, base + t * C3 + offset, hs);
}

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                       int bf16) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  size_t C3 = 3 * (size_t)C;
#pragma omp parallel
  {
    float* score = malloc(sizeof(float) * T);
    float* kt = malloc(sizeof(float) * (size_t)hs * row_stride(T));
    float* v16 = bf16 ? malloc(sizeof(float) * (size_t)T * hs) : NULL;
    float* q16 = bf16 ? malloc(sizeof(float) * hs) : NULL;
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + (size_t)b * T * C3;
        transpose_head(kt, base, C3, C + (size_t)h * hs, T, hs);
        const float* v = base + 2 * C + h * hs;
        size_t v_stride = C3;
        if (bf16) {
          bf16_round_array(kt, (size_t)hs * row_stride(T));
          bf16_head_rows(v16, base, C3, 2 * (size_t)C + (size_t)h * hs, T, hs);
          v = v16;
          v_stride = hs;
        }
        for (int t = 0; t < T; t++) {
          const float* q = base + t * C3 + h * hs;
          if (bf16) {
            bf16_round_copy(q16, q, hs);
            q = q16;
          }
          int n = t + 1;
          scores(score, q, kt, n, row_stride(T), hs);
          lse[((size_t)b * NH + h) * T + t] = softmax_scaled(score, n, scale);
          if (bf16) bf16_round_array(score, n);
          weighted_rows(out + ((size_t)b * T + t) * C + h * hs, score, v, v_stride, n, hs);
        }
      }
    }
    free(score);
    free(kt);
    free(v16);
    free(q16);
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int B, int T, int C, int NH, int bf16) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  size_t C3 = 3 * (size_t)C;
#pragma omp parallel
  {
    float* dk_loc = malloc(sizeof(float) * (size_t)T * hs);
    float* dv_loc = malloc(sizeof(float) * (size_t)T * hs);
    float* dq_loc = malloc(sizeof(float) * hs);
    float* kt = malloc(sizeof(float) * (size_t)hs * row_stride(T));
    float* vt = malloc(sizeof(float) * (size_t)hs * row_stride(T));
    float* p = malloc(sizeof(float) * T);
    float* ds = malloc(sizeof(float) * T);
    float* k16 = bf16 ? malloc(sizeof(float) * (size_t)T * hs) : NULL;
    float* qd16 = bf16 ? malloc(sizeof(float) * 2 * hs) : NULL;
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + (size_t)b * T * C3;
        float* dbase = dqkv + (size_t)b * T * C3;
        transpose_head(kt, base, C3, C + (size_t)h * hs, T, hs);
        transpose_head(vt, base, C3, 2 * (size_t)C + (size_t)h * hs, T, hs);
        const float* krows = base + C + h * hs;  // the keys as rows, for dq = sum_t2 ds k
        size_t k_stride = C3;
        if (bf16) {
          bf16_round_array(kt, (size_t)hs * row_stride(T));
          bf16_round_array(vt, (size_t)hs * row_stride(T));
          bf16_head_rows(k16, base, C3, C + (size_t)h * hs, T, hs);
          krows = k16;
          k_stride = hs;
        }
        for (size_t i = 0; i < (size_t)T * hs; i++) dk_loc[i] = dv_loc[i] = 0;
        for (int t = 0; t < T; t++) {
          const float* q = base + t * C3 + h * hs;
          const float* d = dout + ((size_t)b * T + t) * C + h * hs;
          const float* o = out + ((size_t)b * T + t) * C + h * hs;
          float l = lse[((size_t)b * NH + h) * T + t];
          int n = t + 1;
          float D = 0;  // sum_t2 p dp = dout . out
#pragma omp simd reduction(+ : D)
          for (int i = 0; i < hs; i++) D += d[i] * o[i];
          if (bf16) {  // the operands of the products from here on
            bf16_round_copy(qd16, q, hs);
            bf16_round_copy(qd16 + hs, d, hs);
            q = qd16;
            d = qd16 + hs;
          }
          scores(p, q, kt, n, row_stride(T), hs);   // q . k, for every key at once
          scores(ds, d, vt, n, row_stride(T), hs);  // dp = dout . v
          if (bf16) {
#pragma omp simd
            for (int t2 = 0; t2 < n; t2++) {
              float pr = expf(p[t2] * scale - l);
              ds[t2] = bf16_round(pr * (ds[t2] - D)) * scale;
              p[t2] = bf16_round(pr);
            }
          } else {
#pragma omp simd
            for (int t2 = 0; t2 < n; t2++) {
              float pr = expf(p[t2] * scale - l);
              ds[t2] = pr * (ds[t2] - D) * scale;
              p[t2] = pr;
            }
          }
          for (int t2 = 0; t2 < n; t2++) {
            axpy(dv_loc + (size_t)t2 * hs, p[t2], d, hs);
            axpy(dk_loc + (size_t)t2 * hs, ds[t2], q, hs);
          }
          weighted_rows(dq_loc, ds, krows, k_stride, n, hs);  // sum_t2 ds k
          float* dq = dbase + t * C3 + h * hs;
          for (int i = 0; i < hs; i++) dq[i] += dq_loc[i];
        }
        for (int t2 = 0; t2 < T; t2++) {
          float* dk = dbase + t2 * C3 + C + h * hs;
          float* dv = dbase + t2 * C3 + 2 * C + h * hs;
          for (int i = 0; i < hs; i++) {
            dk[i] += dk_loc[(size_t)t2 * hs + i];
            dv[i] += dv_loc[(size_t)t2 * hs + i];
          }
        }
      }
    }
    free(dk_loc);
    free(dv_loc);
    free(dq_loc);
    free(kt);
    free(vt);
    free(p);
    free(ds);
    free(k16);
    free(qd16);
  }
}
