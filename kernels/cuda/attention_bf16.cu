// attention_bf16.cu: causal self-attention from packed qkv on bf16 tensor cores, flash style
// (FlashAttention-2's loop order), drop-in replacements for attention.cu's _hs64 and _hs128
// kernels: the same arguments, grids (ceil(T / 64), B NH), f32 inputs and f32 outputs.
//   qkv (B, T, 3C): q of (b, t, head h) at [b, t, h hs], k at [b, t, C + h hs], v at [b, t, 2C + h hs]
//   attention_forward_bf16_*:        out (B, T, C), lse (B, NH, T) = log sum_t2 exp(score),
//                                    score = q . k / sqrt(hs) for t2 <= t; online softmax
//   attention_backward_dkdv_bf16_*:  dk += scale sum_t ds q;  dv += sum_t p dout, a block per
//                                    key tile
//   attention_backward_dq_bf16_*:    dq += scale sum_t2 ds k, a block per query tile
//                                    with p = exp(score - lse), dp = dout . v, ds = p (dp - D),
//                                    D from attention.cu's attention_backward_prep
// Two backward kernels as in attention.cu, no atomics: deterministic, and += into dqkv (= with
// `overwrite`, as attention.cu's).
//
// Precision (as PyTorch's bf16 SDPA): tiles of q, k, v and dout are read from f32 global
// memory and rounded to bf16 (to nearest even) in shared memory; every product of tiles runs
// on WMMA 16x16x16 with bf16 operands and f32 accumulators: S = Q K^T, O += P V, and in the
// backward dP = dO V^T, dV += P^T dO, dK += dS^T Q, dQ += dS K, where P and dS are rounded to
// bf16 before they enter a product. The softmax (max, exp, the row sums l, lse) and the
// scaling, D and dp - D are f32; the row sums add the unrounded f32 p.
//
// A block is 4 warps (128 threads) and a tile of 64 queries (forward, dq) or 64 keys (dk, dv):
// each warp owns 16 of its rows. A warp's 16 x 64 products leave the tensor cores through its
// own f32 scratch in shared memory, where each lane works on half a row (32 columns) of it:
// the row statistics live in registers, and so does the forward's output row (lane's half),
// so rescaling by exp(m_old - m_new) never needs to know how fragments map to threads (CUDA
// leaves that unspecified). dK, dV and dQ stay in accumulator fragments across the loop.
// Shared memory (dynamic, attention_bf16_smem_bytes in lib/backends/cuda/kernels.ts must
// match Bf16Smem below; the kernels trap when given less): bf16 rows padded by 8 elements and
// f32 rows by 4, keeping every WMMA pointer 256-bit aligned and its stride a multiple of 16
// bytes. Uses attention.cu's ATT_TILE and require_smem (build.ts includes the .cu files sorted
// by name, so attention.cu comes first).
//
// TF32 (attention_*_tf32_hs64): the same kernels with PrecTf32 operands: tiles, P and dS
// rounded by __float_to_tf32 (10 bits of mantissa, ties away from zero) and held as f32 in
// shared memory (strides in f32 elements, so twice the bytes: head size 64 only, as 128 would
// exceed sm_80's shared memory), products on WMMA 16x16x8 tf32 fragments with f32
// accumulators; chosen under TF32 matmuls as the bf16 ones are under bf16. Compile-checked
// (nvcc for sm_80 and sm_90, resource tables) and checked on the CPU emulator, not yet run on a
// GPU.
#include "common.cuh"

#ifdef GPT2_CUDA_EMULATION
#define GPT2_HAVE_WMMA 1
#define gpt2_bf16_smem gpt2_dynamic_smem
#elif __has_include(<mma.h>)
#define GPT2_HAVE_WMMA 1
#include <cuda_bf16.h>
#include <mma.h>
// the same dynamic shared memory as gpt2_dynamic_smem, declared 128-byte aligned for WMMA
extern __shared__ __align__(128) unsigned char gpt2_bf16_smem[];
#endif

#define ATT_BF16_THREADS 128
#define ATT_BF16_WARPS 4

#ifdef GPT2_HAVE_WMMA
namespace wmma = nvcuda::wmma;
typedef __nv_bfloat16 bf16;

// The operands' precision: what shared memory holds, the fragments' type and depth (k), and
// the rounding into it. bf16: 16x16x16 fragments of bf16, rounded to nearest even. TF32:
// 16x16x8 fragments of wmma::precision::tf32, held as f32 already rounded by __float_to_tf32
// (to nearest, ties away from zero: 10 bits of mantissa), so a fragment loaded from shared
// memory holds TF32 values exactly.
struct PrecBf16 {
  typedef bf16 elem;
  typedef bf16 frag;
  static const int K = 16;
};
struct PrecTf32 {
  typedef float elem;
  typedef wmma::precision::tf32 frag;
  static const int K = 8;
};
DEVICE bf16 round_operand(PrecBf16, float x) { return __float2bfloat16_rn(x); }
DEVICE float round_operand(PrecTf32, float x) { return wmma::__float_to_tf32(x); }

template <class P>
struct Frags {
  typedef wmma::fragment<wmma::accumulator, 16, 16, P::K, float> Acc;
  typedef wmma::fragment<wmma::matrix_a, 16, 16, P::K, typename P::frag, wmma::row_major> A;
  typedef wmma::fragment<wmma::matrix_b, 16, 16, P::K, typename P::frag, wmma::row_major> BRow;
  typedef wmma::fragment<wmma::matrix_b, 16, 16, P::K, typename P::frag, wmma::col_major> BCol;
};

template <int HS, class P = PrecBf16>
struct Bf16Smem {
  static const int E = sizeof(typename P::elem);
  static const int LDH = HS + 8;        // operand stride of the hs-wide tiles (q, k, v, dout)
  static const int LDP = ATT_TILE + 8;  // operand stride of a warp's 16 x 64 P or dS
  static const int LDS = ATT_TILE + 4;  // f32 stride of a warp's 16 x 64 scores
  static const int LDO = HS + 4;        // f32 stride of a warp's 16 x hs products
  static const int SCRATCH = 16 * (LDS > LDO ? LDS : LDO);  // f32 per warp scratch
  static const int TILE_BYTES = ATT_TILE * LDH * E;
  static const int PS_BYTES = ATT_BF16_WARPS * 16 * LDP * E;
  static const int SCRATCH_BYTES = ATT_BF16_WARPS * SCRATCH * 4;
  static const int forward = 3 * TILE_BYTES + PS_BYTES + SCRATCH_BYTES;
  static const int dkdv = 4 * TILE_BYTES + 2 * PS_BYTES + 2 * SCRATCH_BYTES + 2 * ATT_TILE * 4;
  static const int dq = 4 * TILE_BYTES + PS_BYTES + 2 * SCRATCH_BYTES;
};

// dst[r][d] (stride LDH) = bf16(src row (row0 + r))[d], d < HS, src rows srcStride apart;
// rows at or past T are zeros
template <int HS, class P>
DEVICE void load_rows_bf16(typename P::elem* dst, const float* src, int srcStride, int row0, int T) {
  const int LDH = Bf16Smem<HS, P>::LDH;
  for (int e = threadIdx.x; e < ATT_TILE * HS; e += ATT_BF16_THREADS) {
    int r = e / HS, d = e % HS, t = row0 + r;
    dst[r * LDH + d] = round_operand(P(), t < T ? src[(long long)t * srcStride + d] : 0.0f);
  }
}

// acc[j] = A (16 x HS, stride lda) B_j^T, B_j = rows 16 j .. 16 j + 15 of b (stride ldb):
// a warp's 16 x 64 block of A B^T, stored to scratch (stride LDS)
template <int HS, class P>
DEVICE void warp_abt_to_scratch(float* scratch, const typename P::elem* a, int lda,
                                const typename P::elem* b, int ldb) {
  typename Frags<P>::Acc acc[4];
#pragma unroll
  for (int j = 0; j < 4; j++) wmma::fill_fragment(acc[j], 0.0f);
#pragma unroll
  for (int kk = 0; kk < HS / P::K; kk++) {
    typename Frags<P>::A fa;
    wmma::load_matrix_sync(fa, a + kk * P::K, lda);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      typename Frags<P>::BCol fb;  // B^T's (d, n) is b[n][d]
      wmma::load_matrix_sync(fb, b + j * 16 * ldb + kk * P::K, ldb);
      wmma::mma_sync(acc[j], fa, fb, acc[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < 4; j++) {
    wmma::store_matrix_sync(scratch + j * 16, acc[j], Bf16Smem<HS, P>::LDS, wmma::mem_row_major);
  }
}

// acc[j] += P (16 x 64, stride LDP) V[:, 16 j .. 16 j + 15] (V 64 x HS, stride LDH)
template <int HS, class P>
DEVICE void warp_pv(typename Frags<P>::Acc* acc, const typename P::elem* p,
                    const typename P::elem* v) {
#pragma unroll
  for (int kk = 0; kk < ATT_TILE / P::K; kk++) {
    typename Frags<P>::A fa;
    wmma::load_matrix_sync(fa, p + kk * P::K, Bf16Smem<HS, P>::LDP);
#pragma unroll
    for (int j = 0; j < HS / 16; j++) {
      typename Frags<P>::BRow fb;
      wmma::load_matrix_sync(fb, v + kk * P::K * Bf16Smem<HS, P>::LDH + j * 16, Bf16Smem<HS, P>::LDH);
      wmma::mma_sync(acc[j], fa, fb, acc[j]);
    }
  }
}

template <int HS, class P>
DEVICE void store_rows_to_scratch(float* scratch, const typename Frags<P>::Acc* acc) {
#pragma unroll
  for (int j = 0; j < HS / 16; j++) {
    wmma::store_matrix_sync(scratch + j * 16, acc[j], Bf16Smem<HS, P>::LDO, wmma::mem_row_major);
  }
}

// grid (ceil(T / 64), B NH): a block per (query tile, head), the longest rows first
template <int HS, class P>
DEVICE void flash_forward_bf16(float* out, float* lse, const float* qkv, int B, int T, int C,
                               int NH) {
  typedef Bf16Smem<HS, P> S;
  typedef typename P::elem E;
  const int HALF = HS / 2;
  require_smem(S::forward / 4);
  E* Qs = reinterpret_cast<E*>(gpt2_bf16_smem);  // [64][LDH]
  E* Ks = Qs + ATT_TILE * S::LDH;                   // [64][LDH]
  E* Vs = Ks + ATT_TILE * S::LDH;                   // [64][LDH]
  E* Ps = Vs + ATT_TILE * S::LDH;                   // [warp][16][LDP]
  float* scratch0 = reinterpret_cast<float*>(Ps + ATT_BF16_WARPS * 16 * S::LDP);
  int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, r = lane / 2, half = lane % 2;
  E* Pw = Ps + warp * 16 * S::LDP;
  float* scratch = scratch0 + warp * S::SCRATCH;
  int numTiles = (T + ATT_TILE - 1) / ATT_TILE;
  int qt = numTiles - 1 - (int)blockIdx.x;
  int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  int C3 = 3 * C, q0 = qt * ATT_TILE, q = q0 + warp * 16 + r;
  const float* base = qkv + (long long)b * T * C3 + h * HS;
  float scale = 1.0f / sqrtf((float)HS);
  load_rows_bf16<HS, P>(Qs, base, C3, q0, T);
  float m = -GPT2_INF, l = 0.0f, o[HALF];
#pragma unroll
  for (int c = 0; c < HALF; c++) o[c] = 0.0f;
  for (int kt = 0; kt <= qt; kt++) {
    int k0 = kt * ATT_TILE;
    __syncthreads();  // the previous tile's K and V are consumed
    load_rows_bf16<HS, P>(Ks, base + C, C3, k0, T);
    load_rows_bf16<HS, P>(Vs, base + 2 * C, C3, k0, T);
    __syncthreads();
    warp_abt_to_scratch<HS, P>(scratch, Qs + warp * 16 * S::LDH, S::LDH, Ks, S::LDH);
    __syncwarp();
    // row r, columns 32 half .. 32 half + 31: every row has a valid key in every tile it
    // visits (key k0 <= q), so mNew is finite
    const float* srow = scratch + r * S::LDS + 32 * half;
    float rowMax = -GPT2_INF;
    for (int c = 0; c < 32; c++) {
      int k = k0 + 32 * half + c;
      if (k <= q && k < T) rowMax = fmaxf(rowMax, srow[c] * scale);
    }
    float mNew = fmaxf(m, fmaxf(rowMax, __shfl_xor_sync(0xffffffffu, rowMax, 1)));
    float corr = expf(m - mNew);  // 0 on the first tile (m = -inf)
    float rowSum = 0.0f;
    for (int c = 0; c < 32; c++) {
      int k = k0 + 32 * half + c;
      float p = (k <= q && k < T) ? expf(srow[c] * scale - mNew) : 0.0f;
      Pw[r * S::LDP + 32 * half + c] = round_operand(P(), p);
      rowSum += p;
    }
    l = l * corr + (rowSum + __shfl_xor_sync(0xffffffffu, rowSum, 1));
    m = mNew;
    __syncwarp();  // P written, the scores read
    typename Frags<P>::Acc pv[HS / 16];
#pragma unroll
    for (int j = 0; j < HS / 16; j++) wmma::fill_fragment(pv[j], 0.0f);
    warp_pv<HS, P>(pv, Pw, Vs);
    store_rows_to_scratch<HS, P>(scratch, pv);
    __syncwarp();
    const float* orow = scratch + r * S::LDO + HALF * half;
#pragma unroll
    for (int c = 0; c < HALF; c++) o[c] = o[c] * corr + orow[c];
    __syncwarp();  // read before the next tile's scores overwrite it
  }
  if (q < T) {
    float* dst = out + ((long long)b * T + q) * C + h * HS + HALF * half;
    float inv = 1.0f / l;
#pragma unroll
    for (int c = 0; c < HALF; c++) dst[c] = o[c] * inv;
    if (half == 0) lse[(long long)bh * T + q] = m + logf(l);
  }
}

// grid (ceil(T / 64), B NH): a block per (key tile, head); key tile blockIdx.x meets the
// query tiles from itself to the last, so the first blocks have the most work
template <int HS, class P>
DEVICE void flash_backward_dkdv_bf16(float* dqkv, const float* dout, const float* qkv,
                                     const float* lse, const float* Dvec, int B, int T, int C,
                                     int NH, int overwrite) {
  typedef Bf16Smem<HS, P> S;
  typedef typename P::elem E;
  const int HALF = HS / 2;
  require_smem(S::dkdv / 4);
  E* Ks = reinterpret_cast<E*>(gpt2_bf16_smem);  // [64][LDH]
  E* Vs = Ks + ATT_TILE * S::LDH;                   // [64][LDH]
  E* Qs = Vs + ATT_TILE * S::LDH;                   // [64][LDH]
  E* dOs = Qs + ATT_TILE * S::LDH;                  // [64][LDH]
  E* Pts = dOs + ATT_TILE * S::LDH;                 // [warp][16 keys][LDP]: P^T
  E* dSts = Pts + ATT_BF16_WARPS * 16 * S::LDP;     // [warp][16 keys][LDP]: dS^T
  float* scratchS0 = reinterpret_cast<float*>(dSts + ATT_BF16_WARPS * 16 * S::LDP);
  float* scratchP0 = scratchS0 + ATT_BF16_WARPS * S::SCRATCH;
  float* lseS = scratchP0 + ATT_BF16_WARPS * S::SCRATCH;  // [64]
  float* DS = lseS + ATT_TILE;                            // [64]
  int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, r = lane / 2, half = lane % 2;
  E* Ptw = Pts + warp * 16 * S::LDP;
  E* dStw = dSts + warp * 16 * S::LDP;
  float* scratchS = scratchS0 + warp * S::SCRATCH;
  float* scratchP = scratchP0 + warp * S::SCRATCH;
  int numTiles = (T + ATT_TILE - 1) / ATT_TILE;
  int kt = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
  int C3 = 3 * C, k0 = kt * ATT_TILE, key = k0 + warp * 16 + r;
  const float* base = qkv + (long long)b * T * C3 + h * HS;
  const float* dbase = dout + (long long)b * T * C + h * HS;
  float scale = 1.0f / sqrtf((float)HS);
  load_rows_bf16<HS, P>(Ks, base + C, C3, k0, T);
  load_rows_bf16<HS, P>(Vs, base + 2 * C, C3, k0, T);
  typename Frags<P>::Acc dk[HS / 16], dv[HS / 16];
#pragma unroll
  for (int j = 0; j < HS / 16; j++) {
    wmma::fill_fragment(dk[j], 0.0f);
    wmma::fill_fragment(dv[j], 0.0f);
  }
  for (int qt = kt; qt < numTiles; qt++) {
    int q0 = qt * ATT_TILE;
    __syncthreads();  // the previous query tile is consumed
    load_rows_bf16<HS, P>(Qs, base, C3, q0, T);
    load_rows_bf16<HS, P>(dOs, dbase, C, q0, T);
    if (threadIdx.x < ATT_TILE) {
      int qq = q0 + threadIdx.x;
      lseS[threadIdx.x] = qq < T ? lse[(long long)bh * T + qq] : 0.0f;
      DS[threadIdx.x] = qq < T ? Dvec[(long long)bh * T + qq] : 0.0f;
    }
    __syncthreads();
    // scores^T (16 keys x 64 queries) and dp^T = v . dout
    warp_abt_to_scratch<HS, P>(scratchS, Ks + warp * 16 * S::LDH, S::LDH, Qs, S::LDH);
    warp_abt_to_scratch<HS, P>(scratchP, Vs + warp * 16 * S::LDH, S::LDH, dOs, S::LDH);
    __syncwarp();
    for (int c = 0; c < 32; c++) {
      int qc = 32 * half + c, qq = q0 + qc;
      float s = scratchS[r * S::LDS + qc], dp = scratchP[r * S::LDS + qc];
      float p = (key <= qq && qq < T && key < T) ? expf(s * scale - lseS[qc]) : 0.0f;
      Ptw[r * S::LDP + qc] = round_operand(P(), p);
      dStw[r * S::LDP + qc] = round_operand(P(), p * (dp - DS[qc]));
    }
    __syncwarp();
    // dV += P^T dO, dK += dS^T Q (queries are the inner dimension)
    warp_pv<HS, P>(dv, Ptw, dOs);
    warp_pv<HS, P>(dk, dStw, Qs);
  }
  store_rows_to_scratch<HS, P>(scratchS, dk);
  store_rows_to_scratch<HS, P>(scratchP, dv);
  __syncwarp();
  if (key < T) {
    float* dst = dqkv + ((long long)b * T + key) * C3 + h * HS + HALF * half;
    const float* dkRow = scratchS + r * S::LDO + HALF * half;
    const float* dvRow = scratchP + r * S::LDO + HALF * half;
#pragma unroll
    for (int c = 0; c < HALF; c++) {
      dst[C + c] = overwrite ? dkRow[c] * scale : dst[C + c] + dkRow[c] * scale;
      dst[2 * C + c] = overwrite ? dvRow[c] : dst[2 * C + c] + dvRow[c];
    }
  }
}

// grid (ceil(T / 64), B NH): a block per (query tile, head), the longest rows first
template <int HS, class P>
DEVICE void flash_backward_dq_bf16(float* dqkv, const float* dout, const float* qkv,
                                   const float* lse, const float* Dvec, int B, int T, int C,
                                   int NH, int overwrite) {
  typedef Bf16Smem<HS, P> S;
  typedef typename P::elem E;
  const int HALF = HS / 2;
  require_smem(S::dq / 4);
  E* Qs = reinterpret_cast<E*>(gpt2_bf16_smem);  // [64][LDH]
  E* dOs = Qs + ATT_TILE * S::LDH;                  // [64][LDH]
  E* Ks = dOs + ATT_TILE * S::LDH;                  // [64][LDH]
  E* Vs = Ks + ATT_TILE * S::LDH;                   // [64][LDH]
  E* dSs = Vs + ATT_TILE * S::LDH;                  // [warp][16 queries][LDP]
  float* scratchS0 = reinterpret_cast<float*>(dSs + ATT_BF16_WARPS * 16 * S::LDP);
  float* scratchP0 = scratchS0 + ATT_BF16_WARPS * S::SCRATCH;
  int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, r = lane / 2, half = lane % 2;
  E* dSw = dSs + warp * 16 * S::LDP;
  float* scratchS = scratchS0 + warp * S::SCRATCH;
  float* scratchP = scratchP0 + warp * S::SCRATCH;
  int numTiles = (T + ATT_TILE - 1) / ATT_TILE;
  int qt = numTiles - 1 - (int)blockIdx.x;
  int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  int C3 = 3 * C, q0 = qt * ATT_TILE, q = q0 + warp * 16 + r;
  const float* base = qkv + (long long)b * T * C3 + h * HS;
  float scale = 1.0f / sqrtf((float)HS);
  load_rows_bf16<HS, P>(Qs, base, C3, q0, T);
  load_rows_bf16<HS, P>(dOs, dout + (long long)b * T * C + h * HS, C, q0, T);
  float lseQ = q < T ? lse[(long long)bh * T + q] : 0.0f;
  float DQ = q < T ? Dvec[(long long)bh * T + q] : 0.0f;
  typename Frags<P>::Acc dq[HS / 16];
#pragma unroll
  for (int j = 0; j < HS / 16; j++) wmma::fill_fragment(dq[j], 0.0f);
  for (int kt = 0; kt <= qt; kt++) {
    int k0 = kt * ATT_TILE;
    __syncthreads();  // the previous key tile is consumed
    load_rows_bf16<HS, P>(Ks, base + C, C3, k0, T);
    load_rows_bf16<HS, P>(Vs, base + 2 * C, C3, k0, T);
    __syncthreads();
    warp_abt_to_scratch<HS, P>(scratchS, Qs + warp * 16 * S::LDH, S::LDH, Ks, S::LDH);
    warp_abt_to_scratch<HS, P>(scratchP, dOs + warp * 16 * S::LDH, S::LDH, Vs, S::LDH);
    __syncwarp();
    for (int c = 0; c < 32; c++) {
      int kc = 32 * half + c, k = k0 + kc;
      float s = scratchS[r * S::LDS + kc], dp = scratchP[r * S::LDS + kc];
      float p = (k <= q && k < T && q < T) ? expf(s * scale - lseQ) : 0.0f;
      dSw[r * S::LDP + kc] = round_operand(P(), p * (dp - DQ));
    }
    __syncwarp();
    warp_pv<HS, P>(dq, dSw, Ks);  // dQ += dS K (keys are the inner dimension)
  }
  store_rows_to_scratch<HS, P>(scratchS, dq);
  __syncwarp();
  if (q < T) {
    float* dst = dqkv + ((long long)b * T + q) * C3 + h * HS + HALF * half;
    const float* row = scratchS + r * S::LDO + HALF * half;
#pragma unroll
    for (int c = 0; c < HALF; c++) dst[c] = overwrite ? row[c] * scale : dst[c] + row[c] * scale;
  }
}

#define FLASH_BF16_CALL(call) call
#else
// No mma.h (NVRTC without the toolkit's headers): the entry points exist but trap, and the
// host must not choose them there.
#define FLASH_BF16_CALL(call) __trap()
#endif

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_forward_bf16_hs64(float* out, float* lse, const float* qkv, int B, int T, int C,
                                 int NH) {
  FLASH_BF16_CALL((flash_forward_bf16<64, PrecBf16>(out, lse, qkv, B, T, C, NH)));
}

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_backward_dkdv_bf16_hs64(float* dqkv, const float* dout, const float* qkv,
                                       const float* lse, const float* Dvec, int B, int T, int C,
                                       int NH, int overwrite) {
  FLASH_BF16_CALL((flash_backward_dkdv_bf16<64, PrecBf16>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite)));
}

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_backward_dq_bf16_hs64(float* dqkv, const float* dout, const float* qkv,
                                     const float* lse, const float* Dvec, int B, int T, int C,
                                     int NH, int overwrite) {
  FLASH_BF16_CALL((flash_backward_dq_bf16<64, PrecBf16>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite)));
}

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_forward_bf16_hs128(float* out, float* lse, const float* qkv, int B, int T, int C,
                                 int NH) {
  FLASH_BF16_CALL((flash_forward_bf16<128, PrecBf16>(out, lse, qkv, B, T, C, NH)));
}

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_backward_dkdv_bf16_hs128(float* dqkv, const float* dout, const float* qkv,
                                       const float* lse, const float* Dvec, int B, int T, int C,
                                       int NH, int overwrite) {
  FLASH_BF16_CALL((flash_backward_dkdv_bf16<128, PrecBf16>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite)));
}

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_backward_dq_bf16_hs128(float* dqkv, const float* dout, const float* qkv,
                                     const float* lse, const float* Dvec, int B, int T, int C,
                                     int NH, int overwrite) {
  FLASH_BF16_CALL((flash_backward_dq_bf16<128, PrecBf16>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite)));
}

// TF32 (head size 64 only: at 128 the f32 tiles need more shared memory than sm_80 has)
extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_forward_tf32_hs64(float* out, float* lse, const float* qkv, int B, int T, int C,
                                int NH) {
  FLASH_BF16_CALL((flash_forward_bf16<64, PrecTf32>(out, lse, qkv, B, T, C, NH)));
}

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_backward_dkdv_tf32_hs64(float* dqkv, const float* dout, const float* qkv,
                                      const float* lse, const float* Dvec, int B, int T, int C,
                                      int NH, int overwrite) {
  FLASH_BF16_CALL((flash_backward_dkdv_bf16<64, PrecTf32>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite)));
}

extern "C" __global__ void __launch_bounds__(ATT_BF16_THREADS)
    attention_backward_dq_tf32_hs64(float* dqkv, const float* dout, const float* qkv,
                                    const float* lse, const float* Dvec, int B, int T, int C,
                                    int NH, int overwrite) {
  FLASH_BF16_CALL((flash_backward_dq_bf16<64, PrecTf32>(dqkv, dout, qkv, lse, Dvec, B, T, C, NH, overwrite)));
}
