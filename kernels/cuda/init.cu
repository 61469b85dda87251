// init.cu: parameters initialised on the device, so a 124M-parameter model is not drawn in
// JavaScript and copied over.
//   init_normal: out[i] = std * N(0, 1) for i < n, from a counter-based generator keyed by
//                (seed, stream): element pair j (2j, 2j + 1) takes two 53-bit uniforms u in
//                (0, 1] and v in [0, 1) from splitmix64's finaliser of (key, 2j) and (key,
//                2j + 1), and Box-Muller's r cos(2 pi v), r sin(2 pi v) with r = sqrt(-2 ln u),
//                in double, as lib/model/random.ts's Generator.fillNormal draws them (the same
//                law; other values). Any launch shape gives the same numbers.
#include "common.cuh"

DEVICE unsigned long long init_mix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

extern "C" __global__ void init_normal(float* out, long long n, int seed, int stream,
                                       double stdev) {
  unsigned long long key =
      init_mix64(((unsigned long long)(unsigned)seed << 32) | (unsigned long long)(unsigned)stream);
  const double two53 = 9007199254740992.0, twoPi = 6.283185307179586;
  GRID_STRIDE(j, (n + 1) / 2) {
    unsigned long long a = init_mix64(key ^ init_mix64(2ULL * (unsigned long long)j));
    unsigned long long b = init_mix64(key ^ init_mix64(2ULL * (unsigned long long)j + 1ULL));
    double u = (double)((a >> 11) + 1ULL) / two53, v = (double)(b >> 11) / two53;
    double r = sqrt(-2.0 * log(u));
    out[2 * j] = (float)(stdev * r * cos(twoPi * v));
    if (2 * j + 1 < n) out[2 * j + 1] = (float)(stdev * r * sin(twoPi * v));
  }
}
