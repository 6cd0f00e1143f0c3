/* batch.c - the CPU reference for the rows of a batch of sessions: RoPE, the
 * KV store and attention with each row at its own position in its own paged
 * cache, and argmax row by row.
 *
 * A row's arithmetic is the per-session op's, through the same functions
 * (cpu_rope_row, cpu_attention_head, cpu_argmax): what a session computes
 * does not depend on whether it ran alone or in a batch. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* The cache of row i as the per-session ops see it: pages for positions
 * 0 .. pos, nothing assumed past them. */
static struct djn_kv_view row_view(const struct djn_kv_rows *kv, int i, int pos)
{
	struct djn_kv_view v = {
		.pages = kv->tables[i],
		.pages_host = kv->tables[i],
		.n_pages = pos / kv->page_tokens + 1,
		.page_tokens = kv->page_tokens,
		.n_layer = kv->n_layer,
		.kv_dim = kv->kv_dim,
		.dtype = kv->dtype,
	};
	return v;
}

/* The shape of the batch, and every row's position and table: a bad row
 * fails the whole call before anything is written. */
static enum djn_status check_rows(struct djn_backend *be, const char *op,
				  const struct djn_kv_rows *kv, int layer)
{
	if (!kv || kv->n_rows < 0 || (kv->n_rows > 0 && (!kv->tables || !kv->pos)))
		return djn_err_set(&be->err, DJN_ERR_INVALID, "%s: no rows (tables or pos not set)",
				   op);
	if (kv->page_tokens <= 0 || kv->kv_dim <= 0 || kv->n_layer <= 0 || kv->max_len <= 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "%s: page_tokens %d, kv_dim %d, n_layer %d, max_len %d: all must "
				   "be positive",
				   op, kv->page_tokens, kv->kv_dim, kv->n_layer, kv->max_len);
	if (layer < 0 || layer >= kv->n_layer)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "%s: layer %d beyond the %d cached", op,
				   layer, kv->n_layer);
	for (int i = 0; i < kv->n_rows; i++) {
		int pos = kv->pos[i];
		if (pos < 0)
			continue;
		if (pos >= kv->max_len)
			return djn_err_set(&be->err, DJN_ERR_RANGE,
					   "%s: row %d at position %d, beyond max_len %d", op, i, pos,
					   kv->max_len);
		if (!kv->tables[i] || !kv->tables[i][pos / kv->page_tokens])
			return djn_err_set(&be->err, DJN_ERR_RANGE,
					   "%s: row %d at position %d has no KV page %d", op, i, pos,
					   pos / kv->page_tokens);
	}
	return DJN_OK;
}

/* --- rope ------------------------------------------------------------------ */

struct rope_ctx {
	float *x;
	const struct djn_kv_rows *kv;
	int n_head, head_dim, rot_dim;
	float theta;
	enum djn_rope_style style;
};

static void rope_range(void *p, int64_t begin, int64_t end)
{
	struct rope_ctx *c = p;

	for (int64_t i = begin; i < end; i++) {
		int pos = c->kv->pos[i];
		if (pos >= 0)
			cpu_rope_row(c->x + (size_t)i * c->n_head * c->head_dim, c->n_head,
				     c->head_dim, c->rot_dim, pos, c->theta, c->style);
	}
}

enum djn_status cpu_rope_rows(struct djn_backend *be, float *x, const struct djn_kv_rows *kv,
			      int n_head, int head_dim, int rot_dim, float theta,
			      enum djn_rope_style style)
{
	struct rope_ctx c = { x, kv, n_head, head_dim, rot_dim, theta, style };

	if (!kv || kv->n_rows < 0 || (kv->n_rows > 0 && !kv->pos))
		return djn_err_set(&be->err, DJN_ERR_INVALID, "rope_rows: no rows (pos not set)");
	if (rot_dim > head_dim || rot_dim < 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "rope_rows: rot_dim %d, head_dim %d: need 0 <= rot_dim <= head_dim",
				   rot_dim, head_dim);
	if (n_head <= 0 || rot_dim < 2)
		return DJN_OK;
	/* each row is one task's: the rotation does not depend on the split */
	djn_pool_for(cpu_pool(be), kv->n_rows, 4, rope_range, &c);
	return DJN_OK;
}

/* --- kv_store -------------------------------------------------------------- */

enum djn_status cpu_kv_store_rows(struct djn_backend *be, const struct djn_kv_rows *kv,
				  int layer, const float *k, const float *v)
{
	enum djn_status st;

	if ((st = check_rows(be, "kv_store_rows", kv, layer)) != DJN_OK)
		return st;
	for (int i = 0; i < kv->n_rows; i++) {
		int pos = kv->pos[i];
		if (pos < 0)
			continue;
		struct djn_kv_view rv = row_view(kv, i, pos);
		size_t off = (size_t)i * kv->kv_dim;
		if ((st = cpu_kv_store(be, &rv, layer, pos, 1, k + off, v + off)) != DJN_OK)
			return st;
	}
	return DJN_OK;
}

/* --- attention ------------------------------------------------------------- */

struct attn_rows_ctx {
	float *out;
	const float *q;
	const struct djn_kv_rows *kv;
	int n_head, group, head_dim, layer;
};

/* Tasks are (row, head) pairs, as cpu_attention's. */
static void attn_rows_range(void *p, int64_t begin, int64_t end)
{
	struct attn_rows_ctx *c = p;
	const int hd = c->head_dim;
	float *att = malloc(sizeof(float) * (size_t)c->kv->max_len);

	for (int64_t t = begin; t < end; t++) {
		int r = (int)(t / c->n_head), h = (int)(t % c->n_head);
		int pos = c->kv->pos[r];
		float *xb = c->out + ((size_t)r * c->n_head + h) * hd;

		if (pos < 0) {
			memset(xb, 0, sizeof(float) * hd);
			continue;
		}
		struct djn_kv_view rv = row_view(c->kv, r, pos);
		cpu_attention_head(xb, c->q + ((size_t)r * c->n_head + h) * hd, &rv, c->layer, hd,
				   h / c->group, pos, att);
	}
	free(att);
}

enum djn_status cpu_attention_rows(struct djn_backend *be, float *out, const float *q,
				   const struct djn_kv_rows *kv, int n_head, int n_kv_head,
				   int head_dim, int layer)
{
	enum djn_status st;

	if (n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head || head_dim <= 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "attention_rows: %d heads, %d kv heads, head_dim %d", n_head,
				   n_kv_head, head_dim);
	if ((st = check_rows(be, "attention_rows", kv, layer)) != DJN_OK)
		return st;
	if ((int64_t)n_kv_head * head_dim > kv->kv_dim)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "attention_rows: %d kv heads of %d exceed the cache's kv_dim %d",
				   n_kv_head, head_dim, kv->kv_dim);
	/* the pages a row reads are 0 .. pos / page_tokens: the last was
	 * checked, and a table is filled from its start (djn_kv_reserve) */
	struct attn_rows_ctx c = { out, q, kv, n_head, n_head / n_kv_head, head_dim, layer };
	djn_pool_for(cpu_pool(be), (int64_t)kv->n_rows * n_head, 2, attn_rows_range, &c);
	return DJN_OK;
}

/* --- argmax ---------------------------------------------------------------- */

enum djn_status cpu_argmax_rows(struct djn_backend *be, const float *x, int n, int dim,
				int *out)
{
	if (n < 0 || dim <= 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID, "argmax_rows: %d rows of %d", n, dim);
	for (int i = 0; i < n; i++)
		cpu_argmax(be, x + (size_t)i * dim, dim, &out[i]);
	return DJN_OK;
}
