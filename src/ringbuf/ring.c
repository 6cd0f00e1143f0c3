/* ring.c - the ring of device slots that streamed layers flow through: host
 * copies, slot bookkeeping, the ready/done event protocol, and resyncing
 * when the engine asks for a layer out of the expected order. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "djinn/progress.h"
#include "djinn/ringbuf.h"
#include "ringbuf/pool.h"

/* Host chunks are about this big: big enough that pinning costs few calls,
 * small enough that a fragmented host can still pin them. */
#define HOST_CHUNK ((size_t)1 << 30)

/* A streamed layer: its weights and where each sits in a slot (and in its
 * host copy, which has the same layout, so one copy moves the block). */
struct ring_block {
	int layer;
	int n_w;
	struct djn_weight *w[DJN_RING_BLOCK_MAX_WEIGHTS];
	size_t off[DJN_RING_BLOCK_MAX_WEIGHTS];
	size_t bytes;
	char *host;
};

struct ring_slot {
	char *dev;                 /* slot_bytes of backend memory */
	struct djn_event *ready;   /* copy stream: the block has landed */
	struct djn_event *done;    /* compute stream: its last reader has run */
	int block;                 /* streamed index loaded or on its way; -1 none */
};

struct host_chunk {
	char *p;
	bool pinned;
};

struct djn_ring {
	struct djn_model *m;
	struct djn_backend *be;
	struct djn_ring_plan plan;
	struct ring_block *blk;    /* n, in streaming order */
	int *index_of;             /* per layer: streamed index, or -1 */
	int n, k;
	struct ring_slot slot[DJN_RING_MAX_SLOTS];
	char *slot_mem;
	struct djn_event *drained; /* for waiting on a whole stream */
	struct host_chunk *chunk;
	int n_chunks;
	bool pinned;               /* every chunk is */
	char host_note[DJN_ERRMSG_MAX];

	/* the pipeline: the next layer to run is streamed index `expect`, in
	 * slot `head`; `active` has its weights pointing at `active_slot` */
	int head, expect;
	int active, active_slot;

	long n_copies, n_resync;
	size_t bytes_copied;
	double h2d_gbps;

	struct djn_pooled *pooled; /* a model in the shared pool: all of the above unused */
};

static enum djn_status fail(struct djn_ring *r, struct djn_err *err, enum djn_status st,
			    const char *what, int b)
{
	return djn_err_set(err, st, "ring: %s L%d: %s", what, b >= 0 ? r->blk[b].layer : -1,
			   r->be->err.msg);
}

static void point(struct djn_ring *r, int b, int j)
{
	struct ring_block *k = &r->blk[b];

	for (int i = 0; i < k->n_w; i++)
		k->w[i]->dev = r->slot[j].dev + k->off[i];
	r->active = b;
	r->active_slot = j;
}

static void unpoint(struct djn_ring *r)
{
	if (r->active < 0)
		return;
	struct ring_block *k = &r->blk[r->active];
	for (int i = 0; i < k->n_w; i++)
		k->w[i]->dev = NULL;
	r->active = -1;
}

/* Copy streamed block b into slot j once everything the compute stream has
 * queued so far (whatever reads the slot now) has run. */
static enum djn_status load(struct djn_ring *r, int j, int b, struct djn_err *err)
{
	struct djn_backend *be = r->be;
	struct ring_slot *s = &r->slot[j];
	enum djn_status st;

	if (r->active >= 0 && r->active_slot == j)
		unpoint(r);
	s->block = -1; /* until the copy is queued */
	if ((st = be->i->event_record(be, s->done, DJN_STREAM_COMPUTE)) ||
	    (st = be->i->event_wait(be, DJN_STREAM_COPY, s->done)) ||
	    (st = be->i->copy_h2d_async(be, s->dev, r->blk[b].host, r->blk[b].bytes,
					DJN_STREAM_COPY)) ||
	    (st = be->i->event_record(be, s->ready, DJN_STREAM_COPY)))
		return fail(r, err, st, "copying", b);
	s->block = b;
	r->n_copies++;
	r->bytes_copied += r->blk[b].bytes;
	return DJN_OK;
}

/* Put the ring in the state it would have had if streamed index i came
 * next in order: slots head, head+1, ... hold i, i+1, ... (mod n).  Starts
 * from the slot that has i already, if one does, and copies only what is
 * missing. */
static enum djn_status resync(struct djn_ring *r, int i, struct djn_err *err)
{
	int h = r->head;
	enum djn_status st;

	for (int j = 0; j < r->k; j++)
		if (r->slot[j].block == i)
			h = j;
	for (int p = 0; p < r->k; p++) {
		int j = (h + p) % r->k, want = (i + p) % r->n;
		if (r->slot[j].block == want)
			continue;
		if ((st = load(r, j, want, err)))
			return st;
		r->n_resync++;
	}
	r->head = h;
	r->expect = i;
	return DJN_OK;
}

enum djn_status djn_ring_layer_begin(struct djn_ring *r, int layer, struct djn_err *err)
{
	struct djn_backend *be = r->be;
	int i, j;
	enum djn_status st;

	if (r->pooled)
		return djn_pooled_begin(r->pooled, layer, err);
	i = r->index_of[layer];
	if (i < 0 || r->active == i)
		return DJN_OK;
	if (r->plan.sync) {
		/* the ablation: copy now, the host waiting, nothing in flight */
		unpoint(r);
		if (r->slot[0].block != i) {
			r->slot[0].block = -1;
			if ((st = be->i->copy_h2d(be, r->slot[0].dev, r->blk[i].host, r->blk[i].bytes)))
				return fail(r, err, st, "copying", i);
			r->slot[0].block = i;
			r->n_copies++;
			r->bytes_copied += r->blk[i].bytes;
		}
		point(r, i, 0);
		return DJN_OK;
	}
	if (i != r->expect || r->slot[r->head].block != i) {
		if ((st = resync(r, i, err)))
			return st;
	}
	j = r->head;
	if ((st = be->i->event_wait(be, DJN_STREAM_COMPUTE, r->slot[j].ready)))
		return fail(r, err, st, "waiting for", i);
	unpoint(r);
	point(r, i, j);
	return DJN_OK;
}

enum djn_status djn_ring_layer_end(struct djn_ring *r, int layer, struct djn_err *err)
{
	int i, j;

	if (r->pooled)
		return djn_pooled_end(r->pooled, layer, err);
	i = r->index_of[layer];
	if (i < 0 || r->active != i)
		return DJN_OK;
	j = r->active_slot;
	unpoint(r);
	if (r->plan.sync)
		return DJN_OK;
	r->head = (j + 1) % r->k;
	r->expect = (i + 1) % r->n;
	if (r->n <= r->k)
		return DJN_OK; /* every streamed block has a slot of its own */
	/* the slot goes to the block K places on: the next token's first
	 * blocks once this token's are all under way */
	return load(r, j, (i + r->k) % r->n, err);
}

bool djn_ring_streams(const struct djn_ring *r, int layer)
{
	if (r && r->pooled)
		return djn_pooled_streams(r->pooled, layer);
	return r && layer >= 0 && layer < r->m->cfg.n_layer && r->index_of[layer] >= 0;
}

uint64_t djn_ring_graph_key(const struct djn_ring *r)
{
	return r && r->pooled ? djn_pooled_graph_key(r->pooled) : 0;
}

enum djn_status djn_ring_graph_prepare(struct djn_ring *r, struct djn_err *err)
{
	if (!r->pooled)
		return djn_err_set(err, DJN_ERR_STATE, "ring: a streamed model is not recorded");
	return djn_pooled_graph_prepare(r->pooled, err);
}

const struct djn_ring_plan *djn_ring_plan(const struct djn_ring *r)
{
	if (r->pooled)
		return djn_pooled_plan(r->pooled);
	return &r->plan;
}

struct djn_pooled *djn_ring_pooled(const struct djn_ring *r)
{
	return r ? r->pooled : NULL;
}

void djn_ring_stats(const struct djn_ring *r, struct djn_ring_stats *out)
{
	if (r->pooled) {
		djn_pooled_stats(r->pooled, out);
		return;
	}
	out->pinned = r->pinned;
	out->host_note = r->host_note;
	out->n_copies = r->n_copies;
	out->n_resync = r->n_resync;
	out->bytes_copied = r->bytes_copied;
	out->h2d_gbps = r->h2d_gbps;
}

/* Wait for both streams: nothing of ours in flight afterwards. */
static enum djn_status drain(struct djn_ring *r)
{
	struct djn_backend *be = r->be;
	struct djn_event *ev = r->drained;
	enum djn_status st;

	if ((st = be->i->event_record(be, ev, DJN_STREAM_COPY)) ||
	    (st = be->i->event_sync(be, ev)) ||
	    (st = be->i->event_record(be, ev, DJN_STREAM_COMPUTE)) ||
	    (st = be->i->event_sync(be, ev)))
		return st;
	return DJN_OK;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum djn_status djn_ring_measure(struct djn_ring *r, double *gbps, struct djn_err *err)
{
	struct djn_backend *be = r->be;
	int big = 0, reps = 4;
	double t0, t;
	enum djn_status st;

	if (r->pooled || !r->n)
		return djn_err_set(err, DJN_ERR_STATE, "ring: nothing is streamed");
	for (int b = 1; b < r->n; b++)
		if (r->blk[b].bytes > r->blk[big].bytes)
			big = b;
	if ((st = drain(r)))
		return fail(r, err, st, "measuring with", big);
	/* one copy to warm up, then timed ones; slot 0 holds block `big`
	 * afterwards, which the pipeline finds or replaces as it goes */
	t0 = 0;
	for (int rep = 0; rep <= reps; rep++) {
		if (rep == 1)
			t0 = now_s();
		if ((st = load(r, 0, big, err)))
			return st;
		if ((st = be->i->event_sync(be, r->slot[0].ready)))
			return fail(r, err, st, "measuring with", big);
	}
	t = now_s() - t0;
	r->n_copies -= reps + 1;
	r->bytes_copied -= (size_t)(reps + 1) * r->blk[big].bytes;
	r->h2d_gbps = t > 0 ? (double)reps * (double)r->blk[big].bytes / t / 1e9 : 0;
	*gbps = r->h2d_gbps;
	return DJN_OK;
}

struct filler {
	struct djn_ring *r;
	int first, step;
	_Atomic size_t *done; /* bytes copied by all fillers, for the progress line */
	size_t total;
};

static void *fill_some(void *arg)
{
	struct filler *f = arg;

	for (int b = f->first; b < f->r->n; b += f->step) {
		struct ring_block *k = &f->r->blk[b];
		memset(k->host, 0, k->bytes); /* the alignment gaps: copies are deterministic */
		for (int i = 0; i < k->n_w; i++)
			memcpy(k->host + k->off[i], k->w[i]->host, djn_weight_bytes(k->w[i]));
		size_t done = atomic_fetch_add(f->done, k->bytes) + k->bytes;
		if (f->first == 0 && done < f->total) /* one thread speaks; the end is said after join */
			djn_progress("copying streamed layers to host memory", done, f->total);
	}
	return NULL;
}

/* Copy the weights into the host blocks: tens of GB from the model's
 * mapping, page faults included, so a few threads at once. */
static void fill_host(struct djn_ring *r)
{
	enum { MAX_FILLERS = 8 };
	struct filler f[MAX_FILLERS];
	pthread_t t[MAX_FILLERS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int n = r->n < MAX_FILLERS ? r->n : MAX_FILLERS, started = 1;
	_Atomic size_t done = 0;
	size_t total = 0;

	for (int b = 0; b < r->n; b++)
		total += r->blk[b].bytes;

	if (cpus > 0 && cpus < n)
		n = (int)cpus;
	if (n < 1)
		n = 1;
	for (int i = 0; i < n; i++)
		f[i] = (struct filler){ r, i, n, &done, total };
	for (int i = 1; i < n; i++) {
		if (pthread_create(&t[i], NULL, fill_some, &f[i]) != 0)
			break;
		started++;
	}
	/* what could not get a thread of its own is done here */
	for (int i = started; i < n; i++)
		fill_some(&f[i]);
	fill_some(&f[0]);
	for (int i = 1; i < started; i++)
		pthread_join(t[i], NULL);
	djn_progress("copying streamed layers to host memory", total, total);
}

/* Lay the streamed blocks out (slot offsets) and give each a place in a
 * host chunk: blocks are packed whole, never across chunks. */
static enum djn_status host_copies(struct djn_ring *r, struct djn_err *err)
{
	struct djn_backend *be = r->be;
	size_t *chunk_bytes = djn_xcalloc((size_t)r->n, sizeof(size_t));
	size_t *chunk_of = djn_xcalloc((size_t)r->n, sizeof(size_t));
	size_t *at = djn_xcalloc((size_t)r->n, sizeof(size_t));
	enum djn_status st = DJN_OK;
	int c = -1;

	for (int b = 0; b < r->n; b++) {
		size_t bytes = r->blk[b].bytes;
		if (c < 0 || (chunk_bytes[c] + bytes > HOST_CHUNK && chunk_bytes[c] > 0))
			c++;
		chunk_of[b] = (size_t)c;
		at[b] = chunk_bytes[c];
		chunk_bytes[c] += bytes;
	}
	r->n_chunks = c + 1;
	r->chunk = djn_xcalloc((size_t)r->n_chunks, sizeof(*r->chunk));
	r->pinned = true;
	for (int i = 0; i < r->n_chunks; i++) {
		r->chunk[i].p = be->i->host_alloc(be, chunk_bytes[i], &r->chunk[i].pinned);
		if (!r->chunk[i].p) {
			char sz[32];
			djn_size_str(chunk_bytes[i], sz, sizeof(sz));
			st = djn_err_set(err, DJN_ERR_NOMEM, "ring: host memory for %s of layers: %s",
					 sz, be->err.msg);
			goto out_free;
		}
		if (!r->chunk[i].pinned && r->pinned) {
			r->pinned = false;
			snprintf(r->host_note, sizeof(r->host_note), "%s",
				 be->host_memory ? "the cpu backend needs no pinning" : be->err.msg);
		}
	}
	for (int b = 0; b < r->n; b++)
		r->blk[b].host = r->chunk[chunk_of[b]].p + at[b];
	fill_host(r);
out_free:
	free(chunk_bytes);
	free(chunk_of);
	free(at);
	return st;
}

struct djn_ring *djn_ring_new(struct djn_model *m, struct djn_backend *be,
			      struct djn_ring_plan *p, struct djn_err *err)
{
	struct djn_ring *r = djn_xcalloc(1, sizeof(*r));
	int n_layer = m->cfg.n_layer;

	DJN_ASSERT(p->n_streamed > 0 && p->n_slots >= 1 && p->n_slots <= DJN_RING_MAX_SLOTS);
	r->m = m;
	r->be = be;
	r->plan = *p;
	memset(p, 0, sizeof(*p));
	r->n = r->plan.n_streamed;
	r->k = r->plan.sync ? 1 : r->plan.n_slots;
	r->active = -1;
	r->index_of = djn_xmalloc(sizeof(int) * (size_t)n_layer);
	for (int l = 0; l < n_layer; l++)
		r->index_of[l] = -1;
	r->blk = djn_xcalloc((size_t)r->n, sizeof(*r->blk));
	for (int b = 0; b < r->n; b++) {
		struct ring_block *k = &r->blk[b];
		size_t off = 0;
		k->layer = r->plan.streamed[b];
		r->index_of[k->layer] = b;
		k->n_w = djn_ring_block_weights(m, 1 + k->layer, k->w);
		for (int i = 0; i < k->n_w; i++) {
			k->off[i] = off;
			off += (djn_weight_bytes(k->w[i]) + DJN_RING_ALIGN - 1) &
			       ~(size_t)(DJN_RING_ALIGN - 1);
			k->w[i]->dev = NULL; /* no device address until it is in a slot */
		}
		k->bytes = off;
		DJN_ASSERT(off <= r->plan.slot_bytes);
	}
	for (int j = 0; j < r->k; j++)
		r->slot[j].block = -1;
	if (host_copies(r, err))
		goto out_free;
	r->slot_mem = be->i->alloc(be, (size_t)r->k * r->plan.slot_bytes);
	if (!r->slot_mem) {
		djn_err_set(err, DJN_ERR_NOMEM, "ring: %d slots: %s", r->k, be->err.msg);
		goto out_free;
	}
	if (!(r->drained = be->i->event_new(be))) {
		djn_err_set(err, DJN_ERR_DEVICE, "ring: events: %s", be->err.msg);
		goto out_free;
	}
	for (int j = 0; j < r->k; j++) {
		struct ring_slot *s = &r->slot[j];
		s->dev = r->slot_mem + (size_t)j * r->plan.slot_bytes;
		if (!(s->ready = be->i->event_new(be)) || !(s->done = be->i->event_new(be))) {
			djn_err_set(err, DJN_ERR_DEVICE, "ring: events: %s", be->err.msg);
			goto out_free;
		}
	}
	/* the first K streamed blocks start on their way now */
	if (!r->plan.sync && resync(r, 0, err))
		goto out_free;
	r->n_resync = 0;
	return r;

out_free:
	djn_ring_free(r);
	return NULL;
}

struct djn_ring *djn_ring_new_shared(struct djn_model *m, struct djn_backend *be,
				     size_t fixed_bytes, size_t working_set, size_t budget,
				     struct djn_err *err)
{
	struct djn_pooled *p = djn_pooled_new(m, be, fixed_bytes, working_set, budget, err);
	struct djn_ring *r;

	if (!p)
		return NULL;
	r = djn_xcalloc(1, sizeof(*r));
	r->m = m;
	r->be = be;
	r->pooled = p;
	r->active = -1;
	return r;
}

void djn_ring_free(struct djn_ring *r)
{
	struct djn_backend *be;

	if (!r)
		return;
	if (r->pooled) {
		djn_pooled_free(r->pooled);
		free(r);
		return;
	}
	be = r->be;
	if (r->drained && !be->poisoned)
		(void)drain(r);
	unpoint(r);
	be->i->event_free(be, r->drained);
	for (int j = 0; j < r->k; j++) {
		be->i->event_free(be, r->slot[j].ready);
		be->i->event_free(be, r->slot[j].done);
	}
	if (r->slot_mem)
		be->i->dealloc(be, r->slot_mem);
	for (int i = 0; i < r->n_chunks; i++)
		if (r->chunk[i].p)
			be->i->host_free(be, r->chunk[i].p, r->chunk[i].pinned);
	free(r->chunk);
	for (int b = 0; b < r->n; b++)
		for (int i = 0; i < r->blk[b].n_w; i++)
			r->blk[b].w[i]->dev = NULL;
	free(r->blk);
	free(r->index_of);
	djn_ring_plan_release(&r->plan);
	free(r);
}
