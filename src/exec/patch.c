/* patch.c - activation patching: how much of a clean prompt's logit
 * difference one site's row, copied into a corrupted run, brings back, for
 * every layer and position. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/session_impl.h"

#define PATCH_EPS 1e-6f

/* Run the session's prompt to the logits of its chunk (a breakpoint there),
 * keeping the rows of every layer's `kind` site into rows[l] when rows is
 * not NULL; the metric into *metric. */
static enum djn_status run_prompt(struct djn_session *s, const int32_t *ids, int n,
				  enum djn_site_kind kind, float **rows, int32_t a, int32_t b,
				  float *logits, float *metric)
{
	const struct djn_config *c = s->c;
	const struct djn_gen_opts g = { .n_new = 1 };
	int logits_site = djn_site_count(c) - 1;
	enum djn_status st;

	if ((st = djn_session_start(s, ids, n, &g)))
		return st;
	for (;;) {
		enum djn_stop why = djn_session_run(s, DJN_RUN_CONTINUE, 0);
		struct djn_cursor cur = djn_session_cursor(s);
		if (why == DJN_STOP_ERROR)
			return s->err.code ? s->err.code : DJN_ERR_STATE;
		if (why != DJN_STOP_BREAKPOINT)
			return djn_session_fail(s, DJN_ERR_STATE,
						"patch: the prompt ended before its logits");
		if (cur.site == logits_site)
			break;
		if (rows && cur.layer >= 0 && djn_site_kind(c, cur.site) == kind &&
		    (st = djn_session_read(s, cur.site, rows[cur.layer],
					   (size_t)n * djn_site_width(c, cur.site))))
			return st;
	}
	if ((st = djn_session_read(s, logits_site, logits, (size_t)c->vocab_size)))
		return st;
	*metric = logits[a] - logits[b];
	djn_session_kill(s);
	return DJN_OK;
}

void djn_patch_result_free(struct djn_patch_result *r)
{
	free(r->effect);
	free(r->patched);
	memset(r, 0, sizeof(*r));
}

enum djn_status djn_patch_run(struct djn_model *m, struct djn_backend *be,
			      const int32_t *clean, const int32_t *corrupt, int n,
			      enum djn_site_kind kind, int32_t a, int32_t b,
			      struct djn_patch_result *out, struct djn_err *err)
{
	const struct djn_config *c = &m->cfg;
	int V = c->vocab_size, L = c->n_layer, width;
	struct djn_session *s;
	float **rows = NULL, *logits = NULL, denom;
	char pattern[48];
	enum djn_status st;

	memset(out, 0, sizeof(*out));
	if (n < 1)
		return djn_err_set(err, DJN_ERR_INVALID, "patch: the prompts are empty");
	if (kind < DJN_SITE_ATTN_NORM || kind > DJN_SITE_RESID_POST)
		return djn_err_set(err, DJN_ERR_INVALID,
				   "patch: '%s' is not a per-layer site (L*.attn_norm .. "
				   "L*.resid_post)", djn_site_kind_name(kind));
	if (a < 0 || a >= V || b < 0 || b >= V)
		return djn_err_set(err, DJN_ERR_RANGE, "patch: token %d is outside the vocabulary "
				   "(0..%d)", a < 0 || a >= V ? a : b, V - 1);
	for (int i = 0; i < n; i++)
		if (clean[i] < 0 || clean[i] >= V || corrupt[i] < 0 || corrupt[i] >= V)
			return djn_err_set(err, DJN_ERR_RANGE,
					   "patch: the %s prompt's token %d (%d) is outside the "
					   "vocabulary (0..%d)",
					   clean[i] < 0 || clean[i] >= V ? "clean" : "corrupted", i,
					   clean[i] < 0 || clean[i] >= V ? clean[i] : corrupt[i],
					   V - 1);
	if (!(s = djn_session_new(m, be, NULL, err)))
		return err ? err->code : DJN_ERR_NOMEM;
	width = djn_site_width(c, 1 + (kind - DJN_SITE_ATTN_NORM));
	snprintf(pattern, sizeof(pattern), "L*.%s", djn_site_kind_name(kind));
	if (djn_bp_add(s, pattern, NULL, false) < 0 || djn_bp_add(s, "logits", NULL, false) < 0) {
		st = djn_err_set(err, s->err.code, "patch: %s", s->err.msg);
		goto out_free;
	}
	rows = djn_xcalloc((size_t)L, sizeof(*rows));
	for (int l = 0; l < L; l++)
		rows[l] = djn_xmalloc(sizeof(float) * (size_t)n * width);
	logits = djn_xmalloc(sizeof(float) * (size_t)V);
	out->n_layer = L;
	out->n_pos = n;
	out->effect = djn_xcalloc((size_t)L * n, sizeof(float));
	out->patched = djn_xcalloc((size_t)L * n, sizeof(float));
	if ((st = run_prompt(s, clean, n, kind, rows, a, b, logits, &out->clean)))
		goto out_fail;
	/* the corrupted run: the logits only */
	djn_bp_delete(s, 0);
	if (djn_bp_add(s, "logits", NULL, false) < 0) {
		st = s->err.code;
		goto out_fail;
	}
	if ((st = run_prompt(s, corrupt, n, kind, NULL, a, b, logits, &out->corrupt)))
		goto out_fail;
	for (int l = 0; l < L; l++) {
		snprintf(pattern, sizeof(pattern), "L%d.%s", l, djn_site_kind_name(kind));
		for (int p = 0; p < n; p++) {
			int id = djn_steer_add_at(s, pattern, DJN_STEER_SET,
						  rows[l] + (size_t)p * width, width, 1.0f, NULL, 0,
						  true, p, p + 1);
			if (id < 0) {
				st = (enum djn_status)id;
				goto out_fail;
			}
			st = run_prompt(s, corrupt, n, kind, NULL, a, b, logits,
					&out->patched[(size_t)l * n + p]);
			djn_steer_clear(s, id);
			if (st)
				goto out_fail;
		}
	}
	denom = out->clean - out->corrupt;
	out->normalised = fabsf(denom) >= PATCH_EPS;
	for (int i = 0; i < L * n; i++) {
		float d = out->patched[i] - out->corrupt;
		/* + 0: a 0 over a negative difference is 0, not -0 */
		out->effect[i] = (out->normalised ? d / denom : d) + 0.0f;
	}
	st = DJN_OK;
	goto out_free;
out_fail:
	djn_err_set(err, st, "patch: %s", s->err.msg);
	djn_patch_result_free(out);
out_free:
	if (rows)
		for (int l = 0; l < L; l++)
			free(rows[l]);
	free(rows);
	free(logits);
	djn_session_free(s);
	return st;
}
