/* text.c - the Text segment: a model's weights made resident on a backend
 * once and shared by every session on it; with a VRAM budget, the resident
 * part here and the streamed part handed to the ring buffer. */
#include <stdio.h>
#include <stdlib.h>

#include "djinn/progress.h"
#include "djinn/vmu.h"

/* The model records which backend holds it; sessions count references.  A
 * configured budget keeps the state alive between residencies (be NULL,
 * refs 0); the model owns it then, so it goes with the model. */
struct text_state {
	struct djn_backend *be;
	int refs;
	size_t bytes;
	struct djn_ring_opts cfg;
	bool configured;         /* cfg set: the model owns this struct */
	struct djn_ring *ring;   /* streamed layers, or NULL */
};

struct upload {
	struct djn_backend *be;
	enum djn_status st;
	size_t bytes;
	size_t total; /* bytes to upload, for the progress line */
};

static void upload_one(struct djn_weight *w, void *ud)
{
	struct upload *u = ud;
	size_t n = djn_weight_bytes(w);

	if (u->st)
		return;
	if (u->be->host_memory) {
		w->dev = (void *)w->host;
		return;
	}
	DJN_ASSERT(!w->ld); /* djn_text_acquire laid it out row-major */
	w->dev = u->be->i->alloc(u->be, n);
	if (!w->dev) {
		u->st = DJN_ERR_NOMEM;
		return;
	}
	u->st = u->be->i->copy_h2d(u->be, w->dev, w->host, n);
	u->bytes += n;
	djn_progress("loading weights", u->bytes, u->total);
}

static void free_one(struct djn_weight *w, void *ud)
{
	struct djn_backend *be = ud;

	if (w->dev && !be->host_memory)
		be->i->dealloc(be, w->dev);
	w->dev = NULL;
}

static struct text_state *state(const struct djn_model *m)
{
	return (struct text_state *)m->text;
}

/* Upload the resident blocks (all of them without a plan). */
static void upload_resident(struct djn_model *m, const struct djn_ring_plan *p, struct upload *u)
{
	struct djn_weight *w[DJN_RING_BLOCK_MAX_WEIGHTS];

	if (!p->n_streamed) {
		djn_model_for_each_weight(m, upload_one, u);
		return;
	}
	for (int b = 0; b < p->n_blocks && !u->st; b++) {
		if (p->block_streamed[b])
			continue;
		int n = djn_ring_block_weights(m, b, w);
		for (int i = 0; i < n; i++)
			upload_one(w[i], u);
	}
}

/* Frees what is on the backend: the ring first (it clears the streamed
 * layers' dev pointers), then every dev pointer still set is resident. */
static void unload(struct djn_model *m, struct text_state *ts, struct djn_backend *be)
{
	djn_ring_free(ts->ring);
	ts->ring = NULL;
	djn_model_for_each_weight(m, free_one, be);
	if (m->cfg.tied_embeddings)
		m->output.dev = NULL;
	ts->be = NULL;
	ts->bytes = 0;
}

/* A model in the backend's shared pool: the ring holds the layers (and
 * decides where each is) and the embedding and head, ranges of the pool's
 * one allocation that stay while the model is resident. */
static enum djn_status acquire_shared(struct djn_model *m, struct text_state *ts,
				      struct djn_backend *be, size_t working_set,
				      struct djn_err *err)
{
	int top[2] = { 0, m->cfg.n_layer + 1 };
	size_t fixed = working_set;

	for (int i = 0; i < 2; i++)
		fixed += djn_ring_block_bytes(m, top[i]);
	if (!(ts->ring = djn_ring_new_shared(m, be, fixed, working_set, ts->cfg.vram_budget, err)))
		return err && err->code ? err->code : DJN_ERR_NOMEM;
	if (m->cfg.tied_embeddings && m->output.host == m->tok_embd.host)
		m->output.dev = m->tok_embd.dev;
	ts->be = be;
	ts->refs = 1;
	ts->bytes = 0; /* all of it is the pool's: djn_text_bytes asks it */
	return DJN_OK;
}

enum djn_status djn_text_acquire(struct djn_model *m, struct djn_backend *be,
				 size_t working_set, struct djn_err *err)
{
	struct text_state *ts = state(m);
	struct upload u = { be, DJN_OK, 0 };
	struct djn_ring_plan plan;
	size_t free_b = 0, total_b = 0;
	enum djn_status st;

	if (ts && ts->refs > 0) {
		if (ts->be != be)
			return djn_err_set(err, DJN_ERR_STATE,
					   "%s: already resident on another backend (%s)", m->name,
					   ts->be->i->name);
		ts->refs++;
		return DJN_OK;
	}
	/* transposed weights are the CPU's alone: a device or a ring, which copy
	 * weights as row-major bytes, get them laid out first (once) */
	if ((!be->host_memory || (ts && ts->configured)) &&
	    (st = djn_model_weights_rowmajor(m, err)))
		return st;
	if (ts && ts->configured && ts->cfg.shared)
		return acquire_shared(m, ts, be, working_set, err);
	if (ts && ts->configured) {
		djn_backend_trim(be); /* memory kept for reuse is free to plan with */
		if (be->i->mem_info(be, &free_b, &total_b))
			free_b = 0; /* unknown: plan against the budget alone */
	}
	st = djn_ring_plan_compute(&plan, m, ts && ts->configured ? &ts->cfg : NULL,
				   working_set, free_b, err);
	if (st) {
		djn_ring_plan_release(&plan);
		return st;
	}
	if (plan.note[0])
		fprintf(stderr, "warning: %s: %s\n", m->name, plan.note);
	if (!be->host_memory)
		u.total = plan.resident_bytes;
	upload_resident(m, &plan, &u);
	if (u.st) {
		st = djn_err_set(err, u.st, "%s: loading weights onto %s: %s", m->name,
				 be->i->name, be->err.msg);
		goto out_unload;
	}
	if (m->cfg.tied_embeddings && m->output.host == m->tok_embd.host)
		m->output.dev = m->tok_embd.dev;
	if (!ts) {
		ts = djn_xcalloc(1, sizeof(*ts));
		m->text = ts;
	}
	if (plan.n_streamed) {
		size_t slots = (size_t)plan.n_slots * plan.slot_bytes;
		if (!(ts->ring = djn_ring_new(m, be, &plan, err))) {
			st = err ? err->code : DJN_ERR_NOMEM;
			djn_err_prefix(err, "%s", m->name);
			goto out_unload;
		}
		u.bytes += be->host_memory ? 0 : slots;
	}
	djn_ring_plan_release(&plan);
	ts->be = be;
	ts->refs = 1;
	ts->bytes = u.bytes;
	return DJN_OK;

out_unload:
	djn_ring_plan_release(&plan);
	if (ts) {
		unload(m, ts, be);
		if (!ts->configured) {
			free(ts);
			m->text = NULL;
		}
	} else {
		djn_model_for_each_weight(m, free_one, be);
		if (m->cfg.tied_embeddings)
			m->output.dev = NULL;
	}
	return st;
}

void djn_text_release(struct djn_model *m, struct djn_backend *be)
{
	struct text_state *ts = state(m);

	if (!ts || ts->refs == 0 || --ts->refs > 0)
		return;
	unload(m, ts, be);
	if (!ts->configured) {
		free(ts);
		m->text = NULL;
	}
}

size_t djn_text_bytes(const struct djn_model *m)
{
	struct djn_residency r;

	if (!state(m))
		return 0;
	if (!state(m)->cfg.shared || state(m)->be == NULL || state(m)->be->host_memory)
		return state(m)->bytes;
	djn_ring_residency(m, &r);
	return r.fixed_bytes - r.working_set + r.resident_bytes + r.slot_bytes;
}

enum djn_status djn_ring_configure(struct djn_model *m, const struct djn_ring_opts *o,
				   struct djn_err *err)
{
	struct text_state *ts = state(m);

	if (ts && ts->refs > 0)
		return djn_err_set(err, DJN_ERR_STATE,
				   "%s: the weights are in use by a session; set the budget before "
				   "the first one", m->name);
	if (o && (o->n_slots < 0 || o->n_slots > DJN_RING_MAX_SLOTS))
		return djn_err_set(err, DJN_ERR_INVALID, "ring slots %d outside 1..%d",
				   o->n_slots, DJN_RING_MAX_SLOTS);
	if (o && o->sync && o->n_slots > 1)
		return djn_err_set(err, DJN_ERR_INVALID,
				   "synchronous copies use one slot, not %d", o->n_slots);
	if (o && (o->n_stream_min < 0 || o->n_stream_min > m->cfg.n_layer))
		return djn_err_set(err, DJN_ERR_INVALID, "%d streamed layers asked, %s has %d",
				   o->n_stream_min, m->name, m->cfg.n_layer);
	if (!ts) {
		if (!o)
			return DJN_OK;
		/* the model frees it (it is never freed here once configured) */
		ts = djn_model_own(m, djn_xcalloc(1, sizeof(*ts)));
		ts->configured = true;
		m->text = ts;
	}
	if (o)
		ts->cfg = *o;
	else
		ts->cfg = (struct djn_ring_opts){ 0 };
	return DJN_OK;
}

struct djn_ring *djn_ring_of(const struct djn_model *m)
{
	return state(m) && state(m)->refs > 0 ? state(m)->ring : NULL;
}
