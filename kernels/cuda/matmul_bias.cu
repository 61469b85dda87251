// matmul_bias.cu: what nn.Linear needs besides cuBLASLt's GEMMs (lib/backends/cuda/cublaslt.ts),
// and the column sums other kernels reduce with.
//   column_sums_partial: src (rows, cols) -> partials (chunks, cols), the sum of each column
//                        over a chunk of rowsPerChunk rows; block (32, 8): 32 columns, 8 row lanes
//   column_sums_finish:  dst0[c] += sum over chunks of partials[k][c], in order of k, in
//                        double; with dst1, also dst1[c] += the same of the (chunks, cols)
//                        partials that follow (layernorm's dweight and dbias in one launch);
//                        bit s of `overwrite` writes set s (= instead of +=: a gradient's
//                        first contribution, no zero fill before it)
//   add_bias:            out (N, OC) += bias (OC), for GEMMs whose bias epilogue is unavailable
// Together they give the bias gradient dbias (OC) += sum of dout (N, OC) rows, and the
// broadcast accumulate of residual.cu, deterministically: fixed chunks, fixed order, no atomics.
#include "common.cuh"

#define COLS_PER_BLOCK 32
#define ROW_LANES 8

// grid (ceil(cols / 32), chunks), block (32, 8)
extern "C" __global__ void __launch_bounds__(COLS_PER_BLOCK * ROW_LANES)
    column_sums_partial(float* partials, const float* src, int rows, int cols, int rowsPerChunk) {
  __shared__ float lanes[ROW_LANES][COLS_PER_BLOCK];
  int col = blockIdx.x * COLS_PER_BLOCK + threadIdx.x;
  int row0 = blockIdx.y * rowsPerChunk;
  int row1 = min(rows, row0 + rowsPerChunk);
  float s = 0.0f;
  if (col < cols) {
    for (int r = row0 + threadIdx.y; r < row1; r += ROW_LANES) s += src[(long long)r * cols + col];
  }
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float t = 0.0f;
    for (int k = 0; k < ROW_LANES; k++) t += lanes[k][threadIdx.x];
    partials[(long long)blockIdx.y * cols + col] = t;
  }
}

// grid-stride over the columns of one set (dst1 null) or two (dst1's partials follow dst0's)
extern "C" __global__ void column_sums_finish(float* dst0, float* dst1, const float* partials,
                                              int chunks, int cols, int overwrite) {
  int sets = dst1 ? 2 : 1;
  GRID_STRIDE(e, (long long)sets * cols) {
    int s = (int)(e / cols), c = (int)(e % cols);
    const float* p = partials + (long long)s * chunks * cols + c;
    double t = 0.0;
    for (int k = 0; k < chunks; k++) t += (double)p[(long long)k * cols];
    float* d = (s == 0 ? dst0 : dst1) + c;
    *d = (overwrite >> s) & 1 ? (float)t : (float)((double)*d + t);
  }
}

extern "C" __global__ void add_bias(float* out, const float* bias, int N, int OC) {
  GRID_STRIDE(e, (long long)N * OC) out[e] += bias[e % OC];
}
