// attention.c: causal self-attention from packed qkv, flash style on the CPU.
//   forward:  qkv (B, T, 3C) -> out (B, T, C), heads of hs = C / NH; saves only the softmax
//             statistics lse (B, NH, T) = log(sum exp(score)) per query, never the (T, T) matrix
//   backward: recomputes the probabilities P from q, k and lse, then
//             dV += P^T dO;  dP = dO V^T;  dS = P (dP - rowsum(dO * O)) scale;  dQ += dS K;  dK += dS^T Q
// Work is split over (b, h) pairs, which own disjoint slices of dqkv, so no atomics are needed.
// Each pair copies its head's q, k, v (and dout) into zero-padded blocks of its own, k and v
// also transposed, and walks its queries QB at a time: the block's scores against every key up
// to its last query (a strip of QB x T, never T x T) go to scratch, their softmax is taken row
// by row, and every product above is a small GEMM on that strip, run by one register-tiled
// micro-kernel in gemm.c's style (an MR x NR tile of sums in vector registers, one broadcast
// of the left operand per row and NR / VL loads of the right one per step of the sum). Tiles
// wholly above the diagonal are skipped; the masked scores inside the diagonal's tiles are
// zero probabilities, so the products need no mask. Each pair accumulates dk and dv in its
// own rows and writes them once: heads' slices of a row can share a cache line, and repeated
// writes to it from two threads would bounce it.
// With bf16 set (--precision bf16) the products take bf16 operands (bf16.h) and sum in fp32,
// as autocast's attention does: the forward's q . k and P v (P the softmax's probabilities,
// rounded after the softmax), the backward's dout . v, P^T dout, dS k and dS^T q, where
// dS = P (dP - dout . out) is rounded before the scale 1 / sqrt(hs) multiplies it; the
// softmax, its statistics and dout . out stay fp32. q, k, v and dout are rounded once, as
// each pair copies them.
#include <stdlib.h>
#include <string.h>

#include "attention_rows.h"
#include "bf16.h"

// The micro-kernel's tile: MR rows by NR = two vectors of columns (12 sums in registers with
// AVX2's 16, as gemm.c's 6 x 16).
#define MR 6
#define NR (2 * VL)
// Queries per block: a whole number of tiles both ways (48 with AVX2, 96 with AVX-512).
#define QB (3 * NR)
// Keys per block of P V and dS K (64 rows of a GPT-2 head, 16 KiB).
#define KC 64

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

// c[r][0..NR) (r < MR) = (acc ? c[r] : 0) + sum_{k < K} a[r * ars + k * aks] * b[k * ldb + 0..NR):
// the one micro-kernel of every product here; ars and aks let the left operand be read as
// stored or transposed (P^T, dS^T), the right one is always rows of NR contiguous floats
static inline void tile(float* c, size_t ldc, const float* a, size_t ars, size_t aks,
                        const float* b, size_t ldb, int K, int acc) {
  vf s[MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    s[r][0] = acc ? vf_loadu(c + r * ldc) : vf_zero();
    s[r][1] = acc ? vf_loadu(c + r * ldc + VL) : vf_zero();
  }
  for (int k = 0; k < K; k++) {
    const float* bk = b + (size_t)k * ldb;
    vf b0 = vf_loadu(bk), b1 = vf_loadu(bk + VL);
    const float* ak = a + (size_t)k * aks;
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      vf x = vf_splat(ak[r * ars]);
      s[r][0] = vf_fma(x, b0, s[r][0]);
      s[r][1] = vf_fma(x, b1, s[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    vf_storeu(c + r * ldc, s[r][0]);
    vf_storeu(c + r * ldc + VL, s[r][1]);
  }
}

// A head's operands, padded: Tp rows (a whole number of query blocks) of hp channels (a whole
// number of tiles), zeros past T and hs. Row-major copies are (Tp, hp); transposed ones
// (hp, ldt), ldt = Tp plus one cache line, so that the hp rows of a tile's loads do not all
// fall in one L1 set when Tp * 4 bytes is a multiple of 4 KiB.
typedef struct {
  int T, hs, Tp, hp;
  size_t ldt;
} Layout;

static Layout layout(int T, int hs) {
  Layout l = {T, hs, round_up(T, QB), round_up(hs, NR), 0};
  l.ldt = (size_t)l.Tp + 16;
  return l;
}

// dst (Tp, hp) = the head's slice at `offset` of each of the T rows of src (stride ld), zero
// padded, rounded to bf16 with bf16 set
static void pack_rows(float* dst, const float* src, size_t ld, size_t offset, const Layout* l,
                      int bf16) {
  memset(dst, 0, sizeof(float) * (size_t)l->Tp * l->hp);
  for (int t = 0; t < l->T; t++) {
    float* d = dst + (size_t)t * l->hp;
    const float* s = src + t * ld + offset;
    if (bf16) {
      bf16_round_copy(d, s, l->hs);
    } else {
      memcpy(d, s, sizeof(float) * l->hs);
    }
  }
}

// dst (hp, ldt) = rows (Tp, hp) transposed
static void transpose(float* dst, const float* rows, const Layout* l) {
  for (int i = 0; i < l->hp; i++)
    for (int t = 0; t < l->Tp; t++) dst[i * l->ldt + t] = rows[(size_t)t * l->hp + i];
}

// S (QB rows of ld) = X[q0 .. q0 + QB) (rows of hp) @ Yt[:, 0 .. q0 + QB) (hp rows of ldt):
// the block's scores (Y = K) or dP (X = dO, Y = V), skipping the tiles above the diagonal
// (keys outer: a tile's hs x NR of Yt stays in L1 while every row of the block passes it; the
// rows start at the first tile whose last query reaches key c0)
static void strip(float* S, size_t ld, const float* X, const float* Yt, int q0, const Layout* l) {
  for (int c0 = 0; c0 < q0 + QB; c0 += NR)
    for (int r0 = c0 > q0 ? (c0 - q0) / MR * MR : 0; r0 < QB; r0 += MR)
      tile(S + r0 * ld + c0, ld, X + (size_t)(q0 + r0) * l->hp, l->hp, 1, Yt + c0, l->ldt, l->hs,
           0);
}

// O (QB, hp) (acc: +=) = P (QB rows of ld) @ Y (rows of hp): P's row q0 + r is zero past key
// q0 + r, so each tile of rows sums over keys 0 .. q0 + r0 + MR only
// (KC keys at a time: their rows of Y stay in L1 while every row of the block passes them)
static void strip_times_rows(float* O, const float* P, size_t ld, const float* Y, int q0,
                             const Layout* l, int acc) {
  for (int k0 = 0; k0 < q0 + QB; k0 += KC)
    for (int r0 = 0; r0 < QB; r0 += MR) {
      int k1 = q0 + r0 + MR < k0 + KC ? q0 + r0 + MR : k0 + KC;
      if (k1 <= k0) continue;
      for (int c0 = 0; c0 < l->hp; c0 += NR)
        tile(O + r0 * l->hp + c0, l->hp, P + r0 * ld + k0, ld, 1, Y + (size_t)k0 * l->hp + c0,
             l->hp, k1 - k0, acc || k0 > 0);
    }
}

// G (Tp, hp) += P^T (keys 0 .. q0 + QB of the block's QB rows of ld) @ X[q0 .. q0 + QB):
// dV (P, dO) and dK (dS, Q); key k has no probability from queries before it, so its tile
// sums over the queries from its first row on
static void strip_t_times_rows(float* G, const float* P, size_t ld, const float* X, int q0,
                               const Layout* l) {
  for (int k0 = 0; k0 < q0 + QB; k0 += MR) {
    int first = k0 > q0 ? k0 - q0 : 0;
    for (int c0 = 0; c0 < l->hp; c0 += NR)
      tile(G + (size_t)k0 * l->hp + c0, l->hp, P + (size_t)first * ld + k0, 1, ld,
           X + (size_t)(q0 + first) * l->hp + c0, l->hp, QB - first, 1);
  }
}

// Per-thread scratch, in one allocation.
typedef struct {
  float *q, *k, *v, *d, *kt, *vt, *s, *dp, *o, *dk, *dv;
  void* base;
} Scratch;

static Scratch scratch(const Layout* l, int backward) {
  size_t rows = (size_t)l->Tp * l->hp, cols = (size_t)l->hp * l->ldt, strip = QB * l->ldt;
  size_t counts[] = {rows, rows, rows, backward ? rows : 0, cols, backward ? cols : 0, strip,
                     backward ? strip : 0, (size_t)QB * l->hp, backward ? rows : 0,
                     backward ? rows : 0};
  size_t total = 0;
  for (int i = 0; i < 11; i++) total += (counts[i] + 15) / 16 * 16;  // 64-byte aligned parts
  Scratch sc;
  sc.base = aligned_alloc(64, sizeof(float) * (total ? total : 16));
  float* p = sc.base;
  float** parts[] = {&sc.q, &sc.k, &sc.v, &sc.d, &sc.kt, &sc.vt, &sc.s, &sc.dp, &sc.o, &sc.dk, &sc.dv};
  for (int i = 0; i < 11; i++) {
    *parts[i] = p;
    p += (counts[i] + 15) / 16 * 16;
  }
  return sc;
}

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                       int bf16) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  size_t C3 = 3 * (size_t)C;
  Layout l = layout(T, hs);
#pragma omp parallel
  {
    Scratch sc = scratch(&l, 0);
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + (size_t)b * T * C3;
        pack_rows(sc.q, base, C3, (size_t)h * hs, &l, bf16);
        pack_rows(sc.k, base, C3, C + (size_t)h * hs, &l, bf16);
        pack_rows(sc.v, base, C3, 2 * (size_t)C + (size_t)h * hs, &l, bf16);
        transpose(sc.kt, sc.k, &l);
        float* lse_bh = lse + ((size_t)b * NH + h) * T;
        for (int q0 = 0; q0 < T; q0 += QB) {
          int nk = q0 + QB;  // keys the block's tiles read (zero past each row's own)
          strip(sc.s, l.ldt, sc.q, sc.kt, q0, &l);
          for (int r = 0; r < QB; r++) {
            float* p = sc.s + r * l.ldt;
            int n = q0 + r < T ? q0 + r + 1 : 0;  // padded rows: no keys, all zero
            if (n) lse_bh[q0 + r] = softmax_scaled(p, n, scale);
            if (bf16) bf16_round_array(p, n);
            for (int j = n; j < nk; j++) p[j] = 0;
          }
          strip_times_rows(sc.o, sc.s, l.ldt, sc.v, q0, &l, 0);
          for (int r = 0; r < QB && q0 + r < T; r++)
            memcpy(out + ((size_t)b * T + q0 + r) * C + h * hs, sc.o + r * l.hp,
                   sizeof(float) * hs);
        }
      }
    }
    free(sc.base);
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int B, int T, int C, int NH, int bf16) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  size_t C3 = 3 * (size_t)C;
  Layout l = layout(T, hs);
#pragma omp parallel
  {
    Scratch sc = scratch(&l, 1);
    float D[QB];
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + (size_t)b * T * C3;
        const float* dbase = dout + (size_t)b * T * C;
        const float* obase = out + (size_t)b * T * C;
        pack_rows(sc.q, base, C3, (size_t)h * hs, &l, bf16);
        pack_rows(sc.k, base, C3, C + (size_t)h * hs, &l, bf16);
        pack_rows(sc.v, base, C3, 2 * (size_t)C + (size_t)h * hs, &l, bf16);
        pack_rows(sc.d, dbase, C, (size_t)h * hs, &l, bf16);
        transpose(sc.kt, sc.k, &l);
        transpose(sc.vt, sc.v, &l);
        memset(sc.dk, 0, sizeof(float) * (size_t)l.Tp * l.hp);
        memset(sc.dv, 0, sizeof(float) * (size_t)l.Tp * l.hp);
        const float* lse_bh = lse + ((size_t)b * NH + h) * T;
        for (int q0 = 0; q0 < T; q0 += QB) {
          int nk = q0 + QB;
          for (int r = 0; r < QB; r++) {  // D = sum_t2 P dP = dout . out, from the fp32 dout
            D[r] = 0;
            if (q0 + r >= T) continue;
            const float* d = dbase + (size_t)(q0 + r) * C + h * hs;
            const float* o = obase + (size_t)(q0 + r) * C + h * hs;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int i = 0; i < hs; i++) acc += d[i] * o[i];
            D[r] = acc;
          }
          strip(sc.s, l.ldt, sc.q, sc.kt, q0, &l);   // scores q . k
          strip(sc.dp, l.ldt, sc.d, sc.vt, q0, &l);  // dP = dout . v
          for (int r = 0; r < QB; r++) {  // P into s, dS into dp
            float* p = sc.s + r * l.ldt;
            float* ds = sc.dp + r * l.ldt;
            int n = q0 + r < T ? q0 + r + 1 : 0;
            float lr = n ? lse_bh[q0 + r] : 0, Dr = D[r];
            if (bf16) {
#pragma omp simd
              for (int j = 0; j < n; j++) {
                float pr = expf(p[j] * scale - lr);
                ds[j] = bf16_round(pr * (ds[j] - Dr)) * scale;
                p[j] = bf16_round(pr);
              }
            } else {
#pragma omp simd
              for (int j = 0; j < n; j++) {
                float pr = expf(p[j] * scale - lr);
                ds[j] = pr * (ds[j] - Dr) * scale;
                p[j] = pr;
              }
            }
            for (int j = n; j < nk; j++) p[j] = ds[j] = 0;
          }
          strip_t_times_rows(sc.dv, sc.s, l.ldt, sc.d, q0, &l);   // dV += P^T dO
          strip_t_times_rows(sc.dk, sc.dp, l.ldt, sc.q, q0, &l);  // dK += dS^T Q
          strip_times_rows(sc.o, sc.dp, l.ldt, sc.k, q0, &l, 0);  // dQ = dS K
          for (int r = 0; r < QB && q0 + r < T; r++) {
            float* dq = dqkv + ((size_t)b * T + q0 + r) * C3 + h * hs;
            const float* g = sc.o + r * l.hp;
            for (int i = 0; i < hs; i++) dq[i] += g[i];
          }
        }
        for (int t = 0; t < T; t++) {
          float* dk = dqkv + ((size_t)b * T + t) * C3 + C + h * hs;
          float* dv = dk + C;
          const float* gk = sc.dk + (size_t)t * l.hp;
          const float* gv = sc.dv + (size_t)t * l.hp;
          for (int i = 0; i < hs; i++) {
            dk[i] += gk[i];
            dv[i] += gv[i];
          }
        }
      }
    }
    free(sc.base);
  }
}
