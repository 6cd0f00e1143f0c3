/* forward.c - the forward pass as a list of sites: laying out a chunk's
 * tensors in the Stack arena and executing one site at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec/session_impl.h"

/* Lay the chunk's site tensors out in the arena.  Deterministic in n_rows,
 * so a checkpoint of the arena's bytes restores every live tensor.  When the
 * whole set is small (decode steps, short prompts) every site keeps its own
 * buffer and stays inspectable for the whole chunk; otherwise the layer sites
 * share one set of buffers across layers (a past layer's tensors are then
 * no longer live, like an optimized-out variable). */
static size_t arena_bytes(const struct djn_config *c, int n_rows, bool *aliased)
{
	size_t all = 0, shared = 0;
	int n_sites = djn_site_count(c), last = n_sites - 1;

	for (int site = 0; site < n_sites; site++) {
		size_t rows = site >= last - 1 ? 1 : (size_t)n_rows;
		size_t w = (size_t)djn_site_width(c, site) * rows * sizeof(float) + 256;
		all += w;
		if (djn_site_layer(c, site) <= 0)
			shared += w;
	}
	*aliased = all > DJN_ARENA_KEEP_ALL;
	return (*aliased ? shared : all) +
	       2 * ((size_t)c->hidden_dim * n_rows * sizeof(float) + 256) +
	       (size_t)n_rows * sizeof(int32_t) + 256;
}

size_t djn_chunk_arena_bytes(const struct djn_config *c, int n_rows)
{
	bool aliased;

	return arena_bytes(c, n_rows, &aliased);
}

/* Only the head's tensors (final_norm, logits: one row each) and the ids:
 * what a chunk run in a batch keeps per session (the batch's own arena
 * holds the rest). */
static size_t head_bytes(const struct djn_config *c, int n_rows)
{
	int last = djn_site_count(c) - 1;

	return (size_t)(djn_site_width(c, last - 1) + djn_site_width(c, last)) * sizeof(float) +
	       2 * 256 + (size_t)n_rows * sizeof(int32_t) + 256;
}

static enum djn_status chunk_begin(struct djn_session *s, int pos, int n_rows, bool head_only)
{
	const struct djn_config *c = s->c;
	size_t need;
	int last = s->n_sites - 1;
	enum djn_status st;

	if ((st = djn_session_swapped_in(s)))
		return st;
	need = arena_bytes(c, n_rows, &s->aliased);
	if (head_only) {
		need = head_bytes(c, n_rows);
		s->aliased = false;
	}
	/* a prefill's arena is given back when a much smaller chunk follows:
	 * hundreds of decoding sessions would otherwise each hold one */
	if ((st = djn_arena_fit(&s->arena, need, &s->err)))
		return st;
	djn_arena_reset(&s->arena);
	for (int site = 0; site < s->n_sites; site++) {
		int l = djn_site_layer(c, site);
		int rows = site >= last - 1 ? 1 : n_rows;
		s->buf_rows[site] = rows;
		if (head_only && site < last - 1) {
			s->buf[site] = NULL; /* in the batch's arena */
			continue;
		}
		if (s->aliased && l > 0) {
			s->buf[site] = s->buf[site - l * DJN_SITES_PER_LAYER];
			continue;
		}
		s->buf[site] = djn_arena_floats(&s->arena, (size_t)djn_site_width(c, site) * rows);
	}
	s->gate = head_only ? NULL : djn_arena_floats(&s->arena, (size_t)c->hidden_dim * n_rows);
	s->up = head_only ? NULL : djn_arena_floats(&s->arena, (size_t)c->hidden_dim * n_rows);
	s->ids = (int32_t *)djn_arena_floats(&s->arena, (size_t)n_rows);
	DJN_ASSERT(s->ids != NULL);
	/* a full Data segment swaps paused sessions out, least recently used first */
	while ((st = djn_kv_reserve(&s->kv, pos + n_rows, &s->err)) == DJN_ERR_NOMEM &&
	       !djn_session_evict_other(s))
		;
	if (st)
		return st;
	/* the ids go to the backend when embed runs: a chunk run in a batch
	 * never needs its own copy */
	s->ids_dirty = true;
	s->needs_begin = false;
	s->head_only = head_only;
	s->kv_dropped = false;
	s->r.batched = false;
	s->r.pos = pos;
	s->r.n_rows = n_rows;
	s->r.site = -1;
	return DJN_OK;
}

enum djn_status djn_chunk_begin(struct djn_session *s, int pos, int n_rows)
{
	return chunk_begin(s, pos, n_rows, false);
}

enum djn_status djn_chunk_begin_batched(struct djn_session *s, int pos, int n_rows)
{
	return chunk_begin(s, pos, n_rows, true);
}

enum djn_status djn_chunk_ids(struct djn_session *s)
{
	enum djn_status st;

	if (!s->ids_dirty)
		return DJN_OK;
	st = s->be->i->copy_h2d(s->be, s->ids, s->tokens + s->r.pos,
				sizeof(int32_t) * (size_t)s->r.n_rows);
	if (st)
		return djn_session_fail(s, st, "%s", s->be->err.msg);
	s->ids_dirty = false;
	return DJN_OK;
}

static inline int layer_site(int l, enum djn_site_kind k)
{
	return 1 + l * DJN_SITES_PER_LAYER + (k - DJN_SITE_ATTN_NORM);
}

static const struct djn_weight *opt(const struct djn_weight *w)
{
	return djn_weight_present(w) ? w : NULL;
}

/* Q, K and V come from one grouped matmul at the q site on backends that
 * have one, for decode steps of models without q/k/v biases. */
static bool grouped_qkv(const struct djn_session *s, const struct djn_layer *L)
{
	return s->be->i->matmul_group && s->r.n_rows == 1 && !djn_weight_present(&L->bq) &&
	       !djn_weight_present(&L->bk) && !djn_weight_present(&L->bv);
}

/* While a step is recorded, ops of neighbouring sites may run as one:
 * nothing can stop, read or write between them.  Each fused op writes every
 * site tensor the separate ops would, with the same arithmetic. */
static bool fuse_rope_store(const struct djn_session *s, const struct djn_layer *L)
{
	return s->fusing && s->c->arch == DJN_ARCH_LLAMA && grouped_qkv(s, L);
}

static bool fuse_residual(const struct djn_session *s, const struct djn_weight *bias)
{
	return s->fusing && s->be->i->matmul_add && !djn_weight_present(bias);
}

static enum djn_status norm(struct djn_session *s, float *out, const float *x,
			    const struct djn_weight *w, const struct djn_weight *b, int n)
{
	const struct djn_config *c = s->c;

	if (c->arch == DJN_ARCH_GPT2)
		return s->be->i->layernorm(s->be, out, x, w, opt(b), n, c->dim, c->norm_eps);
	return s->be->i->rmsnorm(s->be, out, x, w, n, c->dim, c->norm_eps);
}

enum djn_status djn_final_norm(struct djn_session *s, float *out, const float *x, int n)
{
	return norm(s, out, x, &s->m->final_norm, &s->m->final_norm_b, n);
}

/* DJINN_PROFILE=1: the time of each site kind, the backend synchronized
 * around every site, printed to stderr at exit.  For finding where a step's
 * time goes; it serializes the backend, so totals run slower than normal. */
static struct {
	int on; /* 0 unknown, 1 on, -1 off */
	double ms[DJN_SITE_KIND_COUNT];
	long n[DJN_SITE_KIND_COUNT];
} prof;

static double prof_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void prof_report(void)
{
	double total = 0;

	for (int k = 0; k < DJN_SITE_KIND_COUNT; k++)
		total += prof.ms[k];
	fprintf(stderr, "djinn profile (ms per site kind, all calls):\n");
	for (int k = 0; k < DJN_SITE_KIND_COUNT; k++)
		if (prof.n[k])
			fprintf(stderr, "  %-11s %10.3f ms %6.1f%%  %7ld calls  %8.4f ms/call\n",
				djn_site_kind_name((enum djn_site_kind)k), prof.ms[k],
				100 * prof.ms[k] / total, prof.n[k], prof.ms[k] / prof.n[k]);
}

static bool prof_enabled(void)
{
	if (!prof.on) {
		prof.on = getenv("DJINN_PROFILE") ? 1 : -1;
		if (prof.on > 0)
			atexit(prof_report);
	}
	return prof.on > 0;
}

static enum djn_status site_exec(struct djn_session *s, int site);

enum djn_status djn_site_exec(struct djn_session *s, int site)
{
	enum djn_status st;
	double t0;

	if (!prof_enabled())
		return site_exec(s, site);
	s->be->i->sync(s->be);
	t0 = prof_now();
	st = site_exec(s, site);
	s->be->i->sync(s->be);
	enum djn_site_kind k = djn_site_kind(s->c, site);
	prof.ms[k] += prof_now() - t0;
	prof.n[k]++;
	return st;
}

static enum djn_status site_exec(struct djn_session *s, int site)
{
	const struct djn_config *c = s->c;
	const struct djn_backend_i *o = s->be->i;
	struct djn_backend *be = s->be;
	int n = s->r.n_rows, pos0 = s->r.pos, l = djn_site_layer(c, site);
	enum djn_site_kind kind = djn_site_kind(c, site);
	const struct djn_layer *L = l >= 0 ? &s->m->layers[l] : NULL;
	float *out = s->buf[site];
	const float *x = NULL;
	enum djn_status st = DJN_OK;

	if (l >= 0)
		x = l == 0 ? s->buf[0] : s->buf[layer_site(l - 1, DJN_SITE_RESID_POST)];
	/* a streamed layer's weights are in a slot only between begin and end
	 * (begin is a no-op while they are; another session or a replay may
	 * have moved them since this layer's first site) */
	if (l >= 0 && s->ring && (st = djn_ring_layer_begin(s->ring, l, &s->err)))
		return st;
#define B(k) s->buf[layer_site(l, (k))]
	switch (kind) {
	case DJN_SITE_EMBED:
		if (s->ids_dirty && !s->fusing && djn_chunk_ids(s))
			return s->err.code;
		st = o->embed(be, out, &s->m->tok_embd, s->ids, n);
		if (!st && c->arch == DJN_ARCH_GPT2) {
			/* learned positions: gather rows pos0.. through the same op */
			int32_t *pids = s->tokens + s->max_ctx; /* spare host space */
			for (int i = 0; i < n; i++)
				pids[i] = pos0 + i;
			st = o->copy_h2d(be, s->ids, pids, sizeof(int32_t) * (size_t)n);
			if (!st)
				st = o->embed(be, s->gate, &s->m->pos_embd, s->ids, n);
			if (!st)
				st = o->add(be, out, out, s->gate, (size_t)n * c->dim);
			if (!st)
				st = o->copy_h2d(be, s->ids, s->tokens + pos0, sizeof(int32_t) * (size_t)n);
		}
		break;
	case DJN_SITE_ATTN_NORM:
		st = norm(s, out, x, &L->attn_norm, &L->attn_norm_b, n);
		break;
	case DJN_SITE_Q:
	case DJN_SITE_K: {
		const struct djn_weight *w = kind == DJN_SITE_Q ? &L->wq : &L->wk;
		const struct djn_weight *b = kind == DJN_SITE_Q ? &L->bq : &L->bk;
		int nh = kind == DJN_SITE_Q ? c->n_head : c->n_kv_head;
		if (kind == DJN_SITE_Q && grouped_qkv(s, L)) {
			/* q, k and v in one pass over the three weights; k and v
			 * only depend on attn_norm, so computing them here changes
			 * nothing a stop at q could see or steer */
			float *ys[3] = { out, B(DJN_SITE_K), B(DJN_SITE_V) };
			const struct djn_weight *ws[3] = { &L->wq, &L->wk, &L->wv };
			/* fused: rope on q and k, and k and v into the cache */
			const bool rs = fuse_rope_store(s, L);
			struct djn_qkv_rope rp = { &s->kv.view, l, pos0, c->head_dim, c->rope_theta,
						   c->rope_style };
			st = o->matmul_group(be, ys, B(DJN_SITE_ATTN_NORM), ws, 3, n, false,
					     rs ? &rp : NULL);
			if (rs)
				break;
		} else if (!(kind == DJN_SITE_K && grouped_qkv(s, L))) {
			st = o->matmul(be, out, B(DJN_SITE_ATTN_NORM), w, opt(b), n);
		}
		if (!st && c->arch == DJN_ARCH_LLAMA && !fuse_rope_store(s, L))
			st = o->rope(be, out, n, nh, c->head_dim, c->head_dim, pos0, c->rope_theta,
				     c->rope_style);
		break;
	}
	case DJN_SITE_V:
		if (!grouped_qkv(s, L))
			st = o->matmul(be, out, B(DJN_SITE_ATTN_NORM), &L->wv, opt(&L->bv), n);
		break;
	case DJN_SITE_ATTN: {
		/* K and V enter the cache here, not at their own sites, so a
		 * value written back at L.k or L.v is what attention sees. */
		struct djn_attn_shape sh = { c->n_head, c->n_kv_head, c->head_dim, l, pos0, n };
		if (!fuse_rope_store(s, L))
			st = o->kv_store(be, &s->kv.view, l, pos0, n, B(DJN_SITE_K), B(DJN_SITE_V));
		if (!st)
			st = o->attention(be, out, B(DJN_SITE_Q), &s->kv.view, &sh);
		break;
	}
	case DJN_SITE_ATTN_OUT:
		if (fuse_residual(s, &L->bo)) /* resid_mid = x + attn_out, written too */
			st = o->matmul_add(be, out, B(DJN_SITE_RESID_MID), B(DJN_SITE_ATTN), &L->wo,
					   x, n);
		else
			st = o->matmul(be, out, B(DJN_SITE_ATTN), &L->wo, opt(&L->bo), n);
		break;
	case DJN_SITE_RESID_MID:
		if (!fuse_residual(s, &L->bo))
			st = o->add(be, out, x, B(DJN_SITE_ATTN_OUT), (size_t)n * c->dim);
		break;
	case DJN_SITE_MLP_NORM:
		st = norm(s, out, B(DJN_SITE_RESID_MID), &L->mlp_norm, &L->mlp_norm_b, n);
		break;
	case DJN_SITE_MLP_ACT:
		if (c->arch == DJN_ARCH_GPT2) {
			st = o->matmul(be, s->up, B(DJN_SITE_MLP_NORM), &L->w_up, opt(&L->b_up), n);
			if (!st)
				st = o->gelu(be, out, s->up, (size_t)n * c->hidden_dim);
		} else {
			if (o->matmul_group && n == 1) {
				/* gate and up read together, silu(gate) * up written once */
				float *ys[2] = { out, s->up };
				const struct djn_weight *ws[2] = { &L->w_gate, &L->w_up };
				st = o->matmul_group(be, ys, B(DJN_SITE_MLP_NORM), ws, 2, n, true, NULL);
				break;
			}
			st = o->matmul(be, s->gate, B(DJN_SITE_MLP_NORM), &L->w_gate, NULL, n);
			if (!st)
				st = o->matmul(be, s->up, B(DJN_SITE_MLP_NORM), &L->w_up, NULL, n);
			if (!st)
				st = o->swiglu(be, out, s->gate, s->up, (size_t)n * c->hidden_dim);
		}
		break;
	case DJN_SITE_MLP_OUT:
		if (fuse_residual(s, &L->b_down)) /* resid_post = resid_mid + mlp_out */
			st = o->matmul_add(be, out, B(DJN_SITE_RESID_POST), B(DJN_SITE_MLP_ACT),
					   &L->w_down, B(DJN_SITE_RESID_MID), n);
		else
			st = o->matmul(be, out, B(DJN_SITE_MLP_ACT), &L->w_down, opt(&L->b_down), n);
		break;
	case DJN_SITE_RESID_POST:
		if (!fuse_residual(s, &L->b_down))
			st = o->add(be, out, B(DJN_SITE_RESID_MID), B(DJN_SITE_MLP_OUT),
				    (size_t)n * c->dim);
		break;
	case DJN_SITE_FINAL_NORM: {
		/* only the chunk's last row goes on to the head */
		const float *last = s->buf[s->n_sites - 3] + (size_t)(n - 1) * c->dim;
		st = djn_final_norm(s, out, last, 1);
		break;
	}
	case DJN_SITE_LOGITS:
		st = o->matmul(be, out, s->buf[site - 1], &s->m->output, NULL, 1);
		break;
	default:
		DJN_ASSERT(!"unknown site kind");
	}
#undef B
	if (st) {
		char name[32];
		djn_site_name(c, site, name, sizeof(name));
		return djn_session_fail(s, st, "%s: %s", name, be->err.msg);
	}
	if (kind == DJN_SITE_RESID_POST && s->ring)
		return djn_ring_layer_end(s->ring, l, &s->err);
	return DJN_OK;
}

/* --- decode steps as recorded graphs ---------------------------------------- */

bool djn_chunk_graphable(const struct djn_session *s)
{
	/* streamed layers wait on copies between sites (a pooled model whose
	 * layers are all resident does not); GPT-2's learned positions are
	 * gathered through a host copy; a steered site changes its tensor
	 * between ops; a profile times each site */
	return s->be->i->graph_begin && !s->graph_off && s->r.site == -1 && s->r.n_rows == 1 &&
	       !s->aliased && (!s->ring || djn_ring_graph_key(s->ring)) &&
	       s->c->arch == DJN_ARCH_LLAMA && s->n_steers == 0 && !prof_enabled();
}

void djn_chunk_graph_free(struct djn_session *s)
{
	if (s->graph)
		s->be->i->graph_free(s->be, s->graph);
	s->graph = NULL;
}

/* Record the step's sites into s->graph.  A failure is not the step's: it
 * runs op by op instead, and reports its own errors (a first recording may
 * fail because a scratch buffer had to grow: the op-by-op step grows it).
 * After three failures in a row the session stops trying. */
static bool graph_record(struct djn_session *s)
{
	struct djn_backend *be = s->be;
	struct djn_err saved = s->err;
	enum djn_status st;

	if (be->i->graph_begin(be, s->r.pos))
		goto fail;
	s->fusing = true;
	st = DJN_OK;
	for (int site = 0; site < s->n_sites && !st; site++)
		st = site_exec(s, site);
	s->fusing = false;
	if (be->i->graph_end(be, &s->graph) || st)
		goto fail;
	s->graph_key[0] = s->buf[0];
	s->graph_key[1] = s->kv.view.pages;
	s->graph_ring_key = s->ring ? djn_ring_graph_key(s->ring) : 0;
	s->graph_fails = 0;
	return true;
fail:
	djn_chunk_graph_free(s);
	s->err = saved;
	if (++s->graph_fails >= 3)
		s->graph_off = true;
	return false;
}

enum djn_status djn_chunk_graph(struct djn_session *s, bool *ran)
{
	enum djn_status st;

	*ran = false; /* djn_chunk_begin has swapped the KV in */
	if ((st = djn_chunk_ids(s)))
		return st;
	if (s->graph && (s->graph_key[0] != s->buf[0] || s->graph_key[1] != s->kv.view.pages ||
			 (s->ring && s->graph_ring_key != djn_ring_graph_key(s->ring))))
		djn_chunk_graph_free(s);
	/* a pooled model's layers: where they were recorded, waited for, and
	 * stamped as used (a replay begins no layer) */
	if (s->ring) {
		struct djn_err e = { 0 };
		if ((st = djn_ring_graph_prepare(s->ring, &e)))
			return djn_session_fail(s, st, "decode step: %s", e.msg);
	}
	for (int tries = 0; tries < 2; tries++) {
		if (!s->graph && !graph_record(s))
			return DJN_OK;
		st = s->be->i->graph_launch(s->be, s->graph, s->r.pos);
		if (st == DJN_ERR_STATE) { /* stale: the backend's buffers moved */
			djn_chunk_graph_free(s);
			continue;
		}
		if (st)
			return djn_session_fail(s, st, "decode step: %s", s->be->err.msg);
		*ran = true;
		s->graph_steps++;
		return DJN_OK;
	}
	return DJN_OK;
}

long djn_session_graph_steps(const struct djn_session *s)
{
	return s->graph_steps;
}
