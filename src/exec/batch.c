/* batch.c - one forward pass for the chunks in flight of several sessions:
 * the scheduler's step (src/sched).
 *
 * The rows of all chunks (a decode token each, or a prefill chunk) are laid
 * end to end, session after session.  Norms, matmuls and the MLP run over
 * all rows at once, so each weight is read once for the whole batch; RoPE,
 * the KV store and attention run per row at the row's own position in its
 * own session's paged cache (the backend's *_rows ops).  Every op computes a
 * row as it computes it when the session runs alone, so on the CPU a batched
 * session's tokens are bit-identical to its tokens alone.
 *
 * On a GPU a batch of more than one row is padded to 16 rows at least:
 * the one-row GEMVs do not serve several rows well, cuBLAS does, and every
 * batched row then gets the same arithmetic whatever the batch's size.  A
 * batch of decode rows only is recorded as one backend graph per padded
 * size (1, 16, 32, ... 256 rows, as vLLM captures them) and replayed with
 * the rows' ids, positions and page tables copied in first (one copy);
 * padding rows have position -1 and touch no cache.
 *
 * Only the head's tensors (final_norm, logits) of a finished session are
 * copied back to its own buffers; a chunk run in a batch has no other live
 * sites (a session that must stop at a site steps alone: batchable()).
 *
 * Fused ops (where the backend has them; on unless DJN_BATCH_FUSE=0, and
 * each on unless its own variable is 0; read when the batch is made.  On
 * the H100 they take a 7B batch-64 decode step from 9.75 to 9.15 ms and
 * leave batch 1 as it was: bench/results/h100-2026-12-06b-fuse):
 *   DJN_BATCH_FUSE_NORM    the norms write the f16 input of the GEMMs after
 *                          them (rmsnorm_f16, matmul_f16) instead of f32
 *                          rows and a conversion pass;
 *   DJN_BATCH_FUSE_RESID   the residual adds are the GEMMs' own (matmul_f16
 *                          accumulating into x) instead of a product in
 *                          memory and an add kernel;
 *   DJN_BATCH_FUSE_ROPE    RoPE on q and k and the KV store in one launch
 *                          (rope_store_rows) instead of three;
 *   DJN_BATCH_FUSE_SWIGLU  SwiGLU writes the down GEMM's f16 input
 *                          (swiglu_f16) instead of f32 and a conversion.
 * NORM, RESID and SWIGLU apply to GEMMs over f16 weights (batches of more
 * than one row on a GPU); they give what the separate ops give, the f32
 * values rounded to f16 as the GEMM rounded them before, save RESID's sum,
 * which cuBLAS may order differently.  ROPE gives the same bits. */
#include <stdlib.h>
#include <string.h>

#include "exec/session_impl.h"

#define GRAPH_SIZES 9   /* padded batches of 1, 2, 4, ... 256 rows */
#define GPU_MIN_ROWS 16 /* a GPU batch of several rows has at least these */

struct djn_batch {
	struct djn_backend *be;
	struct djn_err err;
	const struct djn_model *m; /* what the buffers are laid out for */
	int cap_rows, cap_seqs;
	struct djn_arena arena;
	float *x, *xb, *q, *k, *v, *att, *ao, *gate, *up, *act, *last, *fn, *logits;
	uint16_t *xh; /* f16 GEMM input (rows, max(dim, hidden)): the fused ops */
	/* per row, in one backend block (one copy a step): the page table of
	 * its session, its position and its token id */
	void *meta;
	unsigned char *meta_host;
	struct djn_kv_rows rows;
	int32_t *ids; /* inside meta */
	struct djn_session **mem; /* the step's members, laid out and swapped in */
	int *idx;     /* their places in the caller's array */
	int cap_mem;
	int *first;   /* per session: its first row */
	int *next;    /* per row: argmax */
	struct djn_graph *graph[GRAPH_SIZES];
	int graph_fails[GRAPH_SIZES];
	bool graph_off;
	bool fuse_norm, fuse_resid, fuse_rope, fuse_swiglu; /* the header's switches */
	long graph_steps, steps;
};

static bool env_off(const char *name)
{
	const char *e = getenv(name);

	return e && !strcmp(e, "0");
}

struct djn_batch *djn_batch_new(struct djn_backend *be, struct djn_err *err)
{
	struct djn_batch *b;

	if (!be) {
		djn_err_set(err, DJN_ERR_INVALID, "batch: no backend");
		return NULL;
	}
	b = djn_xcalloc(1, sizeof(*b));
	b->be = be;
	b->arena.be = be; /* grown at the first step */
	const char *g = getenv("DJINN_GRAPH");
	b->graph_off = g && !strcmp(g, "0");
	const char *f = getenv("DJN_BATCH_FUSE");
	const bool fuse = !(f && !strcmp(f, "0"));
	b->fuse_norm = fuse && !env_off("DJN_BATCH_FUSE_NORM");
	b->fuse_resid = fuse && !env_off("DJN_BATCH_FUSE_RESID");
	b->fuse_rope = fuse && !env_off("DJN_BATCH_FUSE_ROPE");
	b->fuse_swiglu = fuse && !env_off("DJN_BATCH_FUSE_SWIGLU");
	return b;
}

static void graphs_free(struct djn_batch *b)
{
	for (int i = 0; i < GRAPH_SIZES; i++) {
		if (b->graph[i])
			b->be->i->graph_free(b->be, b->graph[i]);
		b->graph[i] = NULL;
	}
}

void djn_batch_free(struct djn_batch *b)
{
	if (!b)
		return;
	graphs_free(b);
	djn_arena_release(&b->arena);
	if (b->meta)
		b->be->i->dealloc(b->be, b->meta);
	free(b->meta_host);
	free(b->first);
	free(b->next);
	free(b->mem);
	free(b->idx);
	free(b);
}

const char *djn_batch_errmsg(const struct djn_batch *b)
{
	return b->err.msg;
}

long djn_batch_graph_steps(const struct djn_batch *b)
{
	return b->graph_steps;
}

static size_t meta_bytes(int rows)
{
	return (size_t)rows * (sizeof(void *) + 2 * sizeof(int32_t));
}

/* Lay the buffers out for at least n_rows rows and n_seqs sessions of m's
 * shape.  Growing moves them: the recorded graphs go. */
static enum djn_status reserve(struct djn_batch *b, const struct djn_model *m, int n_rows,
			       int n_seqs)
{
	const struct djn_config *c = &m->cfg;
	struct djn_backend *be = b->be;
	int rows, seqs, qd = c->n_head * c->head_dim, kvd = c->n_kv_head * c->head_dim;

	if (b->m == m && n_rows <= b->cap_rows && n_seqs <= b->cap_seqs)
		return DJN_OK;
	rows = b->m == m && b->cap_rows > n_rows ? b->cap_rows : n_rows;
	seqs = b->m == m && b->cap_seqs > n_seqs ? b->cap_seqs : n_seqs;
	/* room for the largest padded decode batch that fits */
	if (seqs < rows)
		seqs = rows;
	graphs_free(b);
	size_t nh = (size_t)rows * (c->hidden_dim > c->dim ? c->hidden_dim : c->dim);
	size_t f = 4 * (size_t)rows * c->dim + (size_t)rows * (qd + 2 * kvd) +
		   3 * (size_t)rows * c->hidden_dim + 2 * (size_t)seqs * c->dim +
		   (size_t)seqs * c->vocab_size + (nh + 1) / 2;
	if (djn_arena_reserve(&b->arena, f * sizeof(float) + 15 * 256, &b->err))
		return b->err.code;
	djn_arena_reset(&b->arena);
	b->x = djn_arena_floats(&b->arena, (size_t)rows * c->dim);
	b->xb = djn_arena_floats(&b->arena, (size_t)rows * c->dim);
	b->ao = djn_arena_floats(&b->arena, (size_t)rows * c->dim);
	b->att = djn_arena_floats(&b->arena, (size_t)rows * (qd > c->dim ? qd : c->dim));
	b->q = djn_arena_floats(&b->arena, (size_t)rows * qd);
	b->k = djn_arena_floats(&b->arena, (size_t)rows * kvd);
	b->v = djn_arena_floats(&b->arena, (size_t)rows * kvd);
	b->gate = djn_arena_floats(&b->arena, (size_t)rows * c->hidden_dim);
	b->up = djn_arena_floats(&b->arena, (size_t)rows * c->hidden_dim);
	b->act = djn_arena_floats(&b->arena, (size_t)rows * c->hidden_dim);
	b->last = djn_arena_floats(&b->arena, (size_t)seqs * c->dim);
	b->fn = djn_arena_floats(&b->arena, (size_t)seqs * c->dim);
	b->logits = djn_arena_floats(&b->arena, (size_t)seqs * c->vocab_size);
	b->xh = (uint16_t *)djn_arena_floats(&b->arena, (nh + 1) / 2);
	DJN_ASSERT(b->xh != NULL);
	void *meta = be->i->alloc(be, meta_bytes(rows));
	if (!meta) {
		b->m = NULL;
		return djn_err_set(&b->err, DJN_ERR_NOMEM, "batch of %d rows: %s", rows,
				   be->err.msg);
	}
	if (b->meta)
		be->i->dealloc(be, b->meta);
	b->meta = meta;
	b->meta_host = djn_xrealloc(b->meta_host, meta_bytes(rows));
	b->first = djn_xrealloc(b->first, sizeof(int) * ((size_t)seqs + 1));
	b->next = djn_xrealloc(b->next, sizeof(int) * (size_t)seqs);
	b->cap_rows = rows;
	b->cap_seqs = seqs;
	b->m = m;
	b->rows.tables = (float *const *const *)meta;
	b->rows.pos = (const int32_t *)((char *)meta + (size_t)rows * sizeof(void *));
	b->ids = (int32_t *)((char *)meta + (size_t)rows * (sizeof(void *) + sizeof(int32_t)));
	return DJN_OK;
}

static const struct djn_weight *opt(const struct djn_weight *w)
{
	return djn_weight_present(w) ? w : NULL;
}

static enum djn_status fail(struct djn_batch *b, enum djn_status st, const char *what)
{
	return djn_err_set(&b->err, st, "batch step: %s: %s", what, b->be->err.msg);
}

/* RoPE on q and k, the KV store and attention of layer l, each row at its
 * own position in its own session's cache. */
static enum djn_status attend(struct djn_batch *b, int n_rows, int l)
{
	const struct djn_backend_i *o = b->be->i;
	struct djn_backend *be = b->be;
	const struct djn_config *c = &b->m->cfg;
	enum djn_status st;

	b->rows.n_rows = n_rows;
	if (b->fuse_rope && o->rope_store_rows && c->head_dim % 2 == 0 &&
	    c->n_kv_head * c->head_dim == b->rows.kv_dim)
		st = o->rope_store_rows(be, b->q, b->k, b->v, &b->rows, l, c->n_head, c->n_kv_head,
					c->head_dim, c->rope_theta, c->rope_style);
	else if (!(st = o->rope_rows(be, b->q, &b->rows, c->n_head, c->head_dim, c->head_dim,
				     c->rope_theta, c->rope_style)) &&
		 !(st = o->rope_rows(be, b->k, &b->rows, c->n_kv_head, c->head_dim, c->head_dim,
				     c->rope_theta, c->rope_style)))
		st = o->kv_store_rows(be, &b->rows, l, b->k, b->v);
	if (st || (st = o->attention_rows(be, b->att, b->q, &b->rows, c->n_head, c->n_kv_head,
					  c->head_dim, l)))
		return fail(b, st, "attention");
	return DJN_OK;
}

/* Whether layer L's GEMMs can take f16 input from the ops before them: f16
 * weights, no biases, rows for cuBLAS (matmul_f16). */
static bool f16_layer(const struct djn_batch *b, const struct djn_layer *L, int n_rows)
{
	const struct djn_weight *ws[] = { &L->wq, &L->wk, &L->wv, &L->wo,
					  &L->w_gate, &L->w_up, &L->w_down };
	const struct djn_weight *bs[] = { &L->bq, &L->bk, &L->bv, &L->bo, &L->b_up, &L->b_down };

	if (n_rows < GPU_MIN_ROWS || !b->be->i->matmul_f16)
		return false;
	for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
		if (ws[i]->dtype != DJN_DTYPE_F16)
			return false;
	for (size_t i = 0; i < sizeof(bs) / sizeof(bs[0]); i++)
		if (djn_weight_present(bs[i]))
			return false;
	return true;
}

/* The attention half of layer l with the fused ops (f16_layer): the residual
 * stream b->x goes on to the MLP. */
static enum djn_status attn_f16(struct djn_batch *b, int n_rows, int l)
{
	const struct djn_backend_i *o = b->be->i;
	struct djn_backend *be = b->be;
	const struct djn_config *c = &b->m->cfg;
	const struct djn_layer *L = &b->m->layers[l];
	size_t nd = (size_t)n_rows * c->dim;
	enum djn_status st;

	if (b->fuse_norm && o->rmsnorm_f16) {
		if ((st = o->rmsnorm_f16(be, b->xh, b->x, &L->attn_norm, n_rows, c->dim,
					 c->norm_eps)))
			return fail(b, st, "attn_norm");
		if ((st = o->matmul_f16(be, b->q, b->xh, DJN_DTYPE_F16, &L->wq, n_rows, false)) ||
		    (st = o->matmul_f16(be, b->k, b->xh, DJN_DTYPE_F16, &L->wk, n_rows, false)) ||
		    (st = o->matmul_f16(be, b->v, b->xh, DJN_DTYPE_F16, &L->wv, n_rows, false)))
			return fail(b, st, "q/k/v");
	} else {
		float *ys[3] = { b->q, b->k, b->v };
		const struct djn_weight *ws[3] = { &L->wq, &L->wk, &L->wv };
		if ((st = o->rmsnorm(be, b->xb, b->x, &L->attn_norm, n_rows, c->dim, c->norm_eps)))
			return fail(b, st, "attn_norm");
		if (o->matmul_group)
			st = o->matmul_group(be, ys, b->xb, ws, 3, n_rows, false, NULL);
		else
			for (int i = 0; i < 3 && !st; i++)
				st = o->matmul(be, ys[i], b->xb, ws[i], NULL, n_rows);
		if (st)
			return fail(b, st, "q/k/v");
	}
	if ((st = attend(b, n_rows, l)))
		return st;
	if (b->fuse_resid)
		st = o->matmul_f16(be, b->x, b->att, DJN_DTYPE_F32, &L->wo, n_rows, true);
	else if (!(st = o->matmul_f16(be, b->ao, b->att, DJN_DTYPE_F32, &L->wo, n_rows, false)))
		st = o->add(be, b->x, b->x, b->ao, nd);
	return st ? fail(b, st, "attn_out") : DJN_OK;
}

/* The MLP half of layer l with the fused ops (f16_layer). */
static enum djn_status mlp_f16(struct djn_batch *b, int n_rows, int l)
{
	const struct djn_backend_i *o = b->be->i;
	struct djn_backend *be = b->be;
	const struct djn_config *c = &b->m->cfg;
	const struct djn_layer *L = &b->m->layers[l];
	size_t nd = (size_t)n_rows * c->dim, nh = (size_t)n_rows * c->hidden_dim;
	const bool swiglu_h = b->fuse_swiglu && o->swiglu_f16;
	const void *act = b->act; /* the down GEMM's input, f32 or (swiglu_h) f16 */
	enum djn_status st;

	if (b->fuse_norm && o->rmsnorm_f16) {
		if ((st = o->rmsnorm_f16(be, b->xh, b->x, &L->mlp_norm, n_rows, c->dim,
					 c->norm_eps)))
			return fail(b, st, "mlp_norm");
		if ((st = o->matmul_f16(be, b->gate, b->xh, DJN_DTYPE_F16, &L->w_gate, n_rows,
					false)) ||
		    (st = o->matmul_f16(be, b->up, b->xh, DJN_DTYPE_F16, &L->w_up, n_rows, false)))
			return fail(b, st, "mlp_act");
	} else {
		float *ys[2] = { b->gate, b->up };
		const struct djn_weight *ws[2] = { &L->w_gate, &L->w_up };
		if ((st = o->rmsnorm(be, b->xb, b->x, &L->mlp_norm, n_rows, c->dim, c->norm_eps)))
			return fail(b, st, "mlp_norm");
		if (o->matmul_group)
			st = o->matmul_group(be, ys, b->xb, ws, 2, n_rows, false, NULL);
		else
			for (int i = 0; i < 2 && !st; i++)
				st = o->matmul(be, ys[i], b->xb, ws[i], NULL, n_rows);
		if (st)
			return fail(b, st, "mlp_act");
	}
	/* the gate and up GEMMs have read xh: it takes the activation now */
	if (swiglu_h) {
		st = o->swiglu_f16(be, b->xh, b->gate, b->up, nh);
		act = b->xh;
	} else {
		st = o->swiglu(be, b->act, b->gate, b->up, nh);
	}
	if (st)
		return fail(b, st, "mlp_act");
	const enum djn_dtype at = swiglu_h ? DJN_DTYPE_F16 : DJN_DTYPE_F32;
	if (b->fuse_resid)
		st = o->matmul_f16(be, b->x, act, at, &L->w_down, n_rows, true);
	else if (!(st = o->matmul_f16(be, b->ao, act, at, &L->w_down, n_rows, false)))
		st = o->add(be, b->x, b->x, b->ao, nd);
	return st ? fail(b, st, "mlp_out") : DJN_OK;
}

/* The layers over n_rows rows whose ids are in b->ids: the residual stream
 * ends in b->x.  No host wait, no host copy: recordable. */
static enum djn_status layers(struct djn_batch *b, int n_rows)
{
	const struct djn_backend_i *o = b->be->i;
	struct djn_backend *be = b->be;
	const struct djn_model *m = b->m;
	const struct djn_config *c = &m->cfg;
	size_t nd = (size_t)n_rows * c->dim;
	enum djn_status st;

	if ((st = o->embed(be, b->x, &m->tok_embd, b->ids, n_rows)))
		return fail(b, st, "embed");
	const bool fused = b->fuse_norm || b->fuse_resid || b->fuse_swiglu;
	for (int l = 0; l < c->n_layer; l++) {
		const struct djn_layer *L = &m->layers[l];
		if (fused && f16_layer(b, L, n_rows)) {
			if ((st = attn_f16(b, n_rows, l)) || (st = mlp_f16(b, n_rows, l)))
				return st;
			continue;
		}
		bool qkv_bias = djn_weight_present(&L->bq) || djn_weight_present(&L->bk) ||
				djn_weight_present(&L->bv);

		if ((st = o->rmsnorm(be, b->xb, b->x, &L->attn_norm, n_rows, c->dim, c->norm_eps)))
			return fail(b, st, "attn_norm");
		if (o->matmul_group && !qkv_bias) {
			float *ys[3] = { b->q, b->k, b->v };
			const struct djn_weight *ws[3] = { &L->wq, &L->wk, &L->wv };
			st = o->matmul_group(be, ys, b->xb, ws, 3, n_rows, false, NULL);
		} else if (!(st = o->matmul(be, b->q, b->xb, &L->wq, opt(&L->bq), n_rows)) &&
			   !(st = o->matmul(be, b->k, b->xb, &L->wk, opt(&L->bk), n_rows))) {
			st = o->matmul(be, b->v, b->xb, &L->wv, opt(&L->bv), n_rows);
		}
		if (st)
			return fail(b, st, "q/k/v");
		if ((st = attend(b, n_rows, l)))
			return st;
		if (o->matmul_add && !djn_weight_present(&L->bo))
			st = o->matmul_add(be, b->ao, b->x, b->att, &L->wo, b->x, n_rows);
		else if (!(st = o->matmul(be, b->ao, b->att, &L->wo, opt(&L->bo), n_rows)))
			st = o->add(be, b->x, b->x, b->ao, nd);
		if (st)
			return fail(b, st, "attn_out");
		if ((st = o->rmsnorm(be, b->xb, b->x, &L->mlp_norm, n_rows, c->dim, c->norm_eps)))
			return fail(b, st, "mlp_norm");
		if (o->matmul_group) {
			float *ys[2] = { b->act, b->up };
			const struct djn_weight *ws[2] = { &L->w_gate, &L->w_up };
			st = o->matmul_group(be, ys, b->xb, ws, 2, n_rows, true, NULL);
		} else if (!(st = o->matmul(be, b->gate, b->xb, &L->w_gate, NULL, n_rows)) &&
			   !(st = o->matmul(be, b->up, b->xb, &L->w_up, NULL, n_rows))) {
			st = o->swiglu(be, b->act, b->gate, b->up, (size_t)n_rows * c->hidden_dim);
		}
		if (st)
			return fail(b, st, "mlp_act");
		if (o->matmul_add && !djn_weight_present(&L->b_down))
			st = o->matmul_add(be, b->ao, b->x, b->act, &L->w_down, b->x, n_rows);
		else if (!(st = o->matmul(be, b->ao, b->act, &L->w_down, opt(&L->b_down), n_rows)))
			st = o->add(be, b->x, b->x, b->ao, nd);
		if (st)
			return fail(b, st, "mlp_out");
	}
	return DJN_OK;
}

/* final_norm and logits of n rows of src (each session's last row). */
static enum djn_status head(struct djn_batch *b, const float *src, int n)
{
	const struct djn_backend_i *o = b->be->i;
	const struct djn_model *m = b->m;
	enum djn_status st;

	if ((st = o->rmsnorm(b->be, b->fn, src, &m->final_norm, n, m->cfg.dim, m->cfg.norm_eps)))
		return fail(b, st, "final_norm");
	if ((st = o->matmul(b->be, b->logits, b->fn, &m->output, NULL, n)))
		return fail(b, st, "logits");
	return DJN_OK;
}

bool djn_session_batchable(const struct djn_session *s)
{
	if (s->r.state != DJN_RUN_PAUSED || s->r.site != -1 || s->ring ||
	    s->c->arch != DJN_ARCH_LLAMA || s->n_steers > 0 || s->interrupt || s->rec)
		return false;
	/* anything that can stop the run steps alone, on the per-site path */
	for (int i = 0; i < s->n_bps; i++)
		if (s->bps[i].enabled)
			return false;
	return true;
}

enum djn_status djn_session_chunk_limit(struct djn_session *s, int n_rows)
{
	if (s->r.state != DJN_RUN_PAUSED || s->r.site != -1)
		return djn_session_fail(s, DJN_ERR_STATE,
					"a chunk can be cut only before its first site runs");
	if (n_rows < 1)
		return djn_session_fail(s, DJN_ERR_INVALID, "a chunk has at least one row");
	if (n_rows >= s->r.n_rows)
		return DJN_OK;
	if (s->needs_begin) { /* laid out when it runs */
		s->r.n_rows = n_rows;
		return DJN_OK;
	}
	return s->head_only ? djn_chunk_begin_batched(s, s->r.pos, n_rows)
			    : djn_chunk_begin(s, s->r.pos, n_rows);
}

/* Will the token `next` end the run (so its head tensors must stay live)? */
static bool finishes(const struct djn_session *s, int next)
{
	const struct djn_gen_opts *g = &s->r.gen;

	if (s->r.pos + s->r.n_rows < s->r.fill_end)
		return false;
	if (next < 0)
		return true; /* not known yet: keep them */
	if (g->stop_at_eos && s->m->tok &&
	    (next == djn_tok_eos(s->m->tok) || next == djn_tok_bos(s->m->tok)))
		return true;
	return (g->n_new > 0 && s->r.n_generated + 1 >= g->n_new) ||
	       s->r.n_tokens + 1 >= s->max_ctx;
}

static int padded(int n)
{
	int p = 1, i = 0;

	while (p < n && i < GRAPH_SIZES - 1) {
		p <<= 1;
		i++;
	}
	return p >= n ? i : -1;
}

/* The forward pass of the decode rows, as a recorded graph: false when it
 * could not run that way (the caller runs it op by op). */
static bool run_graph(struct djn_batch *b, int size)
{
	struct djn_backend *be = b->be;
	int rows = 1 << size;
	enum djn_status st;

	for (int tries = 0; tries < 2; tries++) {
		if (!b->graph[size]) {
			if (be->i->graph_begin(be, 0))
				goto fail;
			st = layers(b, rows);
			if (!st)
				st = head(b, b->x, rows);
			if (be->i->graph_end(be, &b->graph[size]) || st)
				goto fail;
		}
		st = be->i->graph_launch(be, b->graph[size], 0);
		if (st == DJN_ERR_STATE) {
			be->i->graph_free(be, b->graph[size]);
			b->graph[size] = NULL;
			continue;
		}
		if (st)
			return false;
		b->graph_fails[size] = 0;
		b->graph_steps++;
		return true;
	}
	return false;
fail:
	if (b->graph[size])
		be->i->graph_free(be, b->graph[size]);
	b->graph[size] = NULL;
	b->graph_fails[size]++;
	return false;
}

/* The forward pass and the tokens of the members mem[0..n), which are
 * swapped in and laid out; why[idx[i]] gets member i's stop. */
static enum djn_status run(struct djn_batch *b, int n, enum djn_stop *why)
{
	struct djn_backend *be = b->be;
	const struct djn_backend_i *o = be->i;
	struct djn_session *const *ss = b->mem;
	const struct djn_model *m = ss[0]->m;
	int n_rows = 0, last = ss[0]->n_sites - 1, size = -1;
	bool decode = true, graph;
	enum djn_status st;

	for (int i = 0; i < n; i++) {
		n_rows += ss[i]->r.n_rows;
		decode = decode && ss[i]->r.n_rows == 1;
	}
	/* a GPU's GEMVs serve one row; a batch of more goes to cuBLAS as 16
	 * rows at least (padding rows cost next to nothing, and every batched
	 * row gets the same arithmetic whatever the batch's size); on a
	 * batch-invariant backend one row is padded too: a GEMV sums in another
	 * order than the batch's GEMMs */
	int floor = be->host_memory || (n_rows == 1 && !be->invariant_rows) ? 1 : GPU_MIN_ROWS;
	int rows = n_rows > floor ? n_rows : floor;
	graph = decode && o->graph_begin && !b->graph_off &&
		(size = padded(rows)) >= 0 && b->graph_fails[size] < 3;
	if (graph)
		rows = 1 << size;
	if ((st = reserve(b, m, rows, n)))
		return st;

	int r = 0;
	void **tables = (void **)b->meta_host;
	int32_t *pos = (int32_t *)(b->meta_host + (size_t)b->cap_rows * sizeof(void *));
	int32_t *ids = pos + b->cap_rows;
	for (int i = 0; i < n; i++) {
		struct djn_session *s = ss[i];
		b->first[i] = r;
		for (int j = 0; j < s->r.n_rows; j++, r++) {
			tables[r] = (void *)s->kv.view.pages;
			pos[r] = s->r.pos + j;
			ids[r] = s->tokens[s->r.pos + j];
		}
	}
	b->first[n] = r;
	for (; r < rows; r++) { /* padding */
		tables[r] = tables[0];
		pos[r] = -1;
		ids[r] = 0;
	}
	b->rows.n_rows = rows;
	b->rows.page_tokens = ss[0]->kv.view.page_tokens;
	b->rows.n_layer = ss[0]->kv.view.n_layer;
	b->rows.kv_dim = ss[0]->kv.view.kv_dim;
	b->rows.max_len = m->cfg.seq_len;
	if (b->rows.dtype != ss[0]->kv.view.dtype) /* the model's, same for all */
		graphs_free(b);
	b->rows.dtype = ss[0]->kv.view.dtype;
	if ((st = o->copy_h2d(be, b->meta, b->meta_host, meta_bytes(b->cap_rows))))
		return fail(b, st, "copying the rows");

	if (!graph || !run_graph(b, size)) {
		const float *lastrows = b->x;
		if ((st = layers(b, rows)))
			return st;
		if (!decode) {
			/* each session's last row goes on to the head */
			for (int i = 0; i < n && !st; i++)
				st = o->copy_d2d(be, b->last + (size_t)i * m->cfg.dim,
						 b->x + (size_t)(b->first[i + 1] - 1) * m->cfg.dim,
						 sizeof(float) * m->cfg.dim);
			if (st)
				return fail(b, st, "gathering last rows");
			lastrows = b->last;
		}
		/* padded as the rows are (the rows past n are not read) */
		if ((st = head(b, lastrows, n > 1 && n < floor ? floor : n)))
			return st;
	}
	b->steps++;

	/* the tokens: greedy rows by one argmax for all */
	bool any_greedy = false;
	for (int i = 0; i < n; i++) {
		b->next[i] = -1;
		any_greedy = any_greedy || djn_session_greedy(ss[i]);
	}
	if (any_greedy) {
		st = o->argmax_rows(be, b->logits, n, m->cfg.vocab_size, b->next);
		if (st)
			return fail(b, st, "sampling");
		for (int i = 0; i < n; i++)
			if (!djn_session_greedy(ss[i]))
				b->next[i] = -1;
	}
	for (int i = 0; i < n; i++) {
		struct djn_session *s = ss[i];
		if (!finishes(s, b->next[i]) && b->next[i] >= 0)
			continue;
		/* the head's tensors, for sampling here or a look after */
		st = o->copy_d2d(be, s->buf[last - 1], b->fn + (size_t)i * m->cfg.dim,
				 sizeof(float) * m->cfg.dim);
		if (!st)
			st = o->copy_d2d(be, s->buf[last], b->logits + (size_t)i * m->cfg.vocab_size,
					 sizeof(float) * m->cfg.vocab_size);
		if (st)
			return fail(b, st, "logits");
	}
	for (int i = 0; i < n; i++) {
		ss[i]->r.site = last;
		ss[i]->r.batched = true;
	}
	/* the pass is done: members may make room for each other's next chunk */
	for (int i = 0; i < n; i++)
		ss[i]->in_batch = false;
	for (int i = 0; i < n; i++) {
		ss[i]->deferring = true;
		why[b->idx[i]] = djn_session_advance(ss[i], b->next[i]);
		ss[i]->deferring = false;
	}
	return DJN_OK;
}

enum djn_status djn_batch_run(struct djn_batch *b, struct djn_session *const *ss, int n,
			      enum djn_stop *why)
{
	const struct djn_model *m;
	enum djn_status st = DJN_OK;
	int k = 0;

	if (n < 1)
		return djn_err_set(&b->err, DJN_ERR_INVALID, "batch step: no sessions");
	if (!b->be->i->attention_rows || !b->be->i->rope_rows || !b->be->i->kv_store_rows ||
	    !b->be->i->argmax_rows)
		return djn_err_set(&b->err, DJN_ERR_UNSUPPORTED,
				   "batch step: the %s backend has no batched attention",
				   b->be->i->name);
	m = ss[0]->m;
	for (int i = 0; i < n; i++) {
		if (ss[i]->m != m || ss[i]->be != b->be)
			return djn_err_set(&b->err, DJN_ERR_INVALID,
					   "batch step: session %d has another model or backend", i);
		if (!djn_session_batchable(ss[i]))
			return djn_err_set(&b->err, DJN_ERR_STATE,
					   "batch step: session %d cannot join a batch now", i);
	}
	if (b->cap_mem < n) {
		b->cap_mem = n;
		b->mem = djn_xrealloc(b->mem, sizeof(*b->mem) * (size_t)n);
		b->idx = djn_xrealloc(b->idx, sizeof(*b->idx) * (size_t)n);
	}
	/* every member's pages stay put for the step: a member swapped in
	 * may evict others, never another member.  One that cannot be laid
	 * out or brought in (no room) stays out of the pass, before its
	 * chunk, with its message; the others go on */
	for (int i = 0; i < n; i++)
		ss[i]->in_batch = true;
	for (int i = 0; i < n; i++) {
		why[i] = DJN_STOP_ERROR;
		if ((st = djn_session_begun_batched(ss[i])) || (st = djn_session_swapped_in(ss[i]))) {
			ss[i]->in_batch = false;
			djn_err_set(&b->err, st, "batch step: %s", djn_session_errmsg(ss[i]));
			continue;
		}
		b->mem[k] = ss[i];
		b->idx[k++] = i;
	}
	st = k ? run(b, k, why) : b->err.code;
	for (int i = 0; i < n; i++)
		ss[i]->in_batch = false;
	return st;
}
