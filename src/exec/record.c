/* record.c - the activations of chosen sites at every position of a run,
 * kept on the host (TransformerLens's run_with_cache): an earlier position
 * can be read after the chunk that computed it is gone, or after the run. */
#include <stdlib.h>
#include <string.h>

#include "exec/session_impl.h"

/* Per site: rows[p * width ..] is position p when have[p]; grown by doubling
 * as positions come, so a long run pays for the positions it reached. */
struct djn_rec {
	char **patterns;
	int n_patterns;
	unsigned char *mask; /* per site: some pattern matches */
	float **rows;        /* per site, host */
	unsigned char **have;
	int *cap, *n_pos;    /* per site: positions allocated, and one past the last recorded */
};

static void forget_rows(struct djn_rec *r, int n_sites)
{
	for (int t = 0; t < n_sites; t++) {
		free(r->rows[t]);
		free(r->have[t]);
		r->rows[t] = NULL;
		r->have[t] = NULL;
		r->cap[t] = r->n_pos[t] = 0;
	}
}

void djn_record_free(struct djn_session *s)
{
	struct djn_rec *r = s->rec;

	if (!r)
		return;
	forget_rows(r, s->n_sites);
	for (int i = 0; i < r->n_patterns; i++)
		free(r->patterns[i]);
	free(r->patterns);
	free(r->mask);
	free(r->rows);
	free(r->have);
	free(r->cap);
	free(r->n_pos);
	free(r);
	s->rec = NULL;
}

enum djn_status djn_record_add(struct djn_session *s, const char *pattern)
{
	struct djn_rec *r;
	char why[160];

	if (!djn_site_pattern_valid(s->c, pattern)) {
		djn_site_why(s->c, pattern, why, sizeof(why));
		return djn_session_fail(s, DJN_ERR_INVALID, "no site matches '%s'; %s", pattern, why);
	}
	if (!(r = s->rec)) {
		r = s->rec = djn_xcalloc(1, sizeof(*r));
		r->mask = djn_xcalloc((size_t)s->n_sites, 1);
		r->rows = djn_xcalloc((size_t)s->n_sites, sizeof(*r->rows));
		r->have = djn_xcalloc((size_t)s->n_sites, sizeof(*r->have));
		r->cap = djn_xcalloc((size_t)s->n_sites, sizeof(int));
		r->n_pos = djn_xcalloc((size_t)s->n_sites, sizeof(int));
	}
	for (int i = 0; i < r->n_patterns; i++)
		if (!strcmp(r->patterns[i], pattern))
			return DJN_OK;
	r->patterns = djn_xrealloc(r->patterns, sizeof(char *) * (size_t)(r->n_patterns + 1));
	r->patterns[r->n_patterns++] = djn_xstrdup(pattern);
	for (int t = 0; t < s->n_sites; t++)
		r->mask[t] |= djn_site_match(s->c, pattern, t);
	djn_session_rearm(s);
	return DJN_OK;
}

void djn_record_clear(struct djn_session *s)
{
	djn_record_free(s);
	djn_session_rearm(s);
}

int djn_record_count(const struct djn_session *s)
{
	return s->rec ? s->rec->n_patterns : 0;
}

const char *djn_record_pattern(const struct djn_session *s, int i)
{
	return s->rec && i >= 0 && i < s->rec->n_patterns ? s->rec->patterns[i] : NULL;
}

bool djn_record_site(const struct djn_session *s, int site)
{
	return s->rec && site >= 0 && site < s->n_sites && s->rec->mask[site];
}

int djn_record_positions(const struct djn_session *s, int site)
{
	return djn_record_site(s, site) ? s->rec->n_pos[site] : 0;
}

void djn_record_reset(struct djn_session *s)
{
	if (s->rec)
		forget_rows(s->rec, s->n_sites);
}

void djn_record_arm(const struct djn_session *s, unsigned char *armed)
{
	if (s->rec)
		for (int t = 0; t < s->n_sites; t++)
			armed[t] |= s->rec->mask[t];
}

/* At a recorded site, just executed (and steered): its rows, at their
 * positions.  final_norm and logits hold the chunk's last row only. */
enum djn_status djn_record_take(struct djn_session *s, int site)
{
	struct djn_rec *r = s->rec;
	int width = djn_site_width(s->c, site), rows = s->buf_rows[site];
	int p0 = rows == s->r.n_rows ? s->r.pos : s->r.pos + s->r.n_rows - 1, end = p0 + rows;
	enum djn_status st;

	if (!r || !r->mask[site])
		return DJN_OK;
	if (end > r->cap[site]) {
		int cap = r->cap[site] ? r->cap[site] : 16;
		while (cap < end)
			cap *= 2;
		r->rows[site] = djn_xrealloc(r->rows[site], sizeof(float) * (size_t)cap * width);
		r->have[site] = djn_xrealloc(r->have[site], (size_t)cap);
		memset(r->have[site] + r->cap[site], 0, (size_t)(cap - r->cap[site]));
		r->cap[site] = cap;
	}
	if ((st = djn_session_read(s, site, r->rows[site] + (size_t)p0 * width,
				   (size_t)rows * width)))
		return st;
	memset(r->have[site] + p0, 1, (size_t)rows);
	if (end > r->n_pos[site])
		r->n_pos[site] = end;
	return DJN_OK;
}

enum djn_status djn_record_read(struct djn_session *s, int site, int pos0, int n, float *out)
{
	struct djn_rec *r = s->rec;
	char name[32];
	int width;

	if (site < 0 || site >= s->n_sites)
		return djn_session_fail(s, DJN_ERR_RANGE, "no site %d", site);
	djn_site_name(s->c, site, name, sizeof(name));
	if (!djn_record_site(s, site))
		return djn_session_fail(s, DJN_ERR_STATE, "%s is not recorded (\"record %s\" "
					"before the run)", name, name);
	if (pos0 < 0 || n < 1 || pos0 + n > r->n_pos[site])
		return djn_session_fail(s, DJN_ERR_RANGE,
					"%s: positions %d..%d outside the %d recorded (0..%d)", name,
					pos0, pos0 + n - 1, r->n_pos[site], r->n_pos[site] - 1);
	for (int p = pos0; p < pos0 + n; p++)
		if (!r->have[site][p])
			return djn_session_fail(s, DJN_ERR_STATE,
						"%s at pos %d was never computed (the head runs on "
						"a chunk's last position only)", name, p);
	width = djn_site_width(s->c, site);
	memcpy(out, r->rows[site] + (size_t)pos0 * width, sizeof(float) * (size_t)n * width);
	return DJN_OK;
}
