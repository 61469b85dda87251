/*
 * A stand-in for libnccl.so.2 with nccl.h's signatures, so that the NCCL binding
 * (lib/backends/cuda/nccl.ts) and the NCCL process group (lib/ddp/nccl_group.ts) are tested
 * through Deno FFI on a machine without a GPU: what crosses the FFI (the 128-byte unique id
 * by value, the config struct, pointers, counts, types, operations, streams) is recorded,
 * and "device" buffers are host memory that the collectives change as NCCL would if every
 * other rank held the same values (a sum multiplies by the number of ranks, an average keeps
 * them, a broadcast writes 7 on every rank but the root). A mode makes it misbehave: a
 * collective that never ends, a peer lost mid-collective, a set-up refused, an old version.
 *
 * Built by tests/ddp/nccl_test.ts with `cc -shared -fPIC`.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { SUCCESS = 0, SYSTEM_ERROR = 2, INVALID_USAGE = 5, REMOTE_ERROR = 6, IN_PROGRESS = 7 };
enum { MODE_OK = 0, MODE_HANG = 1, MODE_PEER_LOST = 2, MODE_DUPLICATE_GPU = 3 };

#define MAX_COMMS 8
#define MAX_OPS 1024

typedef struct { char internal[128]; } ncclUniqueId;

typedef struct {
  int used, nranks, rank, device;
  int pending; /* polls of ncclCommGetAsyncError still answered "in progress" */
  int stuck;   /* 1: "in progress" forever */
  int error;   /* the state once nothing is pending */
  int aborted, finalized, destroyed;
  unsigned char id[128];
  unsigned char config[40];
} Comm;

static Comm comms[MAX_COMMS];
static int mode = MODE_OK, polls = 0, version = 22703, group_depth = 0;
static int ops = 0, op_kind[MAX_OPS], op_type[MAX_OPS], op_arg[MAX_OPS];
static uintptr_t op_ptr[MAX_OPS], op_stream[MAX_OPS];
static size_t op_count[MAX_OPS];
static const char* last_error = "";

static Comm* get(void* comm) {
  uintptr_t i = (uintptr_t)comm;
  return i >= 1 && i <= MAX_COMMS && comms[i - 1].used ? &comms[i - 1] : NULL;
}

/* ---- the stub's controls, for the test ---- */
void stub_reset(int m, int p, int v) {
  memset(comms, 0, sizeof comms);
  mode = m, polls = p, version = v, group_depth = 0, ops = 0, last_error = "";
}
int stub_device(int comm, int device) { comms[comm - 1].device = device; return 0; }
int stub_ops(void) { return ops; }
long long stub_op(int i, int field) {
  switch (field) {
    case 0: return op_kind[i]; /* 1 all-reduce, 2 broadcast */
    case 1: return (long long)op_ptr[i];
    case 2: return (long long)op_count[i];
    case 3: return op_type[i];
    case 4: return op_arg[i]; /* the reduction, or the root */
    case 5: return (long long)op_stream[i];
  }
  return -1;
}
int stub_comm(int comm, int field) {
  Comm* c = &comms[comm - 1];
  switch (field) {
    case 0: return c->nranks;
    case 1: return c->rank;
    case 2: return c->aborted;
    case 3: return c->finalized;
    case 4: return c->destroyed;
    case 5: return c->used;
  }
  return -1;
}
int stub_id_byte(int comm, int i) { return comms[comm - 1].id[i]; }
int stub_config_byte(int comm, int i) { return comms[comm - 1].config[i]; }

/* ---- nccl.h ---- */
int ncclGetVersion(int* v) { *v = version; return SUCCESS; }

int ncclGetUniqueId(ncclUniqueId* id) {
  for (int i = 0; i < 128; i++) id->internal[i] = (char)(i ^ 0x5a);
  return SUCCESS;
}

int ncclCommInitRankConfig(void** out, int nranks, ncclUniqueId id, int rank, void* config) {
  for (int i = 0; i < MAX_COMMS; i++) {
    if (comms[i].used) continue;
    Comm* c = &comms[i];
    memset(c, 0, sizeof *c);
    c->used = 1, c->nranks = nranks, c->rank = rank, c->pending = polls;
    memcpy(c->id, id.internal, 128);
    memcpy(c->config, config, 40);
    if (mode == MODE_DUPLICATE_GPU) {
      c->error = INVALID_USAGE;
      last_error = "Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 0";
    }
    *out = (void*)(uintptr_t)(i + 1);
    return IN_PROGRESS;
  }
  return SYSTEM_ERROR;
}

int ncclCommGetAsyncError(void* comm, int* state) {
  Comm* c = get(comm);
  if (!c) return INVALID_USAGE;
  if (c->pending > 0) {
    c->pending--;
    *state = IN_PROGRESS;
  } else {
    *state = c->stuck ? IN_PROGRESS : c->error;
  }
  return SUCCESS;
}

int ncclCommCount(void* comm, int* n) { Comm* c = get(comm); if (!c) return INVALID_USAGE; *n = c->nranks; return SUCCESS; }
int ncclCommCuDevice(void* comm, int* d) { Comm* c = get(comm); if (!c) return INVALID_USAGE; *d = c->device; return SUCCESS; }
int ncclCommUserRank(void* comm, int* r) { Comm* c = get(comm); if (!c) return INVALID_USAGE; *r = c->rank; return SUCCESS; }

int ncclCommFinalize(void* comm) { Comm* c = get(comm); if (!c) return INVALID_USAGE; c->finalized++; c->pending = 2; return IN_PROGRESS; }
int ncclCommDestroy(void* comm) { Comm* c = get(comm); if (!c) return INVALID_USAGE; c->destroyed++; return SUCCESS; }
int ncclCommAbort(void* comm) { Comm* c = get(comm); if (!c) return INVALID_USAGE; c->aborted++; c->stuck = 0; return SUCCESS; }

const char* ncclGetErrorString(int rc) {
  switch (rc) {
    case SUCCESS: return "no error";
    case SYSTEM_ERROR: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case INVALID_USAGE: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case REMOTE_ERROR: return "remote process exited or there was a network error";
    case IN_PROGRESS: return "NCCL operation in progress";
  }
  return "unknown result code";
}
const char* ncclGetLastError(void* comm) { (void)comm; return last_error; }

int ncclGroupStart(void) { group_depth++; return SUCCESS; }

int ncclGroupEnd(void) {
  if (group_depth <= 0) return INVALID_USAGE;
  if (--group_depth > 0) return SUCCESS;
  for (int i = 0; i < MAX_COMMS; i++) {
    Comm* c = &comms[i];
    if (!c->used) continue;
    c->pending = polls;
    if (mode == MODE_HANG) c->stuck = 1;
    if (mode == MODE_PEER_LOST) {
      c->error = REMOTE_ERROR;
      last_error = "socketProgress: Connection closed by remote peer";
    }
  }
  return IN_PROGRESS;
}

static int record(int kind, uintptr_t ptr, size_t count, int type, int arg, void* comm, uintptr_t stream) {
  if (!get(comm) || group_depth <= 0 || ops >= MAX_OPS) return INVALID_USAGE;
  op_kind[ops] = kind, op_ptr[ops] = ptr, op_count[ops] = count, op_type[ops] = type;
  op_arg[ops] = arg, op_stream[ops] = stream;
  ops++;
  return SUCCESS;
}

int ncclAllReduce(const void* send, void* recv, size_t count, int type, int op, void* comm, uintptr_t stream) {
  if (send != recv) return INVALID_USAGE; /* the group reduces in place */
  int rc = record(1, (uintptr_t)recv, count, type, op, comm, stream);
  if (rc != SUCCESS) return rc;
  int n = get(comm)->nranks;
  if (op == 0 && type == 7) for (size_t i = 0; i < count; i++) ((float*)recv)[i] *= (float)n;
  if (op == 0 && type == 2) for (size_t i = 0; i < count; i++) ((int32_t*)recv)[i] *= n;
  return SUCCESS;
}

int ncclBroadcast(const void* send, void* recv, size_t count, int type, int root, void* comm, uintptr_t stream) {
  if (send != recv) return INVALID_USAGE;
  int rc = record(2, (uintptr_t)recv, count, type, root, comm, stream);
  if (rc != SUCCESS) return rc;
  if (get(comm)->rank != root && type == 7) for (size_t i = 0; i < count; i++) ((float*)recv)[i] = 7.0f;
  return SUCCESS;
}
