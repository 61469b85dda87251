// libnccl_emu.cpp: NCCL for the CPU emulator behind the real FFI. One shared library that
// exports the nccl.h calls lib/backends/cuda/nccl.ts binds, with nccl.h's C prototypes (the
// 128-byte ncclUniqueId by value, ncclConfig_t by pointer, handles, counts, enums, streams),
// so the NCCL binding and the NCCL process group (lib/ddp/nccl_group.ts) open it through
// Deno.dlopen exactly as they open libnccl.so.2 (GPT2_NCCL_LIB names it;
// tests/cuda_emulator/nccl_ffi.ts builds it).
//
// - Communicators of one rank, as the device check's one-rank run makes: set-up, all-reduce
//   (sum, prod, max, min, avg), broadcast, finalize, destroy and abort keep NCCL's contract
//   (non-blocking set-up answered ncclInProgress, then success from ncclCommGetAsyncError;
//   collectives only inside ncclGroupStart/End or alone; every argument checked as NCCL
//   checks it). One rank's reduction is its own data: in place nothing changes, out of place
//   the data is copied, through device memory as libcuda_emu.cpp hands it out (host memory),
//   or not at all on its null device (GPT2_CUDA_EMU_NULL=1).
// - A communicator of more ranks is refused at set-up with ncclInvalidUsage and the reason in
//   ncclGetLastError (the 2-rank process group is tested against tests/ddp/nccl_stub.c).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

typedef int ncclResult_t;
typedef struct {
  char internal[128];
} ncclUniqueId;
typedef struct ncclComm* ncclComm_t;
typedef struct CUstream_st* cudaStream_t;

// ncclConfig_t's leading fields, the ones a caller sets (nccl.h)
typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
} ConfigHead;

enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
};
enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 };

#define EXPORT extern "C" __attribute__((visibility("default")))

/** NCCL_VERSION_CODE of the NCCL this stands for (2.27.3). */
static const int VERSION = 22703;
static const unsigned int CONFIG_MAGIC = 0xcafebeef;
static const char ID_MAGIC[] = "nccl-emu";

struct ncclComm {
  int nranks, rank, device, blocking;
  int state;  // what ncclCommGetAsyncError answers next
  bool finalized;
};
static std::mutex mutex;
static int groupDepth = 0;
static char lastError[512] = "";
static unsigned long long idCounter = 0;
// the communicators set up and not yet destroyed: a stale or foreign handle is refused
static std::set<ncclComm_t> communicators;

static ncclResult_t fail(ncclResult_t rc, const char* why) {
  strncpy(lastError, why, sizeof lastError - 1);
  return rc;
}

static bool alive(ncclComm_t comm) { return communicators.count(comm) == 1; }

/** Bytes of one element of `type` (ncclDataType_t), 0 for an unknown type. */
static size_t elementBytes(int type) {
  switch (type) {
    case 0: case 1: case 10: case 11: return 1;   // int8, uint8, fp8 e4m3 and e5m2
    case 2: case 3: case 7: return 4;             // int32, uint32, float32
    case 4: case 5: case 8: return 8;             // int64, uint64, float64
    case 6: case 9: return 2;                     // float16, bfloat16
  }
  return 0;
}

/** Whether the device memory is only accounted, never touched (libcuda_emu's null device). */
static bool nullDevice() {
  const char* v = getenv("GPT2_CUDA_EMU_NULL");
  return v != nullptr && strcmp(v, "1") == 0;
}

/** What every collective checks before it runs: the communicator, the type, the buffers. */
static ncclResult_t checkCollective(const char* name, const void* send, void* recv, size_t count,
                                    int type, ncclComm_t comm) {
  char why[256];
  if (!alive(comm)) {
    snprintf(why, sizeof why, "%s: invalid communicator", name);
    return fail(ncclInvalidArgument, why);
  }
  if (comm->finalized) {
    snprintf(why, sizeof why, "%s: the communicator is finalized", name);
    return fail(ncclInvalidUsage, why);
  }
  if (elementBytes(type) == 0) {
    snprintf(why, sizeof why, "%s: invalid data type %d", name, type);
    return fail(ncclInvalidArgument, why);
  }
  if (count > 0 && (send == nullptr || recv == nullptr)) {
    snprintf(why, sizeof why, "%s: null buffer for %zu elements", name, count);
    return fail(ncclInvalidArgument, why);
  }
  return ncclSuccess;
}

/** One rank's collective: its own data, copied where it goes out of place. */
static void ownData(const void* send, void* recv, size_t count, int type) {
  if (send != recv && count > 0 && !nullDevice()) memmove(recv, send, count * elementBytes(type));
}

EXPORT ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return fail(ncclInvalidArgument, "ncclGetVersion: null version");
  *version = VERSION;
  return ncclSuccess;
}

EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::lock_guard<std::mutex> lock(mutex);
  if (id == nullptr) return fail(ncclInvalidArgument, "ncclGetUniqueId: null id");
  memset(id->internal, 0, sizeof id->internal);
  memcpy(id->internal, ID_MAGIC, sizeof ID_MAGIC);
  unsigned long long n = ++idCounter;
  memcpy(id->internal + 16, &n, sizeof n);
  return ncclSuccess;
}

EXPORT ncclResult_t ncclCommInitRankConfig(ncclComm_t* out, int nranks, ncclUniqueId id, int rank,
                                           void* config) {
  std::lock_guard<std::mutex> lock(mutex);
  char why[256];
  if (out == nullptr) return fail(ncclInvalidArgument, "ncclCommInitRankConfig: null comm");
  *out = nullptr;
  if (memcmp(id.internal, ID_MAGIC, sizeof ID_MAGIC) != 0) {
    return fail(ncclInvalidArgument,
                "ncclCommInitRankConfig: the unique id is not ncclGetUniqueId's");
  }
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    snprintf(why, sizeof why, "ncclCommInitRankConfig: rank %d of %d ranks", rank, nranks);
    return fail(ncclInvalidArgument, why);
  }
  int blocking = 1;
  if (config != nullptr) {
    const ConfigHead* head = (const ConfigHead*)config;
    if (head->magic != CONFIG_MAGIC || head->size < sizeof(ConfigHead)) {
      return fail(ncclInvalidArgument,
                  "ncclCommInitRankConfig: the config is not initialised "
                  "(NCCL_CONFIG_INITIALIZER)");
    }
    blocking = head->blocking;
  }
  if (nranks != 1) {
    snprintf(why, sizeof why,
             "ncclCommInitRankConfig: the NCCL emulator runs communicators of one rank, "
             "found %d ranks",
             nranks);
    return fail(ncclInvalidUsage, why);
  }
  ncclComm_t comm = new ncclComm{nranks, rank, 0, blocking, ncclSuccess, false};
  communicators.insert(comm);
  *out = comm;
  // a non-blocking set-up returns at once; the state says when it is done
  return blocking ? ncclSuccess : ncclInProgress;
}

EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* state) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!alive(comm)) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: invalid communicator");
  if (state == nullptr) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: null state");
  *state = comm->state;
  return ncclSuccess;
}

// One field of a live communicator into *out, as ncclCommCount and its like answer.
static ncclResult_t answer(ncclComm_t comm, int* out, int ncclComm::*field, const char* why) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!alive(comm) || out == nullptr) return fail(ncclInvalidArgument, why);
  *out = comm->*field;
  return ncclSuccess;
}

EXPORT ncclResult_t ncclCommCount(ncclComm_t comm, int* count) {
  return answer(comm, count, &ncclComm::nranks, "ncclCommCount: invalid argument");
}

EXPORT ncclResult_t ncclCommCuDevice(ncclComm_t comm, int* device) {
  return answer(comm, device, &ncclComm::device, "ncclCommCuDevice: invalid argument");
}

EXPORT ncclResult_t ncclCommUserRank(ncclComm_t comm, int* rank) {
  return answer(comm, rank, &ncclComm::rank, "ncclCommUserRank: invalid argument");
}

EXPORT ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!alive(comm)) return fail(ncclInvalidArgument, "ncclCommFinalize: invalid communicator");
  if (comm->finalized) return fail(ncclInvalidUsage, "ncclCommFinalize: finalized twice");
  comm->finalized = true;
  return comm->blocking ? ncclSuccess : ncclInProgress;
}

// Frees a live communicator (ncclCommDestroy and ncclCommAbort: one rank has nothing in flight).
static ncclResult_t destroy(ncclComm_t comm, const char* why) {
  std::lock_guard<std::mutex> lock(mutex);
  if (comm == nullptr) return ncclSuccess;  // NCCL: destroying a null communicator is no error
  if (!alive(comm)) return fail(ncclInvalidArgument, why);
  communicators.erase(comm);
  delete comm;
  return ncclSuccess;
}

EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  return destroy(comm, "ncclCommDestroy: invalid communicator");
}

EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) {
  return destroy(comm, "ncclCommAbort: invalid communicator");
}

EXPORT const char* ncclGetErrorString(ncclResult_t rc) {
  switch (rc) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError:
      return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
  }
  return "unknown result code";
}

EXPORT const char* ncclGetLastError(ncclComm_t) { return lastError; }

EXPORT ncclResult_t ncclGroupStart() {
  std::lock_guard<std::mutex> lock(mutex);
  groupDepth++;
  return ncclSuccess;
}

EXPORT ncclResult_t ncclGroupEnd() {
  std::lock_guard<std::mutex> lock(mutex);
  if (groupDepth <= 0) return fail(ncclInvalidUsage, "ncclGroupEnd: not in a group");
  groupDepth--;
  return ncclSuccess;
}

EXPORT ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, int type, int op,
                                  ncclComm_t comm, cudaStream_t) {
  std::lock_guard<std::mutex> lock(mutex);
  ncclResult_t rc = checkCollective("ncclAllReduce", send, recv, count, type, comm);
  if (rc != ncclSuccess) return rc;
  if (op < ncclSum || op > ncclAvg) {
    char why[128];
    snprintf(why, sizeof why, "ncclAllReduce: invalid reduction %d", op);
    return fail(ncclInvalidArgument, why);
  }
  ownData(send, recv, count, type);  // sum, product, max, min and mean of one rank: its data
  return ncclSuccess;
}

EXPORT ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, int type, int root,
                                  ncclComm_t comm, cudaStream_t) {
  std::lock_guard<std::mutex> lock(mutex);
  ncclResult_t rc = checkCollective("ncclBroadcast", send, recv, count, type, comm);
  if (rc != ncclSuccess) return rc;
  if (root < 0 || root >= comm->nranks) {
    char why[128];
    snprintf(why, sizeof why, "ncclBroadcast: root %d of %d ranks", root, comm->nranks);
    return fail(ncclInvalidArgument, why);
  }
  ownData(send, recv, count, type);  // the root is this rank
  return ncclSuccess;
}
