/* lens.c - the logit lens: a residual-stream row read through the model's
 * head (final norm, unembedding) wherever it is, not only after the last
 * layer. */
#include <string.h>

#include "exec/session_impl.h"

bool djn_site_residual(const struct djn_config *c, int site)
{
	enum djn_site_kind k;

	if (site < 0 || site >= djn_site_count(c))
		return false;
	k = djn_site_kind(c, site);
	return k == DJN_SITE_EMBED || k == DJN_SITE_RESID_MID || k == DJN_SITE_RESID_POST;
}

enum djn_status djn_session_lens(struct djn_session *s, int site, int row0, int n_rows,
				 float *out)
{
	const struct djn_config *c = s->c;
	struct djn_backend *be = s->be;
	const struct djn_backend_i *o = be->i;
	int rows, cols;
	float *fn, *lg;
	char name[32];
	enum djn_status st;

	if (site >= 0 && site < s->n_sites && !djn_site_residual(c, site)) {
		djn_site_name(c, site, name, sizeof(name));
		return djn_session_fail(s, DJN_ERR_INVALID,
					"'%s' is not a residual-stream site (embed, L*.resid_mid, "
					"L*.resid_post)", name);
	}
	if ((st = djn_session_site_shape(s, site, &rows, &cols)))
		return st;
	if (n_rows <= 0 || row0 < 0 || row0 + n_rows > rows)
		return djn_session_fail(s, DJN_ERR_RANGE, "rows %d..%d outside 0..%d", row0,
					row0 + n_rows - 1, rows - 1);
	/* two rows of scratch for the call, not kept: the lens is interactive,
	 * and a session's device memory stays what its runs need */
	fn = o->alloc(be, sizeof(float) * (size_t)c->dim);
	lg = fn ? o->alloc(be, sizeof(float) * (size_t)c->vocab_size) : NULL;
	if (!lg) {
		st = djn_session_fail(s, DJN_ERR_NOMEM, "lens: %s", be->err.msg);
		goto out_free;
	}
	/* row by row, with the ops and the one-row shapes of the final_norm
	 * and logits sites: the last layer's last row then gives the model's
	 * own logits, bit for bit where the backend is deterministic */
	for (int r = 0; r < n_rows; r++) {
		const float *x = s->buf[site] + (size_t)(row0 + r) * cols;
		if ((st = djn_final_norm(s, fn, x, 1)) ||
		    (st = o->matmul(be, lg, fn, &s->m->output, NULL, 1)) ||
		    (st = o->copy_d2h(be, out + (size_t)r * c->vocab_size, lg,
				      sizeof(float) * (size_t)c->vocab_size))) {
			djn_site_name(c, site, name, sizeof(name));
			st = djn_session_fail(s, st, "lens at %s: %s", name, be->err.msg);
			goto out_free;
		}
	}
	st = DJN_OK;
out_free:
	if (lg)
		o->dealloc(be, lg);
	if (fn)
		o->dealloc(be, fn);
	return st;
}
