// cuda_emulator.h: just enough of CUDA to run kernels/cuda/*.cu on the CPU, for checking
// the kernels and lib/backends/cuda without a GPU (lib/backends/cuda/emulator.ts builds it).
//
// A block's threads are fibers (ucontext) run one at a time on the calling thread; blocks
// run one after another. __syncthreads and the warp shuffles are barriers where a fiber
// yields until every thread of its block (or warp) has arrived; a barrier that not every
// thread reaches is reported as an error, as is a thread leaving while others wait, so
// divergent barriers that would hang a GPU fail here. __shared__ variables are function
// statics (shared by the block running now); dynamic shared memory is a buffer per launch,
// filled with NaNs so reads of unwritten shared memory show. Warps are 32 consecutive
// threads; shuffles need whole warps, as the kernels use them.
#pragma once

#include <ucontext.h>

#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
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
    fail("a thread finished while its warp waits at a shuffle");
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
