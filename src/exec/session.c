/* session.c - sessions: creation, the run loop that moves the cursor, and
 * access to the tensors at sites. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/cond.h"
#include "exec/session_impl.h"

/* Live sessions, for swapping out the least recently used when the Data
 * segment is full.  The engine is single-threaded: no lock. */
static struct djn_session *live;
static uint64_t use_clock;

enum djn_status djn_session_evict_other(struct djn_session *s)
{
	struct djn_session *lru = NULL;
	bool freed = false;

	/* pages of swap-outs still copying: free them first, waiting */
	for (struct djn_session *o = live; o; o = o->next_live)
		if (o != s && o->be == s->be && o->swap.pending) {
			if (djn_session_swap_poll(o, true))
				return djn_session_fail(s, DJN_ERR_NOMEM, "making room: %s",
							djn_session_errmsg(o));
			freed = true;
		}
	if (freed)
		return DJN_OK;
	/* after a batch's pass a member never parks a higher class for its
	 * next chunk: it lays that chunk out at its next step instead */
	for (struct djn_session *o = live; o; o = o->next_live)
		if (o != s && o->be == s->be && !o->swap.out && !o->in_batch &&
		    o->kv.view.n_pages > 0 && !(s->deferring && o->park_rank < s->park_rank) &&
		    (!lru || o->park_rank > lru->park_rank ||
		     (o->park_rank == lru->park_rank && o->last_used < lru->last_used)))
			lru = o;
	if (!lru)
		return DJN_ERR_NOMEM;
	if (djn_session_swapout(lru))
		return djn_session_fail(s, DJN_ERR_NOMEM, "making room: %s", djn_session_errmsg(lru));
	return DJN_OK;
}

void djn_session_set_park_rank(struct djn_session *s, int rank)
{
	s->park_rank = rank;
}

enum djn_status djn_session_swapped_in(struct djn_session *s)
{
	enum djn_status st;

	if (!s->swap.out)
		return DJN_OK;
	while ((st = djn_session_swapin(s)) == DJN_ERR_NOMEM && !djn_session_evict_other(s))
		;
	return st;
}

enum djn_status djn_session_fail(struct djn_session *s, enum djn_status st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	djn_err_vset(&s->err, st, fmt, ap);
	va_end(ap);
	return st;
}

/* What one session needs on the device beside the weights, for the VRAM
 * budget: its KV pages for the whole context, the page table, and the
 * arena of a full prefill chunk (plus the backend's scratch for it). */
static size_t working_set(const struct djn_config *c, int page, int ctx)
{
	size_t pages = (size_t)(ctx + page - 1) / page;
	size_t kv = pages * (size_t)page * c->n_layer * 2 * c->n_kv_head * c->head_dim *
		    sizeof(float);
	int rows = ctx < DJN_MAX_CHUNK ? ctx : DJN_MAX_CHUNK;
	int wide = c->hidden_dim > c->dim ? c->hidden_dim : c->dim;

	return kv + pages * sizeof(float *) + djn_chunk_arena_bytes(c, rows) +
	       2 * (size_t)rows * wide * sizeof(float);
}

struct djn_session *djn_session_new(struct djn_model *m, struct djn_backend *be,
				    const struct djn_session_opts *opts, struct djn_err *err)
{
	struct djn_session *s;
	int page = opts && opts->kv_page_tokens > 0 ? opts->kv_page_tokens : 16;
	int ctx = opts && opts->max_ctx > 0 ? opts->max_ctx : m->cfg.seq_len;

	if (!be) {
		djn_err_set(err, DJN_ERR_INVALID, "session: no backend");
		return NULL;
	}
	if (ctx > m->cfg.seq_len)
		ctx = m->cfg.seq_len;
	if (djn_text_acquire(m, be, working_set(&m->cfg, page, ctx), err))
		return NULL;
	s = djn_xcalloc(1, sizeof(*s));
	s->m = m;
	djn_model_ref(m);
	s->be = be;
	s->c = &m->cfg;
	s->ring = djn_ring_of(m);
	s->n_sites = djn_site_count(&m->cfg);
	s->max_ctx = ctx;
	s->tokens = djn_xcalloc((size_t)ctx + DJN_MAX_CHUNK, sizeof(int32_t));
	s->buf = djn_xcalloc((size_t)s->n_sites, sizeof(float *));
	s->buf_rows = djn_xcalloc((size_t)s->n_sites, sizeof(int));
	s->armed = djn_xcalloc((size_t)s->n_sites, 1);
	s->pend = djn_xcalloc(DJN_STATS_SLOTS, sizeof(*s->pend));
	s->slot_x = djn_xcalloc(DJN_STATS_SLOTS, sizeof(*s->slot_x));
	s->slot_n = djn_xcalloc(DJN_STATS_SLOTS, sizeof(*s->slot_n));
	s->slot_site = -1;
	/* DJINN_GRAPH=0: run decode steps op by op (for comparing the two) */
	const char *g = getenv("DJINN_GRAPH");
	s->graph_off = g && !strcmp(g, "0");
	s->logits_host = djn_xmalloc(sizeof(float) * (size_t)m->cfg.vocab_size);
	s->next_bp_id = s->next_steer_id = s->next_ckpt_id = 1;
	s->r.state = DJN_RUN_IDLE;
	s->r.site = -1;
	s->forced = -1;
	if (djn_kv_init(&s->kv, be, m->cfg.n_layer, m->cfg.n_kv_head * m->cfg.head_dim, page, ctx,
			m->kv_dtype, err))
		goto out_free;
	/* the Stack segment is allocated when a chunk is laid out on the
	 * session's own path: a session that waits (started, queued, or run
	 * only in batches) holds none */
	s->arena.be = be;
	s->next_live = live;
	live = s;
	s->last_used = ++use_clock;
	return s;

out_free:
	djn_session_free(s);
	return NULL;
}

enum djn_status djn_model_set_kv_dtype(struct djn_model *m, enum djn_dtype t,
				       struct djn_err *err)
{
	if (t != DJN_DTYPE_F32 && t != DJN_DTYPE_F16)
		return djn_err_set(err, DJN_ERR_INVALID, "%s: a KV cache of %s (f32 or f16)",
				   m->name, djn_dtype_name(t));
	for (struct djn_session *o = live; o; o = o->next_live)
		if (o->m == m && o->kv.view.dtype != t)
			return djn_err_set(err, DJN_ERR_STATE,
					   "%s: a session's KV cache is %s: free its sessions before "
					   "changing it to %s",
					   m->name, djn_dtype_name(o->kv.view.dtype),
					   djn_dtype_name(t));
	m->kv_dtype = t;
	return DJN_OK;
}

void djn_session_free(struct djn_session *s)
{
	if (!s)
		return;
	for (struct djn_session **pp = &live; *pp; pp = &(*pp)->next_live) {
		if (*pp == s) {
			*pp = s->next_live;
			break;
		}
	}
	djn_chunk_graph_free(s);
	djn_ckpts_free(s);
	djn_breaks_free(s);
	djn_steers_free(s);
	djn_record_free(s);
	djn_arena_release(&s->arena);
	(void)djn_session_swap_poll(s, true); /* its device pages, freed below */
	djn_swap_release(&s->swap);
	djn_kv_release(&s->kv);
	djn_text_release(s->m, s->be);
	djn_model_unref(s->m);
	free(s->tokens);
	free(s->text);
	free(s->buf);
	free(s->buf_rows);
	free(s->armed);
	free(s->logits_host);
	free(s);
}

const char *djn_session_errmsg(const struct djn_session *s)
{
	return s->err.msg;
}

struct djn_model *djn_session_model(const struct djn_session *s)
{
	return s->m;
}

struct djn_backend *djn_session_backend(const struct djn_session *s)
{
	return s->be;
}

void djn_session_on_token(struct djn_session *s, djn_token_fn fn, void *ud)
{
	s->on_token = fn;
	s->on_token_ud = ud;
}

enum djn_status djn_session_start(struct djn_session *s, const int32_t *ids, int n,
				  const struct djn_gen_opts *g)
{
	s->last_used = ++use_clock;
	if (n < 1)
		return djn_session_fail(s, DJN_ERR_INVALID, "start: the prompt has no tokens");
	if (n >= s->max_ctx)
		return djn_session_fail(s, DJN_ERR_RANGE,
					"start: the prompt has %d tokens, the context holds %d", n,
					s->max_ctx);
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= s->c->vocab_size)
			return djn_session_fail(s, DJN_ERR_RANGE,
						"start: token %d (at %d) is outside the vocabulary of %d",
						ids[i], i, s->c->vocab_size);
	memcpy(s->tokens, ids, sizeof(int32_t) * (size_t)n);
	memset(&s->r, 0, sizeof(s->r));
	s->r.gen = *g;
	s->r.rng = g->seed ? g->seed : 0x9e3779b97f4a7c15ull;
	s->r.n_tokens = n;
	s->r.n_prompt = n;
	s->r.fill_end = n;
	s->r.state = DJN_RUN_PAUSED;
	s->interrupt = 0;
	s->forced = -1;
	djn_breaks_discard(s);
	djn_record_reset(s);
	/* the first chunk is laid out when it runs (djn_session_begun, or
	 * _batched in a batch): hundreds of sessions started at once and
	 * waiting for the scheduler hold no arena and no new pages */
	djn_chunk_graph_free(s);
	s->r.pos = 0;
	s->r.n_rows = n < DJN_MAX_CHUNK ? n : DJN_MAX_CHUNK;
	s->r.site = -1;
	s->needs_begin = true;
	if (s->text)
		s->text[0] = '\0';
	return DJN_OK;
}

enum djn_status djn_session_force_token(struct djn_session *s, int32_t id)
{
	if (s->r.state != DJN_RUN_PAUSED || s->r.site != s->n_sites - 1 ||
	    s->r.pos + s->r.n_rows < s->r.fill_end)
		return djn_session_fail(s, DJN_ERR_STATE,
					"a token can be forced only when paused at logits of a "
					"sampling step");
	if (id < 0 || id >= s->c->vocab_size)
		return djn_session_fail(s, DJN_ERR_RANGE, "token %d is outside the vocabulary of %d",
					id, s->c->vocab_size);
	s->forced = id;
	return DJN_OK;
}

void djn_session_kill(struct djn_session *s)
{
	djn_breaks_discard(s);
	s->r.state = DJN_RUN_IDLE;
	s->r.site = -1;
}

enum djn_run_state djn_session_state(const struct djn_session *s)
{
	return s->r.state;
}

struct djn_cursor djn_session_cursor(const struct djn_session *s)
{
	struct djn_cursor cur = { s->r.pos, s->r.n_rows, s->r.site,
				  s->r.site >= 0 ? djn_site_layer(s->c, s->r.site) : -1 };
	return cur;
}

const int32_t *djn_session_tokens(const struct djn_session *s, int *n_total, int *n_prompt)
{
	if (n_total)
		*n_total = s->r.n_tokens;
	if (n_prompt)
		*n_prompt = s->r.n_prompt;
	return s->tokens;
}

const char *djn_session_text(const struct djn_session *s, size_t *len)
{
	if (len)
		*len = s->r.text_len;
	return s->text ? s->text : "";
}

void djn_session_interrupt(struct djn_session *s)
{
	s->interrupt = 1;
}

static void text_append(struct djn_session *s, int prev, int id)
{
	size_t n = 0;
	const char *p;

	if (!s->m->tok)
		return;
	p = djn_tok_decode(s->m->tok, prev, id, &n);
	if (s->r.text_len + n + 1 > s->text_cap) {
		s->text_cap = (s->r.text_len + n + 1) * 2;
		s->text = djn_xrealloc(s->text, s->text_cap);
	}
	memcpy(s->text + s->r.text_len, p, n);
	s->r.text_len += n;
	s->text[s->r.text_len] = '\0';
}

bool djn_session_greedy(const struct djn_session *s)
{
	return s->forced < 0 && s->r.gen.temperature <= 0;
}

/* The token the chunk at logits samples, from the session's own logits. */
static enum djn_status pick(struct djn_session *s, int *next)
{
	const struct djn_gen_opts *g = &s->r.gen;
	enum djn_status st;

	if (s->forced >= 0) {
		*next = s->forced;
		s->forced = -1;
		return DJN_OK;
	}
	if (g->temperature <= 0) {
		st = s->be->i->argmax(s->be, s->buf[s->n_sites - 1], s->c->vocab_size, next);
	} else {
		st = s->be->i->copy_d2h(s->be, s->logits_host, s->buf[s->n_sites - 1],
					sizeof(float) * (size_t)s->c->vocab_size);
		if (!st)
			*next = djn_sample(s->logits_host, s->c->vocab_size, g->temperature,
					   g->top_p, &s->r.rng);
	}
	return st ? djn_session_fail(s, st, "sampling: %s", s->be->err.msg) : DJN_OK;
}

/* Begin the chunk after the one at logits.  When that fails (out of KV
 * pages) the token is taken all the same: the cursor moves before the new
 * chunk, laid out when the session runs again, so a retry goes on from
 * there rather than sampling twice. */
static enum djn_stop next_chunk(struct djn_session *s, int pos, int n_rows)
{
	/* parked by another member of its batch, or no room without parking
	 * a higher class: laid out at its next step (djn_session_begun) */
	bool later = s->deferring && s->swap.out;
	enum djn_status st = later		? DJN_OK
			     : s->deferring ? djn_chunk_begin_batched(s, pos, n_rows)
					    : djn_chunk_begin(s, pos, n_rows);

	if (!later && !st)
		return DJN_STOP_STEP;
	s->r.pos = pos;
	s->r.n_rows = n_rows;
	s->r.site = -1;
	s->r.batched = false;
	s->needs_begin = true;
	return later || (s->deferring && st == DJN_ERR_NOMEM) ? DJN_STOP_STEP : DJN_STOP_ERROR;
}

enum djn_stop djn_session_advance(struct djn_session *s, int next)
{
	int end = s->r.pos + s->r.n_rows;
	const struct djn_gen_opts *g = &s->r.gen;

	if (end < s->r.fill_end) {
		int n = s->r.fill_end - end;
		return next_chunk(s, end, n < DJN_MAX_CHUNK ? n : DJN_MAX_CHUNK);
	}
	if (next < 0 && pick(s, &next))
		return DJN_STOP_ERROR;
	s->r.fill_end = s->r.n_tokens; /* a recomputed cache is whole again */
	if (g->stop_at_eos && s->m->tok &&
	    (next == djn_tok_eos(s->m->tok) || next == djn_tok_bos(s->m->tok))) {
		s->r.state = DJN_RUN_DONE;
		return DJN_STOP_DONE;
	}
	s->tokens[s->r.n_tokens++] = next;
	s->r.n_generated++;
	text_append(s, s->tokens[s->r.n_tokens - 2], next);
	if (s->on_token)
		s->on_token(s, next, s->on_token_ud);
	if ((g->n_new > 0 && s->r.n_generated >= g->n_new) || s->r.n_tokens >= s->max_ctx) {
		s->r.state = DJN_RUN_DONE;
		return DJN_STOP_DONE;
	}
	return next_chunk(s, s->r.n_tokens - 1, 1);
}

/* Every way out of the run loop but an error first settles the pending
 * breakpoint checks: a condition that held earlier wins over the reason. */
static enum djn_stop settle(struct djn_session *s, enum djn_stop why)
{
	enum djn_stop hit;

	if (why == DJN_STOP_ERROR) {
		djn_breaks_discard(s);
		return why;
	}
	hit = djn_breaks_flush(s);
	return hit != DJN_STOP_STEP ? hit : why;
}

/* A replayed step stopped at `site`: if that is inside a layer (not its
 * last site, after which op by op ends it), begin the layer as op by op
 * would have, so that a shared pool keeps it while the session is there.
 * Its weights are resident (a replay needs them all): nothing is copied.
 * Errors go to s (DJN_STOP_ERROR). */
static enum djn_status stopped_inside(struct djn_session *s, int site)
{
	int l = djn_site_layer(s->c, site);

	if (l < 0 || djn_site_kind(s->c, site) == DJN_SITE_RESID_POST)
		return DJN_OK;
	return djn_ring_layer_begin(s->ring, l, &s->err);
}

enum djn_stop djn_session_run(struct djn_session *s, enum djn_run_mode mode, long count)
{
	int last = s->n_sites - 1;
	long steps = 0;

	if (s->r.state != DJN_RUN_PAUSED) {
		djn_session_fail(s, DJN_ERR_STATE, s->r.state == DJN_RUN_DONE
							 ? "the run has finished"
							 : "the program is not being run");
		return DJN_STOP_ERROR;
	}
	if (count < 1 && mode != DJN_RUN_UNTIL_POS)
		count = 1;
	s->last_used = ++use_clock;
	if (djn_session_begun(s) || djn_session_swapped_in(s))
		return DJN_STOP_ERROR;
	s->last_hit = 0;
	s->interrupt = 0; /* a Ctrl-C that landed after the last run ended */
	for (;;) {
		if (s->interrupt) {
			s->interrupt = 0;
			return settle(s, DJN_STOP_INTERRUPT);
		}
		if (s->r.site == last) {
			int chunk_pos = s->r.pos;
			enum djn_stop why = djn_breaks_flush(s);
			if (why != DJN_STOP_STEP)
				return why;
			why = djn_session_advance(s, -1);
			if (why != DJN_STOP_STEP)
				return why;
			if (mode == DJN_RUN_STEP && ++steps >= count)
				return DJN_STOP_STEP;
			if (mode == DJN_RUN_UNTIL_POS && s->r.pos >= count)
				return DJN_STOP_STEP;
			if (s->r.pos != chunk_pos && djn_breaks_token(s))
				return DJN_STOP_BREAKPOINT;
			continue;
		}
		if (s->r.site == -1 && mode != DJN_RUN_STEP && mode != DJN_RUN_NEXT &&
		    djn_chunk_graphable(s)) {
			bool ran;
			if (djn_chunk_graph(s, &ran))
				return settle(s, DJN_STOP_ERROR);
			if (ran) {
				/* the checks each site would have made, in site order:
				 * every site's tensor is as it was when the site ran */
				for (int site = 0; site <= last; site++) {
					if (!s->armed[site])
						continue;
					s->r.site = site;
					if (djn_record_take(s, site))
						return settle(s, DJN_STOP_ERROR);
					enum djn_stop why = djn_breaks_check(s, site);
					if (why != DJN_STOP_STEP) {
						/* stopped inside a layer: begun and not
						 * ended, as op by op (the pool keeps it) */
						if (s->ring && stopped_inside(s, site))
							return settle(s, DJN_STOP_ERROR);
						return why;
					}
				}
				s->r.site = last;
				if (mode == DJN_RUN_FINISH)
					return settle(s, DJN_STOP_STEP);
				continue;
			}
		}
		int site = s->r.site + 1;
		if (djn_site_exec(s, site))
			return settle(s, DJN_STOP_ERROR);
		s->r.site = site;
		if (s->armed[site]) {
			if (djn_steers_apply(s, site, true) || djn_record_take(s, site))
				return settle(s, DJN_STOP_ERROR);
			enum djn_stop why = djn_breaks_check(s, site);
			if (why != DJN_STOP_STEP)
				return why;
		}
		switch (mode) {
		case DJN_RUN_STEP:
			if (++steps >= count)
				return settle(s, DJN_STOP_STEP);
			break;
		case DJN_RUN_NEXT:
			if ((djn_site_kind(s->c, site) == DJN_SITE_RESID_POST || site == last) &&
			    ++steps >= count)
				return settle(s, DJN_STOP_STEP);
			break;
		case DJN_RUN_FINISH:
			if (site == last)
				return settle(s, DJN_STOP_STEP);
			break;
		default:
			break;
		}
	}
}

bool djn_session_site_live(const struct djn_session *s, int site)
{
	int cur = s->r.site, l;

	if (s->r.state == DJN_RUN_IDLE || site < 0 || site >= s->n_sites || site > cur)
		return false;
	if (s->r.batched && site < s->n_sites - 2)
		return false; /* a batch step keeps only the head's tensors per session */
	l = djn_site_layer(s->c, site);
	if (s->aliased && l >= 0) {
		/* a later layer's site has overwritten the shared buffer */
		int cl = djn_site_layer(s->c, cur);
		int k = (site - 1) % DJN_SITES_PER_LAYER;
		if (cl < 0)
			return l == s->c->n_layer - 1;
		if (l < cl - 1)
			return false;
		if (l == cl - 1)
			return k > (cur - 1) % DJN_SITES_PER_LAYER;
	}
	return true;
}

static enum djn_status need_live(struct djn_session *s, int site)
{
	char name[32];

	if (s->r.state == DJN_RUN_IDLE)
		return djn_session_fail(s, DJN_ERR_STATE, "the program is not being run");
	if (site < 0 || site >= s->n_sites)
		return djn_session_fail(s, DJN_ERR_RANGE, "no site %d", site);
	if (!djn_session_site_live(s, site)) {
		djn_site_name(s->c, site, name, sizeof(name));
		return djn_session_fail(s, DJN_ERR_STATE,
					"site '%s' is not live here (not yet computed in this "
					"token, or overwritten by a later layer)", name);
	}
	return DJN_OK;
}

enum djn_status djn_session_site_shape(struct djn_session *s, int site, int *rows, int *cols)
{
	enum djn_status st = need_live(s, site);

	if (st)
		return st;
	*rows = s->buf_rows[site];
	*cols = djn_site_width(s->c, site);
	return DJN_OK;
}

enum djn_status djn_session_read(struct djn_session *s, int site, float *out, size_t n)
{
	int rows, cols;
	enum djn_status st = djn_session_site_shape(s, site, &rows, &cols);

	if (st)
		return st;
	if (n != (size_t)rows * cols)
		return djn_session_fail(s, DJN_ERR_INVALID, "read: %zu floats asked, tensor has %d x %d",
					n, rows, cols);
	st = s->be->i->copy_d2h(s->be, out, s->buf[site], n * sizeof(float));
	return st ? djn_session_fail(s, st, "%s", s->be->err.msg) : DJN_OK;
}

enum djn_status djn_session_read_rows(struct djn_session *s, int site, int row0, int n_rows,
				      float *out)
{
	int rows, cols;
	enum djn_status st = djn_session_site_shape(s, site, &rows, &cols);

	if (st)
		return st;
	if (row0 < 0 || n_rows < 0 || row0 > rows - n_rows)
		return djn_session_fail(s, DJN_ERR_RANGE, "read: rows %d..%d outside 0..%d", row0,
					row0 + n_rows - 1, rows - 1);
	st = s->be->i->copy_d2h(s->be, out, s->buf[site] + (size_t)row0 * cols,
				(size_t)n_rows * cols * sizeof(float));
	return st ? djn_session_fail(s, st, "%s", s->be->err.msg) : DJN_OK;
}

enum djn_status djn_session_write(struct djn_session *s, int site, const float *in, size_t n)
{
	int rows, cols;
	enum djn_status st = djn_session_site_shape(s, site, &rows, &cols);

	if (st)
		return st;
	if (n != (size_t)rows * cols)
		return djn_session_fail(s, DJN_ERR_INVALID,
					"write: %zu floats given, tensor has %d x %d", n, rows, cols);
	st = s->be->i->copy_h2d(s->be, s->buf[site], in, n * sizeof(float));
	if (st)
		return djn_session_fail(s, st, "%s", s->be->err.msg);
	return djn_record_take(s, site); /* a recorded row is what flowed on */
}

enum djn_status djn_session_stats(struct djn_session *s, int site, int row0, int n_rows,
				  struct djn_stats *out)
{
	int rows, cols;
	enum djn_status st = djn_session_site_shape(s, site, &rows, &cols);

	if (st)
		return st;
	if (n_rows <= 0) {
		row0 = 0;
		n_rows = rows;
	}
	if (row0 < 0 || row0 + n_rows > rows)
		return djn_session_fail(s, DJN_ERR_RANGE, "rows %d..%d outside 0..%d", row0,
					row0 + n_rows - 1, rows - 1);
	st = s->be->i->stats(s->be, s->buf[site] + (size_t)row0 * cols, (int64_t)n_rows * cols, out);
	return st ? djn_session_fail(s, st, "%s", s->be->err.msg) : DJN_OK;
}

void djn_session_rearm(struct djn_session *s)
{
	memset(s->armed, 0, (size_t)s->n_sites);
	for (int i = 0; i < s->n_bps; i++)
		if (s->bps[i].enabled && s->bps[i].mask)
			for (int t = 0; t < s->n_sites; t++)
				s->armed[t] |= s->bps[i].mask[t];
	for (int i = 0; i < s->n_steers; i++)
		for (int t = 0; t < s->n_sites; t++)
			s->armed[t] |= s->steers[i].mask[t];
	djn_record_arm(s, s->armed);
}

void djn_session_mem(const struct djn_session *s, struct djn_mem_info *out)
{
	memset(out, 0, sizeof(*out));
	out->text_bytes = djn_text_bytes(s->m);
	out->data_pages = (size_t)s->kv.view.n_pages;
	out->data_page_bytes = djn_kv_page_bytes(&s->kv);
	out->data_bytes = out->data_pages * out->data_page_bytes;
	out->stack_bytes = s->arena.cap;
	out->stack_used = s->arena.used;
	for (int i = 0; i < s->n_ckpts; i++)
		out->ckpt_bytes += (size_t)s->ckpts[i].n_pages * out->data_page_bytes +
				   s->ckpts[i].arena_bytes;
	if (s->swap.out)
		out->swap_bytes = (size_t)s->swap.n_pages * out->data_page_bytes;
}

enum djn_status djn_session_swapout(struct djn_session *s)
{
	return djn_swap_out(&s->swap, &s->kv, &s->err);
}

enum djn_status djn_session_swapout_begin(struct djn_session *s)
{
	return djn_swap_out_begin(&s->swap, &s->kv, &s->err);
}

enum djn_status djn_session_swap_poll(struct djn_session *s, bool wait)
{
	return djn_swap_finish(&s->swap, &s->kv, wait, &s->err);
}

enum djn_status djn_session_swapin(struct djn_session *s)
{
	return djn_swap_in(&s->swap, &s->kv, &s->err);
}

bool djn_session_swapped(const struct djn_session *s)
{
	return s->swap.out;
}

void djn_session_swap_totals(const struct djn_session *s, struct djn_swap_totals *out)
{
	*out = (struct djn_swap_totals){ s->swap.n_out, s->swap.n_in, s->swap.bytes_out,
					 s->swap.bytes_in, s->swap.ms_out, s->swap.ms_in };
}

size_t djn_session_kv_step_bytes(const struct djn_session *s)
{
	int pt = s->kv.view.page_tokens, end = s->r.pos + s->r.n_rows;

	if (s->r.state != DJN_RUN_PAUSED)
		return 0;
	return (size_t)((end + pt - 1) / pt) * djn_kv_page_bytes(&s->kv);
}

void djn_session_swap_last(const struct djn_session *s, size_t *bytes, double *ms)
{
	*bytes = s->swap.last_bytes;
	*ms = s->swap.last_ms;
}

enum djn_status djn_session_drop_kv(struct djn_session *s)
{
	int end = s->r.pos + s->r.n_rows;
	bool done = s->r.state == DJN_RUN_DONE;

	if (!done && (s->r.state != DJN_RUN_PAUSED || s->r.site != -1))
		return djn_session_fail(s, DJN_ERR_STATE,
					"the KV cache can be dropped only before a chunk begins "
					"(paused at a chunk boundary) or after the run");
	djn_chunk_graph_free(s);
	enum djn_status st;
	if (s->swap.pending && (st = djn_session_swap_poll(s, true)))
		return st;
	if (s->swap.out) {
		s->swap.out = false; /* the host copy is dropped; the pool stays for reuse */
		s->swap.n_pages = 0;
	}
	for (int i = 0; i < s->kv.view.n_pages; i++) {
		djn_kv_page_free(&s->kv, s->kv.host_table[i]);
		s->kv.host_table[i] = NULL;
	}
	s->kv.view.n_pages = 0;
	s->kv_dropped = true;
	if (done) /* djn_session_extend starts over from position 0 */
		return DJN_OK;
	if (end > s->r.fill_end)
		s->r.fill_end = end;
	/* the first chunk of the recompute is laid out when it runs: the
	 * pages stay free until then */
	s->r.pos = 0;
	s->r.n_rows = s->r.fill_end < DJN_MAX_CHUNK ? s->r.fill_end : DJN_MAX_CHUNK;
	s->needs_begin = true;
	return DJN_OK;
}

enum djn_status djn_session_begun(struct djn_session *s)
{
	if (!s->needs_begin && !(s->head_only && s->r.site == -1))
		return DJN_OK;
	if (djn_chunk_begin(s, s->r.pos, s->r.n_rows))
		return s->err.code;
	return DJN_OK;
}

enum djn_status djn_session_begun_batched(struct djn_session *s)
{
	if (!s->needs_begin)
		return DJN_OK;
	if (djn_chunk_begin_batched(s, s->r.pos, s->r.n_rows))
		return s->err.code;
	return DJN_OK;
}

size_t djn_session_kv_need(const struct djn_session *s)
{
	int n = s->max_ctx, pt = s->kv.view.page_tokens;

	return (size_t)((n + pt - 1) / pt) * djn_kv_page_bytes(&s->kv);
}

enum djn_status djn_session_extend(struct djn_session *s, const int32_t *ids, int n, int n_more)
{
	int at, pos;

	if (n < 0 || n_more < 1)
		return djn_session_fail(s, DJN_ERR_INVALID,
					"extend: %d tokens to add and %d to generate (at least 1)", n,
					n_more);
	if (s->r.state == DJN_RUN_IDLE)
		return djn_session_fail(s, DJN_ERR_STATE, "extend: the program is not being run");
	if (s->r.state == DJN_RUN_PAUSED && s->r.site != -1)
		return djn_session_fail(s, DJN_ERR_STATE,
					"extend: the run is paused inside a chunk (finish it first)");
	at = s->r.n_tokens;
	if (at + n >= s->max_ctx)
		return djn_session_fail(s, DJN_ERR_RANGE,
					"extend: %d tokens more make %d, the context holds %d", n, at + n,
					s->max_ctx);
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= s->c->vocab_size)
			return djn_session_fail(s, DJN_ERR_RANGE,
						"extend: token %d (at %d) is outside the vocabulary of %d",
						ids[i], i, s->c->vocab_size);
	/* the chunk to run next starts where the cache ends: at the cursor of a
	 * paused run, or at the last sampled token of a finished one */
	pos = s->r.state == DJN_RUN_PAUSED ? s->r.pos : at - 1;
	if (s->kv_dropped)
		pos = 0;
	memcpy(s->tokens + at, ids, sizeof(int32_t) * (size_t)n);
	s->r.n_tokens = at + n;
	if (s->r.fill_end < s->r.n_tokens)
		s->r.fill_end = s->r.n_tokens;
	s->r.gen.n_new = s->r.n_generated + n_more;
	s->r.state = DJN_RUN_PAUSED;
	s->r.pos = pos;
	s->r.n_rows = s->r.fill_end - pos < DJN_MAX_CHUNK ? s->r.fill_end - pos : DJN_MAX_CHUNK;
	s->r.site = -1;
	s->r.batched = false;
	s->needs_begin = true;
	djn_breaks_discard(s);
	return DJN_OK;
}
