// convert.cu: what bf16 matmul precision needs: bf16 copies of a GEMM's operands.
//   f32_to_bf16: out (n) = bf16(inp (n)), rounding to nearest even; the f32 buffer stays
//                the master copy (weights, activations, gradients), the bf16 one is only read
//                by cuBLASLt (lib/backends/cuda/cublaslt.ts), whose products are summed in f32
#include "common.cuh"

extern "C" __global__ void f32_to_bf16(unsigned short* out, const float* inp, long long n) {
  GRID_STRIDE(i, n) out[i] = f32_to_bf16_bits(inp[i]);
}
