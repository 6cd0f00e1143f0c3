/* test-batch-ops.c - the CPU's ops on the rows of a batch of sessions
 * (rope_rows, kv_store_rows, attention_rows, argmax_rows) against the
 * per-session ops, bit for bit: a session computes the same whether it runs
 * alone or in a batch, whatever the other rows are. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/backend.h"
#include "djinn/vmu.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define OK(be, call) cr_assert_eq((call), DJN_OK, "%s: %s", #call, (be)->err.msg)

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
	return (float)((double)(rng_u64() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static float *rand_vec(size_t n, float scale)
{
	float *v = malloc(sizeof(float) * (n ? n : 1));

	cr_assert(v);
	for (size_t i = 0; i < n; i++)
		v[i] = rng_f() * scale;
	return v;
}

static struct djn_backend *cpu_open(int n_threads)
{
	struct djn_err err = { 0 };
	struct djn_backend *be = djn_backend_cpu_new(n_threads, &err);

	cr_assert(be, "cpu backend: %s", err.msg);
	return be;
}

/* --- a batch of sessions --------------------------------------------------- */

enum { N_LAYER = 2, PAGE_TOKENS = 4, MAX_CTX = 64, MAX_SESS = 4, MAX_ROWS = 64 };

/* A session: `len` positions of history, then `n_new` rows in the batch at
 * positions len .. len + n_new - 1 (a decode step when 1, a prefill chunk
 * when more).  Each has two caches with the same contents: one the
 * per-session ops run on, one the batch ops run on. */
struct sess {
	int len, n_new;
	struct djn_kv ref, bat;
};

struct batch {
	struct djn_backend *be;
	int n_sess, n_rows;
	int n_head, n_kv_head, head_dim, kv_dim, q_dim;
	struct sess s[MAX_SESS];
	int row_sess[MAX_ROWS], row_k[MAX_ROWS]; /* session and chunk row; -1: padding */
	float *const *tables[MAX_ROWS];
	int32_t pos[MAX_ROWS];
	struct djn_kv_rows rows;
};

/* The dtype of every cache the tests make (the f16 tests set it). */
static enum djn_dtype kv_dt = DJN_DTYPE_F32;

/* Every page starts as NaN so that a read of a slot never written shows,
 * and so that whole pages can be compared. */
static void kv_new(struct batch *b, struct djn_kv *kv, int len)
{
	struct djn_err err = { 0 };

	OK(b->be, djn_kv_init(kv, b->be, N_LAYER, b->kv_dim, PAGE_TOKENS, MAX_CTX, kv_dt, &err));
	cr_assert_eq(djn_kv_reserve(kv, len, &err), DJN_OK, "reserve %d: %s", len, err.msg);
	for (int p = 0; p < kv->view.n_pages; p++)
		memset(kv->host_table[p], 0xff, djn_kv_page_bytes(kv));
}

/* order: for each row, a session index, or -1 for padding; a session's rows
 * appear in chunk order, others in between. */
static void batch_new(struct batch *b, struct djn_backend *be, int n_head, int n_kv_head,
		      int head_dim, const int (*sess)[2], int n_sess, const int *order,
		      int n_rows)
{
	int next[MAX_SESS] = { 0 };

	memset(b, 0, sizeof(*b));
	b->be = be;
	b->n_sess = n_sess;
	b->n_rows = n_rows;
	b->n_head = n_head;
	b->n_kv_head = n_kv_head;
	b->head_dim = head_dim;
	b->kv_dim = n_kv_head * head_dim;
	b->q_dim = n_head * head_dim;
	for (int i = 0; i < n_sess; i++) {
		struct sess *s = &b->s[i];
		s->len = sess[i][0];
		s->n_new = sess[i][1];
		kv_new(b, &s->ref, s->len + s->n_new);
		kv_new(b, &s->bat, s->len + s->n_new);
		/* the same history in both, every layer */
		for (int l = 0; l < N_LAYER; l++) {
			size_t cnt = (size_t)s->len * b->kv_dim;
			float *k = rand_vec(cnt, 1.0f), *v = rand_vec(cnt, 1.0f);
			OK(be, be->i->kv_store(be, &s->ref.view, l, 0, s->len, k, v));
			OK(be, be->i->kv_store(be, &s->bat.view, l, 0, s->len, k, v));
			free(k);
			free(v);
		}
	}
	for (int r = 0; r < n_rows; r++) {
		int si = order[r];
		b->row_sess[r] = si;
		b->row_k[r] = si < 0 ? -1 : next[si]++;
		b->tables[r] = si < 0 ? NULL : b->s[si].bat.view.pages;
		b->pos[r] = si < 0 ? -1 - (int32_t)(rng_u64() % 5) : b->s[si].len + b->row_k[r];
	}
	for (int i = 0; i < n_sess; i++)
		cr_assert_eq(next[i], b->s[i].n_new, "session %d: order has %d rows, not %d", i,
			     next[i], b->s[i].n_new);
	b->rows = (struct djn_kv_rows){ .tables = b->tables, .pos = b->pos, .n_rows = n_rows,
					.page_tokens = PAGE_TOKENS, .n_layer = N_LAYER,
					.kv_dim = b->kv_dim, .max_len = MAX_CTX, .dtype = kv_dt };
}

static void batch_free(struct batch *b)
{
	for (int i = 0; i < b->n_sess; i++) {
		djn_kv_release(&b->s[i].ref);
		djn_kv_release(&b->s[i].bat);
	}
}

/* The rows of session si, gathered from the batch's (n_rows, width) x in
 * chunk order, or scattered back (to_batch). */
static void gather(const struct batch *b, int si, float *chunk, float *x, int width,
		   bool to_batch)
{
	for (int r = 0; r < b->n_rows; r++) {
		if (b->row_sess[r] != si)
			continue;
		float *c = chunk + (size_t)b->row_k[r] * width, *xr = x + (size_t)r * width;
		if (to_batch)
			memcpy(xr, c, sizeof(float) * width);
		else
			memcpy(c, xr, sizeof(float) * width);
	}
}

static void expect_pages_equal(const struct batch *b, const char *what)
{
	for (int i = 0; i < b->n_sess; i++) {
		const struct sess *s = &b->s[i];
		for (int p = 0; p < s->ref.view.n_pages; p++)
			cr_expect_arr_eq(s->ref.host_table[p], s->bat.host_table[p],
					 djn_kv_page_bytes(&s->ref), "%s: session %d, page %d differs",
					 what, i, p);
	}
}

static bool all_zero(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (x[i] != 0.0f || signbit(x[i]))
			return false;
	return true;
}

/* One layer of a step: rope q and k, store k and v, attend; per session
 * with the per-session ops, and for the batch with the rows ops.  Padding
 * rows of the batch's q and k hold junk that must not leak anywhere. */
static void check_step(struct batch *b, int layer, int rot_dim, enum djn_rope_style style)
{
	struct djn_backend *be = b->be;
	const int n = b->n_rows, qd = b->q_dim, kd = b->kv_dim, hd = b->head_dim;
	const float theta = 10000.0f;
	float *q = rand_vec((size_t)n * qd, 2.0f), *k = rand_vec((size_t)n * kd, 1.0f);
	float *v = rand_vec((size_t)n * kd, 1.0f);
	float *q0 = malloc(sizeof(float) * n * qd), *k0 = malloc(sizeof(float) * n * kd);
	float *out = malloc(sizeof(float) * n * qd), *ref = malloc(sizeof(float) * n * qd);

	memcpy(q0, q, sizeof(float) * n * qd);
	memcpy(k0, k, sizeof(float) * n * kd);
	/* junk in out, where padding rows must come out zero */
	for (int i = 0; i < n * qd; i++)
		out[i] = NAN;
	memcpy(ref, q, sizeof(float) * n * qd);

	/* alone: each session's chunk through rope, kv_store, attention */
	for (int si = 0; si < b->n_sess; si++) {
		struct sess *s = &b->s[si];
		int m = s->n_new;
		float *cq = malloc(sizeof(float) * m * qd), *ck = malloc(sizeof(float) * m * kd);
		float *cv = malloc(sizeof(float) * m * kd), *co = malloc(sizeof(float) * m * qd);
		gather(b, si, cq, q, qd, false);
		gather(b, si, ck, k, kd, false);
		gather(b, si, cv, v, kd, false);
		OK(be, be->i->rope(be, cq, m, b->n_head, hd, rot_dim, s->len, theta, style));
		OK(be, be->i->rope(be, ck, m, b->n_kv_head, hd, rot_dim, s->len, theta, style));
		OK(be, be->i->kv_store(be, &s->ref.view, layer, s->len, m, ck, cv));
		struct djn_attn_shape sh = { .n_head = b->n_head, .n_kv_head = b->n_kv_head,
					     .head_dim = hd, .layer = layer, .pos0 = s->len,
					     .n_rows = m };
		OK(be, be->i->attention(be, co, cq, &s->ref.view, &sh));
		gather(b, si, co, ref, qd, true);
		free(cq);
		free(ck);
		free(cv);
		free(co);
	}

	/* together */
	OK(be, be->i->rope_rows(be, q, &b->rows, b->n_head, hd, rot_dim, theta, style));
	OK(be, be->i->rope_rows(be, k, &b->rows, b->n_kv_head, hd, rot_dim, theta, style));
	OK(be, be->i->kv_store_rows(be, &b->rows, layer, k, v));
	OK(be, be->i->attention_rows(be, out, q, &b->rows, b->n_head, b->n_kv_head, hd, layer));

	for (int r = 0; r < n; r++) {
		const float *o = out + (size_t)r * qd;
		if (b->row_sess[r] < 0) {
			cr_expect(all_zero(o, qd), "padding row %d: attention output is not zero", r);
			cr_expect_arr_eq(q + (size_t)r * qd, q0 + (size_t)r * qd, sizeof(float) * qd,
					 "padding row %d: rope_rows changed q", r);
			cr_expect_arr_eq(k + (size_t)r * kd, k0 + (size_t)r * kd, sizeof(float) * kd,
					 "padding row %d: rope_rows changed k", r);
			continue;
		}
		cr_expect_arr_eq(o, ref + (size_t)r * qd, sizeof(float) * qd,
				 "row %d (session %d, position %d): attention differs from the "
				 "session's own",
				 r, b->row_sess[r], b->pos[r]);
	}
	/* the caches, whole pages: what the rows stored, and nothing else */
	expect_pages_equal(b, "kv_store_rows");
	free(q);
	free(k);
	free(v);
	free(q0);
	free(k0);
	free(out);
	free(ref);
}

/* Three sessions of different lengths, crossing pages: a long decode, a
 * prefill chunk of 5 rows interleaved with the others, a decode at
 * position 0 (an empty history), and padding rows between and at the end. */
static const int sess3[][2] = { { 37, 1 }, { 9, 5 }, { 0, 1 } };
static const int order3[] = { 1, 0, -1, 1, 2, 1, 1, -1, 1, -1 };

Test(batch_ops, mixed_decode_prefill_padding_equal_per_session)
{
	struct djn_backend *be = cpu_open(3);
	struct batch b;

	rng_seed(1);
	batch_new(&b, be, 4, 2, 8, sess3, N_OF(sess3), order3, N_OF(order3));
	check_step(&b, 1, 8, DJN_ROPE_INTERLEAVED);
	batch_free(&b);

	/* both styles, a partial rotation, multi-head (group 1) and layer 0 */
	rng_seed(2);
	batch_new(&b, be, 3, 3, 16, sess3, N_OF(sess3), order3, N_OF(order3));
	check_step(&b, 0, 10, DJN_ROPE_HALF);
	batch_free(&b);
	djn_backend_free(be);
}

/* Several steps in a row: each advances every session by its rows, as the
 * scheduler's loop does (decode rows at the caches' new ends). */
Test(batch_ops, successive_steps)
{
	struct djn_backend *be = cpu_open(2);
	static const int sess[][2] = { { 3, 2 }, { 20, 1 }, { 11, 3 }, { 1, 1 } };
	static const int order[] = { 2, 0, 1, 2, 3, 0, 2 };
	struct batch b;

	rng_seed(3);
	batch_new(&b, be, 8, 2, 4, sess, N_OF(sess), order, N_OF(order));
	for (int step = 0; step < 4; step++) {
		check_step(&b, step % N_LAYER, 4, DJN_ROPE_HALF);
		/* both layers are stored at these positions now: move on */
		if (step % N_LAYER == N_LAYER - 1) {
			for (int i = 0; i < b.n_sess; i++)
				b.s[i].len += b.s[i].n_new;
			for (int r = 0; r < b.n_rows; r++)
				if (b.row_sess[r] >= 0)
					b.pos[r] += b.s[b.row_sess[r]].n_new;
			/* more pages, the same in both caches */
			for (int i = 0; i < b.n_sess; i++) {
				struct djn_err err = { 0 };
				struct djn_kv *kvs[2] = { &b.s[i].ref, &b.s[i].bat };
				for (int c = 0; c < 2; c++) {
					int had = kvs[c]->view.n_pages;
					cr_assert_eq(djn_kv_reserve(kvs[c], b.s[i].len + b.s[i].n_new,
								    &err),
						     DJN_OK, "%s", err.msg);
					for (int p = had; p < kvs[c]->view.n_pages; p++)
						memset(kvs[c]->host_table[p], 0xff,
						       djn_kv_page_bytes(kvs[c]));
				}
			}
		}
	}
	batch_free(&b);
	djn_backend_free(be);
}

/* Many rows: the thread pool splits them, and the answer is the same. */
Test(batch_ops, many_rows_threaded)
{
	struct djn_backend *be = cpu_open(4);
	static const int sess[][2] = { { 50, 1 }, { 2, 9 }, { 30, 1 } };
	int order[40];
	struct batch b;

	for (int r = 0; r < 40; r++)
		order[r] = r < 9 ? 1 : r == 20 ? 0 : r == 33 ? 2 : -1;
	rng_seed(4);
	batch_new(&b, be, 8, 4, 16, sess, N_OF(sess), order, 40);
	check_step(&b, 1, 16, DJN_ROPE_INTERLEAVED);
	batch_free(&b);
	djn_backend_free(be);
}

/* A batch of nothing but padding: nothing stored, zeros out. */
Test(batch_ops, only_padding)
{
	struct djn_backend *be = cpu_open(2);
	static const int sess[][2] = { { 5, 0 } };
	static const int order[] = { -1, -1, -1 };
	struct batch b;

	rng_seed(5);
	batch_new(&b, be, 2, 1, 8, sess, 1, order, 3);
	check_step(&b, 0, 8, DJN_ROPE_HALF);
	batch_free(&b);
	djn_backend_free(be);
}

Test(batch_ops, bad_rows_fail_before_writing)
{
	struct djn_backend *be = cpu_open(1);
	static const int sess[][2] = { { 6, 1 }, { 2, 1 } };
	static const int order[] = { 0, 1 };
	struct batch b;

	rng_seed(6);
	batch_new(&b, be, 2, 1, 8, sess, N_OF(sess), order, 2);
	float *k = rand_vec(2 * 8, 1.0f), *q = rand_vec(2 * 16, 1.0f);
	float *out = malloc(sizeof(float) * 2 * 16);

	/* row 1 beyond max_len: row 0 must not have been stored */
	b.pos[1] = MAX_CTX;
	cr_expect_eq(be->i->kv_store_rows(be, &b.rows, 0, k, k), DJN_ERR_RANGE);
	cr_expect(strstr(be->err.msg, "row 1 at position 64, beyond max_len 64"), "%s",
		  be->err.msg);
	cr_expect_eq(be->i->attention_rows(be, out, q, &b.rows, 2, 1, 8, 0), DJN_ERR_RANGE);
	expect_pages_equal(&b, "failed kv_store_rows");
	/* a position past the pages the session has */
	b.pos[1] = 2 + PAGE_TOKENS;
	cr_expect_eq(be->i->kv_store_rows(be, &b.rows, 0, k, k), DJN_ERR_RANGE);
	cr_expect(strstr(be->err.msg, "row 1 at position 6 has no KV page 1"), "%s",
		  be->err.msg);
	expect_pages_equal(&b, "failed kv_store_rows");
	b.pos[1] = 2;
	cr_expect_eq(be->i->kv_store_rows(be, &b.rows, N_LAYER, k, k), DJN_ERR_RANGE);
	cr_expect_eq(be->i->attention_rows(be, out, q, &b.rows, 3, 2, 8, 0), DJN_ERR_INVALID);
	cr_expect_eq(be->i->attention_rows(be, out, q, &b.rows, 2, 2, 8, 0), DJN_ERR_INVALID,
		     "2 kv heads of 8 do not fit kv_dim 8");
	cr_expect_eq(be->i->rope_rows(be, q, &b.rows, 2, 8, 10, 1e4f, DJN_ROPE_HALF),
		     DJN_ERR_INVALID);
	struct djn_kv_rows bad = b.rows;
	bad.max_len = 0;
	cr_expect_eq(be->i->kv_store_rows(be, &bad, 0, k, k), DJN_ERR_INVALID);
	bad = b.rows;
	bad.pos = NULL;
	cr_expect_eq(be->i->attention_rows(be, out, q, &bad, 2, 1, 8, 0), DJN_ERR_INVALID);
	/* and a good call still works after */
	OK(be, be->i->kv_store_rows(be, &b.rows, 0, k, k));
	free(k);
	free(q);
	free(out);
	batch_free(&b);
	djn_backend_free(be);
}

Test(batch_ops, argmax_rows_equal_argmax)
{
	struct djn_backend *be = cpu_open(1);
	enum { N = 7, DIM = 301 };
	float *x;
	int got[N], want;

	rng_seed(7);
	x = rand_vec((size_t)N * DIM, 1.0f);
	x[1 * DIM + 200] = 4.0f; /* ties: the first wins */
	x[1 * DIM + 17] = 4.0f;
	x[2 * DIM + 0] = NAN;    /* NaN is never the max, even first */
	for (int j = 0; j < DIM; j++)
		x[3 * DIM + j] = NAN; /* all NaN: 0 */
	x[4 * DIM + DIM - 1] = 9.0f;
	for (int j = 0; j < DIM; j++)
		x[5 * DIM + j] = -1.0f;
	x[6 * DIM + 5] = INFINITY;
	OK(be, be->i->argmax_rows(be, x, N, DIM, got));
	for (int i = 0; i < N; i++) {
		OK(be, be->i->argmax(be, x + (size_t)i * DIM, DIM, &want));
		cr_expect_eq(got[i], want, "row %d: argmax_rows %d, argmax %d", i, got[i], want);
	}
	cr_expect_eq(got[1], 17);
	cr_expect_eq(got[3], 0);
	cr_expect_eq(got[4], DIM - 1);
	cr_expect_eq(got[5], 0);
	cr_expect_eq(got[6], 5);
	OK(be, be->i->argmax_rows(be, x, 0, DIM, got));
	cr_expect_eq(be->i->argmax_rows(be, x, 1, 0, got), DJN_ERR_INVALID);
	free(x);
	djn_backend_free(be);
}

/* An f16 cache: the batch's rows equal the per-session ops bit for bit, as
 * with f32 (the same tests, every cache in halves). */
Test(batch_ops, f16_cache_rows_equal_per_session)
{
	struct djn_backend *be = cpu_open(3);
	static const int sess[][2] = { { 3, 2 }, { 20, 1 }, { 11, 3 }, { 1, 1 } };
	static const int order[] = { 2, 0, 1, 2, 3, 0, 2 };
	struct batch b;

	kv_dt = DJN_DTYPE_F16;
	rng_seed(11);
	batch_new(&b, be, 4, 2, 8, sess3, N_OF(sess3), order3, N_OF(order3));
	check_step(&b, 1, 8, DJN_ROPE_INTERLEAVED);
	batch_free(&b);
	rng_seed(12);
	batch_new(&b, be, 8, 2, 4, sess, N_OF(sess), order, N_OF(order));
	check_step(&b, 0, 4, DJN_ROPE_HALF);
	batch_free(&b);
	kv_dt = DJN_DTYPE_F32;
	djn_backend_free(be);
}

/* What an f16 cache holds: k and v rounded to nearest even, half the bytes
 * of an f32 page; attention over it equals attention over an f32 cache
 * holding those rounded values, bit for bit (widening is exact). */
Test(batch_ops, f16_cache_holds_rounded_values)
{
	struct djn_backend *be = cpu_open(2);
	struct djn_err err = { 0 };
	struct djn_kv h, f;
	const int kd = 16, len = 9, n_head = 4, n_kv_head = 2, hd = 8;
	float *k = rand_vec((size_t)len * kd, 3.0f), *v = rand_vec((size_t)len * kd, 3.0f);
	float *kr = malloc(sizeof(float) * len * kd), *vr = malloc(sizeof(float) * len * kd);
	float *q = rand_vec((size_t)len * n_head * hd, 2.0f);
	float *oh = malloc(sizeof(float) * len * n_head * hd);
	float *of = malloc(sizeof(float) * len * n_head * hd);

	rng_seed(13);
	OK(be, djn_kv_init(&h, be, N_LAYER, kd, PAGE_TOKENS, MAX_CTX, DJN_DTYPE_F16, &err));
	OK(be, djn_kv_init(&f, be, N_LAYER, kd, PAGE_TOKENS, MAX_CTX, DJN_DTYPE_F32, &err));
	cr_assert_eq(2 * djn_kv_page_bytes(&h), djn_kv_page_bytes(&f));
	cr_assert_eq(djn_kv_reserve(&h, len, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_kv_reserve(&f, len, &err), DJN_OK, "%s", err.msg);
	for (int i = 0; i < len * kd; i++) {
		kr[i] = djn_f16_to_f32(djn_f32_to_f16(k[i]));
		vr[i] = djn_f16_to_f32(djn_f32_to_f16(v[i]));
	}
	OK(be, be->i->kv_store(be, &h.view, 1, 0, len, k, v));
	OK(be, be->i->kv_store(be, &f.view, 1, 0, len, kr, vr));
	for (int t = 0; t < len; t++) {
		const uint16_t *page = (const uint16_t *)h.host_table[t / PAGE_TOKENS];
		const uint16_t *row = page + ((size_t)(1 * 2 + 0) * PAGE_TOKENS + t % PAGE_TOKENS) * kd;
		for (int d = 0; d < kd; d++)
			cr_expect_eq(row[d], djn_f32_to_f16(k[t * kd + d]),
				     "position %d, dim %d: K stored as %04x, not %04x", t, d, row[d],
				     djn_f32_to_f16(k[t * kd + d]));
	}
	struct djn_attn_shape sh = { .n_head = n_head, .n_kv_head = n_kv_head, .head_dim = hd,
				     .layer = 1, .pos0 = 0, .n_rows = len };
	OK(be, be->i->attention(be, oh, q, &h.view, &sh));
	OK(be, be->i->attention(be, of, q, &f.view, &sh));
	cr_expect_arr_eq(oh, of, sizeof(float) * len * n_head * hd,
			 "attention over the f16 cache differs from f32 over rounded values");
	/* and a dtype the cache does not take */
	struct djn_kv bad;
	cr_expect_eq(djn_kv_init(&bad, be, N_LAYER, kd, PAGE_TOKENS, MAX_CTX, DJN_DTYPE_BF16, &err),
		     DJN_ERR_INVALID);
	cr_expect(strstr(err.msg, "f32 or f16"), "message: %s", err.msg);
	djn_kv_release(&h);
	djn_kv_release(&f);
	free(k);
	free(v);
	free(kr);
	free(vr);
	free(q);
	free(oh);
	free(of);
	djn_backend_free(be);
}
