// allocator.c: keeps freed memory in glibc's heap for reuse, instead of handing it back.
//
// V8 backs every ArrayBuffer, so every tensor, with glibc's calloc. By default a block of
// 128 KiB or more gets its own mmap and free unmaps it, and the heap's top is trimmed past
// 128 KiB: each training step then page-faults its activations and gradients in afresh, one
// fault per 4 KiB (GPT-2 tiny at B=8, T=128: 1.5 million faults and 9 s of kernel time in 8
// steps, 40% of the step). With mmap off and trimming past 2 GiB only, a freed tensor's pages
// stay mapped and the next step's tensors of the same sizes reuse them.
#include <limits.h>
#include <malloc.h>

// Returns 1 when both settings took, 0 otherwise (a libc without mallopt's options).
int gpt2_keep_freed_memory(void) {
  int ok = mallopt(M_MMAP_MAX, 0);
  ok &= mallopt(M_TRIM_THRESHOLD, INT_MAX);
  return ok;
}
