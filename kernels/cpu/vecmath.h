// vecmath.h: lets OpenMP `simd` loops call glibc's vector math (libmvec: expf since 2.22,
// tanhf since 2.35) instead of one scalar call per element. glibc only declares these
// variants under -ffast-math, which would also change rounding elsewhere, so they are
// declared here, and only where this glibc has them.
#ifndef GPT2_VECMATH_H
#define GPT2_VECMATH_H
#include <math.h>

#if defined(__GLIBC__) && defined(__x86_64__)
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 22)
#pragma omp declare simd notinbranch
float expf(float);
#endif
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)
#pragma omp declare simd notinbranch
float tanhf(float);
#endif
#endif

#endif
