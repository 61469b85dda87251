// common.cuh: what every kernels/cuda/*.cu shares: warp and block reductions, the bf16
// rounding, the shared-memory base, and the launch-bounds and constant spellings.
//
// The kernels include no CUDA header (not even <cuda_bf16.h>), so NVRTC compiles them with
// no include path beyond this folder, and the CPU emulator (tests/cuda_emulator/cuda_emulator.h)
// compiles them as plain C++. The one exception is attention_bf16.cu, whose tensor-core
// products need <mma.h> (and <cuda_bf16.h>): where the compiler has no <mma.h> its kernels
// trap, and the backend does not choose them under NVRTC (lib/backends/cuda/mod.ts); the
// emulator has its own WMMA. Every .cu includes this file once; build.ts compiles all of
// them as one translation unit, so helpers here are `static` and guarded.
#pragma once

#ifdef GPT2_CUDA_EMULATION
#include "cuda_emulator.h"
#else
// The dynamic shared memory of a launch (its size is the launch's sharedMemBytes); one
// declaration for every kernel, typed per kernel with a cast.
extern __shared__ __align__(16) unsigned char gpt2_dynamic_smem[];
#endif

#define DEVICE static __device__ __forceinline__

// IEEE +infinity without <math.h>'s INFINITY.
#define GPT2_INF __int_as_float(0x7f800000)

// Threads in a warp; every block size below is a multiple of it.
#define WARP 32

// Sum over the 32 lanes of a warp; every lane gets the result. The order of additions is
// fixed (a butterfly), so results are deterministic.
DEVICE float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

DEVICE double warp_sum_double(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

DEVICE float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Sum over a group of 16 lanes (lanes that share bit 4 of their lane index).
DEVICE float group16_sum(float v) {
  for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

DEVICE float group16_max(float v) {
  for (int offset = 8; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Sum over a block of up to 1024 threads (a multiple of 32): warps reduce, then warp 0
// reduces the warps' sums. `scratch` holds 32 values. Every thread gets the result.
DEVICE double block_sum_double(double v, double* scratch) {
  int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
  v = warp_sum_double(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0;
  return warp_sum_double(v);
}

// The running (max, sum of exp(x - max)) of a softmax, merged in any grouping: the
// log-sum-exp of a row in one pass. An empty state has max = -inf and sum = 0.
struct SoftmaxState {
  float max;
  float sum;
};

DEVICE SoftmaxState softmax_push(SoftmaxState s, float x) {
  if (x == -GPT2_INF) return s;  // exp(-inf) adds nothing
  if (x > s.max) {
    s.sum = s.sum * expf(s.max - x) + 1.0f;  // exp(-inf) = 0 for the empty state
    s.max = x;
  } else {
    s.sum += expf(x - s.max);
  }
  return s;
}

DEVICE SoftmaxState softmax_merge(SoftmaxState a, SoftmaxState b) {
  if (a.max == -GPT2_INF) return b;  // an empty side adds nothing (and avoids inf - inf)
  if (b.max == -GPT2_INF) return a;
  float m = fmaxf(a.max, b.max);
  SoftmaxState r;
  r.max = m;
  r.sum = a.sum * expf(a.max - m) + b.sum * expf(b.max - m);
  return r;
}

DEVICE SoftmaxState warp_softmax_merge(SoftmaxState s) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    SoftmaxState o;
    o.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
    o.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
    s = softmax_merge(s, o);
  }
  return s;
}

// The softmax state of a whole block (blockDim.x a multiple of 32, at most 1024); `scratch`
// holds 64 floats. Every thread gets the result.
DEVICE SoftmaxState block_softmax_merge(SoftmaxState s, float* scratch) {
  int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
  s = warp_softmax_merge(s);
  __syncthreads();
  if (lane == 0) {
    scratch[warp] = s.max;
    scratch[32 + warp] = s.sum;
  }
  __syncthreads();
  SoftmaxState t;
  t.max = lane < warps ? scratch[lane] : -GPT2_INF;
  t.sum = lane < warps ? scratch[32 + lane] : 0.0f;
  return warp_softmax_merge(t);
}

// f32 -> bf16 bits, rounding to nearest even (what __float2bfloat16_rn does); NaN stays NaN.
DEVICE unsigned short f32_to_bf16_bits(float x) {
  unsigned int u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}

// The faults a kernel records instead of reading out of bounds (fault is int[4]: code,
// position, value, limit); the host reads them with the next read-back and throws.
#define FAULT_TOKEN 1
#define FAULT_TARGET 2

DEVICE void record_fault(int* fault, int code, int position, int value, int limit) {
  if (fault == 0) return;
  if (atomicCAS(&fault[0], 0, -1) == 0) {  // the first fault wins
    fault[1] = position;
    fault[2] = value;
    fault[3] = limit;
    __threadfence();
    atomicExch(&fault[0], code);
  }
}

// A grid-stride loop over [0, n) with 64-bit indices.
#define GRID_STRIDE(i, n)                                                                  \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
       i += (long long)gridDim.x * blockDim.x)
