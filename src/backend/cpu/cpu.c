/* cpu.c - the CPU backend: host memory, synchronous copies, the vtable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"

static void cpu_free(struct djn_backend *be)
{
	struct cpu_ctx *c = be->ctx;

	djn_pool_free(c->pool);
	free(c->slots);
	free(c);
	free(be);
}

static void cpu_describe(struct djn_backend *be, char *buf, size_t n)
{
	snprintf(buf, n, "cpu (%d threads)", djn_pool_threads(cpu_pool(be)));
}

static enum djn_status cpu_mem_info(struct djn_backend *be, size_t *free_b, size_t *total_b)
{
	long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
	long psz = sysconf(_SC_PAGESIZE);

	*total_b = pages > 0 ? (size_t)pages * (size_t)psz : 0;
	*free_b = avail > 0 ? (size_t)avail * (size_t)psz : 0;
	return DJN_OK;
}

static void *cpu_alloc(struct djn_backend *be, size_t bytes)
{
	/* 64-byte aligned so rows can be vector-loaded; large, so checked. */
	void *p = NULL;

	if (posix_memalign(&p, 64, bytes ? bytes : 64)) {
		djn_err_set(&be->err, DJN_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
		return NULL;
	}
	return p;
}

static void cpu_dealloc(struct djn_backend *be, void *p)
{
	free(p);
}

static enum djn_status cpu_copy(struct djn_backend *be, void *dst, const void *src, size_t n)
{
	if (n)
		memmove(dst, src, n);
	return DJN_OK;
}

static enum djn_status cpu_memset0(struct djn_backend *be, void *dst, size_t n)
{
	memset(dst, 0, n);
	return DJN_OK;
}

static enum djn_status cpu_copy_pages(struct djn_backend *be, void *contig, void *const *pages,
				      int n_pages, size_t page_bytes, bool to_pages)
{
	for (int i = 0; i < n_pages; i++) {
		char *c = (char *)contig + page_bytes * (size_t)i;
		if (to_pages)
			memcpy(pages[i], c, page_bytes);
		else
			memcpy(c, pages[i], page_bytes);
	}
	return DJN_OK;
}

static enum djn_status cpu_sync(struct djn_backend *be)
{
	return DJN_OK;
}

/* On the CPU there is nothing to overlap: compute now, hand back later. */
static enum djn_status cpu_stats_defer(struct djn_backend *be, const float *x, int64_t n,
				       int slot)
{
	struct cpu_ctx *c = be->ctx;

	if (slot < 0 || slot >= DJN_STATS_SLOTS)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "stats slot %d out of range", slot);
	djn_stats_f32(x, n, &c->slots[slot]);
	return DJN_OK;
}

static enum djn_status cpu_stats_collect(struct djn_backend *be, struct djn_stats *out,
					 int n_slots)
{
	struct cpu_ctx *c = be->ctx;

	if (n_slots < 0 || n_slots > DJN_STATS_SLOTS)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "%d stats slots asked", n_slots);
	memcpy(out, c->slots, sizeof(*out) * (size_t)n_slots);
	return DJN_OK;
}

/* Streams and events on the CPU: every copy is done when the call returns,
 * so an event is only a token (never NULL, so callers can check it). */
static void *cpu_host_alloc(struct djn_backend *be, size_t bytes, bool *pinned)
{
	*pinned = false; /* nothing to pin: the "device" is this memory */
	return cpu_alloc(be, bytes);
}

static void cpu_host_free(struct djn_backend *be, void *p, bool pinned)
{
	free(p);
}

static struct djn_event *cpu_event_new(struct djn_backend *be)
{
	return djn_xmalloc(1);
}

static void cpu_event_free(struct djn_backend *be, struct djn_event *ev)
{
	free(ev);
}

static enum djn_status cpu_event_op(struct djn_backend *be, struct djn_event *ev, int stream)
{
	return DJN_OK;
}

static enum djn_status cpu_event_wait(struct djn_backend *be, int stream, struct djn_event *ev)
{
	return DJN_OK;
}

static enum djn_status cpu_event_sync(struct djn_backend *be, struct djn_event *ev)
{
	return DJN_OK;
}

static bool cpu_event_done(struct djn_backend *be, struct djn_event *ev)
{
	return true; /* every copy happened at its call */
}

static enum djn_status cpu_copy_async(struct djn_backend *be, void *dst, const void *src,
				      size_t n, int stream)
{
	return cpu_copy(be, dst, src, n);
}

static enum djn_status cpu_stats_defer_many(struct djn_backend *be, const float *const *xs,
					    const int64_t *ns, int n, int slot0)
{
	enum djn_status st = DJN_OK;

	for (int i = 0; i < n && !st; i++)
		st = cpu_stats_defer(be, xs[i], ns[i], slot0 + i);
	return st;
}

static const struct djn_backend_i cpu_i = {
	.name = "cpu",
	.free = cpu_free,
	.describe = cpu_describe,
	.mem_info = cpu_mem_info,
	.alloc = cpu_alloc,
	.dealloc = cpu_dealloc,
	.copy_h2d = cpu_copy,
	.copy_d2h = cpu_copy,
	.copy_d2d = cpu_copy,
	.memset0 = cpu_memset0,
	.copy_pages = cpu_copy_pages,
	.sync = cpu_sync,
	.embed = cpu_embed,
	.rmsnorm = cpu_rmsnorm,
	.layernorm = cpu_layernorm,
	.matmul = cpu_matmul,
	.rope = cpu_rope,
	.kv_store = cpu_kv_store,
	.attention = cpu_attention,
	.rope_rows = cpu_rope_rows,
	.kv_store_rows = cpu_kv_store_rows,
	.attention_rows = cpu_attention_rows,
	.argmax_rows = cpu_argmax_rows,
	.swiglu = cpu_swiglu,
	.gelu = cpu_gelu,
	.add = cpu_add,
	.axpby = cpu_axpby,
	.softmax = cpu_softmax,
	.argmax = cpu_argmax,
	.stats = cpu_stats,
	.stats_defer = cpu_stats_defer,
	.stats_collect = cpu_stats_collect,
	.stats_defer_many = cpu_stats_defer_many,
	.host_alloc = cpu_host_alloc,
	.host_free = cpu_host_free,
	.event_new = cpu_event_new,
	.event_free = cpu_event_free,
	.event_record = cpu_event_op,
	.event_wait = cpu_event_wait,
	.event_sync = cpu_event_sync,
	.event_done = cpu_event_done,
	.copy_h2d_async = cpu_copy_async,
	.copy_d2h_async = cpu_copy_async,
};

struct djn_backend *djn_backend_cpu_new(int n_threads, struct djn_err *err)
{
	struct djn_backend *be = djn_xcalloc(1, sizeof(*be));
	struct cpu_ctx *c = djn_xcalloc(1, sizeof(*c));

	if (n_threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
	}
	c->pool = djn_pool_new(n_threads);
	c->slots = djn_xcalloc(DJN_STATS_SLOTS, sizeof(*c->slots));
	be->i = &cpu_i;
	be->ctx = c;
	be->host_memory = true;
	return be;
}
