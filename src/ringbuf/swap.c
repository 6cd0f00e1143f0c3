/* swap.c - a session's KV pages out to a pinned host pool and back, on the
 * copy stream, so a paused session gives its device memory up and later
 * continues exactly where it was. */
#include <stdlib.h>
#include <time.h>

#include "djinn/ringbuf.h"
#include "djinn/vmu.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The pinned host pool: page-locked blocks shared by the swaps of every
 * session on a backend.  Pinning is slow (the OS locks every page: tens of
 * milliseconds a GiB, far more than the copy), so a session holds its block
 * from swap to swap, a freed session's block goes back to the pool for the
 * next one, and djn_swap_pool_reserve pins ahead of need.  The engine is
 * single-threaded: no lock.  Blocks go when the backend does. */
struct pool_block {
	struct pool_block *next;
	struct djn_backend *be;
	void *p;
	size_t bytes;
	bool pinned;
};

static struct pool_block *free_blocks;

static void pool_drain(struct djn_backend *be)
{
	for (struct pool_block **pp = &free_blocks; *pp;) {
		struct pool_block *b = *pp;
		if (b->be != be) {
			pp = &b->next;
			continue;
		}
		*pp = b->next;
		be->i->host_free(be, b->p, b->pinned);
		free(b);
	}
}

static void pool_give(struct djn_backend *be, void *p, size_t bytes, bool pinned)
{
	struct pool_block *b = djn_xmalloc(sizeof(*b));

	*b = (struct pool_block){ free_blocks, be, p, bytes, pinned };
	free_blocks = b;
	be->release_hook = pool_drain;
}

/* The smallest free block of be that holds bytes, taken out; NULL if none. */
static struct pool_block *pool_take(struct djn_backend *be, size_t bytes)
{
	struct pool_block **best = NULL;

	for (struct pool_block **pp = &free_blocks; *pp; pp = &(*pp)->next)
		if ((*pp)->be == be && (*pp)->bytes >= bytes && (!best || (*pp)->bytes < (*best)->bytes))
			best = pp;
	if (!best)
		return NULL;
	struct pool_block *b = *best;
	*best = b->next;
	return b;
}

enum djn_status djn_swap_pool_reserve(struct djn_backend *be, size_t bytes, size_t block,
				      struct djn_err *err)
{
	size_t have = 0;

	if (!block)
		return djn_err_set(err, DJN_ERR_INVALID, "swap pool: blocks of 0 bytes");
	for (struct pool_block *b = free_blocks; b; b = b->next)
		if (b->be == be)
			have += b->bytes;
	while (have < bytes) {
		bool pinned;
		void *p = be->i->host_alloc(be, block, &pinned);
		if (!p)
			return djn_err_set(err, DJN_ERR_NOMEM, "swap pool: %s", be->err.msg);
		pool_give(be, p, block, pinned);
		have += block;
	}
	return DJN_OK;
}

size_t djn_swap_pool_bytes(const struct djn_backend *be)
{
	size_t have = 0;

	for (struct pool_block *b = free_blocks; b; b = b->next)
		if (b->be == be)
			have += b->bytes;
	return have;
}

/* The session's block grows to its largest swap: a free block of the pool
 * when one is big enough, else a new one. */
static enum djn_status pool_reserve(struct djn_swap *sw, struct djn_backend *be, size_t bytes,
				    struct djn_err *err)
{
	struct pool_block *b;
	void *p;
	bool pinned;

	if (bytes <= sw->cap)
		return DJN_OK;
	if (sw->host) {
		/* copies queued on the copy stream may still read it */
		if (be->i->event_sync(be, sw->ev))
			return djn_err_set(err, DJN_ERR_DEVICE, "swap: %s", be->err.msg);
		pool_give(be, sw->host, sw->cap, sw->pinned);
		sw->host = NULL;
		sw->cap = 0;
	}
	if ((b = pool_take(be, bytes))) {
		sw->host = b->p;
		sw->cap = b->bytes;
		sw->pinned = b->pinned;
		free(b);
		return DJN_OK;
	}
	if (!(p = be->i->host_alloc(be, bytes, &pinned)))
		return djn_err_set(err, DJN_ERR_NOMEM, "swap: host pool: %s", be->err.msg);
	sw->host = p;
	sw->cap = bytes;
	sw->pinned = pinned;
	return DJN_OK;
}

enum djn_status djn_swap_out_begin(struct djn_swap *sw, struct djn_kv *kv, struct djn_err *err)
{
	struct djn_backend *be = kv->be;
	size_t pb = djn_kv_page_bytes(kv);
	int n = kv->view.n_pages;
	enum djn_status st;

	if (sw->out)
		return DJN_OK;
	sw->be = be;
	if (!sw->ev && !(sw->ev = be->i->event_new(be)))
		return djn_err_set(err, DJN_ERR_DEVICE, "swap: %s", be->err.msg);
	if ((st = pool_reserve(sw, be, (size_t)n * pb, err)))
		return st;
	sw->t_begin = now_ms();
	/* the pages are final once the compute queued so far has run */
	if ((st = be->i->event_record(be, sw->ev, DJN_STREAM_COMPUTE)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COPY, sw->ev)))
		goto out_fail;
	for (int i = 0; i < n; i++)
		if ((st = be->i->copy_d2h_async(be, (char *)sw->host + (size_t)i * pb,
						kv->host_table[i], pb, DJN_STREAM_COPY)))
			goto out_fail;
	/* the device pages can go only when their bytes are on the host */
	if ((st = be->i->event_record(be, sw->ev, DJN_STREAM_COPY)))
		goto out_fail;
	sw->last_bytes = (size_t)n * pb;
	sw->n_out++;
	sw->bytes_out += sw->last_bytes;
	kv->view.n_pages = 0; /* the pages stay in host_table until finished */
	sw->n_pages = n;
	sw->out = true;
	sw->pending = true;
	return DJN_OK;

out_fail:
	/* copies queued before the failure may still read the pages: they
	 * stay the cache's, and the pool block waits for them */
	(void)be->i->event_record(be, sw->ev, DJN_STREAM_COPY);
	(void)be->i->event_sync(be, sw->ev);
	return djn_err_set(err, st, "swap out: %s", be->err.msg);
}

enum djn_status djn_swap_finish(struct djn_swap *sw, struct djn_kv *kv, bool wait,
				struct djn_err *err)
{
	struct djn_backend *be = kv->be;
	enum djn_status st;

	if (!sw->pending)
		return DJN_OK;
	if (!wait && !be->i->event_done(be, sw->ev))
		return DJN_OK;
	if ((st = be->i->event_sync(be, sw->ev)))
		return djn_err_set(err, st, "swap out: %s", be->err.msg);
	/* the copies and whatever waited with them: exact when waited for at
	 * once (djn_swap_out), an upper bound when found done later */
	sw->last_ms = now_ms() - sw->t_begin;
	sw->ms_out += sw->last_ms;
	for (int i = 0; i < sw->n_pages; i++) {
		djn_kv_page_free(kv, kv->host_table[i]);
		kv->host_table[i] = NULL;
	}
	sw->pending = false;
	return DJN_OK;
}

enum djn_status djn_swap_out(struct djn_swap *sw, struct djn_kv *kv, struct djn_err *err)
{
	enum djn_status st;

	if (sw->out)
		return djn_swap_finish(sw, kv, true, err);
	if ((st = djn_swap_out_begin(sw, kv, err)))
		return st;
	return djn_swap_finish(sw, kv, true, err);
}

enum djn_status djn_swap_in(struct djn_swap *sw, struct djn_kv *kv, struct djn_err *err)
{
	struct djn_backend *be = kv->be;
	size_t pb = djn_kv_page_bytes(kv);
	int n = sw->n_pages, got = 0;
	enum djn_status st = DJN_OK;
	double t0;

	if (!sw->out)
		return DJN_OK;
	DJN_ASSERT(kv->view.n_pages == 0);
	if (sw->pending) {
		/* back before the pages went: they are as they were (the copy
		 * of them is dropped, nothing wrote them), the page table too */
		kv->view.n_pages = n;
		sw->out = sw->pending = false;
		sw->n_pages = 0;
		sw->n_in++;
		sw->last_bytes = 0;
		sw->last_ms = 0;
		return DJN_OK;
	}
	for (got = 0; got < n; got++) {
		if (!(kv->host_table[got] = djn_kv_page_alloc(kv))) {
			char need[32];
			djn_size_str((size_t)n * pb, need, sizeof(need));
			st = djn_err_set(err, DJN_ERR_NOMEM,
					 "swap in: %d KV pages (%s): %s", n, need, be->err.msg);
			goto out_free;
		}
	}
	t0 = now_ms();
	/* a kept page may still be read by compute queued for the session
	 * that gave it back: the copies into it come after that */
	if ((st = be->i->event_record(be, sw->ev, DJN_STREAM_COMPUTE)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COPY, sw->ev)))
		goto out_copy;
	for (int i = 0; i < n; i++)
		if ((st = be->i->copy_h2d_async(be, kv->host_table[i],
						(char *)sw->host + (size_t)i * pb, pb,
						DJN_STREAM_COPY)))
			goto out_copy;
	/* compute reads the pages only after they landed; the pool is free
	 * for the next swap once the copy stream passes sw->ev */
	if ((st = be->i->event_record(be, sw->ev, DJN_STREAM_COPY)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COMPUTE, sw->ev)))
		goto out_copy;
	if (!be->host_memory && n > 0 &&
	    (st = be->i->copy_h2d(be, kv->dev_table, kv->host_table, sizeof(float *) * (size_t)n)))
		goto out_copy;
	kv->view.n_pages = n;
	sw->out = false;
	sw->n_pages = 0;
	sw->last_bytes = (size_t)n * pb;
	sw->last_ms = now_ms() - t0;
	sw->n_in++;
	sw->bytes_in += sw->last_bytes;
	sw->ms_in += sw->last_ms;
	return DJN_OK;

out_copy:
	djn_err_set(err, st, "swap in: %s", be->err.msg);
	/* the copies may still be reading the pool into pages about to go */
	(void)be->i->event_record(be, sw->ev, DJN_STREAM_COPY);
	(void)be->i->event_sync(be, sw->ev);
out_free:
	for (int i = 0; i < got; i++) {
		djn_kv_page_free(kv, kv->host_table[i]);
		kv->host_table[i] = NULL;
	}
	return st;
}

void djn_swap_release(struct djn_swap *sw)
{
	struct djn_backend *be = sw->be;

	if (be) {
		if (sw->ev && !be->poisoned)
			(void)be->i->event_sync(be, sw->ev);
		/* the block stays pinned, for the next session's swaps; a
		 * poisoned device's goes (copies may never have ended) */
		if (sw->host && !be->poisoned)
			pool_give(be, sw->host, sw->cap, sw->pinned);
		else if (sw->host)
			be->i->host_free(be, sw->host, sw->pinned);
		be->i->event_free(be, sw->ev);
	}
	*sw = (struct djn_swap){ 0 };
}
