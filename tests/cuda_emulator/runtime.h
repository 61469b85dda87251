// runtime.h: the C entry points of the CPU emulator's library (tests/cuda_emulator/mod.ts
// generates the translation unit: this file, every kernels/cuda/*.cu, then the kernel list
// through EMU_KERNELS). The library answers for the driver's launches and cuBLASLt's GEMMs:
//   emu_kernel_count, emu_kernel_name, emu_kernel_signature: the kernels and their parameter
//                  types as the compiler sees them ("ptr,ptr,i64"), checked against the
//                  backend's table (lib/backends/cuda/kernels.ts)
//   emu_launch:    runs kernel `index` over a grid, with cuLaunchKernel's argument array
//   emu_gemm:      D (m, n) = op(A) op(B) + beta D (+ bias per row), column-major as cuBLASLt,
//                  A and B in f32 or bf16 (cudaDataType 0 or 14), f32 ones rounded to TF32 with
//                  `tf32`, D in f32, sums in double
#pragma once

#define GPT2_CUDA_EMULATION 1
#include "cuda_emulator.h"

#include <type_traits>
#include <utility>

namespace emu {

template <class T>
const char* paramType() {
  if constexpr (std::is_pointer_v<T>) return "ptr";
  else if constexpr (std::is_same_v<T, int>) return "i32";
  else if constexpr (std::is_same_v<T, long long>) return "i64";
  else if constexpr (std::is_same_v<T, float>) return "f32";
  else if constexpr (std::is_same_v<T, double>) return "f64";
  else return "?";
}

template <class... A>
std::string signatureOf(void (*)(A...)) {
  std::string s;
  ((s += (s.empty() ? "" : ","), s += paramType<A>()), ...);
  return s;
}

template <class... A, std::size_t... I>
void invokeWith(void (*f)(A...), void** args, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

struct Entry {
  const char* name;
  void (*run)(void** args);
  std::string signature;
};

template <class... A>
struct Invoker {
  template <void (*F)(A...)>
  static void run(void** args) {
    invokeWith(F, args, std::index_sequence_for<A...>{});
  }
};

template <class... A>
Invoker<A...> invokerOf(void (*)(A...));

}  // namespace emu

#define EMU_KERNEL(name) \
  emu::Entry { #name, &decltype(emu::invokerOf(name))::template run<name>, emu::signatureOf(name) }

extern const emu::Entry* emu_entries();
extern int emu_entry_count();

extern "C" int emu_kernel_count() { return emu_entry_count(); }

extern "C" const char* emu_kernel_name(int i) { return emu_entries()[i].name; }

extern "C" const char* emu_kernel_signature(int i) { return emu_entries()[i].signature.c_str(); }

extern "C" int emu_launch(int index, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                          unsigned int by, unsigned int bz, unsigned int sharedBytes, void** args,
                          char* message, int messageBytes) {
  const emu::Entry& e = emu_entries()[index];
  emu::error.clear();
  emu::gridDimension = dim3(gx, gy, gz);
  emu::blockDimension = dim3(bx, by, bz);
  emu::threadCount = (int)(bx * by * bz);
  emu::dynamicShared.assign(sharedBytes, 0xff);  // NaNs where nothing was written
  for (unsigned int z = 0; z < gz; z++) {
    for (unsigned int y = 0; y < gy; y++) {
      for (unsigned int x = 0; x < gx; x++) {
        emu::blockIndex = dim3(x, y, z);
        emu::body = [&e, args] { e.run(args); };
        if (!emu::runBlock()) {
          std::snprintf(message, messageBytes, "%s, block (%u, %u, %u): %s", e.name, x, y, z,
                        emu::error.c_str());
          return 1;
        }
      }
    }
  }
  return 0;
}

// An operand as the tensor cores read it: bf16 (type 14) widened, f32 as is, or f32 rounded to
// TF32's 10-bit mantissa (to nearest, ties away, as cvt.rna.tf32.f32) for TF32 compute
static inline double emuOperand(const void* p, int type, long long i, int tf32) {
  if (type == 14) {
    unsigned int bits = (unsigned int)((const unsigned short*)p)[i] << 16;
    return (double)__uint_as_float(bits);
  }
  float x = ((const float*)p)[i];
  if (tf32) {
    unsigned int u = __float_as_uint(x);
    if ((u & 0x7f800000u) != 0x7f800000u) x = __uint_as_float((u + 0x1000u) & 0xffffe000u);
  }
  return (double)x;
}

extern "C" void emu_gemm(int transA, int transB, long long m, long long n, long long k, const void* A,
                         int typeA, long long lda, const void* B, int typeB, long long ldb, float beta,
                         float* D, long long ldd, const float* bias, int tf32) {
  for (long long j = 0; j < n; j++) {
    for (long long i = 0; i < m; i++) {
      double s = 0.0;
      for (long long p = 0; p < k; p++) {
        double a = emuOperand(A, typeA, transA ? p + i * lda : i + p * lda, tf32);
        double b = emuOperand(B, typeB, transB ? j + p * ldb : p + j * ldb, tf32);
        s += a * b;
      }
      float* d = &D[i + j * ldd];
      double acc = s + (beta != 0.0f ? (double)beta * (double)*d : 0.0);
      if (bias) acc += (double)bias[i];
      *d = (float)acc;
    }
  }
}
