/* text.c - the Text segment: a model's weights made resident on a backend
 * once and shared by every session on it. */
#include <stdlib.h>

#include "djinn/vmu.h"

/* The model records which backend holds it; sessions count references. */
struct text_state {
	struct djn_backend *be;
	int refs;
	size_t bytes;
};

struct upload {
	struct djn_backend *be;
	enum djn_status st;
	size_t bytes;
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
	w->dev = u->be->i->alloc(u->be, n);
	if (!w->dev) {
		u->st = DJN_ERR_NOMEM;
		return;
	}
	u->st = u->be->i->copy_h2d(u->be, w->dev, w->host, n);
	u->bytes += n;
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

enum djn_status djn_text_acquire(struct djn_model *m, struct djn_backend *be,
				 struct djn_err *err)
{
	struct text_state *ts = state(m);
	struct upload u = { be, DJN_OK, 0 };

	if (ts) {
		if (ts->be != be)
			return djn_err_set(err, DJN_ERR_STATE,
					   "%s: already resident on another backend (%s)", m->name,
					   ts->be->i->name);
		ts->refs++;
		return DJN_OK;
	}
	djn_model_for_each_weight(m, upload_one, &u);
	if (u.st) {
		djn_err_set(err, u.st, "%s: loading weights onto %s: %s", m->name, be->i->name,
			    be->err.msg);
		djn_model_for_each_weight(m, free_one, be);
		return u.st;
	}
	if (m->cfg.tied_embeddings && m->output.host == m->tok_embd.host)
		m->output.dev = m->tok_embd.dev;
	ts = djn_xcalloc(1, sizeof(*ts));
	ts->be = be;
	ts->refs = 1;
	ts->bytes = u.bytes;
	m->text = ts;
	return DJN_OK;
}

void djn_text_release(struct djn_model *m, struct djn_backend *be)
{
	struct text_state *ts = state(m);

	if (!ts || --ts->refs > 0)
		return;
	djn_model_for_each_weight(m, free_one, be);
	if (m->cfg.tied_embeddings)
		m->output.dev = NULL;
	free(ts);
	m->text = NULL;
}

size_t djn_text_bytes(const struct djn_model *m)
{
	return state(m) ? state(m)->bytes : 0;
}
