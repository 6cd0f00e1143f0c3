/* steer.c - write-back: one-shot edits of the paused tensor and persistent
 * steers applied every time a matching site runs, all on the backend. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/session_impl.h"

/* The rows of site's tensor at positions [pos0, pos1): row r holds position
 * r.pos + r.n_rows - rows + r (final_norm and logits keep the last row only).
 * False when none is. */
static bool rows_at(const struct djn_session *s, int site, int pos0, int pos1, int *r0, int *r1)
{
	int rows = s->buf_rows[site], first = s->r.pos + s->r.n_rows - rows;
	int a = pos0 - first, b = pos1 - first;

	*r0 = a > 0 ? a : 0;
	*r1 = b < rows ? b : rows;
	return *r0 < *r1;
}

static enum djn_status apply(struct djn_session *s, int site, enum djn_steer_op op,
			     const float *v_dev, float scale, const int *idx, int n_idx, int r0,
			     int r1)
{
	struct djn_backend *be = s->be;
	int cols = djn_site_width(s->c, site);
	float *x = s->buf[site];
	size_t n = (size_t)(r1 - r0) * cols;
	enum djn_status st = DJN_OK;

	switch (op) {
	case DJN_STEER_ADD:
		for (int r = r0; r < r1 && !st; r++)
			st = be->i->axpby(be, x + (size_t)r * cols, 1.0f, v_dev, scale, (size_t)cols);
		break;
	case DJN_STEER_SCALE:
		st = be->i->axpby(be, x + (size_t)r0 * cols, scale, NULL, 0.0f, n);
		break;
	case DJN_STEER_SET:
		for (int r = r0; r < r1 && !st; r++)
			st = be->i->copy_d2d(be, x + (size_t)r * cols, v_dev, sizeof(float) * (size_t)cols);
		break;
	case DJN_STEER_ZERO:
		if (n_idx == 0) {
			st = be->i->memset0(be, x + (size_t)r0 * cols, sizeof(float) * n);
			break;
		}
		for (int r = r0; r < r1 && !st; r++)
			for (int i = 0; i < n_idx && !st; i++)
				st = be->i->memset0(be, x + (size_t)r * cols + idx[i], sizeof(float));
		break;
	}
	return st ? djn_session_fail(s, st, "steer: %s", be->err.msg) : DJN_OK;
}

enum djn_status djn_steers_apply(struct djn_session *s, int site, bool count)
{
	enum djn_status st;
	int r0, r1;

	for (int i = 0; i < s->n_steers; i++) {
		struct steer *t = &s->steers[i];
		if (!t->mask[site] || !rows_at(s, site, t->pos0, t->pos1, &r0, &r1))
			continue;
		if ((st = apply(s, site, t->op, t->v, t->scale, t->idx, t->n_idx, r0, r1)))
			return st;
		t->n_applied += count;
	}
	return DJN_OK;
}

static void steer_release(struct djn_session *s, struct steer *t)
{
	if (t->v)
		s->be->i->dealloc(s->be, t->v);
	free(t->pattern);
	free(t->idx);
	free(t->mask);
}

int djn_steer_add(struct djn_session *s, const char *pattern, enum djn_steer_op op,
		  const float *v, int n_v, float scale, const int *idx, int n_idx, bool persist)
{
	return djn_steer_add_at(s, pattern, op, v, n_v, scale, idx, n_idx, persist, 0, -1);
}

int djn_steer_add_at(struct djn_session *s, const char *pattern, enum djn_steer_op op,
		     const float *v, int n_v, float scale, const int *idx, int n_idx, bool persist,
		     int pos0, int pos1)
{
	unsigned char *mask;
	int width = -1, n_match = 0, site = -1, r0 = 0, r1 = 0;
	float *v_dev = NULL;
	enum djn_status st;

	if (pos1 < 0)
		pos1 = INT_MAX;
	if (pos0 < 0 || pos1 <= pos0)
		return djn_session_fail(s, DJN_ERR_RANGE, "steer '%s': no positions in %d:%d",
					pattern, pos0, pos1);
	if (!djn_site_pattern_valid(s->c, pattern))
		return djn_session_fail(s, DJN_ERR_NOTFOUND, "no site matches '%s'", pattern);
	mask = djn_xcalloc((size_t)s->n_sites, 1);
	for (int t = 0; t < s->n_sites; t++) {
		if (!djn_site_match(s->c, pattern, t))
			continue;
		int w = djn_site_width(s->c, t);
		if (width >= 0 && w != width && (op == DJN_STEER_ADD || op == DJN_STEER_SET)) {
			free(mask);
			return djn_session_fail(s, DJN_ERR_INVALID,
						"'%s' matches sites of different widths (%d and %d)",
						pattern, width, w);
		}
		width = w;
		mask[t] = 1;
		site = t;
		n_match++;
	}
	if ((op == DJN_STEER_ADD || op == DJN_STEER_SET) && (!v || n_v != width)) {
		free(mask);
		return djn_session_fail(s, DJN_ERR_INVALID,
					"steer '%s': the vector has %d elements, the site has %d",
					pattern, v ? n_v : 0, width);
	}
	for (int i = 0; i < n_idx; i++) {
		if (idx[i] < 0 || idx[i] >= width) {
			free(mask);
			return djn_session_fail(s, DJN_ERR_RANGE,
						"steer '%s': index %d outside 0..%d", pattern, idx[i],
						width - 1);
		}
	}
	if (!persist) {
		free(mask);
		if (n_match != 1)
			return djn_session_fail(s, DJN_ERR_INVALID,
						"a one-shot steer needs one site, '%s' matches %d",
						pattern, n_match);
		int rows, cols;
		if ((st = djn_session_site_shape(s, site, &rows, &cols)))
			return st;
		if (!rows_at(s, site, pos0, pos1, &r0, &r1)) {
			int first = s->r.pos + s->r.n_rows - rows;
			char held[32], asked[40];
			if (rows == 1)
				snprintf(held, sizeof(held), "pos %d only", first);
			else
				snprintf(held, sizeof(held), "pos %d..%d", first, first + rows - 1);
			if (pos1 == INT_MAX)
				snprintf(asked, sizeof(asked), "at %d or after", pos0);
			else if (pos1 == pos0 + 1)
				snprintf(asked, sizeof(asked), "at %d", pos0);
			else
				snprintf(asked, sizeof(asked), "in %d..%d", pos0, pos1 - 1);
			return djn_session_fail(s, DJN_ERR_RANGE,
						"steer '%s': the paused tensor holds %s, none %s",
						pattern, held, asked);
		}
	}
	if (v && (op == DJN_STEER_ADD || op == DJN_STEER_SET)) {
		v_dev = s->be->i->alloc(s->be, sizeof(float) * (size_t)n_v);
		if (!v_dev) {
			if (persist)
				free(mask);
			return djn_session_fail(s, DJN_ERR_NOMEM, "steer: %s", s->be->err.msg);
		}
		if ((st = s->be->i->copy_h2d(s->be, v_dev, v, sizeof(float) * (size_t)n_v))) {
			s->be->i->dealloc(s->be, v_dev);
			if (persist)
				free(mask);
			return djn_session_fail(s, st, "steer: %s", s->be->err.msg);
		}
	}
	if (!persist) {
		st = apply(s, site, op, v_dev, scale, idx, n_idx, r0, r1);
		if (v_dev)
			s->be->i->dealloc(s->be, v_dev);
		if (!st) /* a recorded row is what flowed on, steered */
			st = djn_record_take(s, site);
		return st ? st : 0;
	}
	s->steers = djn_xrealloc(s->steers, sizeof(*s->steers) * (size_t)(s->n_steers + 1));
	struct steer *t = &s->steers[s->n_steers++];
	memset(t, 0, sizeof(*t));
	t->id = s->next_steer_id++;
	t->pattern = djn_xstrdup(pattern);
	t->op = op;
	t->scale = scale;
	t->v = v_dev;
	t->n_v = n_v;
	t->mask = mask;
	t->pos0 = pos0;
	t->pos1 = pos1;
	if (n_idx) {
		t->idx = djn_xmalloc(sizeof(int) * (size_t)n_idx);
		memcpy(t->idx, idx, sizeof(int) * (size_t)n_idx);
		t->n_idx = n_idx;
	}
	djn_session_rearm(s);
	return t->id;
}

enum djn_status djn_steer_clear(struct djn_session *s, int id)
{
	int w = 0;
	bool found = id == 0;

	for (int i = 0; i < s->n_steers; i++) {
		if (id == 0 || s->steers[i].id == id) {
			steer_release(s, &s->steers[i]);
			found = true;
		} else {
			s->steers[w++] = s->steers[i];
		}
	}
	s->n_steers = w;
	djn_session_rearm(s);
	return found ? DJN_OK : djn_session_fail(s, DJN_ERR_NOTFOUND, "no steer %d", id);
}

bool djn_steer_get(const struct djn_session *s, int i, struct djn_steer_info *out)
{
	const struct steer *t;

	if (i < 0 || i >= s->n_steers)
		return false;
	t = &s->steers[i];
	out->id = t->id;
	out->pattern = t->pattern;
	out->op = t->op;
	out->scale = t->scale;
	out->n_v = t->n_v;
	out->n_applied = t->n_applied;
	out->pos0 = t->pos0;
	out->pos1 = t->pos1 == INT_MAX ? -1 : t->pos1;
	return true;
}

void djn_steers_free(struct djn_session *s)
{
	for (int i = 0; i < s->n_steers; i++)
		steer_release(s, &s->steers[i]);
	free(s->steers);
	s->steers = NULL;
	s->n_steers = 0;
}
