/* test-cuda-batch.c - the CUDA ops on the rows of a batch of sessions
 * (rope_rows, kv_store_rows, attention_rows, argmax_rows) against the CPU
 * reference, and a batched step recorded as a graph against the same ops
 * run one by one.
 *
 * Bounds, per row: ||cuda - cpu|| / ||cpu||
 *     <= 1e-5  rope_rows (device cosf/sinf)
 *     <= 2e-5  attention_rows, f32 and f16 caches (split-KV sums in another
 *              order; an f16 cache is read as the same halves on both sides)
 * kv_store_rows and padding rows exactly (whole cache pages, bit for bit;
 * zeros out, inputs untouched); argmax_rows exactly; a replayed graph bit
 * for bit equal to the ops.  The batched step's fused ops (rope_store_rows,
 * rmsnorm_f16, swiglu_f16, matmul_f16) against the ops they replace: bounds
 * at check_rope_store and check_f16_ops.  Pages start as NaN, so a read of a
 * position past a row's own shows as NaN.  Criterion forks a process per test: CUDA is
 * initialised inside each; without a GPU every test reports itself skipped.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/backend.h"

#define BOUND_ROPE 1e-5
#define BOUND_ATTN 2e-5
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define OK(be, call) cr_assert_eq((call), DJN_OK, "%s: %s", #call, (be)->err.msg)

/* --- harness (as test-cuda-ops.c) ------------------------------------------ */

struct pair {
	struct djn_backend *cpu, *gpu;
};

static struct pair pair_open(void)
{
	struct djn_err err = { 0 };
	struct pair p;

	if (djn_cuda_device_count() <= 0)
		cr_skip_test("no CUDA device (djn_cuda_device_count() == 0)");
	p.cpu = djn_backend_cpu_new(0, &err); /* results do not depend on threads */
	cr_assert(p.cpu, "cpu backend: %s", err.msg);
	p.gpu = djn_backend_cuda_new(0, &err);
	cr_assert(p.gpu, "cuda backend: %s", err.msg);
	return p;
}

static void pair_close(struct pair *p)
{
	djn_backend_free(p->gpu);
	djn_backend_free(p->cpu);
}

static uint64_t rng_s;

static void rng_seed(uint64_t s)
{
	rng_s = s * 0x9e3779b97f4a7c15ull + 1;
}

static uint64_t rng_u64(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float rng_f(void)
{
	for (;;) {
		float v = (float)((double)(rng_u64() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
		if (fabsf(v) >= 1.0f / 1024)
			return v;
	}
}

static float *rand_vec(size_t n, float scale)
{
	float *v = malloc(sizeof(float) * (n ? n : 1));

	cr_assert(v);
	for (size_t i = 0; i < n; i++)
		v[i] = rng_f() * scale;
	return v;
}

static void *gpu_alloc(struct djn_backend *g, size_t bytes)
{
	void *d = g->i->alloc(g, bytes ? bytes : 4);

	cr_assert(d, "alloc %zu: %s", bytes, g->err.msg);
	return d;
}

static void gpu_set(struct djn_backend *g, void *d, const void *src, size_t bytes)
{
	if (bytes)
		OK(g, g->i->copy_h2d(g, d, src, bytes));
}

static void *gpu_put(struct djn_backend *g, const void *src, size_t bytes)
{
	void *d = gpu_alloc(g, bytes);

	gpu_set(g, d, src, bytes);
	return d;
}

static void gpu_get(struct djn_backend *g, void *dst, const void *src, size_t bytes)
{
	cr_assert_eq(g->i->copy_d2h(g, dst, src, bytes), DJN_OK, "copy_d2h: %s", g->err.msg);
}

static double rel_err(const float *got, const float *ref, size_t n)
{
	double num = 0, den = 0;

	for (size_t i = 0; i < n; i++) {
		double d = (double)got[i] - ref[i];
		num += d * d;
		den += (double)ref[i] * ref[i];
	}
	if (isnan(num))
		return INFINITY;
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* --- sessions and a batch of their rows ------------------------------------ */

enum { PAGE_TOKENS = 16, N_LAYER = 2, MAX_SESS = 160, MAX_ROWS = 256 };

/* A session's cache on both backends, the same bytes: pages hold NaN where
 * nothing was stored, and are in shuffled address order. */
struct tsess {
	int len, n_new; /* history, then n_new rows in the batch */
	int n_pages;
	float **cpu_pages, **gpu_pages_host;
	float **gpu_table; /* device array of device page pointers */
};

struct tbatch {
	struct pair *p;
	int n_head, n_kv_head, head_dim, kv_dim, q_dim;
	int n_sess, n_rows, max_len;
	struct tsess s[MAX_SESS];
	int row_sess[MAX_ROWS];
	float *const *cpu_tables[MAX_ROWS];
	float **gpu_tables_host[MAX_ROWS];
	int32_t pos[MAX_ROWS];
	void *gpu_tables, *gpu_pos; /* device copies of the two above */
	struct djn_kv_rows cpu_rows, gpu_rows;
};

/* The dtype of every cache the tests make (the f16 test sets it). */
static enum djn_dtype kv_dt = DJN_DTYPE_F32;

/* Bytes of a page. */
static size_t page_bytes(const struct tbatch *b)
{
	return (size_t)N_LAYER * 2 * PAGE_TOKENS * b->kv_dim * djn_kv_elem_bytes(kv_dt);
}

static struct djn_kv_view view_of(const struct tbatch *b, const struct tsess *s, bool gpu)
{
	struct djn_kv_view v = { .pages = gpu ? s->gpu_table : s->cpu_pages,
				 .pages_host = gpu ? s->gpu_pages_host : s->cpu_pages,
				 .n_pages = s->n_pages, .page_tokens = PAGE_TOKENS,
				 .n_layer = N_LAYER, .kv_dim = b->kv_dim, .dtype = kv_dt };
	return v;
}

static void tsess_new(struct tbatch *b, struct tsess *s, int len, int n_new, const void *nan_page)
{
	struct djn_backend *g = b->p->gpu, *c = b->p->cpu;
	const size_t pb = page_bytes(b);

	s->len = len;
	s->n_new = n_new;
	s->n_pages = (len + n_new + PAGE_TOKENS - 1) / PAGE_TOKENS;
	if (s->n_pages < 1)
		s->n_pages = 1;
	s->cpu_pages = malloc(sizeof(float *) * s->n_pages);
	s->gpu_pages_host = malloc(sizeof(float *) * s->n_pages);
	for (int i = 0; i < s->n_pages; i++) {
		s->cpu_pages[i] = malloc(pb);
		cr_assert(s->cpu_pages[i]);
		memcpy(s->cpu_pages[i], nan_page, pb);
		s->gpu_pages_host[i] = gpu_put(g, nan_page, pb);
	}
	for (int i = s->n_pages - 1; i > 0; i--) {
		int j = (int)(rng_u64() % (uint64_t)(i + 1));
		float *t = s->cpu_pages[i];
		s->cpu_pages[i] = s->cpu_pages[j];
		s->cpu_pages[j] = t;
		t = s->gpu_pages_host[i];
		s->gpu_pages_host[i] = s->gpu_pages_host[j];
		s->gpu_pages_host[j] = t;
	}
	s->gpu_table = gpu_put(g, s->gpu_pages_host, sizeof(float *) * s->n_pages);
	/* the same history in both, every layer */
	struct djn_kv_view cv = view_of(b, s, false), gv = view_of(b, s, true);
	size_t cnt = (size_t)len * b->kv_dim;
	float *kd = gpu_alloc(g, sizeof(float) * cnt), *vd = gpu_alloc(g, sizeof(float) * cnt);
	for (int l = 0; l < N_LAYER; l++) {
		float *k = rand_vec(cnt, 1.0f), *v = rand_vec(cnt, 1.0f);
		OK(c, c->i->kv_store(c, &cv, l, 0, len, k, v));
		gpu_set(g, kd, k, sizeof(float) * cnt);
		gpu_set(g, vd, v, sizeof(float) * cnt);
		OK(g, g->i->kv_store(g, &gv, l, 0, len, kd, vd));
		free(k);
		free(v);
	}
	g->i->dealloc(g, kd);
	g->i->dealloc(g, vd);
}

static void tsess_free(struct tbatch *b, struct tsess *s)
{
	struct djn_backend *g = b->p->gpu;

	for (int i = 0; i < s->n_pages; i++) {
		free(s->cpu_pages[i]);
		g->i->dealloc(g, s->gpu_pages_host[i]);
	}
	g->i->dealloc(g, s->gpu_table);
	free(s->cpu_pages);
	free(s->gpu_pages_host);
}

/* Uploads tables and pos as they are now (the scheduler's step set-up). */
static void tbatch_sync_rows(struct tbatch *b)
{
	struct djn_backend *g = b->p->gpu;

	for (int r = 0; r < b->n_rows; r++) {
		int si = b->row_sess[r];
		b->cpu_tables[r] = si < 0 ? NULL : b->s[si].cpu_pages;
		b->gpu_tables_host[r] = si < 0 ? NULL : b->s[si].gpu_table;
	}
	gpu_set(g, b->gpu_tables, b->gpu_tables_host, sizeof(void *) * b->n_rows);
	gpu_set(g, b->gpu_pos, b->pos, sizeof(int32_t) * b->n_rows);
}

/* sess: (history, rows in the batch) per session; n_pad padding rows.  The
 * rows are shuffled, a session's in chunk order (consecutive positions). */
static void tbatch_new(struct tbatch *b, struct pair *p, int n_head, int n_kv_head,
		       int head_dim, const int (*sess)[2], int n_sess, int n_pad)
{
	memset(b, 0, sizeof(*b));
	b->p = p;
	b->n_head = n_head;
	b->n_kv_head = n_kv_head;
	b->head_dim = head_dim;
	b->kv_dim = n_kv_head * head_dim;
	b->q_dim = n_head * head_dim;
	b->n_sess = n_sess;
	cr_assert(n_sess <= MAX_SESS);

	size_t pb = page_bytes(b);
	void *nan_page = malloc(pb);
	memset(nan_page, 0xff, pb); /* NaN in f32 and in f16 */
	for (int i = 0; i < n_sess; i++) {
		tsess_new(b, &b->s[i], sess[i][0], sess[i][1], nan_page);
		if (sess[i][0] + sess[i][1] > b->max_len)
			b->max_len = sess[i][0] + sess[i][1];
		for (int k = 0; k < sess[i][1]; k++)
			b->row_sess[b->n_rows++] = i;
	}
	free(nan_page);
	for (int k = 0; k < n_pad; k++)
		b->row_sess[b->n_rows++] = -1;
	cr_assert(b->n_rows <= MAX_ROWS);
	for (int i = b->n_rows - 1; i > 0; i--) {
		int j = (int)(rng_u64() % (uint64_t)(i + 1)), t = b->row_sess[i];
		b->row_sess[i] = b->row_sess[j];
		b->row_sess[j] = t;
	}
	int next[MAX_SESS] = { 0 };
	for (int r = 0; r < b->n_rows; r++) {
		int si = b->row_sess[r];
		b->pos[r] = si < 0 ? -1 : b->s[si].len + next[si]++;
	}
	b->max_len += 7; /* a bound, not the exact length */
	b->gpu_tables = gpu_alloc(p->gpu, sizeof(void *) * MAX_ROWS);
	b->gpu_pos = gpu_alloc(p->gpu, sizeof(int32_t) * MAX_ROWS);
	tbatch_sync_rows(b);
	b->cpu_rows = (struct djn_kv_rows){ .tables = b->cpu_tables, .pos = b->pos,
					    .n_rows = b->n_rows, .page_tokens = PAGE_TOKENS,
					    .n_layer = N_LAYER, .kv_dim = b->kv_dim,
					    .max_len = b->max_len, .dtype = kv_dt };
	b->gpu_rows = b->cpu_rows;
	b->gpu_rows.tables = b->gpu_tables;
	b->gpu_rows.pos = b->gpu_pos;
}

static void tbatch_free(struct tbatch *b)
{
	for (int i = 0; i < b->n_sess; i++)
		tsess_free(b, &b->s[i]);
	b->p->gpu->i->dealloc(b->p->gpu, b->gpu_tables);
	b->p->gpu->i->dealloc(b->p->gpu, b->gpu_pos);
}

/* Every page of every session, bit for bit. */
static void expect_caches_equal(struct tbatch *b, const char *what)
{
	size_t pb = page_bytes(b);
	void *h = malloc(pb);
	int bad = 0;

	for (int i = 0; i < b->n_sess; i++)
		for (int pg = 0; pg < b->s[i].n_pages; pg++) {
			gpu_get(b->p->gpu, h, b->s[i].gpu_pages_host[pg], pb);
			bad += memcmp(h, b->s[i].cpu_pages[pg], pb) != 0;
		}
	cr_expect_eq(bad, 0, "%s: %d cache pages differ", what, bad);
	free(h);
}

static bool all_zero(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (x[i] != 0.0f)
			return false;
	return true;
}

/* One layer of a batched step on both backends: rope_rows on q and k (cuda
 * to the CPU's within BOUND_ROPE), then, from the CPU's rotated q and k on
 * both, kv_store_rows (the caches bit for bit) and attention_rows (each row
 * within BOUND_ATTN; padding rows zero). */
static void check_step(struct tbatch *b, int layer, enum djn_rope_style style, const char *name)
{
	struct djn_backend *c = b->p->cpu, *g = b->p->gpu;
	const int n = b->n_rows, qd = b->q_dim, kd = b->kv_dim, hd = b->head_dim;
	size_t nq = (size_t)n * qd, nk = (size_t)n * kd;
	float *q = rand_vec(nq, 3.0f), *k = rand_vec(nk, 1.0f), *v = rand_vec(nk, 1.0f);
	float *q0 = malloc(sizeof(float) * nq), *k0 = malloc(sizeof(float) * nk);
	float *hq = malloc(sizeof(float) * nq), *hk = malloc(sizeof(float) * nk);
	float *ref = malloc(sizeof(float) * nq), *got = malloc(sizeof(float) * nq);
	float *qd_ = gpu_put(g, q, sizeof(float) * nq), *kd_ = gpu_put(g, k, sizeof(float) * nk);
	float *vd_ = gpu_put(g, v, sizeof(float) * nk), *od = gpu_alloc(g, sizeof(float) * nq);

	memcpy(q0, q, sizeof(float) * nq);
	memcpy(k0, k, sizeof(float) * nk);
	OK(c, c->i->rope_rows(c, q, &b->cpu_rows, b->n_head, hd, hd, 10000.0f, style));
	OK(c, c->i->rope_rows(c, k, &b->cpu_rows, b->n_kv_head, hd, hd, 10000.0f, style));
	OK(g, g->i->rope_rows(g, qd_, &b->gpu_rows, b->n_head, hd, hd, 10000.0f, style));
	OK(g, g->i->rope_rows(g, kd_, &b->gpu_rows, b->n_kv_head, hd, hd, 10000.0f, style));
	gpu_get(g, hq, qd_, sizeof(float) * nq);
	gpu_get(g, hk, kd_, sizeof(float) * nk);
	for (int r = 0; r < n; r++) {
		if (b->row_sess[r] < 0) {
			cr_expect_arr_eq(hq + (size_t)r * qd, q0 + (size_t)r * qd, sizeof(float) * qd,
					 "%s: padding row %d: rope_rows changed q", name, r);
			continue;
		}
		double eq = rel_err(hq + (size_t)r * qd, q + (size_t)r * qd, qd);
		double ek = rel_err(hk + (size_t)r * kd, k + (size_t)r * kd, kd);
		cr_expect(eq <= BOUND_ROPE && ek <= BOUND_ROPE,
			  "%s: row %d at %d: rope_rows rel err q %.3g k %.3g", name, r, b->pos[r],
			  eq, ek);
	}

	/* attention from the same q, k on both */
	gpu_set(g, qd_, q, sizeof(float) * nq);
	gpu_set(g, kd_, k, sizeof(float) * nk);
	for (size_t i = 0; i < nq; i++)
		got[i] = NAN;
	gpu_set(g, od, got, sizeof(float) * nq);
	OK(c, c->i->kv_store_rows(c, &b->cpu_rows, layer, k, v));
	OK(g, g->i->kv_store_rows(g, &b->gpu_rows, layer, kd_, vd_));
	expect_caches_equal(b, name);
	OK(c, c->i->attention_rows(c, ref, q, &b->cpu_rows, b->n_head, b->n_kv_head, hd, layer));
	OK(g, g->i->attention_rows(g, od, qd_, &b->gpu_rows, b->n_head, b->n_kv_head, hd, layer));
	gpu_get(g, got, od, sizeof(float) * nq);
	double worst = 0;
	for (int r = 0; r < n; r++) {
		const float *o = got + (size_t)r * qd;
		if (b->row_sess[r] < 0) {
			cr_expect(all_zero(o, qd), "%s: padding row %d: output not zero", name, r);
			continue;
		}
		double e = rel_err(o, ref + (size_t)r * qd, qd);
		if (e > worst)
			worst = e;
		cr_expect(e <= BOUND_ATTN, "%s: row %d (session %d at %d): attention rel err %.3g",
			  name, r, b->row_sess[r], b->pos[r], e);
	}
	cr_log_info("%s: %d rows, max_len %d: attention worst row rel err %.3g", name, n,
		    b->max_len, worst);
	g->i->dealloc(g, qd_);
	g->i->dealloc(g, kd_);
	g->i->dealloc(g, vd_);
	g->i->dealloc(g, od);
	free(q);
	free(k);
	free(v);
	free(q0);
	free(k0);
	free(hq);
	free(hk);
	free(ref);
	free(got);
}

static size_t n_pages_all(const struct tbatch *b)
{
	size_t n = 0;

	for (int i = 0; i < b->n_sess; i++)
		n += (size_t)b->s[i].n_pages;
	return n;
}

/* Every GPU page of every session, one after the other, into a new host
 * buffer (the caller frees it). */
static unsigned char *gpu_pages_get(struct tbatch *b)
{
	size_t pb = page_bytes(b), n = n_pages_all(b), at = 0;
	unsigned char *h = malloc(pb * (n ? n : 1));

	cr_assert(h);
	for (int i = 0; i < b->n_sess; i++)
		for (int pg = 0; pg < b->s[i].n_pages; pg++, at += pb)
			gpu_get(b->p->gpu, h + at, b->s[i].gpu_pages_host[pg], pb);
	return h;
}

/* Puts back the GPU pages gpu_pages_get saved. */
static void gpu_pages_set(struct tbatch *b, const unsigned char *h)
{
	size_t pb = page_bytes(b), at = 0;

	for (int i = 0; i < b->n_sess; i++)
		for (int pg = 0; pg < b->s[i].n_pages; pg++, at += pb)
			gpu_set(b->p->gpu, b->s[i].gpu_pages_host[pg], h + at, pb);
}

/* rope_store_rows (the batched step's fused RoPE and KV store) against
 * rope_rows on q and k and kv_store_rows, from the same q, k, v and the same
 * cache contents: q, k and every cache page bit for bit (padding rows left
 * as they were by both). */
static void check_rope_store(struct tbatch *b, int layer, enum djn_rope_style style,
			     const char *name)
{
	struct djn_backend *g = b->p->gpu;
	const int hd = b->head_dim;
	size_t nq = (size_t)b->n_rows * b->q_dim, nk = (size_t)b->n_rows * b->kv_dim;
	float *q = rand_vec(nq, 3.0f), *k = rand_vec(nk, 1.0f), *v = rand_vec(nk, 1.0f);
	float *qa = malloc(sizeof(float) * nq), *ka = malloc(sizeof(float) * nk);
	float *qb = malloc(sizeof(float) * nq), *kb = malloc(sizeof(float) * nk);
	float *qd = gpu_put(g, q, sizeof(float) * nq), *kd = gpu_put(g, k, sizeof(float) * nk);
	float *vd = gpu_put(g, v, sizeof(float) * nk);
	unsigned char *before = gpu_pages_get(b);

	OK(g, g->i->rope_rows(g, qd, &b->gpu_rows, b->n_head, hd, hd, 10000.0f, style));
	OK(g, g->i->rope_rows(g, kd, &b->gpu_rows, b->n_kv_head, hd, hd, 10000.0f, style));
	OK(g, g->i->kv_store_rows(g, &b->gpu_rows, layer, kd, vd));
	gpu_get(g, qa, qd, sizeof(float) * nq);
	gpu_get(g, ka, kd, sizeof(float) * nk);
	unsigned char *sep = gpu_pages_get(b);

	gpu_pages_set(b, before);
	gpu_set(g, qd, q, sizeof(float) * nq);
	gpu_set(g, kd, k, sizeof(float) * nk);
	OK(g, g->i->rope_store_rows(g, qd, kd, vd, &b->gpu_rows, layer, b->n_head, b->n_kv_head,
				    hd, 10000.0f, style));
	gpu_get(g, qb, qd, sizeof(float) * nq);
	gpu_get(g, kb, kd, sizeof(float) * nk);
	unsigned char *fused = gpu_pages_get(b);

	cr_expect_arr_eq(qb, qa, sizeof(float) * nq, "%s: rope_store_rows: q differs", name);
	cr_expect_arr_eq(kb, ka, sizeof(float) * nk, "%s: rope_store_rows: k differs", name);
	cr_expect_arr_eq(fused, sep, page_bytes(b) * n_pages_all(b),
			 "%s: rope_store_rows: the caches differ", name);
	gpu_pages_set(b, before); /* as check_step found them */
	g->i->dealloc(g, qd);
	g->i->dealloc(g, kd);
	g->i->dealloc(g, vd);
	free(before);
	free(sep);
	free(fused);
	free(q);
	free(k);
	free(v);
	free(qa);
	free(ka);
	free(qb);
	free(kb);
}

/* Sessions for a batch of n rows: a few long decodes (to ~2000), a prefill
 * chunk, short ones and an empty history, the rest decodes of random
 * length; n_pad of the n rows are padding. */
static int make_sessions(int (*sess)[2], int n_rows, int n_pad, int max_ctx)
{
	static const int fixed[][2] = { { 1999, 1 }, { 1200, 1 }, { 640, 3 }, { 63, 1 },
					{ 64, 1 },   { 0, 1 },    { 17, 20 }, { 300, 9 } };
	int n = 0, left = n_rows - n_pad;

	for (size_t i = 0; i < N_OF(fixed) && left > 0; i++) {
		int m = fixed[i][1] < left ? fixed[i][1] : left;
		if (fixed[i][0] + m > max_ctx)
			continue;
		sess[n][0] = fixed[i][0];
		sess[n][1] = m;
		left -= m;
		n++;
	}
	while (left > 0) {
		sess[n][0] = (int)(rng_u64() % 400);
		sess[n][1] = 1;
		left--;
		n++;
	}
	return n;
}

static void check_shape(int n_head, int n_kv_head, int head_dim, int n_rows, int n_pad,
			int max_ctx, uint64_t seed)
{
	struct pair p = pair_open();
	int sess[MAX_SESS][2];
	struct tbatch b;
	char name[128];

	rng_seed(seed);
	int n_sess = make_sessions(sess, n_rows, n_pad, max_ctx);
	tbatch_new(&b, &p, n_head, n_kv_head, head_dim, (const int (*)[2])sess, n_sess, n_pad);
	snprintf(name, sizeof(name), "heads %d/%d hd %d rows %d (%d padding)", n_head, n_kv_head,
		 head_dim, n_rows, n_pad);
	check_rope_store(&b, 1, DJN_ROPE_HALF, name);
	check_rope_store(&b, 0, DJN_ROPE_INTERLEAVED, name);
	check_step(&b, 1, DJN_ROPE_HALF, name);
	check_step(&b, 0, DJN_ROPE_INTERLEAVED, name);
	tbatch_free(&b);
	pair_close(&p);
}

Test(batch, gqa_32_8_hd128)
{
	check_shape(32, 8, 128, 1, 0, 2100, 101);
	check_shape(32, 8, 128, 3, 1, 2100, 102);
	check_shape(32, 8, 128, 64, 5, 2100, 103);
	check_shape(32, 8, 128, 128, 9, 2100, 104);
}

Test(batch, mha_32_32_hd64)
{
	check_shape(32, 32, 64, 1, 0, 2100, 111);
	check_shape(32, 32, 64, 3, 0, 2100, 112);
	check_shape(32, 32, 64, 64, 3, 2100, 113);
	check_shape(32, 32, 64, 128, 20, 700, 114);
}

Test(batch, other_shapes)
{
	check_shape(32, 8, 64, 64, 4, 2100, 121);
	check_shape(32, 32, 128, 64, 2, 700, 122);
	check_shape(9, 3, 64, 3, 1, 300, 123);  /* SmolLM2-135M */
	check_shape(8, 4, 8, 128, 7, 300, 124); /* stories260K: head_dim 8 */
	check_shape(4, 1, 96, 3, 0, 2100, 125); /* head_dim not a multiple of 32 */
}

/* Sessions whose rows end at every tail of the f16 rows kernel (16
 * positions a warp step at GQ 1 and 2, 8 at GQ 4; 64 or 32 a block step;
 * pages of 16 in shuffled order): lengths 1, 15, 16, 17, 31, 33, 63..65,
 * 100, 128, 129, 256 (four chunks of 64), 1001 (chunks of 251), and a
 * 20-row prefill chunk crossing two pages (lengths 18..37). */
static const int tail_sessions[][2] = {
	{ 0, 1 },   { 14, 1 },  { 15, 1 },  { 16, 1 },  { 30, 1 },   { 32, 1 },
	{ 62, 1 },  { 63, 1 },  { 64, 1 },  { 99, 1 },  { 127, 1 },  { 128, 1 },
	{ 255, 1 }, { 1000, 1 }, { 17, 20 }, { 3, 2 },
};

static void check_tails(int n_head, int n_kv_head, int head_dim, int n_pad, uint64_t seed)
{
	struct pair p = pair_open();
	struct tbatch b;
	char name[128];

	rng_seed(seed);
	tbatch_new(&b, &p, n_head, n_kv_head, head_dim, tail_sessions, (int)N_OF(tail_sessions),
		   n_pad);
	snprintf(name, sizeof(name), "tails: heads %d/%d hd %d (%d padding)", n_head, n_kv_head,
		 head_dim, n_pad);
	check_rope_store(&b, 1, DJN_ROPE_HALF, name);
	check_step(&b, 1, DJN_ROPE_HALF, name);
	check_step(&b, 0, DJN_ROPE_INTERLEAVED, name);
	tbatch_free(&b);
	pair_close(&p);
}

/* An f16 cache: the same stores (rounded to nearest even alike, bit for bit)
 * and attention within the same tolerance as f32 (both sides read the same
 * halves: only the order of the sums differs).  attn_rows_v4h_kernel at GQ 1
 * (32/32, 8/8, and 32/8 with one row), GQ 2 (16/8), GQ 4 (32/8; 32/4, whose
 * GQ 8 takes 4 on halves), head_dim 128, 64, 96 (lanes past the head idle)
 * and 8 (two lanes); the scalar kernel where float4 cannot go (hd 34). */
static void check_f16(uint64_t seed)
{
	kv_dt = DJN_DTYPE_F16;
	check_shape(32, 8, 128, 64, 5, 2100, seed + 1);
	check_shape(32, 8, 128, 1, 0, 2100, seed + 2);
	check_shape(32, 32, 64, 3, 0, 2100, seed + 3);
	check_shape(9, 3, 64, 3, 1, 300, seed + 4);
	check_shape(8, 4, 8, 128, 7, 300, seed + 5);
	check_shape(4, 1, 96, 3, 0, 2100, seed + 6);
	check_shape(4, 2, 34, 5, 1, 300, seed + 7);
	check_tails(32, 32, 128, 3, seed + 8);
	check_tails(32, 8, 128, 0, seed + 9);
	check_tails(16, 8, 64, 2, seed + 10);
	check_tails(32, 4, 128, 1, seed + 11);
	check_tails(8, 8, 64, 0, seed + 12);
	check_tails(4, 1, 96, 0, seed + 13);
	check_tails(8, 4, 8, 1, seed + 14);
	kv_dt = DJN_DTYPE_F32;
}

Test(batch, f16_cache, .timeout = 120) { check_f16(130); }

/* The float4 kernel itself on halves, kept for comparing (DJN_ATTN_F16_OLD=1). */
Test(batch, f16_cache_old_kernel, .timeout = 120)
{
	setenv("DJN_ATTN_F16_OLD", "1", 1);
	check_f16(150);
}

/* A batch of only padding, and n_rows 0: nothing stored, zeros, no error. */
Test(batch, only_padding)
{
	struct pair p = pair_open();
	static const int sess[][2] = { { 40, 0 } };
	struct tbatch b;

	rng_seed(131);
	tbatch_new(&b, &p, 8, 2, 64, sess, 1, 5);
	check_step(&b, 1, DJN_ROPE_HALF, "only padding");
	b.gpu_rows.n_rows = 0;
	OK(p.gpu, p.gpu->i->attention_rows(p.gpu, NULL, NULL, &b.gpu_rows, 8, 2, 64, 1));
	OK(p.gpu, p.gpu->i->kv_store_rows(p.gpu, &b.gpu_rows, 1, NULL, NULL));
	OK(p.gpu, p.gpu->i->rope_rows(p.gpu, NULL, &b.gpu_rows, 8, 64, 64, 1e4f, DJN_ROPE_HALF));
	b.gpu_rows.n_rows = b.n_rows;
	/* bad shapes are errors, not launches */
	cr_expect_eq(p.gpu->i->attention_rows(p.gpu, NULL, NULL, &b.gpu_rows, 8, 3, 64, 1),
		     DJN_ERR_INVALID);
	cr_expect_eq(p.gpu->i->attention_rows(p.gpu, NULL, NULL, &b.gpu_rows, 8, 2, 512, 1),
		     DJN_ERR_UNSUPPORTED);
	cr_expect_eq(p.gpu->i->kv_store_rows(p.gpu, &b.gpu_rows, N_LAYER, NULL, NULL),
		     DJN_ERR_RANGE);
	cr_expect(!p.gpu->poisoned);
	tbatch_free(&b);
	pair_close(&p);
}

/* --- a recorded batched step ----------------------------------------------- */

/* The replay tests' step takes rope_store_rows for the first three ops. */
static bool step_fused;

/* rope_rows on q and k, kv_store_rows, attention_rows: the attention part of
 * a batched decode step. */
static void step_ops(struct djn_backend *g, struct tbatch *b, float *qd, float *kd, float *vd,
		     float *od, int layer)
{
	const int hd = b->head_dim;

	if (step_fused) {
		OK(g, g->i->rope_store_rows(g, qd, kd, vd, &b->gpu_rows, layer, b->n_head,
					    b->n_kv_head, hd, 10000.0f, DJN_ROPE_HALF));
	} else {
		OK(g, g->i->rope_rows(g, qd, &b->gpu_rows, b->n_head, hd, hd, 10000.0f,
				      DJN_ROPE_HALF));
		OK(g, g->i->rope_rows(g, kd, &b->gpu_rows, b->n_kv_head, hd, hd, 10000.0f,
				      DJN_ROPE_HALF));
		OK(g, g->i->kv_store_rows(g, &b->gpu_rows, layer, kd, vd));
	}
	OK(g, g->i->attention_rows(g, od, qd, &b->gpu_rows, b->n_head, b->n_kv_head, hd, layer));
}

/* Recorded once, replayed with other positions and tables: bit for bit what
 * the ops give run one by one with the same contents (a cache of kv_dt). */
static void check_batched_replay(void)
{
	struct pair p = pair_open();
	struct djn_backend *g = p.gpu;
	int sess[MAX_SESS][2];
	struct tbatch b;

	rng_seed(141);
	int n_sess = make_sessions(sess, 64, 4, 2100);
	tbatch_new(&b, &p, 32, 8, 128, (const int (*)[2])sess, n_sess, 4);
	const size_t nq = (size_t)b.n_rows * b.q_dim, nk = (size_t)b.n_rows * b.kv_dim;
	float *q = rand_vec(nq, 3.0f), *k = rand_vec(nk, 1.0f), *v = rand_vec(nk, 1.0f);
	float *qd = gpu_alloc(g, sizeof(float) * nq), *kd = gpu_alloc(g, sizeof(float) * nk);
	float *vd = gpu_put(g, v, sizeof(float) * nk), *od = gpu_alloc(g, sizeof(float) * nq);
	float *a = malloc(sizeof(float) * nq), *bb = malloc(sizeof(float) * nq);
	struct djn_graph *gr = NULL;

	/* one row a session (the first; the others become padding), as a
	 * decode step has: two rows of one cache never store one position */
	for (int r = 0; r < b.n_rows; r++)
		if (b.row_sess[r] >= 0 && b.pos[r] != b.s[b.row_sess[r]].len) {
			b.row_sess[r] = -1;
			b.pos[r] = -1;
		}
	tbatch_sync_rows(&b);

	/* without a run before, the attention scratch must grow: the recording
	 * fails cleanly, nothing ran, and the backend goes on */
	gpu_set(g, qd, q, sizeof(float) * nq);
	OK(g, g->i->rope_rows(g, qd, &b.gpu_rows, b.n_head, b.head_dim, b.head_dim, 10000.0f,
			      DJN_ROPE_HALF)); /* the rope table, op by op */
	OK(g, g->i->graph_begin(g, 0));
	enum djn_status st = g->i->attention_rows(g, od, qd, &b.gpu_rows, b.n_head, b.n_kv_head,
						  b.head_dim, 1);
	cr_expect_eq(st, DJN_ERR_STATE, "attention_rows recorded with a scratch to grow: %s",
		     g->err.msg);
	struct djn_graph *none = NULL;
	cr_expect_neq(g->i->graph_end(g, &none), DJN_OK);
	cr_expect_null(none);
	cr_expect(!g->poisoned);

	/* op by op once (makes room), then record */
	gpu_set(g, qd, q, sizeof(float) * nq);
	gpu_set(g, kd, k, sizeof(float) * nk);
	step_ops(g, &b, qd, kd, vd, od, 1);
	OK(g, g->i->graph_begin(g, 0));
	step_ops(g, &b, qd, kd, vd, od, 1);
	OK(g, g->i->graph_end(g, &gr));
	cr_assert_not_null(gr);

	for (int trial = 0; trial < 3; trial++) {
		/* other positions (at or before the end of the history, so
		 * none is read that was never stored), some rows padding, two
		 * rows swapping sessions */
		for (int r = 0; r < b.n_rows; r++) {
			int si = b.row_sess[r];
			if (si < 0)
				continue;
			uint64_t u = rng_u64() % 8;
			int at = b.s[si].len - (int)(u % 3);
			b.pos[r] = u == 0 ? -1 : at < 0 ? 0 : at;
		}
		int r0 = (int)(rng_u64() % b.n_rows), r1 = (int)(rng_u64() % b.n_rows);
		int t = b.row_sess[r0];
		int32_t tp = b.pos[r0];
		b.row_sess[r0] = b.row_sess[r1];
		b.pos[r0] = b.pos[r1];
		b.row_sess[r1] = t;
		b.pos[r1] = tp;
		tbatch_sync_rows(&b);

		gpu_set(g, qd, q, sizeof(float) * nq);
		gpu_set(g, kd, k, sizeof(float) * nk);
		OK(g, g->i->graph_launch(g, gr, 0));
		gpu_get(g, a, od, sizeof(float) * nq);
		gpu_set(g, qd, q, sizeof(float) * nq);
		gpu_set(g, kd, k, sizeof(float) * nk);
		step_ops(g, &b, qd, kd, vd, od, 1);
		gpu_get(g, bb, od, sizeof(float) * nq);
		cr_expect_arr_eq(a, bb, sizeof(float) * nq, "replay %d differs from the ops", trial);
		for (int r = 0; r < b.n_rows; r++)
			if (b.pos[r] < 0)
				cr_expect(all_zero(a + (size_t)r * b.q_dim, b.q_dim),
					  "replay %d: padding row %d not zero", trial, r);
	}
	g->i->graph_free(g, gr);
	g->i->dealloc(g, qd);
	g->i->dealloc(g, kd);
	g->i->dealloc(g, vd);
	g->i->dealloc(g, od);
	free(q);
	free(k);
	free(v);
	free(a);
	free(bb);
	tbatch_free(&b);
	pair_close(&p);
}

Test(graph, batched_step_replays_with_new_positions) { check_batched_replay(); }

/* The same with an f16 cache (attn_rows_v4h_kernel, GQ 4 at 32/8). */
Test(graph, batched_step_replays_with_new_positions_f16)
{
	kv_dt = DJN_DTYPE_F16;
	check_batched_replay();
}

/* The same with the fused rope and KV store (rope_store_rows), f16 cache. */
Test(graph, batched_step_replays_fused_rope_store_f16)
{
	kv_dt = DJN_DTYPE_F16;
	step_fused = true;
	check_batched_replay();
}

/* The rest of a batched decode step at n rows (9..128 take cuBLAS, f16
 * weights with x rounded to f16 in a scratch buffer): rmsnorm, matmul,
 * add, swiglu recorded and replayed equal the ops; recorded before the
 * scratch is big enough, the recording fails cleanly. */
Test(graph, batched_matmul_records)
{
	struct pair p = pair_open();
	struct djn_backend *g = p.gpu;
	static const int ns[] = { 1, 4, 16, 64, 128 };
	const int dim = 1024, hid = 2816;

	rng_seed(151);
	size_t wb = (size_t)hid * dim * 2;
	uint16_t *wh = malloc(wb);
	float gain[1024];
	for (size_t i = 0; i < (size_t)hid * dim; i++)
		wh[i] = djn_f32_to_f16(rng_f() / 32.0f);
	for (int i = 0; i < dim; i++)
		gain[i] = 1.0f + rng_f() / 4;
	struct djn_weight w = { .dtype = DJN_DTYPE_F16, .rows = hid, .cols = dim, .host = wh,
				.dev = gpu_put(g, wh, wb), .name = "w_up" };
	struct djn_weight gw = { .dtype = DJN_DTYPE_F32, .rows = 1, .cols = dim, .host = gain,
				 .dev = gpu_put(g, gain, sizeof(gain)), .name = "gain" };
	const int nmax = 128;
	float *x = rand_vec((size_t)nmax * dim, 1.0f);
	float *xd = gpu_alloc(g, sizeof(float) * nmax * dim);
	float *hn = gpu_alloc(g, sizeof(float) * nmax * dim);
	float *y = gpu_alloc(g, sizeof(float) * nmax * hid);
	float *z = gpu_alloc(g, sizeof(float) * nmax * hid);
	float *a = malloc(sizeof(float) * nmax * hid), *bb = malloc(sizeof(float) * nmax * hid);

#define MLP(n)                                                                              \
	do {                                                                                \
		OK(g, g->i->rmsnorm(g, hn, xd, &gw, (n), dim, 1e-5f));                      \
		OK(g, g->i->matmul(g, y, hn, &w, NULL, (n)));                               \
		OK(g, g->i->swiglu(g, z, y, y, (size_t)(n) * hid));                         \
		OK(g, g->i->add(g, z, z, y, (size_t)(n) * hid));                            \
	} while (0)
	for (size_t t = 0; t < N_OF(ns); t++) {
		int n = ns[t];
		struct djn_graph *gr = NULL;

		if (n == 64) {
			/* never run at this n: the f16 scratch must grow */
			OK(g, g->i->graph_begin(g, 0));
			OK(g, g->i->rmsnorm(g, hn, xd, &gw, n, dim, 1e-5f));
			cr_expect_neq(g->i->matmul(g, y, hn, &w, NULL, n), DJN_OK);
			struct djn_graph *none = NULL;
			cr_expect_neq(g->i->graph_end(g, &none), DJN_OK);
			cr_expect_null(none);
		}
		gpu_set(g, xd, x, sizeof(float) * n * dim);
		MLP(n);
		gpu_get(g, bb, z, sizeof(float) * n * hid);
		OK(g, g->i->graph_begin(g, 0));
		MLP(n);
		OK(g, g->i->graph_end(g, &gr));
		cr_assert_not_null(gr, "n %d", n);
		OK(g, g->i->memset0(g, z, sizeof(float) * n * hid));
		for (int rep = 0; rep < 2; rep++) {
			OK(g, g->i->graph_launch(g, gr, 0));
			gpu_get(g, a, z, sizeof(float) * n * hid);
			cr_expect_arr_eq(a, bb, sizeof(float) * n * hid,
					 "n %d: replay %d differs from the ops", n, rep);
		}
		g->i->graph_free(g, gr);
	}
#undef MLP
	g->i->dealloc(g, (void *)w.dev);
	g->i->dealloc(g, (void *)gw.dev);
	g->i->dealloc(g, xd);
	g->i->dealloc(g, hn);
	g->i->dealloc(g, y);
	g->i->dealloc(g, z);
	free(wh);
	free(x);
	free(a);
	free(bb);
	pair_close(&p);
}

/* --- the batched step's f16 ops against the f32 ops they replace ---------- */

/* rmsnorm_f16 and swiglu_f16 against rmsnorm and swiglu rounded on the host
 * (djn_f32_to_f16): bit for bit.  matmul_f16 without accumulate against
 * matmul (n > 8: cuBLAS on x rounded to f16): bit for bit, the same GEMM on
 * the same halves.  With accumulate (the residual add in cuBLAS's epilogue,
 * beta = 1) against matmul then add: each row within BOUND_RESID relative
 * (the GEMM may order its sums otherwise with beta = 1).  The four recorded
 * and replayed: bit for bit the ops. */
#define BOUND_RESID 1e-5

static void expect_halves(const uint16_t *got, const float *ref, size_t n, const char *what,
			  int rows)
{
	size_t bad = 0, first = 0;

	for (size_t i = 0; i < n; i++)
		if (got[i] != djn_f32_to_f16(ref[i]) && !bad++)
			first = i;
	cr_expect_eq(bad, 0, "%s, %d rows: %zu of %zu halves differ from the f32 op's rounded "
		     "(first at %zu: 0x%04x, f32 %.9g)",
		     what, rows, bad, n, first, got[first], ref[first]);
}

static void check_f16_ops(int dim, int hid, enum djn_dtype gain_dt, uint64_t seed)
{
	struct pair p = pair_open();
	struct djn_backend *g = p.gpu;
	static const int ns[] = { 16, 64, 128 };
	const int nmax = 128, wide = hid > dim ? hid : dim;

	rng_seed(seed);
	uint16_t *wu = malloc(sizeof(uint16_t) * hid * dim), *wd = malloc(sizeof(uint16_t) * hid * dim);
	float *gain = rand_vec(dim, 0.25f);
	uint16_t *gain_h = malloc(sizeof(uint16_t) * dim);
	for (size_t i = 0; i < (size_t)hid * dim; i++) {
		wu[i] = djn_f32_to_f16(rng_f() / 32.0f);
		wd[i] = djn_f32_to_f16(rng_f() / 64.0f);
	}
	for (int i = 0; i < dim; i++) {
		gain[i] += 1.0f;
		gain_h[i] = djn_f32_to_f16(gain[i]);
	}
	struct djn_weight w_up = { .dtype = DJN_DTYPE_F16, .rows = hid, .cols = dim, .host = wu,
				   .dev = gpu_put(g, wu, sizeof(uint16_t) * hid * dim),
				   .name = "w_up" };
	struct djn_weight w_dn = { .dtype = DJN_DTYPE_F16, .rows = dim, .cols = hid, .host = wd,
				   .dev = gpu_put(g, wd, sizeof(uint16_t) * hid * dim),
				   .name = "w_down" };
	const bool gf16 = gain_dt == DJN_DTYPE_F16;
	struct djn_weight gw = { .dtype = gain_dt, .rows = 1, .cols = dim,
				 .host = gf16 ? (void *)gain_h : (void *)gain,
				 .dev = gf16 ? gpu_put(g, gain_h, sizeof(uint16_t) * dim)
					     : gpu_put(g, gain, sizeof(float) * dim),
				 .name = "gain" };
	float *x = rand_vec((size_t)nmax * dim, 2.0f), *r = rand_vec((size_t)nmax * dim, 1.0f);
	float *u = rand_vec((size_t)nmax * hid, 1.0f);
	float *xd = gpu_put(g, x, sizeof(float) * nmax * dim);
	float *rd = gpu_put(g, r, sizeof(float) * nmax * dim);
	float *ud = gpu_put(g, u, sizeof(float) * nmax * hid);
	float *hn = gpu_alloc(g, sizeof(float) * nmax * dim);
	uint16_t *xh = gpu_alloc(g, sizeof(uint16_t) * nmax * wide);
	float *y = gpu_alloc(g, sizeof(float) * nmax * hid);
	float *act = gpu_alloc(g, sizeof(float) * nmax * hid);
	float *t = gpu_alloc(g, sizeof(float) * nmax * dim);
	float *z = gpu_alloc(g, sizeof(float) * nmax * dim);
	float *fa = malloc(sizeof(float) * nmax * wide), *fb = malloc(sizeof(float) * nmax * wide);
	uint16_t *ha = malloc(sizeof(uint16_t) * nmax * wide);
	char what[96];

	for (size_t ti = 0; ti < N_OF(ns); ti++) {
		const int n = ns[ti];
		const size_t nd = (size_t)n * dim, nh = (size_t)n * hid;
		snprintf(what, sizeof(what), "dim %d hid %d gain %s", dim, hid,
			 djn_dtype_name(gain_dt));

		/* the norm: halves = the f32 rows rounded */
		OK(g, g->i->rmsnorm(g, hn, xd, &gw, n, dim, 1e-5f));
		OK(g, g->i->rmsnorm_f16(g, xh, xd, &gw, n, dim, 1e-5f));
		gpu_get(g, fa, hn, sizeof(float) * nd);
		gpu_get(g, ha, xh, sizeof(uint16_t) * nd);
		expect_halves(ha, fa, nd, "rmsnorm_f16", n);

		/* the GEMM on those halves, and on f32 rows, = matmul */
		OK(g, g->i->matmul(g, y, hn, &w_up, NULL, n));
		gpu_get(g, fa, y, sizeof(float) * nh);
		OK(g, g->i->matmul_f16(g, y, xh, DJN_DTYPE_F16, &w_up, n, false));
		gpu_get(g, fb, y, sizeof(float) * nh);
		cr_expect_arr_eq(fb, fa, sizeof(float) * nh, "%s, %d rows: matmul_f16 (f16 x) "
				 "differs from matmul", what, n);
		OK(g, g->i->matmul_f16(g, y, hn, DJN_DTYPE_F32, &w_up, n, false));
		gpu_get(g, fb, y, sizeof(float) * nh);
		cr_expect_arr_eq(fb, fa, sizeof(float) * nh, "%s, %d rows: matmul_f16 (f32 x) "
				 "differs from matmul", what, n);

		/* swiglu: halves = the f32 values rounded; float4 and scalar paths */
		OK(g, g->i->swiglu(g, act, y, ud, nh));
		gpu_get(g, fa, act, sizeof(float) * nh);
		OK(g, g->i->swiglu_f16(g, xh, y, ud, nh));
		gpu_get(g, ha, xh, sizeof(uint16_t) * nh);
		expect_halves(ha, fa, nh, "swiglu_f16", n);
		OK(g, g->i->swiglu_f16(g, xh + 1, y + 1, ud + 1, nh - 3));
		gpu_get(g, ha, xh + 1, sizeof(uint16_t) * (nh - 3));
		expect_halves(ha, fa + 1, nh - 3, "swiglu_f16 unaligned", n);
		OK(g, g->i->swiglu_f16(g, xh, y, ud, nh));

		/* the residual add in the GEMM, x as halves and as floats */
		for (int xf = 0; xf < 2; xf++) {
			const void *xin = xf ? (const void *)act : (const void *)xh;
			const enum djn_dtype xt = xf ? DJN_DTYPE_F32 : DJN_DTYPE_F16;
			OK(g, g->i->matmul_f16(g, t, xin, xt, &w_dn, n, false));
			OK(g, g->i->add(g, z, rd, t, nd));
			gpu_get(g, fa, z, sizeof(float) * nd);
			OK(g, g->i->copy_d2d(g, z, rd, sizeof(float) * nd));
			OK(g, g->i->matmul_f16(g, z, xin, xt, &w_dn, n, true));
			gpu_get(g, fb, z, sizeof(float) * nd);
			double worst = 0;
			for (int i = 0; i < n; i++) {
				double e = rel_err(fb + (size_t)i * dim, fa + (size_t)i * dim, dim);
				worst = e > worst ? e : worst;
			}
			cr_expect(worst <= BOUND_RESID, "%s, %d rows, x %s: matmul_f16 accumulating: "
				  "worst row rel err %.3g", what, n, djn_dtype_name(xt), worst);
			cr_log_info("%s, %d rows, x %s: accumulate vs matmul + add: %.3g", what, n,
				    djn_dtype_name(xt), worst);
		}

		/* the fused chain recorded and replayed = the ops */
		struct djn_graph *gr = NULL;
#define CHAIN()                                                                             	do {                                                                                		OK(g, g->i->rmsnorm_f16(g, xh, xd, &gw, n, dim, 1e-5f));                    		OK(g, g->i->matmul_f16(g, y, xh, DJN_DTYPE_F16, &w_up, n, false));          		OK(g, g->i->swiglu_f16(g, xh, y, ud, nh));                                  		OK(g, g->i->matmul_f16(g, z, xh, DJN_DTYPE_F16, &w_dn, n, true));           	} while (0)
		OK(g, g->i->copy_d2d(g, z, rd, sizeof(float) * nd));
		CHAIN();
		gpu_get(g, fa, z, sizeof(float) * nd);
		OK(g, g->i->graph_begin(g, 0));
		CHAIN();
		OK(g, g->i->graph_end(g, &gr));
		cr_assert_not_null(gr, "%s, %d rows: the fused chain did not record", what, n);
		for (int rep = 0; rep < 2; rep++) {
			OK(g, g->i->copy_d2d(g, z, rd, sizeof(float) * nd));
			OK(g, g->i->graph_launch(g, gr, 0));
			gpu_get(g, fb, z, sizeof(float) * nd);
			cr_expect_arr_eq(fb, fa, sizeof(float) * nd,
					 "%s, %d rows: replay %d differs from the ops", what, n, rep);
		}
#undef CHAIN
		g->i->graph_free(g, gr);
	}
	void *dev[] = { (void *)w_up.dev, (void *)w_dn.dev, (void *)gw.dev, xd, rd, ud, hn, xh,
			y, act, t, z };
	for (size_t i = 0; i < N_OF(dev); i++)
		g->i->dealloc(g, dev[i]);
	free(wu);
	free(wd);
	free(gain);
	free(gain_h);
	free(x);
	free(r);
	free(u);
	free(fa);
	free(fb);
	free(ha);
	pair_close(&p);
}

/* 7B's MLP shape (rmsnorm4_kernel), and an odd one (rmsnorm_kernel, rows
 * of halves at 4-byte boundaries: the scalar swiglu path) with f16 gains. */
Test(fuse, f16_ops_7b_shape, .timeout = 120) { check_f16_ops(4096, 11008, DJN_DTYPE_F32, 171); }

Test(fuse, f16_ops_odd_shape, .timeout = 120) { check_f16_ops(1022, 702, DJN_DTYPE_F16, 172); }

/* --- DJN_SKINNY=1: attention_rows by a row's own length -------------------- */

/* In the batch-invariant mode each row of attention_rows, run alone (a
 * batch of one with its own max_len), is bit for bit that row in the
 * batch: long decodes, a prefill chunk, short rows, padding. */
static void check_rows_invariant(int n_head, int n_kv_head, int head_dim, int n_rows, int n_pad,
				 uint64_t seed)
{
	setenv("DJN_SKINNY", "1", 1);
	struct pair p = pair_open();
	unsetenv("DJN_SKINNY");
	struct djn_backend *g = p.gpu;
	int sess[MAX_SESS][2];
	struct tbatch b;

	rng_seed(seed);
	int n_sess = make_sessions(sess, n_rows, n_pad, 2100);
	tbatch_new(&b, &p, n_head, n_kv_head, head_dim, (const int (*)[2])sess, n_sess, n_pad);
	const int n = b.n_rows, qd = b.q_dim;
	size_t nq = (size_t)n * qd, nk = (size_t)n * b.kv_dim;
	float *q = rand_vec(nq, 3.0f), *k = rand_vec(nk, 1.0f), *v = rand_vec(nk, 1.0f);
	float *all = malloc(sizeof(float) * nq), *one = malloc(sizeof(float) * qd);
	float *qd_ = gpu_put(g, q, sizeof(float) * nq), *kd_ = gpu_put(g, k, sizeof(float) * nk);
	float *vd_ = gpu_put(g, v, sizeof(float) * nk), *od = gpu_alloc(g, sizeof(float) * nq);
	int bad = 0, rows = 0;

	OK(g, g->i->kv_store_rows(g, &b.gpu_rows, 1, kd_, vd_));
	OK(g, g->i->attention_rows(g, od, qd_, &b.gpu_rows, n_head, n_kv_head, head_dim, 1));
	gpu_get(g, all, od, sizeof(float) * nq);
	for (int r = 0; r < n; r++) {
		if (b.row_sess[r] < 0)
			continue;
		struct djn_kv_rows alone = b.gpu_rows;
		alone.tables = (float *const *const *)b.gpu_tables + r;
		alone.pos = (const int32_t *)b.gpu_pos + r;
		alone.n_rows = 1;
		alone.max_len = b.pos[r] + 1;
		OK(g, g->i->attention_rows(g, od, qd_ + (size_t)r * qd, &alone, n_head, n_kv_head,
					   head_dim, 1));
		gpu_get(g, one, od, sizeof(float) * qd);
		bad += memcmp(one, all + (size_t)r * qd, sizeof(float) * qd) != 0;
		rows++;
	}
	cr_expect_eq(bad, 0, "heads %d/%d hd %d: %d of %d rows alone differ from the batch", n_head,
		     n_kv_head, head_dim, bad, rows);
	g->i->dealloc(g, qd_);
	g->i->dealloc(g, kd_);
	g->i->dealloc(g, vd_);
	g->i->dealloc(g, od);
	free(q);
	free(k);
	free(v);
	free(all);
	free(one);
	tbatch_free(&b);
	pair_close(&p);
}

Test(invariant, attention_rows_alone_equal_the_batch, .timeout = 120)
{
	check_rows_invariant(32, 8, 128, 64, 5, 191);
	check_rows_invariant(32, 32, 128, 40, 0, 192);
	kv_dt = DJN_DTYPE_F16;
	check_rows_invariant(32, 8, 128, 64, 3, 193);
	check_rows_invariant(32, 32, 128, 17, 1, 194);
	kv_dt = DJN_DTYPE_F32;
}

/* --- DJN_SKINNY=1: matmul_f16 through the batch-invariant skinny GEMM ------ */

/* Row r of a batch of n is bit for bit row r alone (n = 1), at every n the
 * kernel takes; the product is within 1e-3 (relative to the largest |y|)
 * of cuBLAS's on the same halves (a backend without the variable); the
 * residual add (accumulate) within BOUND_RESID of the product then add; and
 * a recorded step replays bit for bit. */
static void check_skinny(int rows, int cols, uint64_t seed)
{
	struct pair p = pair_open();
	struct djn_backend *c = p.gpu, *g;
	struct djn_err err = { 0 };
	static const int ns[] = { 1, 3, 8, 16, 33, 64 };
	const int nmax = 64;

	setenv("DJN_SKINNY", "1", 1);
	g = djn_backend_cuda_new(0, &err);
	unsetenv("DJN_SKINNY");
	cr_assert(g, "cuda backend with DJN_SKINNY=1: %s", err.msg);
	rng_seed(seed);
	uint16_t *wh = malloc(sizeof(uint16_t) * rows * cols);
	uint16_t *xh = malloc(sizeof(uint16_t) * nmax * cols);
	for (size_t i = 0; i < (size_t)rows * cols; i++)
		wh[i] = djn_f32_to_f16(rng_f() / 32.0f);
	for (size_t i = 0; i < (size_t)nmax * cols; i++)
		xh[i] = djn_f32_to_f16(rng_f() * 2.0f);
	float *r = rand_vec((size_t)nmax * rows, 1.0f);
	struct djn_weight wg = { .dtype = DJN_DTYPE_F16, .rows = rows, .cols = cols, .host = wh,
				 .dev = gpu_put(g, wh, sizeof(uint16_t) * rows * cols),
				 .name = "w" };
	struct djn_weight wc = wg;
	wc.dev = gpu_put(c, wh, sizeof(uint16_t) * rows * cols);
	void *xg = gpu_put(g, xh, sizeof(uint16_t) * nmax * cols);
	void *xc = gpu_put(c, xh, sizeof(uint16_t) * nmax * cols);
	float *rg = gpu_put(g, r, sizeof(float) * nmax * rows);
	float *yg = gpu_alloc(g, sizeof(float) * nmax * rows);
	float *yc = gpu_alloc(c, sizeof(float) * nmax * rows);
	float *alone = malloc(sizeof(float) * nmax * rows);
	float *fa = malloc(sizeof(float) * nmax * rows), *fb = malloc(sizeof(float) * nmax * rows);

	/* every row alone */
	for (int i = 0; i < nmax; i++) {
		OK(g, g->i->matmul_f16(g, yg, (const uint16_t *)xg + (size_t)i * cols,
				       DJN_DTYPE_F16, &wg, 1, false));
		gpu_get(g, alone + (size_t)i * rows, yg, sizeof(float) * rows);
	}
	for (size_t ti = 0; ti < N_OF(ns); ti++) {
		const int n = ns[ti];
		const size_t nr = (size_t)n * rows;
		OK(g, g->i->matmul_f16(g, yg, xg, DJN_DTYPE_F16, &wg, n, false));
		gpu_get(g, fa, yg, sizeof(float) * nr);
		cr_expect_arr_eq(fa, alone, sizeof(float) * nr,
				 "%d x %d, %d rows: a row differs from the same row alone", rows, cols,
				 n);
		OK(c, c->i->matmul_f16(c, yc, xc, DJN_DTYPE_F16, &wc, n, false));
		gpu_get(c, fb, yc, sizeof(float) * nr);
		double big = 0, worst = 0;
		for (size_t i = 0; i < nr; i++) {
			big = fmax(big, fabs(fb[i]));
			worst = fmax(worst, fabs((double)fa[i] - fb[i]));
		}
		cr_expect(worst <= 1e-3 * big, "%d x %d, %d rows: %.3g from cuBLAS (largest |y| %.3g)",
			  rows, cols, n, worst, big);

		/* y = r + W x in the reduction's epilogue */
		OK(g, g->i->copy_d2d(g, yg, rg, sizeof(float) * nr));
		OK(g, g->i->matmul_f16(g, yg, xg, DJN_DTYPE_F16, &wg, n, true));
		gpu_get(g, fb, yg, sizeof(float) * nr);
		for (size_t i = 0; i < nr; i++)
			fa[i] += r[i];
		double e = rel_err(fb, fa, nr);
		cr_expect(e <= BOUND_RESID, "%d x %d, %d rows: accumulate %.3g from product + r", rows,
			  cols, n, e);

		/* recorded (its scratch sized by the call above) and replayed */
		struct djn_graph *gr = NULL;
		OK(g, g->i->copy_d2d(g, yg, rg, sizeof(float) * nr));
		OK(g, g->i->graph_begin(g, 0));
		OK(g, g->i->matmul_f16(g, yg, xg, DJN_DTYPE_F16, &wg, n, true));
		OK(g, g->i->graph_end(g, &gr));
		cr_assert_not_null(gr, "%d rows: the skinny GEMM did not record", n);
		OK(g, g->i->copy_d2d(g, yg, rg, sizeof(float) * nr));
		OK(g, g->i->graph_launch(g, gr, 0));
		gpu_get(g, fa, yg, sizeof(float) * nr);
		cr_expect_arr_eq(fa, fb, sizeof(float) * nr, "%d rows: the replay differs", n);
		g->i->graph_free(g, gr);
	}
	void *dg[] = { (void *)wg.dev, xg, rg, yg };
	for (size_t i = 0; i < N_OF(dg); i++)
		g->i->dealloc(g, dg[i]);
	c->i->dealloc(c, (void *)wc.dev);
	c->i->dealloc(c, xc);
	c->i->dealloc(c, yc);
	djn_backend_free(g);
	free(wh);
	free(xh);
	free(r);
	free(alone);
	free(fa);
	free(fb);
	pair_close(&p);
}

/* 7B's gate/up (split-K 1 or 2 on an H100's 132 SMs) and down (K 11008) */
Test(skinny, rows_equal_alone_gate_up, .timeout = 120) { check_skinny(11008, 4096, 181); }

Test(skinny, rows_equal_alone_down, .timeout = 120) { check_skinny(4096, 11008, 182); }

/* --- argmax ---------------------------------------------------------------- */

Test(reduce, argmax_rows)
{
	struct pair p = pair_open();
	static const int shapes[][2] = { { 1, 32000 }, { 3, 257 },  { 64, 49152 },
					 { 128, 1 },   { 2000, 33 }, { 7, 1024 } };

	rng_seed(161);
	for (size_t t = 0; t < N_OF(shapes); t++) {
		int n = shapes[t][0], dim = shapes[t][1];
		float *x = rand_vec((size_t)n * dim, 1.0f);
		int *want = malloc(sizeof(int) * n), *got = malloc(sizeof(int) * n);
		/* ties (the first wins), NaN (never), all NaN (0), the last */
		for (int r = 0; r < n; r++) {
			float *xr = x + (size_t)r * dim;
			switch (r % 5) {
			case 1:
				xr[dim - 1] = 7.0f;
				xr[dim / 2] = 7.0f;
				break;
			case 2:
				xr[0] = NAN;
				xr[dim / 3] = NAN;
				break;
			case 3:
				for (int j = 0; j < dim; j++)
					xr[j] = NAN;
				break;
			case 4:
				xr[dim - 1] = 9.0f;
				break;
			}
		}
		float *xd = gpu_put(p.gpu, x, sizeof(float) * n * dim);
		OK(p.cpu, p.cpu->i->argmax_rows(p.cpu, x, n, dim, want));
		memset(got, 0xff, sizeof(int) * n);
		OK(p.gpu, p.gpu->i->argmax_rows(p.gpu, xd, n, dim, got));
		int bad = 0;
		for (int r = 0; r < n; r++)
			bad += got[r] != want[r];
		cr_expect_eq(bad, 0, "argmax_rows %d x %d: %d rows differ (row 0: %d vs %d)", n,
			     dim, bad, got[0], want[0]);
		p.gpu->i->dealloc(p.gpu, xd);
		free(x);
		free(want);
		free(got);
	}
	/* not recordable: it waits for the host */
	int one;
	float *xd = gpu_alloc(p.gpu, sizeof(float) * 4);
	OK(p.gpu, p.gpu->i->graph_begin(p.gpu, 0));
	cr_expect_eq(p.gpu->i->argmax_rows(p.gpu, xd, 1, 4, &one), DJN_ERR_STATE);
	struct djn_graph *none = NULL;
	cr_expect_neq(p.gpu->i->graph_end(p.gpu, &none), DJN_OK);
	cr_expect_null(none);
	p.gpu->i->dealloc(p.gpu, xd);
	pair_close(&p);
}
