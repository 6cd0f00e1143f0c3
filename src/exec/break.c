/* break.c - breakpoints and watchpoints: where they match (a per-site mask
 * computed once), when they hit (condition, ignore count), gdb's rules. */
#include <stdlib.h>
#include <string.h>

#include "exec/cond.h"
#include "exec/session_impl.h"

static void bp_release(struct bp *b)
{
	free(b->pattern);
	djn_cond_free(b->cond);
	djn_cond_free(b->stop_if);
	free(b->mask);
}

static int bp_new(struct djn_session *s, enum djn_bp_kind kind, const char *pattern,
		  const char *cond, bool temporary)
{
	struct djn_cond *cd = NULL;
	unsigned char *mask = NULL;
	int token = -1;
	struct bp *b;

	if (kind == DJN_BP_SITE && !strncmp(pattern, "token ", 6)) {
		char *end;
		long t = strtol(pattern + 6, &end, 10);
		if (end == pattern + 6 || *end || t < 0 || t >= s->max_ctx)
			return djn_session_fail(s, DJN_ERR_INVALID,
						"'%s': expected token N with N in 0..%d", pattern,
						s->max_ctx - 1);
		kind = DJN_BP_TOKEN;
		token = (int)t;
	} else if (!djn_site_pattern_valid(s->c, pattern)) {
		return djn_session_fail(s, DJN_ERR_NOTFOUND, "no site matches '%s'", pattern);
	}
	if (cond && *cond && !(cd = djn_cond_parse_tok(cond, s->m->tok, &s->err)))
		return s->err.code;
	if (kind != DJN_BP_TOKEN) {
		mask = djn_xcalloc((size_t)s->n_sites, 1);
		for (int t = 0; t < s->n_sites; t++)
			mask[t] = djn_site_match(s->c, pattern, t);
	}
	s->bps = djn_xrealloc(s->bps, sizeof(*s->bps) * (size_t)(s->n_bps + 1));
	b = &s->bps[s->n_bps++];
	memset(b, 0, sizeof(*b));
	b->id = s->next_bp_id++;
	b->kind = kind;
	b->pattern = djn_xstrdup(pattern);
	b->token = token;
	b->cond = cd;
	b->enabled = true;
	b->temporary = temporary;
	b->mask = mask;
	djn_session_rearm(s);
	return b->id;
}

int djn_bp_add(struct djn_session *s, const char *pattern, const char *cond, bool temporary)
{
	return bp_new(s, DJN_BP_SITE, pattern, cond, temporary);
}

int djn_watch_add(struct djn_session *s, const char *pattern, const char *cond)
{
	if (!cond || !*cond)
		return djn_session_fail(s, DJN_ERR_INVALID, "a watchpoint needs a condition");
	return bp_new(s, DJN_BP_WATCH, pattern, cond, false);
}

static struct bp *find(struct djn_session *s, int id)
{
	for (int i = 0; i < s->n_bps; i++)
		if (s->bps[i].id == id)
			return &s->bps[i];
	djn_session_fail(s, DJN_ERR_NOTFOUND, "no breakpoint number %d", id);
	return NULL;
}

enum djn_status djn_bp_delete(struct djn_session *s, int id)
{
	int w = 0;

	if (id != 0 && !find(s, id))
		return DJN_ERR_NOTFOUND;
	for (int i = 0; i < s->n_bps; i++) {
		if (id == 0 || s->bps[i].id == id)
			bp_release(&s->bps[i]);
		else
			s->bps[w++] = s->bps[i];
	}
	s->n_bps = w;
	djn_session_rearm(s);
	return DJN_OK;
}

enum djn_status djn_bp_enable(struct djn_session *s, int id, bool on)
{
	struct bp *b;

	if (id == 0) {
		for (int i = 0; i < s->n_bps; i++)
			s->bps[i].enabled = on;
	} else {
		if (!(b = find(s, id)))
			return DJN_ERR_NOTFOUND;
		b->enabled = on;
	}
	djn_session_rearm(s);
	return DJN_OK;
}

enum djn_status djn_bp_condition(struct djn_session *s, int id, const char *cond)
{
	struct bp *b = find(s, id);
	struct djn_cond *cd = NULL;

	if (!b)
		return DJN_ERR_NOTFOUND;
	if (cond && *cond && !(cd = djn_cond_parse_tok(cond, s->m->tok, &s->err)))
		return s->err.code;
	if (b->kind == DJN_BP_WATCH) { /* on top of the watch expression, as gdb */
		djn_cond_free(b->stop_if);
		b->stop_if = cd;
		return DJN_OK;
	}
	djn_cond_free(b->cond);
	b->cond = cd;
	return DJN_OK;
}

enum djn_status djn_bp_ignore(struct djn_session *s, int id, long count)
{
	struct bp *b = find(s, id);

	if (!b)
		return DJN_ERR_NOTFOUND;
	if (count < 0)
		return djn_session_fail(s, DJN_ERR_INVALID, "ignore count must be >= 0");
	b->ignore = count;
	return DJN_OK;
}

bool djn_bp_get(const struct djn_session *s, int i, struct djn_bp_info *out)
{
	const struct bp *b;

	if (i < 0 || i >= s->n_bps)
		return false;
	b = &s->bps[i];
	out->id = b->id;
	out->kind = b->kind;
	out->pattern = b->pattern;
	out->token = b->token;
	out->cond = b->cond ? djn_cond_text(b->cond) : NULL;
	out->enabled = b->enabled;
	out->temporary = b->temporary;
	out->ignore_count = b->ignore;
	out->hits = b->hits;
	out->stop_if = b->stop_if ? djn_cond_text(b->stop_if) : NULL;
	return true;
}

int djn_session_last_hit(const struct djn_session *s)
{
	return s->last_hit;
}

bool djn_session_last_hit_info(const struct djn_session *s, struct djn_bp_info *out)
{
	if (!s->last_hit || s->last_info.id != s->last_hit)
		return false;
	*out = s->last_info;
	return true;
}

/* A candidate stop: condition first (a false one is not a hit, as in gdb),
 * then the ignore count (ignored crossings still count as hits). */
static bool hits(struct djn_session *s, struct bp *b, const struct djn_cond_env *env)
{
	if (b->cond && !djn_cond_eval(b->cond, env))
		return false;
	if (b->stop_if && !djn_cond_eval(b->stop_if, env))
		return false;
	b->hits++;
	if (b->ignore > 0) {
		b->ignore--;
		return false;
	}
	return true;
}

static enum djn_stop stop_on(struct djn_session *s, int idx)
{
	struct bp *b = &s->bps[idx];
	enum djn_stop why = b->kind == DJN_BP_WATCH ? DJN_STOP_WATCHPOINT : DJN_STOP_BREAKPOINT;

	s->last_hit = b->id;
	djn_bp_get(s, idx, &s->last_info);
	free(s->last_pattern);
	free(s->last_cond);
	free(s->last_stop_if);
	s->last_pattern = djn_xstrdup(b->pattern);
	s->last_cond = b->cond ? djn_xstrdup(djn_cond_text(b->cond)) : NULL;
	s->last_stop_if = b->stop_if ? djn_xstrdup(djn_cond_text(b->stop_if)) : NULL;
	s->last_info.pattern = s->last_pattern;
	s->last_info.cond = s->last_cond;
	s->last_info.stop_if = s->last_stop_if;
	if (b->temporary)
		djn_bp_delete(s, b->id);
	return why;
}

static struct bp *bp_by_id(struct djn_session *s, int id, int *idx)
{
	for (int i = 0; i < s->n_bps; i++) {
		if (s->bps[i].id == id) {
			*idx = i;
			return &s->bps[i];
		}
	}
	return NULL;
}

static struct djn_cond_env env_at(const struct djn_session *s, int site)
{
	int last_row = s->r.pos + s->r.n_rows - 1;
	struct djn_cond_env env = { NULL, last_row, djn_site_layer(s->c, site), s->tokens[last_row] };

	return env;
}

void djn_breaks_discard(struct djn_session *s)
{
	s->n_pend = 0;
	s->n_slots = 0;
	s->slot_site = -1;
	s->slots_batched = false;
}

/* Re-execute the chunk from its start up to `site`, with no checks: the
 * chunk's inputs (ids, the cache before pos) are unchanged, so this
 * recomputes exactly what the speculative pass computed. */
static enum djn_status replay_to(struct djn_session *s, int site)
{
	enum djn_status st = djn_chunk_begin(s, s->r.pos, s->r.n_rows);

	for (int t = 0; !st && t <= site; t++) {
		st = djn_site_exec(s, t);
		s->r.site = t;
		if (!st && s->armed[t])
			st = djn_steers_apply(s, t, false);
	}
	return st;
}

enum djn_stop djn_breaks_flush(struct djn_session *s)
{
	struct djn_stats st[DJN_STATS_SLOTS];
	int hit = -1, hit_site = -1;

	if (s->n_pend == 0)
		return DJN_STOP_STEP;
	if (s->n_slots && s->slots_batched &&
	    s->be->i->stats_defer_many(s->be, s->slot_x, s->slot_n, s->n_slots, 0)) {
		djn_session_fail(s, DJN_ERR_DEVICE, "condition: %s", s->be->err.msg);
		djn_breaks_discard(s);
		return DJN_STOP_ERROR;
	}
	if (s->n_slots && s->be->i->stats_collect(s->be, st, s->n_slots)) {
		djn_session_fail(s, DJN_ERR_DEVICE, "condition: %s", s->be->err.msg);
		djn_breaks_discard(s);
		return DJN_STOP_ERROR;
	}
	for (int i = 0; i < s->n_pend; i++) {
		const struct pending *p = &s->pend[i];
		struct djn_cond_env env = env_at(s, p->site);
		int idx;
		struct bp *b = bp_by_id(s, p->bp_id, &idx);
		if (hit >= 0 && p->site != hit_site)
			break; /* later sites run again after the stop */
		if (!b)
			continue;
		env.st = p->slot >= 0 ? &st[p->slot] : NULL;
		if (hits(s, b, &env) && hit < 0) {
			hit = b->id;
			hit_site = p->site;
		}
	}
	djn_breaks_discard(s);
	if (hit < 0)
		return DJN_STOP_STEP;
	if (hit_site != s->r.site && replay_to(s, hit_site))
		return DJN_STOP_ERROR;
	int idx;
	if (!bp_by_id(s, hit, &idx)) { /* a temporary one, already removed */
		s->last_hit = hit;
		return DJN_STOP_BREAKPOINT;
	}
	return stop_on(s, idx);
}

/* At a site with armed breakpoints: conditions that need no statistics are
 * decided at once (while nothing is pending, to keep gdb's order of hits);
 * the others are queued with their statistics reduced on the backend. */
enum djn_stop djn_breaks_check(struct djn_session *s, int site)
{
	int cols = djn_site_width(s->c, site), rows = s->buf_rows[site];
	int hit = -1;
	struct djn_cond_env env = env_at(s, site);

	for (int i = 0; i < s->n_bps; i++) {
		struct bp *b = &s->bps[i];
		bool need = (b->cond && djn_cond_needs_stats(b->cond)) ||
			    (b->stop_if && djn_cond_needs_stats(b->stop_if));
		if (!b->enabled || b->kind == DJN_BP_TOKEN || !b->mask[site])
			continue;
		if (s->n_pend == 0 && !need) {
			if (hits(s, b, &env) && hit < 0)
				hit = i;
			continue;
		}
		if (s->n_pend == DJN_STATS_SLOTS) {
			enum djn_stop why = djn_breaks_flush(s);
			if (why != DJN_STOP_STEP)
				return why;
		}
		int slot = -1;
		if (need) {
			if (s->slot_site != site || s->n_slots == 0) {
				/* conditions read the chunk's last row: the token in flight */
				const float *x = s->buf[site] + (size_t)(rows - 1) * cols;
				/* tensors that stay live to the chunk's end are reduced
				 * all together at the flush: one launch a token */
				s->slots_batched = !s->aliased && s->be->i->stats_defer_many;
				if (s->slots_batched) {
					s->slot_x[s->n_slots] = x;
					s->slot_n[s->n_slots] = cols;
				} else if (s->be->i->stats_defer(s->be, x, cols, s->n_slots)) {
					djn_session_fail(s, DJN_ERR_DEVICE, "condition: %s",
							 s->be->err.msg);
					return DJN_STOP_ERROR;
				}
				s->n_slots++;
				s->slot_site = site;
			}
			slot = s->n_slots - 1;
		}
		s->pend[s->n_pend++] = (struct pending){ b->id, site, slot };
	}
	if (hit >= 0) {
		int id = s->bps[hit].id, idx;
		/* same-site checks queued after it count their hits too; the
		 * first breakpoint is the one reported */
		if (djn_breaks_flush(s) == DJN_STOP_ERROR)
			return DJN_STOP_ERROR;
		if (!bp_by_id(s, id, &idx)) { /* a temporary one, already removed */
			s->last_hit = id;
			return DJN_STOP_BREAKPOINT;
		}
		return stop_on(s, idx);
	}
	return DJN_STOP_STEP;
}

bool djn_breaks_token(struct djn_session *s)
{
	for (int i = 0; i < s->n_bps; i++) {
		struct bp *b = &s->bps[i];
		if (b->enabled && b->kind == DJN_BP_TOKEN && b->token >= s->r.pos &&
		    b->token < s->r.pos + s->r.n_rows) {
			struct djn_cond_env env = { NULL, b->token, -1, s->tokens[b->token] };
			if (hits(s, b, &env)) {
				stop_on(s, i);
				return true;
			}
		}
	}
	return false;
}

void djn_breaks_free(struct djn_session *s)
{
	free(s->slot_x);
	free(s->slot_n);
	free(s->last_pattern);
	free(s->last_cond);
	free(s->last_stop_if);
	free(s->pend);
	s->pend = NULL;
	for (int i = 0; i < s->n_bps; i++)
		bp_release(&s->bps[i]);
	free(s->bps);
	s->bps = NULL;
	s->n_bps = 0;
}
