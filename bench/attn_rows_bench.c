/* attn_rows_bench.c - the batched decode attention (attention_rows) on the
 * GPU, timed through the backend as the scheduler calls it: rows sessions,
 * each at position ctx - 1 of its own paged f32 KV cache (pages of 16 tokens
 * in shuffled order), for rows in {1,8,32,64,128} x ctx in {128,512,1024} x
 * heads (32,32,128) and (32,8,128).  Beside each: the KV bytes it must read
 * over its time, against the device-to-device copy bandwidth measured in the
 * same run (bytes read + written); the same rows through the scalar kernel
 * (DJN_ATTN_ROWS_OLD=1) and through the per-session `attention` op, one call
 * a session; and the largest ||a - b|| / ||b|| of each against the
 * per-session op.
 *
 * Times are medians of 7 replays of a recorded graph of REPS calls (op by op
 * when a recording fails), host clock around launch + sync, divided by REPS.
 *
 * --f16kv: the f16 KV cache's kernels against f32's, for the same shapes
 * (rows x ctx in 1 x {128, 1024}, 64 x {128, 512}): a cache of each dtype;
 * "old" is then the kernels kept for comparing on halves (DJN_ATTN_F16_OLD=1:
 * for f32 it changes nothing, so its old and new columns show the noise), and
 * the per-session op (the decode split kernel) is timed both ways too; KV
 * bytes are those of the dtype.
 *
 * usage: attn_rows_bench [--quick | --f16kv]  (JSON on stdout, a table on stderr) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "djinn/backend.h"
#include "djinn/tensor.h"

#define PAGE_TOKENS 16
#define MAX_ROWS 128
#define MAX_CTX 1024
#define MAX_KV_DIM 4096
#define REPS 50
#define TRIALS 7

static struct djn_backend *be;
static enum djn_dtype kv_dt = DJN_DTYPE_F32;     /* of the caches */
static const char *old_env = "DJN_ATTN_ROWS_OLD"; /* what "old" sets to 1 */

static void die(const char *what)
{
	fprintf(stderr, "attn_rows_bench: %s: %s\n", what, be ? be->err.msg : "");
	exit(1);
}

#define OK(call)                                                               \
	do {                                                                   \
		if ((call) != DJN_OK)                                          \
			die(#call);                                            \
	} while (0)

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static uint64_t rng_s = 0x243f6a8885a308d3ull;

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

static void *dev_alloc(size_t bytes)
{
	void *d = be->i->alloc(be, bytes);

	if (!d)
		die("alloc");
	return d;
}

/* One batch shape: everything attention_rows and attention need. */
struct shape {
	int n_head, n_kv_head, head_dim, rows, ctx;
	float *q, *out, *out_ref;
	struct djn_kv_rows kv;
	struct djn_kv_view *views; /* rows, per session */
	float ***host_tables;      /* rows x n_pages host copies */
};

enum which { RUN_NEW, RUN_OLD, RUN_SESS, RUN_SESS_OLD };

static enum djn_status run_once(struct shape *s, enum which w)
{
	if (w != RUN_SESS && w != RUN_SESS_OLD)
		return be->i->attention_rows(be, s->out, s->q, &s->kv, s->n_head, s->n_kv_head,
					     s->head_dim, 0);
	const int qd = s->n_head * s->head_dim;
	struct djn_attn_shape as = { .n_head = s->n_head, .n_kv_head = s->n_kv_head,
				     .head_dim = s->head_dim, .layer = 0, .pos0 = s->ctx - 1,
				     .n_rows = 1 };
	for (int r = 0; r < s->rows; r++) {
		enum djn_status st = be->i->attention(be, s->out + (size_t)r * qd,
						      s->q + (size_t)r * qd, &s->views[r], &as);
		if (st != DJN_OK)
			return st;
	}
	return DJN_OK;
}

static void set_old(bool old)
{
	if (old)
		setenv(old_env, "1", 1);
	else
		unsetenv(old_env);
}

/* Microseconds a call (a call: all rows); *graphed says how it was timed. */
static double time_calls(struct shape *s, enum which w, bool *graphed)
{
	struct djn_graph *g = NULL;
	double t[TRIALS];
	const int pos = w == RUN_SESS || w == RUN_SESS_OLD ? s->ctx - 1 : 0;

	set_old(w == RUN_OLD || w == RUN_SESS_OLD);
	OK(run_once(s, w)); /* scratch grows here, never while recording */
	OK(be->i->sync(be));
	*graphed = false;
	if (be->i->graph_begin && be->i->graph_begin(be, pos) == DJN_OK) {
		enum djn_status st = DJN_OK;
		for (int k = 0; k < REPS && st == DJN_OK; k++)
			st = run_once(s, w);
		if (be->i->graph_end(be, &g) == DJN_OK && st == DJN_OK && g)
			*graphed = true;
	}
	for (int k = -1; k < TRIALS; k++) {
		double t0 = now_us();
		if (*graphed) {
			OK(be->i->graph_launch(be, g, pos));
		} else {
			for (int j = 0; j < REPS; j++)
				OK(run_once(s, w));
		}
		OK(be->i->sync(be));
		if (k >= 0)
			t[k] = (now_us() - t0) / REPS;
	}
	if (g)
		be->i->graph_free(be, g);
	set_old(false);
	qsort(t, TRIALS, sizeof(double), cmp_d);
	return t[TRIALS / 2];
}

static double rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;

	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	if (isnan(num))
		return INFINITY;
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ||run w - per-session|| / ||per-session||, out poisoned first. */
static double check(struct shape *s, enum which w, float *h_a, float *h_b, const float *nan_buf)
{
	const size_t n = (size_t)s->rows * s->n_head * s->head_dim;

	OK(be->i->copy_h2d(be, s->out, nan_buf, sizeof(float) * n));
	OK(run_once(s, RUN_SESS));
	OK(be->i->copy_d2h(be, h_b, s->out, sizeof(float) * n));
	OK(be->i->copy_h2d(be, s->out, nan_buf, sizeof(float) * n));
	set_old(w == RUN_OLD);
	OK(run_once(s, w));
	set_old(false);
	OK(be->i->copy_d2h(be, h_a, s->out, sizeof(float) * n));
	return rel_err(h_a, h_b, n);
}

static double d2d_gbps(void)
{
	const size_t n = (size_t)1 << 30;
	void *a = dev_alloc(n), *b = dev_alloc(n);
	double t[TRIALS];

	OK(be->i->memset0(be, a, n));
	OK(be->i->copy_d2d(be, b, a, n));
	OK(be->i->sync(be));
	for (int k = 0; k < TRIALS; k++) {
		double t0 = now_us();
		for (int j = 0; j < 5; j++)
			OK(be->i->copy_d2d(be, j % 2 ? a : b, j % 2 ? b : a, n));
		OK(be->i->sync(be));
		t[k] = (now_us() - t0) / 5;
	}
	be->i->dealloc(be, a);
	be->i->dealloc(be, b);
	qsort(t, TRIALS, sizeof(double), cmp_d);
	return 2.0 * n / t[TRIALS / 2] / 1e3;
}

/* The pool of every row's pages: random values in [-1, 1), as f32 or as
 * halves (rounded to nearest even, as kv_store stores them), fill elements
 * a copy. */
static void fill_pool(void *pool, size_t pool_bytes, void *h, size_t fill)
{
	const size_t eb = djn_kv_elem_bytes(kv_dt), chunk = fill * eb;

	for (size_t i = 0; i < fill; i++) {
		float v = rng_f();
		if (kv_dt == DJN_DTYPE_F16)
			((uint16_t *)h)[i] = djn_f32_to_f16(v);
		else
			((float *)h)[i] = v;
	}
	for (size_t off = 0; off < pool_bytes; off += chunk)
		OK(be->i->copy_h2d(be, (char *)pool + off, h,
				   pool_bytes - off < chunk ? pool_bytes - off : chunk));
}

int main(int argc, char **argv)
{
	struct djn_err err = { 0 };
	static const int heads[][3] = { { 32, 32, 128 }, { 32, 8, 128 } };
	static const int rows_of[] = { 1, 8, 32, 64, 128 };
	static const int ctx_of[] = { 128, 512, 1024 };
	static const int f16kv_of[][2] = { { 1, 128 }, { 1, 1024 }, { 64, 128 }, { 64, 512 } };
	static const enum djn_dtype dts[] = { DJN_DTYPE_F32, DJN_DTYPE_F16 };
	const bool quick = argc > 1 && !strcmp(argv[1], "--quick");
	const bool f16kv = argc > 1 && !strcmp(argv[1], "--f16kv");
	const int ppr = MAX_CTX / PAGE_TOKENS; /* pages a row */
	char desc[256];

	if (argc > 2 || (argc > 1 && !quick && !f16kv)) {
		fprintf(stderr, "usage: attn_rows_bench [--quick | --f16kv]\n");
		return 2;
	}
	if (f16kv)
		old_env = "DJN_ATTN_F16_OLD";
	if (!(be = djn_backend_cuda_new(0, &err))) {
		fprintf(stderr, "attn_rows_bench: cuda backend: %s\n", err.msg);
		return 1;
	}
	be->i->describe(be, desc, sizeof(desc));

	/* the caches of all rows, one pool of random values (filled 64 MiB at a
	 * time), laid out for f32: an f16 cache uses the first half of each page */
	const size_t pool_floats = (size_t)MAX_ROWS * MAX_CTX * 2 * MAX_KV_DIM;
	const size_t fill = (size_t)16 << 20;
	float *pool = dev_alloc(sizeof(float) * pool_floats);
	float *h = malloc(sizeof(float) * fill);
	const size_t qmax = (size_t)MAX_ROWS * 32 * 128;
	float *h_a = malloc(sizeof(float) * qmax), *h_b = malloc(sizeof(float) * qmax);
	float *nan_buf = malloc(sizeof(float) * qmax);
	if (!h || !h_a || !h_b || !nan_buf)
		die("malloc");
	for (size_t i = 0; i < qmax; i++)
		nan_buf[i] = NAN;

	const double d2d = d2d_gbps();
	fprintf(stderr, "attn_rows_bench: %s\nd2d copy: %.0f GB/s (read + write)\n", desc, d2d);
	if (f16kv)
		fprintf(stderr, "old: DJN_ATTN_F16_OLD=1 (no change for f32: noise); sess: the "
				"per-session attention op (decode split kernel), new | old\n");
	fprintf(stderr, "%-3s %-10s %5s %5s %9s | %9s %6s %5s | %9s %6s %5s | %9s%s | %8s %8s\n",
		"kv", "heads", "rows", "ctx", "KV MB", "old us", "TB/s", "%d2d", "new us", "TB/s",
		"%d2d", "sess us", f16kv ? "  sess old" : "", "err new", "err old");
	printf("{\n  \"bench\": \"attn_rows_bench\",\n  \"device\": \"%s\",\n"
	       "  \"d2d_GBps\": %.1f,\n  \"page_tokens\": %d,\n  \"reps\": %d,\n"
	       "  \"old\": \"%s=1\",\n  \"results\": [",
	       desc, d2d, PAGE_TOKENS, REPS, old_env);
	int n_out = 0;

	float *q = dev_alloc(sizeof(float) * qmax), *out = dev_alloc(sizeof(float) * qmax);
	for (size_t i = 0; i < qmax; i++)
		h_a[i] = rng_f();
	OK(be->i->copy_h2d(be, q, h_a, sizeof(float) * qmax));
	int32_t *d_pos = dev_alloc(sizeof(int32_t) * MAX_ROWS);
	float ***d_tables = dev_alloc(sizeof(float **) * MAX_ROWS);
	float **d_flat = dev_alloc(sizeof(float *) * MAX_ROWS * ppr);
	float **h_flat = malloc(sizeof(float *) * MAX_ROWS * ppr);
	float ***h_tables = malloc(sizeof(float **) * MAX_ROWS);
	struct djn_kv_view views[MAX_ROWS];
	if (!h_flat || !h_tables)
		die("malloc");

	for (size_t di = 0; di < (f16kv ? 2u : 1u); di++) {
		kv_dt = dts[di];
		fill_pool(pool, sizeof(float) * pool_floats, h, fill);
		for (size_t hi = 0; hi < sizeof(heads) / sizeof(heads[0]); hi++) {
			const int nh = heads[hi][0], nkv = heads[hi][1], hd = heads[hi][2];
			const int kv_dim = nkv * hd;
			const size_t pf = (size_t)2 * PAGE_TOKENS * kv_dim; /* one layer */

			/* row r's page j at a shuffled slot of its own pages */
			for (int r = 0; r < MAX_ROWS; r++) {
				float **t = h_flat + (size_t)r * ppr;
				for (int j = 0; j < ppr; j++)
					t[j] = pool + ((size_t)r * ppr + j) * pf;
				for (int j = ppr - 1; j > 0; j--) {
					int k = (int)(rng_u64() % (uint64_t)(j + 1));
					float *x = t[j];
					t[j] = t[k];
					t[k] = x;
				}
				h_tables[r] = d_flat + (size_t)r * ppr;
				views[r] = (struct djn_kv_view){ .pages = d_flat + (size_t)r * ppr,
								 .pages_host = t, .n_pages = ppr,
								 .page_tokens = PAGE_TOKENS, .n_layer = 1,
								 .kv_dim = kv_dim, .dtype = kv_dt };
			}
			OK(be->i->copy_h2d(be, d_flat, h_flat, sizeof(float *) * MAX_ROWS * ppr));
			OK(be->i->copy_h2d(be, d_tables, h_tables, sizeof(float **) * MAX_ROWS));

			for (size_t ri = 0; ri < sizeof(rows_of) / sizeof(rows_of[0]); ri++)
				for (size_t ci = 0; ci < sizeof(ctx_of) / sizeof(ctx_of[0]); ci++) {
					const int rows = rows_of[ri], ctx = ctx_of[ci];
					if (quick && (rows != 64 || ctx != 1024))
						continue;
					bool listed = false;
					for (size_t k = 0; k < sizeof(f16kv_of) / sizeof(f16kv_of[0]); k++)
						listed |= f16kv_of[k][0] == rows && f16kv_of[k][1] == ctx;
					if (f16kv && !listed)
						continue;
					int32_t hp[MAX_ROWS];
					for (int r = 0; r < rows; r++)
						hp[r] = ctx - 1;
					OK(be->i->copy_h2d(be, d_pos, hp, sizeof(int32_t) * rows));
					struct shape s = { .n_head = nh, .n_kv_head = nkv, .head_dim = hd,
							   .rows = rows, .ctx = ctx, .q = q, .out = out,
							   .views = views };
					s.kv = (struct djn_kv_rows){ .tables = (float *const *const *)d_tables,
								     .pos = d_pos, .n_rows = rows,
								     .page_tokens = PAGE_TOKENS,
								     .n_layer = 1, .kv_dim = kv_dim,
								     .max_len = ctx, .dtype = kv_dt };
					const double kv_bytes = (double)rows * ctx * 2 * kv_dim *
								djn_kv_elem_bytes(kv_dt);
					bool g_old, g_new, g_s, g_so = true;
					/* not finite: 1e99 (so that the JSON stays JSON) */
					double e_new = check(&s, RUN_NEW, h_a, h_b, nan_buf);
					double e_old = check(&s, RUN_OLD, h_a, h_b, nan_buf);
					e_new = isfinite(e_new) ? e_new : 1e99;
					e_old = isfinite(e_old) ? e_old : 1e99;
					const double us_old = time_calls(&s, RUN_OLD, &g_old);
					const double us_new = time_calls(&s, RUN_NEW, &g_new);
					const double us_s = time_calls(&s, RUN_SESS, &g_s);
					const double us_so = f16kv ? time_calls(&s, RUN_SESS_OLD, &g_so) : 0;
					const double tb_old = kv_bytes / us_old / 1e6;
					const double tb_new = kv_bytes / us_new / 1e6;
					const bool graphed = g_old && g_new && g_s && g_so;
					const char *dn = djn_dtype_name(kv_dt);
					char hs[16], so[16] = "";
					snprintf(hs, sizeof(hs), "%d/%d/%d", nh, nkv, hd);
					if (f16kv)
						snprintf(so, sizeof(so), " %9.1f", us_so);
					fprintf(stderr,
						"%-3s %-10s %5d %5d %9.1f | %9.1f %6.2f %5.1f | %9.1f %6.2f %5.1f | "
						"%9.1f%s | %8.1e %8.1e%s\n",
						dn, hs, rows, ctx, kv_bytes / 1e6, us_old, tb_old,
						100 * tb_old * 1e3 / d2d, us_new, tb_new,
						100 * tb_new * 1e3 / d2d, us_s, so, e_new, e_old,
						graphed ? "" : " (some op by op)");
					printf("%s\n    {\"kv_dtype\": \"%s\", \"n_head\": %d, \"n_kv_head\": %d, "
					       "\"head_dim\": %d, "
					       "\"rows\": %d, \"ctx\": %d, \"kv_bytes\": %.0f, "
					       "\"old_us\": %.2f, \"new_us\": %.2f, \"session_us\": %.2f, "
					       "\"session_old_us\": %.2f, "
					       "\"old_TBps\": %.3f, \"new_TBps\": %.3f, "
					       "\"new_pct_d2d\": %.1f, \"err_new\": %.2e, \"err_old\": %.2e, "
					       "\"graphed\": %s}",
					       n_out++ ? "," : "", dn, nh, nkv, hd, rows, ctx, kv_bytes, us_old,
					       us_new, us_s, us_so, tb_old, tb_new, 100 * tb_new * 1e3 / d2d,
					       e_new, e_old, graphed ? "true" : "false");
					fflush(stdout);
				}
		}
	}
	printf("\n  ]\n}\n");
	be->i->dealloc(be, pool);
	be->i->dealloc(be, q);
	be->i->dealloc(be, out);
	be->i->dealloc(be, d_pos);
	be->i->dealloc(be, d_tables);
	be->i->dealloc(be, d_flat);
	free(h);
	free(h_a);
	free(h_b);
	free(nan_buf);
	free(h_flat);
	free(h_tables);
	djn_backend_free(be);
	return 0;
}
