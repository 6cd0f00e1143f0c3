/* bench_util.h - the timing helpers the benchmark programs share: a monotonic
 * clock in milliseconds and a comparison of doubles for qsort (medians). */
#ifndef DJINN_BENCH_UTIL_H
#define DJINN_BENCH_UTIL_H

#include <time.h>

static inline double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

#endif
