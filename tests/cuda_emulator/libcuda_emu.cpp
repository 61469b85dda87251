// libcuda_emu.cpp: the CPU emulator behind the real FFI. One shared library that exports the
// CUDA driver API and the cuBLASLt calls lib/backends/cuda binds (driver.ts, cublaslt.ts and
// nccl.ts's CudaFence), with cuda.h's and cublasLt.h's C prototypes, so the backend opens it
// through Deno.dlopen exactly as it opens libcuda.so.1 and libcublasLt.so
// (GPT2_CUDA_DRIVER_LIB and GPT2_CUBLASLT_LIB name it; tests/cuda_emulator/ffi.ts builds it).
//
// - Kernels: cuModuleLoadData ignores the fatbin and opens the emulator's kernel library (the
//   kernels/cuda/*.cu compiled by g++ with this folder's headers, kernel_library.ts's
//   buildEmulator, named by GPT2_CUDA_EMU_KERNELS); cuLaunchKernel runs emu_launch over the
//   grid with cuLaunchKernel's own argument array.
// - Memory: device blocks are host memory with 256 guard bytes of 0xff on each side, checked
//   after every launch and GEMM and at cuMemFree; cuMemAlloc fails past the budget
//   (GPT2_CUDA_EMU_MEMORY bytes, default 4 GiB).
// - GEMMs: cublasLtMatmul through the kernel library's emu_gemm (column-major, f32 or bf16
//   operands, TF32 rounding, bias epilogue), the layouts checked as cuBLASLt checks them.
// - Null device (GPT2_CUDA_EMU_NULL=1 at a cuInit while no device memory is held): nothing
//   runs and device memory is never touched; allocations are only accounted against an 80 GiB
//   budget, so a full GPT-2 124M step can be timed on the host side.
// - Launch checks (GPT2_CUDA_EMU_CHECKS, read by cuModuleLoadData, which keeps them with the
//   module and for the modules loaded after it while the variable is unset): a file of tab-separated lines written by ffi.ts. `signature NAME TYPES` is
//   kernels.ts's parameter list of a kernel, compared with the compiled .cu's at
//   cuModuleGetFunction; `limit NAME ARCH MAX_THREADS REASON REGISTERS STATIC_SHARED
//   OPTIN_SHARED WHY` is nvcc's view of the kernel on sm_80 or sm_90 (resources.ts), which
//   cuFuncGetAttribute answers from and cuLaunchKernel refuses a block or shared memory above,
//   as a GPU would: CUDA_ERROR_INVALID_VALUE, or CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES where
//   registers are the limit, with cuGetErrorString naming the kernel, the block and the limit.
//   Without limits (no nvcc) a launch is checked only against CUDA's 1024 threads and the
//   dynamic shared memory cuFuncSetAttribute allowed.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream;
typedef struct CUevent_st* CUevent;
typedef int cublasStatus_t;
typedef struct cublasLtContext* cublasLtHandle_t;
typedef struct cublasLtMatmulDescOpaque_t* cublasLtMatmulDesc_t;
typedef struct cublasLtMatrixLayoutOpaque_t* cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulPreferenceOpaque_t* cublasLtMatmulPreference_t;
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};

namespace {

const CUresult OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3,
               INVALID_DEVICE = 101, INVALID_IMAGE = 200, INVALID_HANDLE = 400, NOT_FOUND = 500,
               LAUNCH_OUT_OF_RESOURCES = 701, LAUNCH_FAILED = 719;
const size_t GUARD = 256;
const int SHARED_OPTIN = 227 * 1024;

struct Block {
  unsigned char* raw;  // GUARD bytes, the block, GUARD bytes
  size_t bytes;
  bool device;
};

// What a kernel takes of a block on one architecture (resources.ts's KernelResources)
struct Limit {
  std::string arch;
  int maxThreads = 1024;
  bool byRegisters = false;  // LAUNCH_OUT_OF_RESOURCES rather than INVALID_VALUE
  int registers = 0;
  int staticShared = 0;
  int optinShared = 0;  // the architecture's shared memory per block, static and dynamic
  std::string why;      // the limit, as the refusal names it
};

// A module's launch checks, from the file GPT2_CUDA_EMU_CHECKS named when it was loaded
struct Checks {
  std::map<std::string, std::string> signatures;     // kernels.ts's, by kernel
  std::map<std::string, std::vector<Limit>> limits;  // by kernel, sm_80 then sm_90
};

struct Function {
  int index;
  std::string name;
  int maxDynamicShared;
  std::vector<Limit> limits;  // empty: unchecked
};

struct Desc {
  int compute;
  bool transA = false, transB = false;
  int epilogue = 1;
  uint64_t bias = 0;
  int biasType = 0;
};

struct Layout {
  int type;
  uint64_t rows, cols;
  int64_t ld;
};

typedef int (*EmuCount)();
typedef const char* (*EmuName)(int);
typedef const char* (*EmuSignature)(int);
typedef int (*EmuLaunch)(int, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                         void**, char*, int);
typedef void (*EmuGemm)(int, int, long long, long long, long long, const void*, int, long long,
                        const void*, int, long long, float, float*, long long, const float*, int);

struct State {
  bool initialized = false;
  bool null = false;
  size_t capacity = 4ull << 30;
  size_t used = 0;
  uint64_t nextNull = 0x100000000000ull;  // the null device's addresses: never dereferenced
  std::map<uintptr_t, Block> blocks;      // by the first usable byte
  std::map<uintptr_t, Function> functions;
  std::map<uintptr_t, std::shared_ptr<const Checks>> modules;  // each with its checks
  std::shared_ptr<const Checks> checks;  // the last GPT2_CUDA_EMU_CHECKS read, for later modules
  std::map<uintptr_t, Desc> descs;
  std::map<uintptr_t, Layout> layouts;
  uintptr_t nextHandle = 1;
  void* kernels = nullptr;
  EmuCount count = nullptr;
  EmuName name = nullptr;
  EmuSignature signature = nullptr;
  EmuLaunch launch = nullptr;
  EmuGemm gemm = nullptr;
  std::map<int, std::string> messages;  // the last detailed message of each error code
  CUcontext current = nullptr;
  uint64_t calls[4] = {0, 0, 0, 0};  // launches, GEMMs, copies, memsets accepted (emu_calls)
};

State& state() {
  static State s;
  return s;
}

std::mutex lock;

CUresult fail(CUresult code, const std::string& message) {
  state().messages[code] = message;
  return code;
}

uintptr_t handle() { return state().nextHandle++; }

const char* errorName(CUresult code) {
  switch (code) {
    case OK: return "CUDA_SUCCESS";
    case INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
    case INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
    default: return "CUDA_ERROR_UNKNOWN";
  }
}

// Whether [p, p + bytes) lies inside one device or host block (always, on the null device)
bool inside(uint64_t p, size_t bytes) {
  State& s = state();
  if (s.null) return true;
  auto it = s.blocks.upper_bound((uintptr_t)p);
  if (it == s.blocks.begin()) return false;
  --it;
  return p >= it->first && p + bytes <= it->first + it->second.bytes;
}

// The first block whose guard bytes were written, as a message; empty when none was
std::string brokenGuard(const Block& b, uintptr_t base) {
  for (size_t i = 0; i < GUARD; i++) {
    if (b.raw[i] != 0xff || b.raw[GUARD + b.bytes + i] != 0xff) {
      char m[160];
      std::snprintf(m, sizeof m, "memory just %s the block of %zu bytes at 0x%llx was written (out of bounds)",
                    b.raw[i] != 0xff ? "before" : "after", b.bytes, (unsigned long long)base);
      return m;
    }
  }
  return "";
}

std::string checkAll() {
  for (auto& [base, b] : state().blocks) {
    std::string m = brokenGuard(b, base);
    if (!m.empty()) return m;
  }
  return "";
}

CUresult alloc(void** out, size_t bytes, bool device) {
  State& s = state();
  if (device && s.used + bytes > s.capacity) {
    char m[120];
    std::snprintf(m, sizeof m, "%zu bytes asked, %zu of %zu in use", bytes, s.used, s.capacity);
    return fail(OUT_OF_MEMORY, m);
  }
  if (device && s.null) {
    *out = (void*)(uintptr_t)s.nextNull;
    s.nextNull += (bytes + 255) & ~(uint64_t)255;
    s.used += bytes;
    s.blocks[(uintptr_t)*out] = Block{nullptr, bytes, true};
    return OK;
  }
  unsigned char* raw = (unsigned char*)std::malloc(bytes + 2 * GUARD);
  if (!raw) return fail(OUT_OF_MEMORY, "the host is out of memory");
  std::memset(raw, 0xff, bytes + 2 * GUARD);  // NaNs: reading memory nothing wrote shows
  *out = raw + GUARD;
  s.blocks[(uintptr_t)*out] = Block{raw, bytes, device};
  if (device) s.used += bytes;
  return OK;
}

CUresult release(uintptr_t p, bool device, const char* what) {
  State& s = state();
  auto it = s.blocks.find(p);
  if (it == s.blocks.end() || it->second.device != device) {
    return fail(INVALID_VALUE, std::string(what) + ": not an allocation");
  }
  if (it->second.raw) {
    std::string m = brokenGuard(it->second, p);
    if (!m.empty()) return fail(INVALID_VALUE, std::string(what) + ": " + m);
    std::free(it->second.raw);
  }
  if (device) s.used -= it->second.bytes;
  s.blocks.erase(it);
  return OK;
}

CUresult copy(uint64_t dst, uint64_t src, size_t bytes, bool dstDevice, bool srcDevice,
              const char* what) {
  State& s = state();
  if ((dstDevice && !inside(dst, bytes)) || (srcDevice && !inside(src, bytes))) {
    return fail(INVALID_VALUE, std::string(what) + ": the range is not inside one allocation");
  }
  s.calls[2]++;
  if (s.null) return OK;
  std::memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, bytes);
  return OK;
}

// The launch checks in file `path`, or an error message in `error`
std::shared_ptr<const Checks> readChecks(const char* path, std::string* error) {
  auto checks = std::make_shared<Checks>();
  std::ifstream in(path);
  if (!in) {
    *error = std::string("GPT2_CUDA_EMU_CHECKS names ") + path + ", which cannot be read";
    return nullptr;
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    number++;
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string x; std::getline(fields, x, '\t');) f.push_back(x);
    if (f[0] == "signature" && f.size() == 3) {
      checks->signatures[f[1]] = f[2];
    } else if (f[0] == "limit" && f.size() == 9) {
      Limit l;
      l.arch = f[2];
      l.maxThreads = std::atoi(f[3].c_str());
      l.byRegisters = f[4] == "registers";
      l.registers = std::atoi(f[5].c_str());
      l.staticShared = std::atoi(f[6].c_str());
      l.optinShared = std::atoi(f[7].c_str());
      l.why = f[8];
      checks->limits[f[1]].push_back(l);
    } else {
      *error = std::string(path) + ":" + std::to_string(number) +
               ": expected a signature or limit line, found \"" + line + "\"";
      return nullptr;
    }
  }
  return checks;
}

// Why a GPU would refuse `fn` with `threads` threads and `shared` bytes of dynamic shared
// memory (resources.ts's launchRefusal, then the dynamic limit), and the CUresult; OK if not
CUresult refusal(const Function& fn, unsigned long long threads, unsigned shared,
                 std::string* message) {
  char m[400];
  for (const Limit& l : fn.limits) {
    if (threads > (unsigned long long)l.maxThreads) {
      std::snprintf(m, sizeof m, "%s: block of %llu threads, the kernel takes at most %d (%s) on %s",
                    fn.name.c_str(), threads, l.maxThreads, l.why.c_str(), l.arch.c_str());
      *message = m;
      return l.byRegisters ? LAUNCH_OUT_OF_RESOURCES : INVALID_VALUE;
    }
    if ((long long)l.staticShared + shared > l.optinShared) {
      std::snprintf(m, sizeof m, "%s: %d bytes of static and %u of dynamic shared memory, %s allows at most %d per block",
                    fn.name.c_str(), l.staticShared, shared, l.arch.c_str(), l.optinShared);
      *message = m;
      return INVALID_VALUE;
    }
  }
  if (threads > 1024) {
    std::snprintf(m, sizeof m, "%s: block of %llu threads, CUDA takes at most 1024", fn.name.c_str(),
                  threads);
    *message = m;
    return INVALID_VALUE;
  }
  if ((int)shared > fn.maxDynamicShared) {
    std::snprintf(m, sizeof m, "%s: %u bytes of dynamic shared memory, the kernel is set to take at most %d (above 48 KiB needs cuFuncSetAttribute first)",
                  fn.name.c_str(), shared, fn.maxDynamicShared);
    *message = m;
    return INVALID_VALUE;
  }
  return OK;
}

// The kernel's static shared memory: the larger of its architectures' (0 unchecked)
int staticShared(const Function& fn) {
  int most = 0;
  for (const Limit& l : fn.limits) most = l.staticShared > most ? l.staticShared : most;
  return most;
}

}  // namespace

#define LOCKED std::lock_guard<std::mutex> guard(lock)
#define EXPORT extern "C" __attribute__((visibility("default")))

// ---- the driver -------------------------------------------------------------------------

EXPORT CUresult cuInit(unsigned int) {
  LOCKED;
  State& s = state();
  // the mode and budget are read again whenever no device memory is held, so test files that
  // share a process can each open the library in the mode they set
  if (!s.initialized || s.used == 0) {
    const char* nullDevice = std::getenv("GPT2_CUDA_EMU_NULL");
    s.null = nullDevice && *nullDevice && std::strcmp(nullDevice, "0") != 0;
    const char* memory = std::getenv("GPT2_CUDA_EMU_MEMORY");
    s.capacity = s.null ? 80ull << 30 : memory ? std::strtoull(memory, nullptr, 10) : 4ull << 30;
    s.initialized = true;
  }
  return OK;
}

EXPORT CUresult cuDriverGetVersion(int* v) { return *v = 13000, OK; }

EXPORT CUresult cuGetErrorName(CUresult code, const char** out) {
  return *out = errorName(code), OK;
}

EXPORT CUresult cuGetErrorString(CUresult code, const char** out) {
  LOCKED;
  auto it = state().messages.find(code);
  *out = it == state().messages.end() ? errorName(code) : it->second.c_str();
  return OK;
}

EXPORT CUresult cuDeviceGetCount(int* n) { return *n = 1, OK; }

EXPORT CUresult cuDeviceGet(CUdevice* d, int ordinal) {
  if (ordinal != 0) return INVALID_DEVICE;
  return *d = 0, OK;
}

EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice) {
  const char* text = state().null ? "CUDA null device on the CPU (nothing runs)"
                                  : "CUDA emulator on the CPU (through FFI)";
  if (len <= 0) return INVALID_VALUE;
  std::snprintf(name, (size_t)len, "%s", text);
  return OK;
}

EXPORT CUresult cuDeviceGetAttribute(int* out, int attribute, CUdevice) {
  switch (attribute) {
    case 16: return *out = 4, OK;     // multiprocessors
    case 75: return *out = 9, OK;     // compute capability 9.0
    case 76: return *out = 0, OK;
    case 97: return *out = SHARED_OPTIN, OK;  // opt-in shared memory per block
    default: return INVALID_VALUE;
  }
}

EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
  return *bytes = state().capacity, OK;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice) {
  return *ctx = (CUcontext)(uintptr_t)0xc0, OK;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return OK; }

EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) { return state().current = ctx, OK; }

EXPORT CUresult cuCtxGetCurrent(CUcontext* ctx) { return *ctx = state().current, OK; }

EXPORT CUresult cuCtxGetDevice(CUdevice* d) { return *d = 0, OK; }

EXPORT CUresult cuStreamGetCtx(CUstream, CUcontext* ctx) {
  return *ctx = (CUcontext)(uintptr_t)0xc0, OK;
}

EXPORT CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
  LOCKED;
  *free = state().capacity - state().used;
  *total = state().capacity;
  return OK;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* out, size_t bytes) {
  LOCKED;
  void* p = nullptr;
  CUresult r = alloc(&p, bytes, true);
  if (r == OK) *out = (CUdeviceptr)(uintptr_t)p;
  return r;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
  LOCKED;
  return release((uintptr_t)p, true, "cuMemFree");
}

EXPORT CUresult cuMemHostAlloc(void** out, size_t bytes, unsigned int) {
  LOCKED;
  bool null = state().null;
  state().null = false;  // page-locked memory is read by the host: always real
  CUresult r = alloc(out, bytes, false);
  state().null = null;
  return r;
}

EXPORT CUresult cuMemFreeHost(void* p) {
  LOCKED;
  return release((uintptr_t)p, false, "cuMemFreeHost");
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, CUstream) {
  LOCKED;
  return copy(dst, (uint64_t)(uintptr_t)src, bytes, true, false, "cuMemcpyHtoDAsync");
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, CUstream) {
  LOCKED;
  return copy((uint64_t)(uintptr_t)dst, src, bytes, false, true, "cuMemcpyDtoHAsync");
}

EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream) {
  LOCKED;
  return copy(dst, src, bytes, true, true, "cuMemcpyDtoDAsync");
}

EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int value, size_t count, CUstream) {
  LOCKED;
  if (!inside(dst, 4 * count)) return fail(INVALID_VALUE, "cuMemsetD32Async: out of bounds");
  state().calls[3]++;
  if (state().null) return OK;
  unsigned int* p = (unsigned int*)(uintptr_t)dst;
  for (size_t i = 0; i < count; i++) p[i] = value;
  return OK;
}

EXPORT CUresult cuModuleLoadData(CUmodule* module, const void*) {
  LOCKED;
  State& s = state();
  if (!s.kernels) {
    const char* path = std::getenv("GPT2_CUDA_EMU_KERNELS");
    if (!path || !*path) {
      return fail(INVALID_IMAGE, "GPT2_CUDA_EMU_KERNELS names no emulator kernel library");
    }
    s.kernels = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!s.kernels) return fail(INVALID_IMAGE, std::string("dlopen: ") + dlerror());
    s.count = (EmuCount)dlsym(s.kernels, "emu_kernel_count");
    s.name = (EmuName)dlsym(s.kernels, "emu_kernel_name");
    s.signature = (EmuSignature)dlsym(s.kernels, "emu_kernel_signature");
    s.launch = (EmuLaunch)dlsym(s.kernels, "emu_launch");
    s.gemm = (EmuGemm)dlsym(s.kernels, "emu_gemm");
    if (!s.count || !s.name || !s.signature || !s.launch || !s.gemm) {
      return fail(INVALID_IMAGE, std::string(path) + " is no emulator kernel library");
    }
  }
  const char* checksPath = std::getenv("GPT2_CUDA_EMU_CHECKS");
  if (checksPath && *checksPath) {
    std::string error;
    auto checks = readChecks(checksPath, &error);
    if (!checks) return fail(INVALID_IMAGE, error);
    s.checks = checks;
  }
  uintptr_t h = handle();
  s.modules[h] = s.checks;
  *module = (CUmodule)h;
  return OK;
}

EXPORT CUresult cuModuleUnload(CUmodule module) {
  LOCKED;
  state().modules.erase((uintptr_t)module);
  return OK;
}

EXPORT CUresult cuModuleGetFunction(CUfunction* out, CUmodule module, const char* name) {
  LOCKED;
  State& s = state();
  auto m = s.modules.find((uintptr_t)module);
  if (!s.kernels || m == s.modules.end()) {
    return fail(INVALID_HANDLE, "cuModuleGetFunction: not a module from cuModuleLoadData");
  }
  const Checks* checks = m->second.get();
  for (int i = 0; i < s.count(); i++) {
    if (std::strcmp(s.name(i), name) == 0) {
      Function fn{i, name, 48 * 1024, {}};
      if (checks) {
        auto expected = checks->signatures.find(name);
        std::string table = expected == checks->signatures.end() ? "" : expected->second;
        if (table != s.signature(i)) {
          return fail(NOT_FOUND, std::string("kernel ") + name + ": kernels.ts says (" + table +
                                     "), the .cu says (" + s.signature(i) + ")");
        }
        auto limits = checks->limits.find(name);
        if (limits != checks->limits.end()) fn.limits = limits->second;
      }
      // the driver's default dynamic limit: 48 KiB less the kernel's static shared memory
      fn.maxDynamicShared = std::max(0, 48 * 1024 - staticShared(fn));
      uintptr_t h = handle();
      s.functions[h] = fn;
      *out = (CUfunction)h;
      return OK;
    }
  }
  return fail(NOT_FOUND, std::string("the emulator has no kernel ") + name);
}

EXPORT CUresult cuFuncSetAttribute(CUfunction f, int attribute, int value) {
  LOCKED;
  auto it = state().functions.find((uintptr_t)f);
  if (it == state().functions.end()) return INVALID_HANDLE;
  // as the driver refuses: the opt-in limit counts the static shared memory too
  if (attribute != 8 || value < 0 || staticShared(it->second) + value > SHARED_OPTIN) {
    return INVALID_VALUE;
  }
  it->second.maxDynamicShared = value;
  return OK;
}

EXPORT CUresult cuFuncGetAttribute(int* out, int attribute, CUfunction f) {
  LOCKED;
  auto it = state().functions.find((uintptr_t)f);
  if (it == state().functions.end()) return INVALID_HANDLE;
  const Function& fn = it->second;
  switch (attribute) {
    case 0: {  // MAX_THREADS_PER_BLOCK: the smallest over the architectures checked
      int most = 1024;
      for (const Limit& l : fn.limits) most = l.maxThreads < most ? l.maxThreads : most;
      return *out = most, OK;
    }
    case 1: return *out = staticShared(fn), OK;  // SHARED_SIZE_BYTES
    case 3: return *out = 0, OK;                 // LOCAL_SIZE_BYTES
    case 4: {  // NUM_REGS: the emulated device is an sm_90
      *out = 0;
      for (const Limit& l : fn.limits) {
        if (l.arch == "sm_90") *out = l.registers;
      }
      return OK;
    }
    case 8: return *out = fn.maxDynamicShared, OK;
    default: return INVALID_VALUE;
  }
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned shared, CUstream, void** params,
                               void**) {
  LOCKED;
  State& s = state();
  auto it = s.functions.find((uintptr_t)f);
  if (it == s.functions.end()) return INVALID_HANDLE;
  const Function& fn = it->second;
  std::string why;
  CUresult refused = refusal(fn, (unsigned long long)bx * by * bz, shared, &why);
  if (refused != OK) return fail(refused, why);
  s.calls[0]++;
  if (s.null) return OK;
  char message[512] = {0};
  if (s.launch(fn.index, gx, gy, gz, bx, by, bz, shared, params, message, sizeof message) != 0) {
    return fail(LAUNCH_FAILED, std::string("emulated kernel failed: ") + message);
  }
  std::string broken = checkAll();
  if (!broken.empty()) return fail(LAUNCH_FAILED, "kernel " + fn.name + ": " + broken);
  return OK;
}

EXPORT CUresult cuStreamCreate(CUstream* s, unsigned int) { return *s = (CUstream)handle(), OK; }
EXPORT CUresult cuStreamDestroy_v2(CUstream) { return OK; }
EXPORT CUresult cuStreamSynchronize(CUstream) { return OK; }
EXPORT CUresult cuEventCreate(CUevent* e, unsigned int) { return *e = (CUevent)handle(), OK; }
EXPORT CUresult cuEventRecord(CUevent, CUstream) { return OK; }
EXPORT CUresult cuEventQuery(CUevent) { return OK; }
EXPORT CUresult cuEventSynchronize(CUevent) { return OK; }
EXPORT CUresult cuEventDestroy_v2(CUevent) { return OK; }
EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent, CUevent) { return *ms = 0.0f, OK; }
EXPORT CUresult cuEventElapsedTime(float* ms, CUevent, CUevent) { return *ms = 0.0f, OK; }

// ---- cuBLASLt ----------------------------------------------------------------------------

namespace {

const cublasStatus_t LT_OK = 0, LT_INVALID_VALUE = 7, LT_EXECUTION_FAILED = 13;
const int R_32F = 0, R_16BF = 14, COMPUTE_32F_FAST_TF32 = 77, EPILOGUE_BIAS = 4;

// The product's m, n, k, or false where the layouts do not fit together
bool shapeOf(const Desc& d, const Layout& a, const Layout& b, const Layout& c, long long* mnk) {
  long long m = d.transA ? a.cols : a.rows, k = d.transA ? a.rows : a.cols;
  long long k2 = d.transB ? b.cols : b.rows, n = d.transB ? b.rows : b.cols;
  if (k != k2 || (long long)c.rows != m || (long long)c.cols != n) return false;
  for (const Layout* l : {&a, &b, &c}) {
    if (l->ld < (int64_t)l->rows) return false;
  }
  if (c.type != R_32F || a.type != b.type) return false;
  mnk[0] = m, mnk[1] = n, mnk[2] = k;
  return true;
}

size_t span(const Layout& l, size_t elem) { return elem * (l.ld * (l.cols - 1) + l.rows); }

}  // namespace

EXPORT cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  LOCKED;
  return *h = (cublasLtHandle_t)handle(), LT_OK;
}
EXPORT cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return LT_OK; }
EXPORT size_t cublasLtGetVersion() { return 130000; }

EXPORT const char* cublasLtGetStatusName(cublasStatus_t status) {
  switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

EXPORT cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* out, int compute, int) {
  LOCKED;
  uintptr_t h = handle();
  Desc d;
  d.compute = compute;
  state().descs[h] = d;
  return *out = (cublasLtMatmulDesc_t)h, LT_OK;
}

EXPORT cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  LOCKED;
  state().descs.erase((uintptr_t)d);
  return LT_OK;
}

EXPORT cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t h, int attribute,
                                                     const void* buf, size_t size) {
  LOCKED;
  auto it = state().descs.find((uintptr_t)h);
  if (it == state().descs.end()) return LT_INVALID_VALUE;
  Desc& d = it->second;
  if (size != (attribute == 8 ? 8u : 4u)) return LT_INVALID_VALUE;
  int v = 0;
  if (attribute != 8) std::memcpy(&v, buf, 4);
  switch (attribute) {
    case 3: d.transA = v == 1; break;
    case 4: d.transB = v == 1; break;
    case 7: d.epilogue = v; break;
    case 8: std::memcpy(&d.bias, buf, 8); break;
    case 26: d.biasType = v; break;
    default: return LT_INVALID_VALUE;
  }
  return LT_OK;
}

EXPORT cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* out, int type,
                                                 uint64_t rows, uint64_t cols, int64_t ld) {
  LOCKED;
  uintptr_t h = handle();
  state().layouts[h] = Layout{type, rows, cols, ld};
  return *out = (cublasLtMatrixLayout_t)h, LT_OK;
}

EXPORT cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  LOCKED;
  state().layouts.erase((uintptr_t)l);
  return LT_OK;
}

EXPORT cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  LOCKED;
  return *p = (cublasLtMatmulPreference_t)handle(), LT_OK;
}
EXPORT cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t) { return LT_OK; }
EXPORT cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, int,
                                                           const void*, size_t) {
  return LT_OK;
}

EXPORT cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
    cublasLtMatmulPreference_t, int requested, cublasLtMatmulHeuristicResult_t* results,
    int* count) {
  LOCKED;
  State& s = state();
  auto ds = s.descs.find((uintptr_t)desc);
  auto la = s.layouts.find((uintptr_t)a), lb = s.layouts.find((uintptr_t)b),
       lc = s.layouts.find((uintptr_t)c);
  if (ds == s.descs.end() || la == s.layouts.end() || lb == s.layouts.end() ||
      lc == s.layouts.end() || c != d || requested < 1) {
    return LT_INVALID_VALUE;
  }
  long long mnk[3];
  if (!shapeOf(ds->second, la->second, lb->second, lc->second, mnk)) return LT_INVALID_VALUE;
  std::memset(results, 0, sizeof *results);
  results->wavesCount = 1.0f;
  *count = 1;
  return LT_OK;
}

EXPORT cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc,
                                     const void* alpha, const void* A, cublasLtMatrixLayout_t a,
                                     const void* B, cublasLtMatrixLayout_t b, const void* beta,
                                     const void* C, cublasLtMatrixLayout_t c, void* D,
                                     cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t*, void*,
                                     size_t, CUstream) {
  LOCKED;
  State& s = state();
  auto ds = s.descs.find((uintptr_t)desc);
  auto la = s.layouts.find((uintptr_t)a), lb = s.layouts.find((uintptr_t)b),
       lc = s.layouts.find((uintptr_t)c);
  if (ds == s.descs.end() || la == s.layouts.end() || lb == s.layouts.end() ||
      lc == s.layouts.end() || c != d || C != D) {
    return LT_INVALID_VALUE;
  }
  long long mnk[3];
  if (!shapeOf(ds->second, la->second, lb->second, lc->second, mnk)) return LT_INVALID_VALUE;
  float alphaValue, betaValue;
  std::memcpy(&alphaValue, alpha, 4);
  std::memcpy(&betaValue, beta, 4);
  if (alphaValue != 1.0f) return LT_INVALID_VALUE;  // the backend always passes 1
  const Desc& dd = ds->second;
  size_t elem = la->second.type == R_16BF ? 2 : 4;
  const float* bias = dd.epilogue == EPILOGUE_BIAS ? (const float*)(uintptr_t)dd.bias : nullptr;
  // every operand inside an allocation, as cuBLASLt would otherwise fault
  if (!inside((uintptr_t)A, span(la->second, elem)) || !inside((uintptr_t)B, span(lb->second, elem)) ||
      !inside((uintptr_t)D, span(lc->second, 4)) ||
      (bias && !inside((uintptr_t)bias, 4 * (size_t)mnk[0]))) {
    return LT_INVALID_VALUE;
  }
  s.calls[1]++;
  if (s.null) return LT_OK;
  s.gemm(dd.transA, dd.transB, mnk[0], mnk[1], mnk[2], A, la->second.type, la->second.ld, B,
         lb->second.type, lb->second.ld, betaValue, (float*)D, lc->second.ld, bias,
         dd.compute == COMPUTE_32F_FAST_TF32);
  if (!checkAll().empty()) return LT_EXECUTION_FAILED;
  return LT_OK;
}

// ---- for tests ---------------------------------------------------------------------------

// The calls accepted so far: launches, GEMMs, copies (any direction) and memsets, so a test
// can check the backend's own counts against what reached the library.
EXPORT void emu_calls(uint64_t* out) {
  LOCKED;
  std::memcpy(out, state().calls, sizeof state().calls);
}
