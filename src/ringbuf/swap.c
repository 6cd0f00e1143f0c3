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

/* The pool grows to the largest swap and is kept: pinning is slow (the OS
 * locks every page), and a session swapped once is likely to be again. */
static enum djn_status pool_reserve(struct djn_swap *sw, struct djn_backend *be, size_t bytes,
				    struct djn_err *err)
{
	void *p;
	bool pinned;

	if (bytes <= sw->cap)
		return DJN_OK;
	if (sw->host) {
		/* copies queued on the copy stream may still read it */
		if (be->i->event_sync(be, sw->ev))
			return djn_err_set(err, DJN_ERR_DEVICE, "swap: %s", be->err.msg);
		be->i->host_free(be, sw->host, sw->pinned);
		sw->host = NULL;
		sw->cap = 0;
	}
	if (!(p = be->i->host_alloc(be, bytes, &pinned)))
		return djn_err_set(err, DJN_ERR_NOMEM, "swap: host pool: %s", be->err.msg);
	sw->host = p;
	sw->cap = bytes;
	sw->pinned = pinned;
	return DJN_OK;
}

enum djn_status djn_swap_out(struct djn_swap *sw, struct djn_kv *kv, struct djn_err *err)
{
	struct djn_backend *be = kv->be;
	size_t pb = djn_kv_page_bytes(kv);
	int n = kv->view.n_pages;
	enum djn_status st;
	double t0;

	if (sw->out)
		return DJN_OK;
	sw->be = be;
	if (!sw->ev && !(sw->ev = be->i->event_new(be)))
		return djn_err_set(err, DJN_ERR_DEVICE, "swap: %s", be->err.msg);
	if ((st = pool_reserve(sw, be, (size_t)n * pb, err)))
		return st;
	t0 = now_ms();
	/* the pages are final once the compute queued so far has run */
	if ((st = be->i->event_record(be, sw->ev, DJN_STREAM_COMPUTE)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COPY, sw->ev)))
		goto out_fail;
	for (int i = 0; i < n; i++)
		if ((st = be->i->copy_d2h_async(be, (char *)sw->host + (size_t)i * pb,
						kv->host_table[i], pb, DJN_STREAM_COPY)))
			goto out_fail;
	/* the device pages can go only when their bytes are on the host */
	if ((st = be->i->event_record(be, sw->ev, DJN_STREAM_COPY)) ||
	    (st = be->i->event_sync(be, sw->ev)))
		goto out_fail;
	sw->last_ms = now_ms() - t0; /* the copies, not the frees */
	sw->last_bytes = (size_t)n * pb;
	sw->n_out++;
	sw->bytes_out += sw->last_bytes;
	sw->ms_out += sw->last_ms;
	for (int i = 0; i < n; i++) {
		djn_kv_page_free(kv, kv->host_table[i]);
		kv->host_table[i] = NULL;
	}
	kv->view.n_pages = 0;
	sw->n_pages = n;
	sw->out = true;
	return DJN_OK;

out_fail:
	return djn_err_set(err, st, "swap out: %s", be->err.msg);
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
		if (sw->host)
			be->i->host_free(be, sw->host, sw->pinned);
		be->i->event_free(be, sw->ev);
	}
	*sw = (struct djn_swap){ 0 };
}
