/* pool.c - a fixed pool of worker threads; one job in flight at a time,
 * which is all a forward pass needs (ops are issued in order). */
#include <pthread.h>
#include <stdlib.h>

#include "backend/cpu/pool.h"
#include "djinn/status.h"

struct djn_pool {
	int n_threads;
	pthread_t *threads;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	uint64_t gen;     /* bumped for each job */
	int pending;      /* workers still on the current job */
	int quit;
	djn_pool_fn fn;
	void *ctx;
	int64_t n;
};

struct worker_arg {
	struct djn_pool *p;
	int idx;
};

static void chunk(int64_t n, int parts, int idx, int64_t *b, int64_t *e)
{
	int64_t per = n / parts, rem = n % parts;

	*b = idx * per + (idx < rem ? idx : rem);
	*e = *b + per + (idx < rem);
}

static void *worker(void *arg)
{
	struct worker_arg *wa = arg;
	struct djn_pool *p = wa->p;
	int idx = wa->idx;
	uint64_t seen = 0;

	free(wa);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->quit && p->gen == seen)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->quit)
			break;
		seen = p->gen;
		djn_pool_fn fn = p->fn;
		void *ctx = p->ctx;
		int64_t b, e;
		chunk(p->n, p->n_threads, idx, &b, &e);
		pthread_mutex_unlock(&p->mu);
		if (b < e)
			fn(ctx, b, e);
		pthread_mutex_lock(&p->mu);
		if (--p->pending == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct djn_pool *djn_pool_new(int n_threads)
{
	struct djn_pool *p = djn_xcalloc(1, sizeof(*p));

	p->n_threads = n_threads < 1 ? 1 : n_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->threads = djn_xcalloc((size_t)p->n_threads, sizeof(pthread_t));
	for (int i = 1; i < p->n_threads; i++) {
		struct worker_arg *wa = djn_xmalloc(sizeof(*wa));
		wa->p = p;
		wa->idx = i;
		if (pthread_create(&p->threads[i], NULL, worker, wa)) {
			free(wa);
			p->n_threads = i; /* run with what we have */
			break;
		}
	}
	return p;
}

void djn_pool_free(struct djn_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->threads);
	free(p);
}

int djn_pool_threads(const struct djn_pool *p)
{
	return p->n_threads;
}

void djn_pool_for(struct djn_pool *p, int64_t n, int64_t min_per_thread,
		  djn_pool_fn fn, void *ctx)
{
	int64_t b, e;

	if (n <= 0)
		return;
	if (p->n_threads == 1 || n < 2 * min_per_thread) {
		fn(ctx, 0, n);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->ctx = ctx;
	p->n = n;
	p->pending = p->n_threads - 1;
	p->gen++;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	chunk(n, p->n_threads, 0, &b, &e);
	fn(ctx, b, e);
	pthread_mutex_lock(&p->mu);
	while (p->pending > 0)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}
