// layernorm.cu: LayerNorm over the last dim (eps 1e-5, biased variance, as nn.LayerNorm).
//   layernorm_forward:  inp (N, C) -> out (N, C) = (x - mean) * rstd * weight + bias, saving
//                       mean (N) and rstd (N); one warp per row, two passes over the row
//                       (mean, then the centred variance) for accuracy
//   layernorm_backward: dinp (N, C) += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd
//                       with dnorm = weight * dout, one warp per row (= with overwriteDinp: a
//                       gradient's first contribution); and per block of rows
//                       the partial sums of dout * norm (for dweight) and dout (for dbias),
//                       written to partials (2, blocks, C): matmul_bias.cu's
//                       column_sums_finish adds them into dweight and dbias in a fixed
//                       order, so the backward is deterministic
#include "common.cuh"

#define LN_EPS 1e-5f
#define LN_THREADS 256  // 8 warps: 8 rows at a time

extern "C" __global__ void __launch_bounds__(LN_THREADS)
    layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                      const float* bias, int N, int C) {
  int lane = threadIdx.x % WARP;
  int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
  if (row >= N) return;  // whole warps leave together
  const float* x = inp + (long long)row * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += WARP) s += x[c];
  float m = warp_sum(s) / (float)C;
  float v = 0.0f;
  for (int c = lane; c < C; c += WARP) {
    float d = x[c] - m;
    v += d * d;
  }
  v = warp_sum(v) / (float)C;
  float r = 1.0f / sqrtf(v + LN_EPS);
  float* o = out + (long long)row * C;
  for (int c = lane; c < C; c += WARP) o[c] = (x[c] - m) * r * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// grid ceil(N / rowsPerBlock); partials is (2, gridDim.x, C): dweight's, then dbias's
extern "C" __global__ void __launch_bounds__(LN_THREADS)
    layernorm_backward(float* dinp, float* partials, const float* dout, const float* inp,
                       const float* weight, const float* mean, const float* rstd, int N, int C,
                       int rowsPerBlock, int overwriteDinp) {
  int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
  int row0 = blockIdx.x * rowsPerBlock;
  int row1 = min(N, row0 + rowsPerBlock);
  // dinp, a warp per row
  for (int row = row0 + warp; row < row1; row += warps) {
    const float* x = inp + (long long)row * C;
    const float* d = dout + (long long)row * C;
    float m = mean[row], r = rstd[row];
    float dnormMean = 0.0f, dnormNormMean = 0.0f;
    for (int c = lane; c < C; c += WARP) {
      float norm = (x[c] - m) * r;
      float dnorm = weight[c] * d[c];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean = warp_sum(dnormMean) / (float)C;
    dnormNormMean = warp_sum(dnormNormMean) / (float)C;
    float* di = dinp + (long long)row * C;
    for (int c = lane; c < C; c += WARP) {
      float norm = (x[c] - m) * r;
      float dnorm = weight[c] * d[c];
      float g = (dnorm - dnormMean - norm * dnormNormMean) * r;
      di[c] = overwriteDinp ? g : di[c] + g;
    }
  }
  // dweight and dbias partial sums over this block's rows, a thread per channel
  float* dwPartial = partials + (long long)blockIdx.x * C;
  float* dbPartial = partials + ((long long)gridDim.x + blockIdx.x) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float dw = 0.0f, db = 0.0f;
    for (int row = row0; row < row1; row++) {
      float dv = dout[(long long)row * C + c];
      float norm = (inp[(long long)row * C + c] - mean[row]) * rstd[row];
      dw += dv * norm;
      db += dv;
    }
    dwPartial[c] = dw;
    dbPartial[c] = db;
  }
}
