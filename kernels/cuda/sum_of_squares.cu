// sum_of_squares.cu: sums of squares of many buffers at once, in double, for the global
// gradient norm (clipGradNorm), read back with one copy.
//   sum_of_squares_partial: table (numBufs, 2) of (device pointer, element count) as u64;
//                           partials (numBufs, gridDim.x): block x of row y sums x^2 over a
//                           grid-stride share of buffer y
//   sum_of_squares_finish:  out (numBufs) = sum of each row of partials, in order
// The shares and the order of additions depend on the sizes only, so results are
// deterministic.
#include "common.cuh"

#define SS_THREADS 256

// grid (P, numBufs), block SS_THREADS
extern "C" __global__ void __launch_bounds__(SS_THREADS)
    sum_of_squares_partial(double* partials, const unsigned long long* table, int numBufs) {
  __shared__ double scratch[32];
  int y = blockIdx.y;
  if (y >= numBufs) return;
  const float* x = (const float*)table[2 * y];
  long long n = (long long)table[2 * y + 1];
  double s = 0.0;
  GRID_STRIDE(i, n) {
    double v = (double)x[i];
    s += v * v;
  }
  s = block_sum_double(s, scratch);
  if (threadIdx.x == 0) partials[(long long)y * gridDim.x + blockIdx.x] = s;
}

extern "C" __global__ void sum_of_squares_finish(double* out, const double* partials, int P,
                                                 int numBufs) {
  GRID_STRIDE(y, numBufs) {
    double s = 0.0;
    for (int k = 0; k < P; k++) s += partials[y * P + k];
    out[y] = s;
  }
}
