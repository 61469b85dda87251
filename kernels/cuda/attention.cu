// attention.cu: causal self-attention from packed qkv, flash style (FlashAttention-2's loop
// order): the (T, T) matrix never exists in memory, only the softmax statistics are kept.
//   qkv (B, T, 3C): q of (b, t, head h) at [b, t, h hs], k at [b, t, C + h hs], v at [b, t, 2C + h hs]
//   attention_forward_*:        out (B, T, C), lse (B, NH, T) = log sum_t2 exp(score), score =
//                               q . k / sqrt(hs) for t2 <= t; an online softmax over key tiles
//   attention_backward_prep:    D (B, NH, T) = dout . out per query (= sum_t2 p dp)
//   attention_backward_dkdv_*:  dk += scale sum_t ds q;  dv += sum_t p dout, a block per key tile
//   attention_backward_dq_*:    dq += scale sum_t2 ds k, a block per query tile
//                               with p = exp(score - lse), dp = dout . v, ds = p (dp - D),
//                               all recomputed from q, k, v and lse
// Two kernels for the backward instead of one with atomics, so every element of dqkv is
// summed by one thread in a fixed order: deterministic, and += as every backward does (= with
// `overwrite`: dqkv's first contribution, no zero fill before it; each element is written by
// one of the two kernels).
//
// The tiled kernels (_hs16, _hs32, _hs64, _hs128) take 64 queries x 64 keys per step with
// 256 threads as 16 x 16, each thread a 4 x 4 patch of the scores and 4 rows x hs/16
// columns of the output; tiles live in dynamic shared memory (rows padded by one float so
// the column reads hit distinct banks), sized by attention_smem_* in lib/backends/cuda/
// kernels.ts, which must match the layouts below (the kernels trap if given less).
// The _generic kernels take any head size, a thread per query (or key): slow, for the odd
// head sizes of tests and tiny models.
#include "common.cuh"

#define ATT_TILE 64
#define ATT_THREADS 256
#define ATT_PS (ATT_TILE + 1)  // padded row stride of score-sized tiles

#ifndef GPT2_CUDA_EMULATION
DEVICE unsigned int dynamic_smem_bytes() {
  unsigned int r;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
  return r;
}
#endif

// Stops the kernel when the launch gave less dynamic shared memory than its layout needs.
DEVICE void require_smem(unsigned int floats) {
  if (dynamic_smem_bytes() < floats * 4u) __trap();
}

// dst[r][d] (row stride dstStride) = src row (row0 + r), d < HS, src rows srcStride apart;
// rows at or past T are zeros
template <int HS>
DEVICE void load_rows(float* dst, int dstStride, const float* src, int srcStride, int row0,
                      int T) {
  for (int e = threadIdx.x; e < ATT_TILE * HS; e += ATT_THREADS) {
    int r = e / HS, d = e % HS, t = row0 + r;
    dst[r * dstStride + d] = t < T ? src[(long long)t * srcStride + d] : 0.0f;
  }
}

// acc[i][j] += sum_d a[(ty 4 + i) * stride + d] * b[(tx + 16 j) * stride + d]
template <int HS>
DEVICE void tile_dots(float acc[4][4], const float* a, const float* b, int stride, int tx,
                      int ty) {
  for (int d = 0; d < HS; d++) {
    float av[4], bv[4];
#pragma unroll
    for (int i = 0; i < 4; i++) av[i] = a[(ty * 4 + i) * stride + d];
#pragma unroll
    for (int j = 0; j < 4; j++) bv[j] = b[(tx + 16 * j) * stride + d];
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
      for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
}

template <int HS>
struct FlashSmem {
  static const int QS = HS + 1;  // padded row stride of hs-wide tiles
  static const int forward = 2 * ATT_TILE * QS + ATT_TILE * HS + ATT_TILE * ATT_PS;
  static const int dkdv = 4 * ATT_TILE * QS + 2 * ATT_TILE * ATT_PS + 2 * ATT_TILE;
  static const int dq = 4 * ATT_TILE * QS + ATT_TILE * ATT_PS;
};

// grid (ceil(T / 64), B NH): a block per (query tile, head), the longest rows first
template <int HS>
DEVICE void flash_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH) {
  const int QS = FlashSmem<HS>::QS, J = HS / 16;
  require_smem(FlashSmem<HS>::forward);
  float* Qs = reinterpret_cast<float*>(gpt2_dynamic_smem);  // [64][QS]
  float* Ks = Qs + ATT_TILE * QS;                              // [64][QS]
  float* Vs = Ks + ATT_TILE * QS;                              // [64][HS]
  float* Ps = Vs + ATT_TILE * HS;                              // [64][ATT_PS]
  int numTiles = (T + ATT_TILE - 1) / ATT_TILE;
  int qt = numTiles - 1 - (int)blockIdx.x;
  int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  int C3 = 3 * C, tx = threadIdx.x % 16, ty = threadIdx.x / 16, q0 = qt * ATT_TILE;
  const float* base = qkv + (long long)b * T * C3 + h * HS;
  float scale = 1.0f / sqrtf((float)HS);
  load_rows<HS>(Qs, QS, base, C3, q0, T);
  float m[4], l[4], o[4][J];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    m[i] = -GPT2_INF;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < J; j++) o[i][j] = 0.0f;
  }
  for (int kt = 0; kt <= qt; kt++) {
    int k0 = kt * ATT_TILE;
    __syncthreads();  // the previous tile's K, V and P are consumed
    load_rows<HS>(Ks, QS, base + C, C3, k0, T);
    load_rows<HS>(Vs, HS, base + 2 * C, C3, k0, T);
    __syncthreads();
    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
      for (int j = 0; j < 4; j++) s[i][j] = 0.0f;
    }
    tile_dots<HS>(s, Qs, Ks, QS, tx, ty);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int q = q0 + ty * 4 + i;
      float rowMax = -GPT2_INF;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        int k = k0 + tx + 16 * j;
        s[i][j] = (k <= q && k < T) ? s[i][j] * scale : -GPT2_INF;
        rowMax = fmaxf(rowMax, s[i][j]);
      }
      // every row has a valid key in every tile it visits (key k0 <= q), so mNew is finite
      float mNew = fmaxf(m[i], group16_max(rowMax));
      float corr = expf(m[i] - mNew);  // 0 on the first tile (m = -inf)
      float rowSum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        float p = expf(s[i][j] - mNew);
        Ps[(ty * 4 + i) * ATT_PS + tx + 16 * j] = p;
        rowSum += p;
      }
      l[i] = l[i] * corr + group16_sum(rowSum);
      m[i] = mNew;
#pragma unroll
      for (int j = 0; j < J; j++) o[i][j] *= corr;
    }
    __syncthreads();
    for (int c = 0; c < ATT_TILE; c++) {
      float vv[J];
#pragma unroll
      for (int j = 0; j < J; j++) vv[j] = Vs[c * HS + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        float p = Ps[(ty * 4 + i) * ATT_PS + c];
#pragma unroll
        for (int j = 0; j < J; j++) o[i][j] = fmaf(p, vv[j], o[i][j]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int q = q0 + ty * 4 + i;
    if (q >= T) continue;
    float* dst = out + ((long long)b * T + q) * C + h * HS;
    float inv = 1.0f / l[i];
#pragma unroll
    for (int j = 0; j < J; j++) dst[tx + 16 * j] = o[i][j] * inv;
    if (tx == 0) lse[(long long)bh * T + q] = m[i] + logf(l[i]);
  }
}

// grid (ceil(T / 64), B NH): a block per (key tile, head); key tile blockIdx.x meets the
// query tiles from itself to the last, so the first blocks have the most work
template <int HS>
DEVICE void flash_backward_dkdv(float* dqkv, const float* dout, const float* qkv,
                                const float* lse, const float* Dvec, int B, int T, int C,
                                int NH, int overwrite) {
  const int QS = FlashSmem<HS>::QS, J = HS / 16;
  require_smem(FlashSmem<HS>::dkdv);
  float* Ks = reinterpret_cast<float*>(gpt2_dynamic_smem);  // [64][QS]
  float* Vs = Ks + ATT_TILE * QS;                              // [64][QS]
  float* Qs = Vs + ATT_TILE * QS;                              // [64][QS]
  float* dOs = Qs + ATT_TILE * QS;                             // [64][QS]
  float* Ps = dOs + ATT_TILE * QS;                             // [64 keys][ATT_PS queries]
  float* dSs = Ps + ATT_TILE * ATT_PS;                         // [64 keys][ATT_PS queries]
  float* lseS = dSs + ATT_TILE * ATT_PS;                       // [64]
  float* DS = lseS + ATT_TILE;                                 // [64]
  int numTiles = (T + ATT_TILE - 1) / ATT_TILE;
  int kt = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
  int C3 = 3 * C, tx = threadIdx.x % 16, ty = threadIdx.x / 16, k0 = kt * ATT_TILE;
  const float* base = qkv + (long long)b * T * C3 + h * HS;
  const float* dbase = dout + (long long)b * T * C + h * HS;
  float scale = 1.0f / sqrtf((float)HS);
  load_rows<HS>(Ks, QS, base + C, C3, k0, T);
  load_rows<HS>(Vs, QS, base + 2 * C, C3, k0, T);
  float dk[4][J], dv[4][J];
#pragma unroll
  for (int i = 0; i < 4; i++) {
#pragma unroll
    for (int j = 0; j < J; j++) dk[i][j] = dv[i][j] = 0.0f;
  }
  for (int qt = kt; qt < numTiles; qt++) {
    int q0 = qt * ATT_TILE;
    __syncthreads();  // the previous query tile is consumed
    load_rows<HS>(Qs, QS, base, C3, q0, T);
    load_rows<HS>(dOs, QS, dbase, C, q0, T);
    if (threadIdx.x < ATT_TILE) {
      int q = q0 + threadIdx.x;
      lseS[threadIdx.x] = q < T ? lse[(long long)bh * T + q] : 0.0f;
      DS[threadIdx.x] = q < T ? Dvec[(long long)bh * T + q] : 0.0f;
    }
    __syncthreads();
    float p[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
      for (int j = 0; j < 4; j++) p[i][j] = dp[i][j] = 0.0f;
    }
    tile_dots<HS>(p, Ks, Qs, QS, tx, ty);    // scores^T: keys x queries
    tile_dots<HS>(dp, Vs, dOs, QS, tx, ty);  // dp^T = v . dout
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int k = k0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        int qc = tx + 16 * j, q = q0 + qc;
        float pv = (k <= q && q < T && k < T) ? expf(p[i][j] * scale - lseS[qc]) : 0.0f;
        Ps[(ty * 4 + i) * ATT_PS + qc] = pv;
        dSs[(ty * 4 + i) * ATT_PS + qc] = pv * (dp[i][j] - DS[qc]);
      }
    }
    __syncthreads();
    for (int q = 0; q < ATT_TILE; q++) {
      float dov[J], qv[J];
#pragma unroll
      for (int j = 0; j < J; j++) {
        dov[j] = dOs[q * QS + tx + 16 * j];
        qv[j] = Qs[q * QS + tx + 16 * j];
      }
#pragma unroll
      for (int i = 0; i < 4; i++) {
        float pv = Ps[(ty * 4 + i) * ATT_PS + q], ds = dSs[(ty * 4 + i) * ATT_PS + q];
#pragma unroll
        for (int j = 0; j < J; j++) {
          dv[i][j] = fmaf(pv, dov[j], dv[i][j]);
          dk[i][j] = fmaf(ds, qv[j], dk[i][j]);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int k = k0 + ty * 4 + i;
    if (k >= T) continue;
    float* dst = dqkv + ((long long)b * T + k) * C3 + h * HS;
#pragma unroll
    for (int j = 0; j < J; j++) {
      float* dkp = dst + C + tx + 16 * j;
      float* dvp = dst + 2 * C + tx + 16 * j;
      *dkp = overwrite ? dk[i][j] * scale : *dkp + dk[i][j] * scale;
      *dvp = overwrite ? dv[i][j] : *dvp + dv[i][j];
    }
  }
}

// grid (ceil(T / 64), B NH): a block per (query tile, head), the longest rows first
template <int HS>
DEVICE void flash_backward_dq(float* dqkv, const float* dout, const float* qkv, const float* lse,
                              const float* Dvec, int B, int T, int C, int NH, int overwrite) {
  const int QS = FlashSmem<HS>::QS, J = HS / 16;
  require_smem(FlashSmem<HS>::dq);
  float* Qs = reinterpret_cast<float*>(gpt2_dynamic_smem);  // [64][QS]
  float* dOs = Qs + ATT_TILE * QS;                             // [64][QS]
  float* Ks = dOs + ATT_TILE * QS;                             // [64][QS]
  float* Vs = Ks + ATT_TILE * QS;                              // [64][QS]
  float* dSs = Vs + ATT_TILE * QS;                             // [64 queries][ATT_PS keys]
  int numTiles = (T + ATT_TILE - 1) / ATT_TILE;
  int qt = numTiles - 1 - (int)blockIdx.x;
  int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  int C3 = 3 * C, tx = threadIdx.x % 16, ty = threadIdx.x / 16, q0 = qt * ATT_TILE;
  const float* base = qkv + (long long)b * T * C3 + h * HS;
  float scale = 1.0f / sqrtf((float)HS);
  load_rows<HS>(Qs, QS, base, C3, q0, T);
  load_rows<HS>(dOs, QS, dout + (long long)b * T * C + h * HS, C, q0, T);
  float lseI[4], DI[4], dq[4][J];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int q = q0 + ty * 4 + i;
    lseI[i] = q < T ? lse[(long long)bh * T + q] : 0.0f;
    DI[i] = q < T ? Dvec[(long long)bh * T + q] : 0.0f;
#pragma unroll
    for (int j = 0; j < J; j++) dq[i][j] = 0.0f;
  }
  for (int kt = 0; kt <= qt; kt++) {
    int k0 = kt * ATT_TILE;
    __syncthreads();  // the previous key tile is consumed
    load_rows<HS>(Ks, QS, base + C, C3, k0, T);
    load_rows<HS>(Vs, QS, base + 2 * C, C3, k0, T);
    __syncthreads();
    float p[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
      for (int j = 0; j < 4; j++) p[i][j] = dp[i][j] = 0.0f;
    }
    tile_dots<HS>(p, Qs, Ks, QS, tx, ty);
    tile_dots<HS>(dp, dOs, Vs, QS, tx, ty);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int q = q0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        int k = k0 + tx + 16 * j;
        float pv = (k <= q && k < T && q < T) ? expf(p[i][j] * scale - lseI[i]) : 0.0f;
        dSs[(ty * 4 + i) * ATT_PS + tx + 16 * j] = pv * (dp[i][j] - DI[i]);
      }
    }
    __syncthreads();
    for (int k = 0; k < ATT_TILE; k++) {
      float kv[J];
#pragma unroll
      for (int j = 0; j < J; j++) kv[j] = Ks[k * QS + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        float ds = dSs[(ty * 4 + i) * ATT_PS + k];
#pragma unroll
        for (int j = 0; j < J; j++) dq[i][j] = fmaf(ds, kv[j], dq[i][j]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int q = q0 + ty * 4 + i;
    if (q >= T) continue;
    float* dst = dqkv + ((long long)b * T + q) * C3 + h * HS;
#pragma unroll
    for (int j = 0; j < J; j++) {
      float* dqp = dst + tx + 16 * j;
      *dqp = overwrite ? dq[i][j] * scale : *dqp + dq[i][j] * scale;
    }
  }
}

#define FLASH_KERNELS(HS)                                                                     \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                   \
      attention_forward_hs##HS(float* out, float* lse, const float* qkv, int B, int T, int C, \
                               int NH) {                                                      \
    flash_forward<HS>(out, lse, qkv, B, T, C, NH);                                            \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention_backward_dkdv_hs##HS(   \
      float* dqkv, const float* dout, const float* qkv, const float* lse, const float* Dvec,  \
      int B, int T, int C, int NH, int overwrite) {                                           \
    flash_backward_dkdv<HS>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite);              \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention_backward_dq_hs##HS(     \
      float* dqkv, const float* dout, const float* qkv, const float* lse, const float* Dvec,  \
      int B, int T, int C, int NH, int overwrite) {                                           \
    flash_backward_dq<HS>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite);                \
  }

FLASH_KERNELS(16)
FLASH_KERNELS(32)
FLASH_KERNELS(64)
FLASH_KERNELS(128)

// D (B, NH, T) = dout . out per (b, t, h): a warp per row of hs; out and dout rows (b, t, h)
// are contiguous, (b T + t) NH + h being the row's index
extern "C" __global__ void attention_backward_prep(float* Dvec, const float* dout, const float* out,
                                                   int B, int T, int C, int NH) {
  int hs = C / NH, lane = threadIdx.x % WARP;
  long long rows = (long long)B * T * NH;
  long long warps = (long long)gridDim.x * (blockDim.x / WARP);
  for (long long r = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP; r < rows;
       r += warps) {
    const float* d = dout + r * hs;
    const float* o = out + r * hs;
    float s = 0.0f;
    for (int i = lane; i < hs; i += WARP) s += d[i] * o[i];
    s = warp_sum(s);
    if (lane == 0) {
      long long bt = r / NH;
      int h = (int)(r % NH);
      long long b = bt / T, t = bt % T;
      Dvec[(b * NH + h) * T + t] = s;
    }
  }
}

// ---- any head size: a thread per query (forward, dq) or per key (dk, dv) ------------------

extern "C" __global__ void attention_forward_generic(float* out, float* lse, const float* qkv,
                                                     int B, int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  GRID_STRIDE(e, (long long)B * NH * T) {
    int t = (int)(e % T), bh = (int)(e / T), b = bh / NH, h = bh % NH;
    const float* q = qkv + ((long long)b * T + t) * C3 + h * hs;
    float* o = out + ((long long)b * T + t) * C + h * hs;
    for (int i = 0; i < hs; i++) o[i] = 0.0f;
    float m = -GPT2_INF, l = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
      const float* k = qkv + ((long long)b * T + t2) * C3 + C + h * hs;
      float s = 0.0f;
      for (int i = 0; i < hs; i++) s += q[i] * k[i];
      s *= scale;
      float mNew = fmaxf(m, s), corr = expf(m - mNew), p = expf(s - mNew);
      l = l * corr + p;
      m = mNew;
      const float* v = k + C;
      for (int i = 0; i < hs; i++) o[i] = o[i] * corr + p * v[i];
    }
    for (int i = 0; i < hs; i++) o[i] /= l;
    lse[e] = m + logf(l);
  }
}

extern "C" __global__ void attention_backward_dq_generic(float* dqkv, const float* dout,
                                                         const float* qkv, const float* lse,
                                                         const float* Dvec, int B, int T, int C,
                                                         int NH, int overwrite) {
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  GRID_STRIDE(e, (long long)B * NH * T) {
    int t = (int)(e % T), bh = (int)(e / T), b = bh / NH, h = bh % NH;
    const float* q = qkv + ((long long)b * T + t) * C3 + h * hs;
    const float* d = dout + ((long long)b * T + t) * C + h * hs;
    float* dq = dqkv + ((long long)b * T + t) * C3 + h * hs;
    if (overwrite) {
      for (int i = 0; i < hs; i++) dq[i] = 0.0f;  // this thread's row, added to below
    }
    float L = lse[e], D = Dvec[e];
    for (int t2 = 0; t2 <= t; t2++) {
      const float* k = qkv + ((long long)b * T + t2) * C3 + C + h * hs;
      const float* v = k + C;
      float s = 0.0f, dp = 0.0f;
      for (int i = 0; i < hs; i++) {
        s += q[i] * k[i];
        dp += d[i] * v[i];
      }
      float ds = expf(s * scale - L) * (dp - D) * scale;
      for (int i = 0; i < hs; i++) dq[i] += ds * k[i];
    }
  }
}

extern "C" __global__ void attention_backward_dkdv_generic(float* dqkv, const float* dout,
                                                           const float* qkv, const float* lse,
                                                           const float* Dvec, int B, int T, int C,
                                                           int NH, int overwrite) {
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  GRID_STRIDE(e, (long long)B * NH * T) {
    int t2 = (int)(e % T), bh = (int)(e / T), b = bh / NH, h = bh % NH;
    const float* k = qkv + ((long long)b * T + t2) * C3 + C + h * hs;
    const float* v = k + C;
    float* dk = dqkv + ((long long)b * T + t2) * C3 + C + h * hs;
    float* dv = dk + C;
    if (overwrite) {
      for (int i = 0; i < hs; i++) dk[i] = dv[i] = 0.0f;  // this thread's rows, added to below
    }
    for (int t = t2; t < T; t++) {
      const float* q = qkv + ((long long)b * T + t) * C3 + h * hs;
      const float* d = dout + ((long long)b * T + t) * C + h * hs;
      float s = 0.0f, dp = 0.0f;
      for (int i = 0; i < hs; i++) {
        s += q[i] * k[i];
        dp += d[i] * v[i];
      }
      long long row = (long long)bh * T + t;
      float p = expf(s * scale - lse[row]);
      float ds = p * (dp - Dvec[row]) * scale;
      for (int i = 0; i < hs; i++) {
        dv[i] += p * d[i];
        dk[i] += ds * q[i];
      }
    }
  }
}
