// sum_of_squares.c: the sum of squares of n values in double (for the global gradient norm).
#include "parallel.h"

double sum_of_squares(const float* x, long n) {
  double s = 0;
#pragma omp parallel for simd reduction(+ : s) if (n >= PAR_MIN_ELEMENTS)
  for (long i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}
