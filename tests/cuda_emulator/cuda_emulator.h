// cuda_emulator.h: just enough of CUDA to run kernels/cuda/*.cu on the CPU, for checking
// the kernels and lib/backends/cuda without a GPU (tests/cuda_emulator/mod.ts builds it).
//
// A block's threads are fibers (ucontext) run one at a time on the calling thread; blocks
// run one after another. __syncthreads and the warp shuffles are barriers where a fiber
// yields until every thread of its block (or warp) has arrived; a barrier that not every
// thread reaches is reported as an error, as is a thread leaving while others wait, so
// divergent barriers that would hang a GPU fail here. __shared__ variables are function
// statics (shared by the block running now); dynamic shared memory is a buffer per launch,
// filled with NaNs so reads of unwritten shared memory show. Warps are 32 consecutive
// threads; shuffles need whole warps, as the kernels use them. At the end: __nv_bfloat16 and
// nvcuda::wmma's 16x16x16 bf16 and 16x16x8 TF32 fragments (each thread holds a whole tile),
// for attention_bf16.cu.
#pragma once

#include <ucontext.h>

#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  dim3 thread;
  int linear = 0;
  bool done = false;
};

struct Barrier {
  int arrived = 0;
  unsigned long generation = 0;
};

inline ucontext_t scheduler;
inline std::vector<Fiber> fibers;
inline Fiber* current = nullptr;
inline int threadCount = 0;
inline dim3 blockIndex, blockDimension, gridDimension;
inline std::function<void()> body;
inline std::vector<unsigned char> dynamicShared;
inline unsigned long progress = 0;  // barrier arrivals and finished threads
inline Barrier blockBarrier;
inline std::vector<Barrier> warpBarriers;
inline std::vector<unsigned long long> exchange;  // 32 slots per warp
inline std::string error;

inline void fail(const std::string& message) {
  if (error.empty()) error = message;
}

inline void yield() { swapcontext(&current->context, &scheduler); }

// Waits until `participants` threads have arrived at `b`.
inline void arrive(Barrier& b, int participants) {
  unsigned long generation = b.generation;
  progress++;
  if (++b.arrived == participants) {
    b.arrived = 0;
    b.generation++;
    return;
  }
  while (b.generation == generation) {
    yield();
    if (!error.empty()) yield();  // abandoned: the scheduler does not come back
  }
}

inline int warpSize(int warp) {
  int n = threadCount - warp * 32;
  return n < 32 ? n : 32;
}

inline void fiberMain() {
  body();
  current->done = true;
  progress++;
  if (blockBarrier.arrived > 0) fail("a thread finished while others wait at __syncthreads");
  if (warpBarriers[current->linear / 32].arrived > 0) {
    fail("a thread finished while its warp waits at a shuffle or a WMMA operation");
  }
}

// Runs one block of the kernel in `body`; returns false (and sets `error`) on a deadlock.
inline bool runBlock() {
  int n = threadCount;
  if ((int)fibers.size() < n) fibers.resize(n);
  warpBarriers.assign((n + 31) / 32, Barrier());
  exchange.assign(((n + 31) / 32) * 32, 0);
  blockBarrier = Barrier();
  for (int i = 0; i < n; i++) {
    Fiber& f = fibers[i];
    if (f.stack.empty()) f.stack.resize(256 * 1024);
    f.linear = i;
    f.done = false;
    f.thread = dim3(i % blockDimension.x, (i / blockDimension.x) % blockDimension.y,
                    i / (blockDimension.x * blockDimension.y));
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.data();
    f.context.uc_stack.ss_size = f.stack.size();
    f.context.uc_link = &scheduler;
    makecontext(&f.context, fiberMain, 0);
  }
  int alive = n;
  while (alive > 0) {
    unsigned long before = progress;
    for (int i = 0; i < n && error.empty(); i++) {
      Fiber& f = fibers[i];
      if (f.done) continue;
      current = &f;
      swapcontext(&scheduler, &f.context);
      if (f.done) alive--;
    }
    if (!error.empty()) return false;
    if (alive > 0 && progress == before) {
      fail("deadlock: threads wait at a barrier that the others never reach");
      return false;
    }
  }
  return true;
}

}  // namespace emu

#define threadIdx (emu::current->thread)
#define blockIdx (emu::blockIndex)
#define blockDim (emu::blockDimension)
#define gridDim (emu::gridDimension)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define gpt2_dynamic_smem (emu::dynamicShared.data())

inline unsigned int dynamic_smem_bytes() { return (unsigned int)emu::dynamicShared.size(); }

inline void __syncthreads() { emu::arrive(emu::blockBarrier, emu::threadCount); }
inline void __syncwarp(unsigned int = 0xffffffffu) {
  int w = emu::current->linear / 32;
  emu::arrive(emu::warpBarriers[w], emu::warpSize(w));
}
inline void __threadfence() {}
[[noreturn]] inline void __trap() {
  emu::fail("__trap() (a kernel's own check failed)");
  for (;;) emu::yield();
}

template <class T>
inline T __shfl_xor_sync(unsigned int mask, T v, int laneMask, int width = 32) {
  static_assert(sizeof(T) <= 8, "shuffles of at most 8 bytes");
  int lane = emu::current->linear % 32, w = emu::current->linear / 32;
  if (mask != 0xffffffffu || width != 32 || emu::warpSize(w) != 32) {
    emu::fail("__shfl_xor_sync needs a full warp and mask");
  }
  unsigned long long slot = 0;
  std::memcpy(&slot, &v, sizeof(T));
  emu::exchange[w * 32 + lane] = slot;
  emu::arrive(emu::warpBarriers[w], 32);
  T r;
  slot = emu::exchange[w * 32 + (lane ^ laneMask)];
  std::memcpy(&r, &slot, sizeof(T));
  emu::arrive(emu::warpBarriers[w], 32);
  return r;
}

inline int atomicCAS(int* p, int compare, int value) {
  int old = *p;
  if (old == compare) *p = value;
  return old;
}
inline int atomicExch(int* p, int value) {
  int old = *p;
  *p = value;
  return old;
}

inline unsigned int __float_as_uint(float x) {
  unsigned int u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(unsigned int u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline float __int_as_float(int i) {
  float x;
  std::memcpy(&x, &i, 4);
  return x;
}

// correctly rounded double arithmetic (the emulator is built with -ffp-contract=off)
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }

// expf, logf, sqrtf, tanhf, fmaf and fmaxf come from <math.h> (through <cmath>), as in CUDA
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// ---- bf16 and WMMA (what attention_bf16.cu uses of cuda_bf16.h and mma.h) -------------------

// bf16 as storage: the top 16 bits of an f32. f32 -> bf16 rounds to nearest even, as
// __float2bfloat16_rn does on the GPU; NaN stays NaN.
struct __nv_bfloat16 {
  unsigned short bits;
};

inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  unsigned int u = __float_as_uint(x);
  __nv_bfloat16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.bits = (unsigned short)((u >> 16) | 0x40u);
  } else {
    r.bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  return r;
}

inline float __bfloat162float(__nv_bfloat16 x) {
  return __uint_as_float((unsigned int)x.bits << 16);
}

// nvcuda::wmma for 16x16x16 tiles of bf16 (or f32) operands and 16x16x8 tiles of TF32
// operands (wmma::precision::tf32, held as f32), f32 accumulators. CUDA leaves which thread
// holds which element of a fragment unspecified; here every thread holds the whole tile (row
// by row: a is M x K, b is K x N, an accumulator M x N), so a kernel that touches fragment
// elements only uniformly (x[i] for every i) runs as on a GPU. Every operation is
// warp-collective: each waits for all 32 lanes of the warp before it starts and again before
// it returns (as a shuffle does), so a lane that skips one, or a warp that is not whole, is
// reported, and no lane stores a tile before every lane has loaded what that store
// overwrites. mma_sync's products of bf16 (8-bit significands) and of TF32 (11-bit) are exact
// in f32; they are summed in f32 in the order k = 0..K-1 onto the accumulator (the GPU's
// order and internal precision are its own). A TF32 operand is read as the tensor cores read
// f32 bits, its low 13 mantissa bits ignored, so an operand not rounded by __float_to_tf32
// first is truncated, as on a GPU.
namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

// what a fragment of element type T holds: TF32 fragments hold f32
template <class T>
struct storage {
  typedef T type;
};
template <>
struct storage<precision::tf32> {
  typedef float type;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && (K == 16 || K == 8),
                "the emulator has 16x16x16 and 16x16x8 fragments only");
  static_assert(K == 16 || std::is_same<T, precision::tf32>::value ||
                    std::is_same<Use, accumulator>::value,
                "16x16x8 fragments are TF32's");
  enum { num_elements = 256 };
  typename storage<T>::type x[num_elements];
};

// f32 rounded to TF32 (10 bits of mantissa) to nearest, ties away from zero (cvt.rna.tf32.f32)
inline float __float_to_tf32(float v) {
  unsigned int u = __float_as_uint(v);
  if ((u & 0x7f800000u) == 0x7f800000u) return v;  // inf and NaN as they are
  return __uint_as_float((u + 0x1000u) & 0xffffe000u);
}

namespace detail {

inline float toFloat(float v) { return v; }
inline float toFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
// what the tensor cores read of a TF32 operand: its top 19 bits
inline float tf32Bits(float v) { return __uint_as_float(__float_as_uint(v) & 0xffffe000u); }

// Both barriers of a collective operation; `what` names it in the error.
inline void warpArrive(const char* what) {
  int w = emu::current->linear / 32;
  if (emu::warpSize(w) != 32) emu::fail(std::string(what) + " needs a whole warp of 32 threads");
  emu::arrive(emu::warpBarriers[w], 32);
}

// WMMA's rules on memory: a 256-bit aligned pointer (checked from the start of the dynamic
// shared memory, whose base a GPU aligns) and a stride of a multiple of 16 bytes.
inline void checkPointer(const void* p, unsigned ldm, size_t bytes, const char* what) {
  const unsigned char* base = emu::dynamicShared.data();
  const unsigned char* q = static_cast<const unsigned char*>(p);
  uintptr_t offset = q >= base && q < base + emu::dynamicShared.size()
                         ? (uintptr_t)(q - base)
                         : (uintptr_t)q;
  if (offset % 32 != 0) emu::fail(std::string(what) + ": pointer not 256-bit aligned");
  if ((ldm * bytes) % 16 != 0) {
    emu::fail(std::string(what) + ": ldm not a multiple of 16 bytes");
  }
}

}  // namespace detail

template <class Use, int K, class T, class Layout, class V>
inline void fill_fragment(fragment<Use, 16, 16, K, T, Layout>& f, V value) {
  detail::warpArrive("wmma::fill_fragment");
  for (int i = 0; i < 256; i++) f.x[i] = value;
  detail::warpArrive("wmma::fill_fragment");
}

// a (row r, column c) of M x K, b of K x N: element (r, c) at p[r ldm + c] when row_major,
// p[r + c ldm] when col_major
template <class Use, int K, class T, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, K, T, Layout>& f,
                             const typename storage<T>::type* p, unsigned ldm) {
  static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value,
                "matrix_a and matrix_b fragments have a layout");
  typedef typename storage<T>::type S;
  detail::warpArrive("wmma::load_matrix_sync");
  detail::checkPointer(p, ldm, sizeof(S), "wmma::load_matrix_sync");
  bool rowMajor = std::is_same<Layout, row_major>::value;
  bool isA = std::is_same<Use, matrix_a>::value;
  int rows = isA ? 16 : K, cols = isA ? K : 16;
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < cols; c++) f.x[r * cols + c] = rowMajor ? p[r * ldm + c] : p[r + c * ldm];
  }
  detail::warpArrive("wmma::load_matrix_sync");
}

template <int K>
inline void load_matrix_sync(fragment<accumulator, 16, 16, K, float>& f, const float* p,
                             unsigned ldm, layout_t layout) {
  detail::warpArrive("wmma::load_matrix_sync");
  detail::checkPointer(p, ldm, 4, "wmma::load_matrix_sync");
  for (int r = 0; r < 16; r++) {
    for (int c = 0; c < 16; c++) {
      f.x[r * 16 + c] = layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm];
    }
  }
  detail::warpArrive("wmma::load_matrix_sync");
}

template <int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, K, float>& f,
                              unsigned ldm, layout_t layout) {
  detail::warpArrive("wmma::store_matrix_sync");
  detail::checkPointer(p, ldm, 4, "wmma::store_matrix_sync");
  for (int r = 0; r < 16; r++) {
    for (int c = 0; c < 16; c++) {
      (layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm]) = f.x[r * 16 + c];
    }
  }
  detail::warpArrive("wmma::store_matrix_sync");
}

// d = a b + c (d may be c)
template <int K, class T, class LayoutA, class LayoutB>
inline void mma_sync(fragment<accumulator, 16, 16, K, float>& d,
                     const fragment<matrix_a, 16, 16, K, T, LayoutA>& a,
                     const fragment<matrix_b, 16, 16, K, T, LayoutB>& b,
                     const fragment<accumulator, 16, 16, K, float>& c) {
  detail::warpArrive("wmma::mma_sync");
  const bool tf32 = std::is_same<T, precision::tf32>::value;
  float av[256], bv[256];
  for (int i = 0; i < 16 * K; i++) {
    av[i] = tf32 ? detail::tf32Bits(detail::toFloat(a.x[i])) : detail::toFloat(a.x[i]);
    bv[i] = tf32 ? detail::tf32Bits(detail::toFloat(b.x[i])) : detail::toFloat(b.x[i]);
  }
  float r[256];
  for (int i = 0; i < 16; i++) {
    for (int j = 0; j < 16; j++) {
      float s = c.x[i * 16 + j];
      for (int k = 0; k < K; k++) s += av[i * K + k] * bv[k * 16 + j];
      r[i * 16 + j] = s;
    }
  }
  for (int i = 0; i < 256; i++) d.x[i] = r[i];
  detail::warpArrive("wmma::mma_sync");
}

}  // namespace wmma
}  // namespace nvcuda
