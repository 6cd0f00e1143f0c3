/* pool.h - a fixed thread pool for the CPU backend's parallel loops. */
#ifndef DJINN_CPU_POOL_H
#define DJINN_CPU_POOL_H

#include <stdint.h>

struct djn_pool;

/* n_threads workers including the caller (n_threads - 1 are spawned). */
struct djn_pool *djn_pool_new(int n_threads);
void djn_pool_free(struct djn_pool *p);
int djn_pool_threads(const struct djn_pool *p);

/* Run fn(ctx, begin, end) over [0, n) split into contiguous chunks, one per
 * thread, and wait for all of them.  Small n runs inline. */
typedef void (*djn_pool_fn)(void *ctx, int64_t begin, int64_t end);
void djn_pool_for(struct djn_pool *p, int64_t n, int64_t min_per_thread,
		  djn_pool_fn fn, void *ctx);

#endif
