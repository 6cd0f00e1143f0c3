/* pattern.c - attention patterns: the weights a query head gives each
 * position of its causal window, recomputed at a stop from the layer's q and
 * the KV cache, so a run that never asks pays nothing for them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exec/session_impl.h"

static inline int layer_site(int l, enum djn_site_kind k)
{
	return 1 + l * DJN_SITES_PER_LAYER + (k - DJN_SITE_ATTN_NORM);
}

/* K of query head `head` (its kv head's slice, head_dim floats a position)
 * for positions 0 .. n_pos-1 into k (host): positions before the chunk from
 * the cache, the chunk's own from the cache once the layer's attention has
 * stored them, else from the live L.k tensor, which is what it will store. */
static enum djn_status read_k(struct djn_session *s, int layer, int kvh, int n_pos, float *k)
{
	const struct djn_config *c = s->c;
	const struct djn_backend_i *o = s->be->i;
	const struct djn_kv_view *kv = &s->kv.view;
	int pt = kv->page_tokens, hd = c->head_dim, kvd = kv->kv_dim, pos0 = s->r.pos;
	int ksite = layer_site(layer, DJN_SITE_K), from_cache = n_pos;
	bool stored = s->r.site >= layer_site(layer, DJN_SITE_ATTN);
	char name[32];
	float *blk;
	enum djn_status st = DJN_OK;

	if (!stored && n_pos > pos0) {
		djn_site_name(c, ksite, name, sizeof(name));
		if (!djn_session_site_live(s, ksite))
			return djn_session_fail(s, DJN_ERR_STATE,
						"attn_pattern: K of positions %d..%d is not "
						"computed yet (at '%s', after the cursor: step "
						"there)", pos0, n_pos - 1, name);
		from_cache = pos0;
	}
	if (from_cache > kv->n_pages * pt)
		return djn_session_fail(s, DJN_ERR_RANGE,
					"attn_pattern: position %d is not in the KV cache",
					from_cache - 1);
	/* one copy a page: the layer's K rows of a page are contiguous */
	const bool f16 = kv->dtype == DJN_DTYPE_F16;
	const size_t eb = djn_kv_elem_bytes(kv->dtype);
	blk = djn_xmalloc(sizeof(float) * (size_t)pt * kvd);
	for (int p = 0; p * pt < from_cache && !st; p++) {
		int n = from_cache - p * pt < pt ? from_cache - p * pt : pt;
		const char *src = (const char *)kv->pages_host[p] + eb * (size_t)layer * 2 * pt * kvd;
		st = o->copy_d2h(s->be, blk, src, eb * (size_t)n * kvd);
		for (int u = 0; u < n && !st; u++) {
			size_t at = (size_t)u * kvd + (size_t)kvh * hd;
			float *dst = k + (size_t)(p * pt + u) * hd;
			if (f16)
				for (int i = 0; i < hd; i++)
					dst[i] = djn_f16_to_f32(((const uint16_t *)blk)[at + i]);
			else
				memcpy(dst, blk + at, sizeof(float) * hd);
		}
	}
	if (!st && from_cache < n_pos) {
		int n = n_pos - pos0;
		float *rows = djn_xrealloc(blk, sizeof(float) * (size_t)n * kvd);
		blk = rows;
		st = o->copy_d2h(s->be, rows, s->buf[ksite], sizeof(float) * (size_t)n * kvd);
		/* what attention will read: the stored value, rounded as the
		 * cache rounds it */
		for (int u = 0; u < n && !st; u++) {
			float *dst = k + (size_t)(pos0 + u) * hd;
			memcpy(dst, rows + (size_t)u * kvd + (size_t)kvh * hd, sizeof(float) * hd);
			if (f16)
				for (int i = 0; i < hd; i++)
					dst[i] = djn_f16_to_f32(djn_f32_to_f16(dst[i]));
		}
	}
	free(blk);
	if (st)
		return djn_session_fail(s, st, "attn_pattern: %s", s->be->err.msg);
	return DJN_OK;
}

enum djn_status djn_session_attn_pattern(struct djn_session *s, int layer, int head, int row0,
					 int n_rows, float *out)
{
	const struct djn_config *c = s->c;
	int hd = c->head_dim, qd = c->n_head * hd, qsite, rows, width;
	float *q, *k;
	char name[32];
	enum djn_status st;

	if (s->r.state == DJN_RUN_IDLE)
		return djn_session_fail(s, DJN_ERR_STATE, "the program is not being run");
	if (layer < 0 || layer >= c->n_layer)
		return djn_session_fail(s, DJN_ERR_RANGE, "attn_pattern: no layer %d (layers are "
					"L0..L%d)", layer, c->n_layer - 1);
	if (head < 0 || head >= c->n_head)
		return djn_session_fail(s, DJN_ERR_RANGE, "attn_pattern: no head %d (heads are "
					"0..%d)", head, c->n_head - 1);
	qsite = layer_site(layer, DJN_SITE_Q);
	if (!djn_session_site_live(s, qsite)) {
		djn_site_name(c, qsite, name, sizeof(name));
		return djn_session_fail(s, DJN_ERR_STATE,
					"attn_pattern: '%s' is not live here (not yet computed in "
					"this token, or overwritten by a later layer)", name);
	}
	rows = s->buf_rows[qsite];
	if (n_rows <= 0 || row0 < 0 || row0 + n_rows > rows)
		return djn_session_fail(s, DJN_ERR_RANGE, "attn_pattern: rows %d..%d outside 0..%d",
					row0, row0 + n_rows - 1, rows - 1);
	if ((st = djn_session_swapped_in(s)))
		return st;
	width = s->r.pos + row0 + n_rows;
	q = djn_xmalloc(sizeof(float) * (size_t)n_rows * qd);
	k = djn_xmalloc(sizeof(float) * (size_t)width * hd);
	st = s->be->i->copy_d2h(s->be, q, s->buf[qsite] + (size_t)row0 * qd,
				sizeof(float) * (size_t)n_rows * qd);
	if (st) {
		st = djn_session_fail(s, st, "attn_pattern: %s", s->be->err.msg);
		goto out_free;
	}
	if ((st = read_k(s, layer, head / (c->n_head / c->n_kv_head), width, k)))
		goto out_free;
	/* the CPU attention's arithmetic (cpu_attention_head), row by row */
	for (int r = 0; r < n_rows; r++) {
		const float *qh = q + (size_t)r * qd + (size_t)head * hd;
		float *a = out + (size_t)r * width, mx, sum = 0.0f;
		int pos = s->r.pos + row0 + r;
		for (int u = 0; u <= pos; u++) {
			const float *ku = k + (size_t)u * hd;
			float score = 0.0f;
			for (int i = 0; i < hd; i++)
				score += qh[i] * ku[i];
			a[u] = score / sqrtf((float)hd);
		}
		mx = a[0];
		for (int u = 1; u <= pos; u++)
			if (a[u] > mx)
				mx = a[u];
		for (int u = 0; u <= pos; u++) {
			a[u] = expf(a[u] - mx);
			sum += a[u];
		}
		for (int u = 0; u <= pos; u++)
			a[u] /= sum;
		for (int u = pos + 1; u < width; u++)
			a[u] = 0.0f;
	}
	st = DJN_OK;
out_free:
	free(k);
	free(q);
	return st;
}
