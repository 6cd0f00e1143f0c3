/* pool.c - the shared VRAM pool: several models' layers under one budget on
 * a backend, brought in when needed, the least recently used evicted, and a
 * slot for what does not fit.  Everything the pool places on the device
 * (layers, embeddings and heads, slots) is a range of one allocation made
 * with the pool (region.c): a switch or an eviction makes no device call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "djinn/progress.h"
#include "djinn/ringbuf.h"
#include "djinn/vmu.h"
#include "ringbuf/pool.h"
#include "ringbuf/region.h"

/* Host copies are made in chunks about this big (as the ring's are). */
#define HOST_CHUNK ((size_t)1 << 30)

struct pool_layer {
	int n_w;
	struct djn_weight *w[DJN_RING_BLOCK_MAX_WEIGHTS];
	size_t off[DJN_RING_BLOCK_MAX_WEIGHTS];
	size_t bytes;
	char *host;              /* the host copy, laid out as on the device */
	char *frame;             /* its range of the region while resident, else NULL */
	struct djn_event *ready; /* copy stream: the frame is filled */
	bool pending;            /* the compute stream has not waited on ready yet */
	bool open;               /* begun, not ended: a session may be stopped inside */
	bool streamed;           /* not resident, and its last use was through the slot */
	bool in_slot;            /* its bytes are in the slot (or on their way) */
	uint64_t used;           /* the pool's clock at its last begin */
};

struct host_chunk {
	char *p;
	bool pinned;
};

struct djn_pool;

struct djn_pooled {
	struct djn_pool *pool;
	struct djn_pooled *next;    /* the pool's members */
	struct djn_model *m;
	struct djn_backend *be;
	int n;
	struct pool_layer *L;
	size_t fixed, working_set, largest;
	struct host_chunk *chunk;
	int n_chunks;
	bool pinned;
	bool ws_held;               /* the working set is counted in the pool */
	char host_note[DJN_ERRMSG_MAX];

	/* the embedding and head blocks (0, n_layer + 1): ranges of the region
	 * for as long as the model is in the pool */
	struct pool_layer top[2];
	struct djn_event *top_ready;

	/* the slot for layers that cannot be made resident */
	char *slot;
	struct djn_event *slot_ready, *slot_done;
	int slot_layer;             /* whose bytes are in the slot, or -1 */
	int pointed;                /* the layer whose weights point at the slot, or -1 */

	int last_admitted;          /* the layer whose copy was queued last, or -1 */
	int n_resident;             /* layers with a frame */
	uint64_t key;               /* new whenever a frame comes or goes (graph keys) */
	long n_admitted, n_evicted, n_stream_copies;
	size_t bytes_admitted, bytes_streamed;
	struct djn_ring_plan plan;  /* what djn_ring_plan shows, refreshed on demand */
};

/* One per backend, made with its first member and freed with its last.
 * `used` counts against the budget: every member's fixed part (its
 * embedding and head, in the region, and its working set, which its
 * sessions allocate outside it) and the layers and slots in the region. */
struct djn_pool {
	struct djn_backend *be;
	size_t budget, used;
	uint64_t clock;
	struct djn_pooled *members;
	struct djn_pool *next;
	char *base;                 /* the region's one allocation */
	struct djn_region region;
	/* A range given back may still be read by kernels queued on the
	 * compute stream; the next copy into the region waits for them (an
	 * event, not the host) when `fence` says a range was given back. */
	struct djn_event *fence_ev;
	bool fence;
	long n_evicted_now;         /* evictions so far, for a switch's count */
};

static struct djn_pool *pools; /* the engine is single-threaded: no lock */
static uint64_t keys;          /* the last graph key given out */

static struct djn_pool *pool_of(struct djn_backend *be, bool make)
{
	struct djn_pool *p;

	for (p = pools; p; p = p->next)
		if (p->be == be)
			return p;
	if (!make)
		return NULL;
	p = djn_xcalloc(1, sizeof(*p));
	p->be = be;
	p->next = pools;
	pools = p;
	return p;
}

static void pool_drop_if_empty(struct djn_pool *p)
{
	if (p->members)
		return;
	for (struct djn_pool **pp = &pools; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (p->base)
		p->be->i->dealloc(p->be, p->base); /* waits for what still reads it */
	p->be->i->event_free(p->be, p->fence_ev);
	djn_region_release(&p->region);
	free(p);
}

/* The region, made with the pool's first member: the budget less that
 * member's working set (which its sessions allocate themselves), or less
 * when the device has not that much free (the budget is then planned for
 * what is free, keeping room for the working set and the backend's own
 * buffers).  A later member's working set is counted against the budget
 * but lies outside the region. */
static enum djn_status region_make(struct djn_pool *pool, size_t working_set,
				   struct djn_err *err)
{
	struct djn_backend *be = pool->be;
	size_t cap = pool->budget > working_set ? pool->budget - working_set : 0;
	size_t free_b = 0, total_b = 0;
	char a[32], b[32];

	djn_backend_trim(be); /* memory kept for reuse is free to plan with */
	if (!be->i->mem_info(be, &free_b, &total_b) && free_b) {
		size_t keep = working_set + (free_b / 32 > ((size_t)256 << 20) ? free_b / 32
									  : (size_t)256 << 20);
		size_t room = free_b > keep ? free_b - keep : 0;
		if (room < cap) {
			djn_size_str(pool->budget, a, sizeof(a));
			djn_size_str(free_b, b, sizeof(b));
			fprintf(stderr, "warning: shared pool: vram budget %s is above the free "
				"memory (%s): the pool's region is planned for what is free\n", a, b);
			cap = room;
		}
	}
	cap &= ~(size_t)(DJN_RING_ALIGN - 1);
	if (!(pool->fence_ev = be->i->event_new(be)))
		return djn_err_set(err, DJN_ERR_DEVICE, "shared pool: events: %s", be->err.msg);
	if (cap && !(pool->base = be->i->alloc(be, cap))) {
		djn_size_str(cap, a, sizeof(a));
		return djn_err_set(err, DJN_ERR_NOMEM, "shared pool: a region of %s: %s", a,
				   be->err.msg);
	}
	djn_region_init(&pool->region, cap, DJN_RING_ALIGN);
	return DJN_OK;
}

static size_t align_up(size_t n)
{
	return (n + DJN_RING_ALIGN - 1) & ~(size_t)(DJN_RING_ALIGN - 1);
}

static void point(struct pool_layer *L, char *base)
{
	for (int i = 0; i < L->n_w; i++)
		L->w[i]->dev = base ? base + L->off[i] : NULL;
}

/* Give a range back to the region: no device call.  Kernels queued on the
 * compute stream may still read it; the next copy into the region waits
 * for them (the fence). */
static void give_back(struct djn_pool *pool, char *frame, size_t bytes)
{
	size_t n = djn_region_free(&pool->region, (size_t)(frame - pool->base));

	DJN_ASSERT(n == align_up(bytes));
	pool->used -= bytes;
	pool->fence = true;
}

/* Before a copy into the region on the copy stream: if a range was given
 * back since the last one, wait (on the device) for the compute queued so
 * far, which may still read what the copy overwrites. */
static enum djn_status fence(struct djn_pool *pool)
{
	struct djn_backend *be = pool->be;
	enum djn_status st;

	if (!pool->fence)
		return DJN_OK;
	if ((st = be->i->event_record(be, pool->fence_ev, DJN_STREAM_COMPUTE)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COPY, pool->fence_ev)))
		return st;
	pool->fence = false;
	return DJN_OK;
}

static void evict(struct djn_pooled *q, int l)
{
	struct pool_layer *L = &q->L[l];

	DJN_ASSERT(L->frame && !L->open);
	point(L, NULL);
	give_back(q->pool, L->frame, L->bytes);
	L->frame = NULL;
	L->pending = false;
	q->n_resident--;
	q->key = ++keys;
	q->n_evicted++;
	q->pool->n_evicted_now++;
}

/* The least recently used layer of the other members that may go: resident,
 * not begun-and-not-ended. */
static bool lru_victim(struct djn_pool *pool, const struct djn_pooled *self,
		       struct djn_pooled **out_q, int *out_l)
{
	struct djn_pooled *best = NULL;
	int best_l = -1;

	for (struct djn_pooled *q = pool->members; q; q = q->next) {
		if (q == self)
			continue;
		for (int l = 0; l < q->n; l++) {
			struct pool_layer *L = &q->L[l];
			if (!L->frame || L->open)
				continue;
			if (!best || L->used < best->L[best_l].used) {
				best = q;
				best_l = l;
			}
		}
	}
	*out_q = best;
	*out_l = best_l;
	return best != NULL;
}

/* Count bytes against the budget, evicting others' layers as needed; with
 * a frame, also a range of the region for them (from its top when `high`),
 * evicting further until one is free (first fit leaves holes when sizes
 * differ: the least recently used go on until coalescing opens one).
 * false when that is not enough (what was evicted stays evicted). */
static bool reserve(struct djn_pool *pool, const struct djn_pooled *self, size_t bytes,
		    char **frame, bool high)
{
	struct djn_pooled *q;
	size_t off;
	int l;

	/* fail early, evicting nothing, when even every evictable layer is short */
	size_t could = pool->budget > pool->used ? pool->budget - pool->used : 0;
	for (struct djn_pooled *o = pool->members; o && could < bytes; o = o->next)
		if (o != self)
			for (int k = 0; k < o->n; k++)
				if (o->L[k].frame && !o->L[k].open)
					could += o->L[k].bytes;
	if (could < bytes)
		return false;
	while (pool->used + bytes > pool->budget ||
	       (frame && !djn_region_fits(&pool->region, bytes))) {
		if (!lru_victim(pool, self, &q, &l))
			return false;
		evict(q, l);
	}
	if (frame) {
		if (djn_region_alloc(&pool->region, bytes, high, &off, NULL))
			return false; /* fits said it does */
		*frame = pool->base + off;
	}
	pool->used += bytes;
	return true;
}

/* "region R, largest free range F" into buf, for messages. */
static const char *region_note(const struct djn_pool *pool, char *buf, size_t n)
{
	char a[32], b[32];

	djn_size_str(pool->region.cap, a, sizeof(a));
	djn_size_str(djn_region_largest_free(&pool->region), b, sizeof(b));
	snprintf(buf, n, "region %s, largest free range %s", a, b);
	return buf;
}

/* Queue the copy of layer l into a range of the region; false when there
 * is no room for it (nothing of p changed).  Errors of the copy itself are
 * returned. */
static enum djn_status admit(struct djn_pooled *p, int l, bool *ok, struct djn_err *err)
{
	struct pool_layer *L = &p->L[l];
	struct djn_backend *be = p->be;
	enum djn_status st;

	*ok = false;
	if (!reserve(p->pool, p, L->bytes, &L->frame, false))
		return DJN_OK;
	if ((st = fence(p->pool)) ||
	    (st = be->i->copy_h2d_async(be, L->frame, L->host, L->bytes, DJN_STREAM_COPY)) ||
	    (st = be->i->event_record(be, L->ready, DJN_STREAM_COPY))) {
		give_back(p->pool, L->frame, L->bytes);
		L->frame = NULL;
		return djn_err_set(err, st, "%s: copying L%d into the pool: %s", p->m->name, l,
				   be->err.msg);
	}
	if (L->in_slot && p->pointed == l)
		p->pointed = -1;
	point(L, L->frame);
	L->pending = true;
	L->streamed = false;
	p->n_resident++;
	p->key = ++keys;
	p->n_admitted++;
	p->bytes_admitted += L->bytes;
	p->last_admitted = l;
	*ok = true;
	return DJN_OK;
}

/* Bring in every missing layer, from `from` on and around: in the order the
 * run needs them, so the compute waits least.  Stops at the first that does
 * not fit (those after it would need the same room). */
static enum djn_status admit_all(struct djn_pooled *p, int from, size_t *bytes, int *n,
				 struct djn_err *err)
{
	enum djn_status st;
	bool ok;

	for (int i = 0; i < p->n; i++) {
		int l = (from + i) % p->n;
		if (p->L[l].frame)
			continue;
		if ((st = admit(p, l, &ok, err)))
			return st;
		if (!ok)
			break;
		if (bytes)
			*bytes += p->L[l].bytes;
		if (n)
			(*n)++;
	}
	return DJN_OK;
}

/* Copy layer l into the slot once the compute queued so far is past
 * whatever read it. */
static enum djn_status slot_load(struct djn_pooled *p, int l, struct djn_err *err)
{
	struct djn_backend *be = p->be;
	struct pool_layer *L = &p->L[l];
	enum djn_status st;

	if (p->slot_layer >= 0) {
		p->L[p->slot_layer].in_slot = false;
		if (p->pointed == p->slot_layer)
			point(&p->L[p->slot_layer], NULL);
	}
	p->pointed = -1;
	p->slot_layer = -1;
	if ((st = be->i->event_record(be, p->slot_done, DJN_STREAM_COMPUTE)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COPY, p->slot_done)) ||
	    (st = be->i->copy_h2d_async(be, p->slot, L->host, L->bytes, DJN_STREAM_COPY)) ||
	    (st = be->i->event_record(be, p->slot_ready, DJN_STREAM_COPY)))
		return djn_err_set(err, st, "%s: streaming L%d: %s", p->m->name, l, be->err.msg);
	p->slot_layer = l;
	L->in_slot = true;
	p->n_stream_copies++;
	p->bytes_streamed += L->bytes;
	return DJN_OK;
}

static enum djn_status slot_make(struct djn_pooled *p, struct djn_err *err)
{
	char sz[32];

	if (p->slot)
		return DJN_OK;
	djn_size_str(p->largest, sz, sizeof(sz));
	/* the model does not fit beside the others: give up its own least
	 * recently used layers for the slot if need be (it streams them) */
	bool ok;
	while (!(ok = reserve(p->pool, p, p->largest, &p->slot, true))) {
		int v = -1;
		for (int l = 0; l < p->n; l++)
			if (p->L[l].frame && !p->L[l].open &&
			    (v < 0 || p->L[l].used < p->L[v].used))
				v = l;
		if (v < 0)
			break;
		evict(p, v);
	}
	if (!ok) {
		char note[96];
		return djn_err_set(err, DJN_ERR_NOMEM,
				   "%s: no room in the shared pool for a slot of %s to stream "
				   "through (%s; the rest is held by layers that paused sessions "
				   "are stopped in)", p->m->name, sz,
				   region_note(p->pool, note, sizeof(note)));
	}
	/* slot_load waits for the compute queued so far before each copy */
	return DJN_OK;
}

enum djn_status djn_pooled_begin(struct djn_pooled *p, int layer, struct djn_err *err)
{
	struct pool_layer *L = &p->L[layer];
	struct djn_backend *be = p->be;
	enum djn_status st;

	L->used = ++p->pool->clock;
	L->open = true;
	if (!L->frame && !(L->in_slot && p->pointed == layer)) {
		/* missing: bring it in with every other missing layer, or stream it */
		if ((st = admit_all(p, layer, NULL, NULL, err)))
			return st;
		if (!L->frame) {
			if ((st = slot_make(p, err)))
				return st;
			if (!L->in_slot && (st = slot_load(p, layer, err)))
				return st;
			if ((st = be->i->event_wait(be, DJN_STREAM_COMPUTE, p->slot_ready)))
				return djn_err_set(err, st, "%s: waiting for L%d: %s", p->m->name,
						   layer, be->err.msg);
			point(L, p->slot);
			p->pointed = layer;
			L->streamed = true;
			return DJN_OK;
		}
	}
	if (L->pending) {
		if ((st = be->i->event_wait(be, DJN_STREAM_COMPUTE, L->ready)))
			return djn_err_set(err, st, "%s: waiting for L%d: %s", p->m->name, layer,
					   be->err.msg);
		L->pending = false;
	}
	return DJN_OK;
}

enum djn_status djn_pooled_end(struct djn_pooled *p, int layer, struct djn_err *err)
{
	struct pool_layer *L = &p->L[layer];

	L->open = false;
	if (L->frame || !L->in_slot)
		return DJN_OK;
	/* the slot is free once this layer's kernels ran: prefetch the next
	 * layer that streams, so its copy overlaps the resident ones between */
	for (int i = 1; i < p->n; i++) {
		int l = (layer + i) % p->n;
		if (!p->L[l].frame)
			return slot_load(p, l, err);
	}
	return DJN_OK;
}

uint64_t djn_pooled_graph_key(const struct djn_pooled *p)
{
	return p->n_resident == p->n ? p->key : 0;
}

enum djn_status djn_pooled_graph_prepare(struct djn_pooled *p, struct djn_err *err)
{
	struct djn_backend *be = p->be;
	enum djn_status st;

	DJN_ASSERT(p->n_resident == p->n);
	for (int l = 0; l < p->n; l++) {
		struct pool_layer *L = &p->L[l];
		L->used = ++p->pool->clock;
		if (!L->pending)
			continue;
		if ((st = be->i->event_wait(be, DJN_STREAM_COMPUTE, L->ready)))
			return djn_err_set(err, st, "%s: waiting for L%d: %s", p->m->name, l,
					   be->err.msg);
		L->pending = false;
	}
	return DJN_OK;
}

bool djn_pooled_streams(const struct djn_pooled *p, int layer)
{
	return layer >= 0 && layer < p->n && !p->L[layer].frame;
}

/* ---- making and freeing */

/* Host chunks, and each layer's place in one: layers packed whole. */
static enum djn_status host_copies(struct djn_pooled *p, struct djn_err *err)
{
	struct djn_backend *be = p->be;
	size_t *chunk_bytes = djn_xcalloc((size_t)p->n, sizeof(size_t));
	size_t *at = djn_xcalloc((size_t)p->n, sizeof(size_t));
	int *chunk_of = djn_xcalloc((size_t)p->n, sizeof(int));
	enum djn_status st = DJN_OK;
	size_t total = 0, done = 0;
	int c = -1;

	for (int l = 0; l < p->n; l++) {
		size_t b = p->L[l].bytes;
		if (c < 0 || (chunk_bytes[c] + b > HOST_CHUNK && chunk_bytes[c] > 0))
			c++;
		chunk_of[l] = c;
		at[l] = chunk_bytes[c];
		chunk_bytes[c] += b;
		total += b;
	}
	p->n_chunks = c + 1;
	p->chunk = djn_xcalloc((size_t)p->n_chunks, sizeof(*p->chunk));
	p->pinned = true;
	for (int i = 0; i < p->n_chunks; i++) {
		p->chunk[i].p = be->i->host_alloc(be, chunk_bytes[i], &p->chunk[i].pinned);
		if (!p->chunk[i].p) {
			char sz[32];
			djn_size_str(chunk_bytes[i], sz, sizeof(sz));
			st = djn_err_set(err, DJN_ERR_NOMEM, "%s: host memory for %s of layers: %s",
					 p->m->name, sz, be->err.msg);
			goto out_free;
		}
		if (!p->chunk[i].pinned && p->pinned) {
			p->pinned = false;
			snprintf(p->host_note, sizeof(p->host_note), "%s",
				 be->host_memory ? "the cpu backend needs no pinning" : be->err.msg);
		}
	}
	for (int l = 0; l < p->n; l++) {
		struct pool_layer *L = &p->L[l];
		L->host = p->chunk[chunk_of[l]].p + at[l];
		memset(L->host, 0, L->bytes); /* the alignment gaps: copies are deterministic */
		for (int i = 0; i < L->n_w; i++)
			memcpy(L->host + L->off[i], L->w[i]->host, djn_weight_bytes(L->w[i]));
		done += L->bytes;
		djn_progress("copying layers to host memory", done, total);
	}
out_free:
	free(chunk_bytes);
	free(at);
	free(chunk_of);
	return st;
}

/* The embedding and head blocks into ranges at the region's top (they stay
 * as long as the model is in the pool; layers come and go at the bottom):
 * copied from the model's mapping on the copy stream, the compute stream
 * waiting for them. */
static enum djn_status top_load(struct djn_pooled *p, struct djn_err *err)
{
	struct djn_backend *be = p->be;
	int blk[2] = { 0, p->n + 1 };
	enum djn_status st;

	if (!(p->top_ready = be->i->event_new(be)))
		return djn_err_set(err, DJN_ERR_DEVICE, "%s: events: %s", p->m->name, be->err.msg);
	for (int k = 0; k < 2; k++) {
		struct pool_layer *T = &p->top[k];
		size_t off = 0;
		T->n_w = djn_ring_block_weights(p->m, blk[k], T->w);
		for (int i = 0; i < T->n_w; i++) {
			T->off[i] = off;
			off += align_up(djn_weight_bytes(T->w[i]));
		}
		T->bytes = off;
		if (!off)
			continue;
		if (!reserve(p->pool, p, off, &T->frame, true)) {
			char note[96], sz[32];
			djn_size_str(off, sz, sizeof(sz));
			return djn_err_set(err, DJN_ERR_NOMEM, "%s: no room in the shared pool for "
					   "the %s (%s; %s): the rest is held by layers that paused "
					   "sessions are stopped in", p->m->name,
					   k ? "head" : "embedding", sz,
					   region_note(p->pool, note, sizeof(note)));
		}
		if ((st = fence(p->pool)))
			goto out_copy;
		for (int i = 0; i < T->n_w; i++)
			if ((st = be->i->copy_h2d_async(be, T->frame + T->off[i], T->w[i]->host,
							djn_weight_bytes(T->w[i]), DJN_STREAM_COPY)))
				goto out_copy;
		point(T, T->frame);
	}
	if ((st = be->i->event_record(be, p->top_ready, DJN_STREAM_COPY)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COMPUTE, p->top_ready)))
		goto out_copy;
	return DJN_OK;

out_copy:
	return djn_err_set(err, st, "%s: copying the embedding and head into the pool: %s",
			   p->m->name, be->err.msg);
}

struct djn_pooled *djn_pooled_new(struct djn_model *m, struct djn_backend *be,
				  size_t fixed_bytes, size_t working_set, size_t budget,
				  struct djn_err *err)
{
	struct djn_pool *pool = pool_of(be, true);
	struct djn_pooled *p = djn_xcalloc(1, sizeof(*p));
	size_t others = 0, need;

	p->pool = pool;
	p->m = m;
	p->be = be;
	p->n = m->cfg.n_layer;
	p->working_set = working_set; /* p->fixed once it is reserved */
	p->slot_layer = p->pointed = p->last_admitted = -1;
	p->key = ++keys;
	p->L = djn_xcalloc((size_t)p->n, sizeof(*p->L));
	for (int l = 0; l < p->n; l++) {
		struct pool_layer *L = &p->L[l];
		size_t off = 0;
		L->n_w = djn_ring_block_weights(m, 1 + l, L->w);
		for (int i = 0; i < L->n_w; i++) {
			L->off[i] = off;
			off += align_up(djn_weight_bytes(L->w[i]));
			L->w[i]->dev = NULL;
		}
		L->bytes = off;
		if (off > p->largest)
			p->largest = off;
	}
	pool->budget = budget;
	for (struct djn_pooled *q = pool->members; q; q = q->next)
		others += q->fixed + (q->slot ? q->largest : 0);
	need = others + fixed_bytes + p->largest;
	if (budget < need) {
		char a[32], b[32], c[32], d[32], e[32];
		djn_size_str(budget, a, sizeof(a));
		djn_size_str(need, b, sizeof(b));
		djn_size_str(fixed_bytes - working_set, c, sizeof(c));
		djn_size_str(p->largest, d, sizeof(d));
		djn_size_str(working_set, e, sizeof(e));
		djn_err_set(err, DJN_ERR_NOMEM,
			    "%s: vram budget %s is below the minimum of %s for the shared pool "
			    "(embedding and head %s + one layer of %s + working set %s, beside "
			    "what the other models hold for theirs)", m->name, a, b, c, d, e);
		goto out_free;
	}
	p->next = pool->members;
	pool->members = p;
	if (!pool->fence_ev && region_make(pool, working_set, err))
		goto out_free;
	if (!reserve(pool, p, working_set, NULL, false)) {
		djn_err_set(err, DJN_ERR_NOMEM, "%s: no room in the vram budget for the working set: "
			    "the rest is held by layers that paused sessions are stopped in", m->name);
		goto out_free;
	}
	p->ws_held = true;
	p->fixed = fixed_bytes;
	if (top_load(p, err))
		goto out_free;
	for (int l = 0; l < p->n; l++)
		if (!(p->L[l].ready = be->i->event_new(be))) {
			djn_err_set(err, DJN_ERR_DEVICE, "%s: events: %s", m->name, be->err.msg);
			goto out_free;
		}
	if (!(p->slot_ready = be->i->event_new(be)) || !(p->slot_done = be->i->event_new(be))) {
		djn_err_set(err, DJN_ERR_DEVICE, "%s: events: %s", m->name, be->err.msg);
		goto out_free;
	}
	if (host_copies(p, err))
		goto out_free;
	/* a model being loaded is the most recent use: what it displaces is
	 * the others' least recent */
	for (int l = 0; l < p->n; l++)
		p->L[l].used = ++pool->clock;
	if (admit_all(p, 0, NULL, NULL, err))
		goto out_free;
	/* a load returns with its weights on the device: the copies it queued
	 * (its embedding and head, then the layers admitted, in order on the
	 * copy stream: the last one's event covers them) would otherwise be
	 * waited for by the next switch, whichever model's it is (on the H100
	 * the first switch after three loads waited 121 ms for them) */
	struct djn_event *last = p->last_admitted >= 0 ? p->L[p->last_admitted].ready : p->top_ready;
	if (last && be->i->event_sync(be, last)) {
		djn_err_set(err, DJN_ERR_DEVICE, "%s: copying its weights: %s", m->name, be->err.msg);
		goto out_free;
	}
	return p;

out_free:
	djn_pooled_free(p);
	return NULL;
}

void djn_pooled_free(struct djn_pooled *p)
{
	struct djn_backend *be;
	struct djn_pool *pool;

	if (!p)
		return;
	be = p->be;
	pool = p->pool;
	for (struct djn_pooled **pp = &pool->members; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	/* the ranges go back to the region with no device call: the next copy
	 * into it waits for the kernels queued so far (the fence) */
	for (int l = 0; l < p->n; l++) {
		struct pool_layer *L = &p->L[l];
		point(L, NULL);
		if (L->frame)
			give_back(pool, L->frame, L->bytes);
		be->i->event_free(be, L->ready);
	}
	for (int k = 0; k < 2; k++) {
		point(&p->top[k], NULL);
		if (p->top[k].frame)
			give_back(pool, p->top[k].frame, p->top[k].bytes);
	}
	if (p->slot)
		give_back(pool, p->slot, p->largest);
	be->i->event_free(be, p->slot_ready);
	be->i->event_free(be, p->slot_done);
	be->i->event_free(be, p->top_ready);
	if (p->ws_held)
		pool->used -= p->working_set;
	for (int i = 0; i < p->n_chunks; i++)
		if (p->chunk[i].p)
			be->i->host_free(be, p->chunk[i].p, p->chunk[i].pinned);
	free(p->chunk);
	free(p->L);
	djn_ring_plan_release(&p->plan);
	free(p);
	pool_drop_if_empty(pool);
}

/* ---- what the shell and Lua see */

const struct djn_ring_plan *djn_pooled_plan(struct djn_pooled *p)
{
	struct djn_ring_plan *q = &p->plan;
	int n = 0;

	if (!q->streamed) {
		q->n_blocks = p->n + 2;
		q->streamed = djn_xcalloc((size_t)p->n + 1, sizeof(int));
		q->block_streamed = djn_xcalloc((size_t)p->n + 2, sizeof(bool));
		q->block_bytes = djn_xcalloc((size_t)p->n + 2, sizeof(size_t));
		for (int b = 0; b < p->n + 2; b++)
			q->block_bytes[b] = djn_ring_block_bytes(p->m, b);
	}
	q->budget = q->budget_used = p->pool->budget;
	q->working_set = p->working_set;
	q->resident_bytes = p->fixed - p->working_set;
	q->host_bytes = q->stream_bytes = 0;
	for (int l = 0; l < p->n; l++) {
		q->block_streamed[1 + l] = !p->L[l].frame;
		if (p->L[l].frame) {
			q->resident_bytes += p->L[l].bytes;
		} else {
			q->streamed[n++] = l;
			q->host_bytes += p->L[l].bytes;
			q->stream_bytes += p->L[l].bytes;
		}
	}
	q->n_streamed = n;
	q->n_slots = n ? 1 : 0;
	q->slot_bytes = p->largest;
	q->device_bytes = q->resident_bytes + p->working_set + (p->slot ? p->largest : 0);
	q->min_budget = p->fixed + p->largest;
	n = 0;
	for (struct djn_pooled *o = p->pool->members; o; o = o->next)
		n++;
	snprintf(q->note, sizeof(q->note), "shared pool of %d model%s; missing layers are brought "
		 "in when used, evicting the least recently used", n, n == 1 ? "" : "s");
	return q;
}

void djn_pooled_stats(const struct djn_pooled *p, struct djn_ring_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->pinned = p->pinned;
	out->host_note = p->host_note;
	out->n_copies = p->n_admitted + p->n_stream_copies;
	out->bytes_copied = p->bytes_admitted + p->bytes_streamed;
}

void djn_ring_residency(const struct djn_model *m, struct djn_residency *out)
{
	struct djn_pooled *p = djn_ring_pooled(djn_ring_of(m));

	memset(out, 0, sizeof(*out));
	if (!p)
		return;
	out->shared = true;
	out->n_layer = p->n;
	for (int l = 0; l < p->n; l++) {
		const struct pool_layer *L = &p->L[l];
		if (L->frame) {
			out->n_resident++;
			out->resident_bytes += L->bytes;
		} else {
			out->missing_bytes += L->bytes;
			if (L->streamed)
				out->n_streamed++;
			else
				out->n_host++;
		}
		out->host_bytes += L->bytes;
	}
	out->fixed_bytes = p->fixed;
	out->working_set = p->working_set;
	out->slot_bytes = p->slot ? p->largest : 0;
	out->pinned = p->pinned;
	out->n_admitted = p->n_admitted;
	out->n_evicted = p->n_evicted;
	out->n_streamed_copies = p->n_stream_copies;
	out->bytes_admitted = p->bytes_admitted;
	out->bytes_streamed = p->bytes_streamed;
	out->pool_budget = p->pool->budget;
	out->pool_used = p->pool->used;
	out->pool_region = p->pool->region.cap;
	out->pool_largest_free = djn_region_largest_free(&p->pool->region);
	for (struct djn_pooled *o = p->pool->members; o; o = o->next)
		out->pool_models++;
}

void djn_ring_layer_map(const struct djn_model *m, char *buf, size_t n)
{
	struct djn_pooled *p = djn_ring_pooled(djn_ring_of(m));
	size_t i = 0;

	if (!n)
		return;
	for (int l = 0; p && l < p->n && i + 1 < n; l++)
		buf[i++] = p->L[l].frame ? 'R' : p->L[l].streamed ? 'S' : 'H';
	buf[i] = '\0';
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

enum djn_status djn_ring_prefetch(struct djn_model *m, struct djn_switch *out,
				  struct djn_err *err)
{
	struct djn_pooled *p = djn_ring_pooled(djn_ring_of(m));
	struct djn_backend *be;
	enum djn_status st;
	double t0 = now_ms(), t1;
	long evicted0;

	memset(out, 0, sizeof(*out));
	if (!p)
		return djn_err_set(err, DJN_ERR_STATE, "%s: not resident in a shared pool", m->name);
	be = p->be;
	evicted0 = p->pool->n_evicted_now;
	/* a prefetch is a use: stamp the model so that its own admissions do
	 * not look older than what they displace */
	for (int l = 0; l < p->n; l++)
		p->L[l].used = ++p->pool->clock;
	p->last_admitted = -1;
	if ((st = admit_all(p, 0, &out->bytes, &out->n_copies, err)))
		return st;
	t1 = now_ms();
	out->n_evicted = (int)(p->pool->n_evicted_now - evicted0);
	out->queue_ms = t1 - t0;
	/* every copy is on the one copy stream, in order: the last one's event
	 * covers the others (one wait); a layer queued by an earlier run and not
	 * reached yet is covered too */
	if (p->last_admitted >= 0 &&
	    (st = be->i->event_sync(be, p->L[p->last_admitted].ready)))
		return djn_err_set(err, st, "%s: waiting for L%d: %s", m->name, p->last_admitted,
				   be->err.msg);
	for (int l = 0; l < p->n; l++) {
		struct pool_layer *L = &p->L[l];
		if (!L->pending || l == p->last_admitted)
			continue;
		if ((st = be->i->event_sync(be, L->ready)))
			return djn_err_set(err, st, "%s: waiting for L%d: %s", m->name, l,
					   be->err.msg);
	}
	out->wait_ms = now_ms() - t1;
	return DJN_OK;
}
