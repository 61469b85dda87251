// parallel.h: when an elementwise kernel is worth both threads.
// A sleeping OpenMP thread (OMP_WAIT_POLICY=PASSIVE, so that it leaves the cores to the GEMM's
// own threads) takes tens of microseconds to wake: the 148 sums of squares of GPT-2's gradients
// for clipping took 10 ms this way, most of the tensors being 768-element biases and gains.
// Below this many elements a kernel runs on the calling thread alone.
#ifndef GPT2_PARALLEL_H
#define GPT2_PARALLEL_H
#define PAR_MIN_ELEMENTS 65536L
#endif
