// kernel_scaling.c: each kernel of GPT-2 124M's training step at B=2, T=1024 (fp32) alone, on
// one thread and on two, alternating, the fastest of `rounds` each; beside the wall times, each
// OpenMP thread's own CPU time, so that how evenly a kernel divides its work reads true even on
// a machine whose other jobs take cores away (the wall times then do not).
//
// Built from the repository's root with the native backend's flags, then run:
//   cc -O3 -march=native -fopenmp -fno-math-errno -std=c11 -o /tmp/kernel_scaling
//      tools/kernel_scaling/kernel_scaling.c kernels/cpu/*.c -lm
//   OMP_WAIT_POLICY=passive /tmp/kernel_scaling 4
//
// Columns: wall ms at 1 and 2 threads and their ratio; the process CPU time at 2 threads over
// that at 1 (above 1: work done twice, or threads slowed by each other); "split": the CPU time
// at 1 thread over the busier thread's at 2 (2.00: even, nothing done twice). The inputs are
// deterministic filler, so the cross-entropy kernels see larger logits than a model's.
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../kernels/cpu/gemm.h"

void matmul_forward_fused(float* out, float* gelu_out, const float* inp, const float* weight,
                          const float* bias, int N, int C, int OC, int bf16);
void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                       int bf16);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int B, int T, int C, int NH, int bf16);
int crossentropy_forward(float* loss, const float* logits, const int* targets, int N, int V);
void adamw_update(float* param, const float* grad, float* m, float* v, long n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int step,
                  float grad_scale);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C);

enum { B = 2, T = 1024, ROWS = B * T, C = 768, NH = 12, V = 50304 };
static const long PARAMS = 124475904L;

// the step's arrays, sized for the largest use of each
static float *x, *weight, *grad, *out, *dinp, *dweight, *bias, *qkv, *attn_out, *lse, *dattn,
    *dqkv, *logits, *loss, *adam_m, *adam_v, *ln_mean, *ln_rstd, *ln_weight, *ln_bias;
static int* targets;

static const char* const NAMES[] = {
    "c_attn forward",      "c_attn dinp",          "c_attn dweight",
    "attn c_proj forward", "attn c_proj dinp",     "attn c_proj dweight",
    "c_fc forward + GELU", "c_fc dinp",            "c_fc dweight",
    "mlp c_proj forward",  "mlp c_proj dinp",      "mlp c_proj dweight",
    "lm_head forward",     "lm_head dinp",         "lm_head dweight",
    "attention forward",   "attention backward",   "cross-entropy forward",
    "AdamW (124M)",        "LayerNorm forward",    "LayerNorm backward",
};
#define OPS ((int)(sizeof NAMES / sizeof NAMES[0]))

// A Linear (C_in -> C_out) at op 3 * i + 0 (forward), 1 (dinp), 2 (dweight).
static void linear(int part, int c_in, int c_out, int gelu) {
  if (part == 0) {
    matmul_forward_fused(out, gelu ? out + (size_t)ROWS * c_out : NULL, x, weight, bias, ROWS,
                         c_in, c_out, 0);
  } else if (part == 1) {
    gpt2_gemm(0, 0, ROWS, c_in, c_out, grad, weight, 1.0f, dinp, 0);
  } else {
    gpt2_gemm(1, 0, c_out, c_in, ROWS, grad, x, 1.0f, dweight, 0);
  }
}

static void run_op(int op) {
  static const int SHAPES[5][3] = {
      {C, 3 * C, 0}, {C, C, 0}, {C, 4 * C, 1}, {4 * C, C, 0}, {C, V, 0}};
  if (op < 15) {
    linear(op % 3, SHAPES[op / 3][0], SHAPES[op / 3][1], SHAPES[op / 3][2]);
    return;
  }
  switch (op) {
    case 15: attention_forward(attn_out, lse, qkv, B, T, C, NH, 0); break;
    case 16: attention_backward(dqkv, dattn, qkv, attn_out, lse, B, T, C, NH, 0); break;
    case 17: crossentropy_forward(loss, logits, targets, ROWS, V); break;
    case 18:
      adamw_update(weight, grad, adam_m, adam_v, PARAMS, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 5, 1.0f);
      break;
    case 19: layernorm_forward(out, ln_mean, ln_rstd, x, ln_weight, ln_bias, ROWS, C); break;
    case 20:
      layernorm_backward(dinp, ln_weight, ln_bias, grad, x, ln_weight, ln_mean, ln_rstd, ROWS, C);
      break;
  }
}

static double seconds(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

// n floats of deterministic filler in [-0.5, 0.5)
static float* filled(size_t n) {
  float* p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "Out of memory: %zu floats\n", n);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  return p;
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 4;
  if (rounds < 1) {
    fprintf(stderr, "Expected a number of rounds of 1 or more, found '%s'\n", argv[1]);
    return 1;
  }
  size_t vocab_rows = (size_t)V * C > (size_t)PARAMS ? (size_t)V * C : (size_t)PARAMS;
  x = filled((size_t)ROWS * 4 * C), weight = filled(vocab_rows), grad = filled((size_t)ROWS * V);
  out = filled((size_t)ROWS * 8 * C), dinp = filled((size_t)ROWS * 4 * C);
  dweight = filled((size_t)V * C), bias = filled(V), qkv = filled((size_t)ROWS * 3 * C);
  attn_out = filled((size_t)ROWS * C), lse = filled((size_t)B * NH * T);
  dattn = filled((size_t)ROWS * C), dqkv = filled((size_t)ROWS * 3 * C);
  logits = filled((size_t)ROWS * V), loss = filled(1), adam_m = filled(PARAMS);
  adam_v = filled(PARAMS), ln_mean = filled(ROWS), ln_rstd = filled(ROWS);
  ln_weight = filled(C), ln_bias = filled(C);
  for (long i = 0; i < PARAMS; i++) adam_v[i] *= adam_v[i];  // second moments are not negative
  targets = malloc(sizeof(int) * ROWS);
  for (int i = 0; i < ROWS; i++) targets[i] = (i * 7919) % V;
  attention_forward(attn_out, lse, qkv, B, T, C, NH, 0);  // the backward's saved statistics

  // the two threads' CPU clocks (libgomp keeps the same threads from one region to the next)
  clockid_t thread_clock[2];
#pragma omp parallel num_threads(2)
  pthread_getcpuclockid(pthread_self(), &thread_clock[omp_get_thread_num()]);

  printf("%-22s %10s %10s %8s %14s %6s\n", "op", "1T ms", "2T ms", "speedup", "CPU 2T / 1T",
         "split");
  for (int op = 0; op < OPS; op++) {
    double wall[3] = {1e30, 1e30, 1e30}, cpu[3] = {1e30, 1e30, 1e30}, busier = 1e30;
    for (int r = 0; r < rounds; r++) {
      for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        double t0[2] = {seconds(thread_clock[0]), seconds(thread_clock[1])};
        double c0 = seconds(CLOCK_PROCESS_CPUTIME_ID), w0 = seconds(CLOCK_MONOTONIC);
        run_op(op);
        double w = seconds(CLOCK_MONOTONIC) - w0, c = seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (w < wall[threads]) wall[threads] = w;
        if (c < cpu[threads]) cpu[threads] = c;
        if (threads == 2) {
          double a = seconds(thread_clock[0]) - t0[0], b = seconds(thread_clock[1]) - t0[1];
          if ((a > b ? a : b) < busier) busier = a > b ? a : b;
        }
      }
    }
    printf("%-22s %10.1f %10.1f %7.2fx %14.2f %6.2f\n", NAMES[op], wall[1] * 1e3, wall[2] * 1e3,
           wall[1] / wall[2], cpu[2] / cpu[1], cpu[1] / busier);
    fflush(stdout);
  }
  return 0;
}
