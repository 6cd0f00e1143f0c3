/* cuda_check.cuh - the benchmarks' CUDA call check: a failed call prints
 * where and why, and the program exits 1. */
#ifndef DJINN_BENCH_CUDA_CHECK_CUH
#define DJINN_BENCH_CUDA_CHECK_CUH

#include <cstdio>
#include <cstdlib>

#include <cuda_runtime.h>

#define CK(x)                                                                          \
	do {                                                                           \
		cudaError_t e_ = (x);                                                  \
		if (e_ != cudaSuccess) {                                               \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,     \
				cudaGetErrorString(e_));                               \
			exit(1);                                                       \
		}                                                                      \
	} while (0)

#endif
