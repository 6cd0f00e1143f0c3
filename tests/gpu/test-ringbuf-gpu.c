/* test-ringbuf-gpu.c - the ring buffer on CUDA, where the copies really run
 * on a second stream ordered by events: streamed runs against the resident
 * model on the same GPU (tokens identical, logits equal or within F16
 * rounding), breakpoints, steering and condition replays inside streamed
 * layers, two sessions sharing a ring, KV swap-out / swap-in, and the copy
 * bandwidth.  stories260K always; tiny-llama (made here by mkmodel) for f16
 * and an untied head; DJINN_RING_MODEL=DIR (e.g. the llama-2-13b synthetic)
 * for a model at size.  Skips without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "djinn/djinn.h"
#include "djinn/mkmodel.h"

#define MAX_CHUNKS 160 /* prompt chunk + up to 120 tokens, with room */

static void need_gpu(void)
{
	if (djn_cuda_device_count() == 0)
		cr_skip_test("no CUDA device");
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct side {
	struct djn_model *m;
	struct djn_backend *be;
	struct djn_session *s;
};

static void side_open(struct side *x, const char *path, const char *tok,
		      const struct djn_ring_opts *o)
{
	struct djn_err err = { 0 };

	x->m = djn_model_load(path, tok, &err);
	cr_assert_not_null(x->m, "%s", err.msg);
	if (o)
		cr_assert_eq(djn_ring_configure(x->m, o, &err), DJN_OK, "%s", err.msg);
	x->be = djn_backend_new("cuda", 0, &err);
	cr_assert_not_null(x->be, "%s", err.msg);
	/* the context the traces need: a model's full context of KV would be
	 * counted in the working set and crowd small budgets out */
	struct djn_session_opts so = { .max_ctx = 256 };
	x->s = djn_session_new(x->m, x->be, &so, &err);
	cr_assert_not_null(x->s, "%s", err.msg);
}

static void side_close(struct side *x)
{
	djn_session_free(x->s);
	djn_model_unref(x->m);
	djn_backend_free(x->be);
}

struct trace {
	int n_tok, n_chunks, vocab;
	int32_t tok[MAX_CHUNKS + 16];
	float *logits; /* n_chunks x vocab */
	double ms;
};

static void trace_free(struct trace *t)
{
	free(t->logits);
}

static void run_trace(struct djn_session *s, const int32_t *ids, int n, int n_new,
		      struct trace *t)
{
	struct djn_model *m = djn_session_model(s);
	struct djn_gen_opts g = { .n_new = n_new, .temperature = 0 };
	int logits = djn_site_count(&m->cfg) - 1;
	enum djn_stop why = DJN_STOP_STEP;
	double t0;

	memset(t, 0, sizeof(*t));
	t->vocab = m->cfg.vocab_size;
	t->logits = malloc(sizeof(float) * (size_t)t->vocab * MAX_CHUNKS);
	cr_assert_eq(djn_session_start(s, ids, n, &g), DJN_OK, "%s", djn_session_errmsg(s));
	t0 = now_ms();
	while (why != DJN_STOP_DONE) {
		cr_assert_eq(djn_session_run(s, DJN_RUN_FINISH, 1), DJN_STOP_STEP, "%s",
			     djn_session_errmsg(s));
		cr_assert_lt(t->n_chunks, MAX_CHUNKS);
		cr_assert_eq(djn_session_read(s, logits, t->logits + (size_t)t->n_chunks++ * t->vocab,
					      (size_t)t->vocab), DJN_OK, "%s", djn_session_errmsg(s));
		why = djn_session_run(s, DJN_RUN_STEP, 1);
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s));
	}
	t->ms = now_ms() - t0;
	const int32_t *tk = djn_session_tokens(s, &t->n_tok, NULL);
	memcpy(t->tok, tk, sizeof(int32_t) * (size_t)t->n_tok);
}

/* Tokens identical; the worst logit difference relative to the logits' scale. */
static double compare(const struct trace *a, const struct trace *b, const char *what)
{
	double worst = 0;

	cr_assert_eq(a->n_tok, b->n_tok, "%s", what);
	cr_assert_arr_eq(a->tok, b->tok, sizeof(int32_t) * (size_t)a->n_tok, "%s: tokens differ",
			 what);
	for (int c = 0; c < a->n_chunks; c++) {
		const float *x = a->logits + (size_t)c * a->vocab, *y = b->logits + (size_t)c * a->vocab;
		double num = 0, den = 0;
		for (int v = 0; v < a->vocab; v++) {
			num += ((double)x[v] - y[v]) * ((double)x[v] - y[v]);
			den += (double)x[v] * x[v];
		}
		worst = fmax(worst, sqrt(num / (den > 0 ? den : 1)));
	}
	return worst;
}

static const int32_t once[] = { 1, 403, 407, 261, 378 };

Test(ring_gpu, stories260K_streamed_matches_resident, .timeout = 300)
{
	struct { struct djn_ring_opts o; const char *what; } cases[] = {
		{ { .n_slots = 2, .n_stream_min = 3 }, "3 streamed, K=2" },
		{ { .n_slots = 2, .n_stream_min = 4 }, "4 streamed, K=2" },
		{ { .n_slots = 3, .n_stream_min = 4 }, "4 streamed, K=3" },
		{ { .n_slots = 2, .n_stream_min = 5 }, "5 streamed, K=2" },
		{ { .n_slots = 3, .n_stream_min = 5 }, "5 streamed, K=3" },
		{ { .n_slots = 4, .n_stream_min = 5 }, "5 streamed, K=4" },
		{ { .n_slots = 4, .n_stream_min = 2 }, "2 streamed, K=4 (a slot each)" },
		{ { .n_slots = 1, .n_stream_min = 4 }, "4 streamed, K=1" },
		{ { .sync = true, .n_stream_min = 4 }, "4 streamed, synchronous" },
	};
	struct side r, s;
	struct trace ref, t;

	need_gpu();
	side_open(&r, "models/stories260K.bin", "models/tok512.bin", NULL);
	run_trace(r.s, once, 5, 120, &ref);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct djn_ring_stats st;
		side_open(&s, "models/stories260K.bin", "models/tok512.bin", &cases[i].o);
		cr_assert_not_null(djn_ring_of(s.m));
		run_trace(s.s, once, 5, 120, &t);
		double worst = compare(&ref, &t, cases[i].what);
		djn_ring_stats(djn_ring_of(s.m), &st);
		printf("stories260K %s: worst relative logit difference %.3g, %ld copies "
		       "(%ld out of order)%s\n", cases[i].what, worst, st.n_copies, st.n_resync,
		       st.pinned ? "" : ", NOT pinned");
		cr_expect_leq(worst, 1e-6, "%s: %.3g", cases[i].what, worst);
		cr_expect(st.pinned, "%s", st.host_note);
		trace_free(&t);
		side_close(&s);
	}
	trace_free(&ref);
	side_close(&r);
}

/* tiny-llama in f16 (an untied head, GQA): made here. */
static char tiny_dir[] = "/tmp/djn-ring-gpu-XXXXXX";

static void make_tiny(void)
{
	struct djn_mkmodel_opts mo = { .shape = "tiny-llama", .dtype = DJN_DTYPE_F16, .seed = 3,
				       .force = true };
	struct djn_err err = { 0 };

	cr_assert_not_null(mkdtemp(tiny_dir));
	mo.out_dir = tiny_dir;
	cr_assert_eq(djn_mkmodel(&mo, &err), DJN_OK, "%s", err.msg);
}

static void drop_tiny(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tiny_dir);
	(void)system(cmd);
}

Test(ring_gpu, tiny_llama_f16_streamed_matches_resident, .timeout = 300)
{
	struct djn_ring_opts opts[] = {
		{ .n_slots = 2, .n_stream_min = 3 },
		{ .n_slots = 3, .n_stream_min = 4 },
		{ .sync = true, .n_stream_min = 4 },
	};
	const int32_t ids[] = { 72, 101, 108, 108, 111, 44, 32, 119 };
	struct side r, s;
	struct trace ref, t;

	need_gpu();
	make_tiny();
	side_open(&r, tiny_dir, NULL, NULL);
	run_trace(r.s, ids, 8, 48, &ref);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		side_open(&s, tiny_dir, NULL, &opts[i]);
		run_trace(s.s, ids, 8, 48, &t);
		double worst = compare(&ref, &t, "tiny-llama f16");
		printf("tiny-llama f16, %d streamed, K=%d: worst relative logit difference %.3g\n",
		       djn_ring_plan(djn_ring_of(s.m))->n_streamed,
		       djn_ring_plan(djn_ring_of(s.m))->n_slots, worst);
		cr_expect_leq(worst, 1e-3);
		trace_free(&t);
		side_close(&s);
	}
	trace_free(&ref);
	side_close(&r);
	drop_tiny();
}

Test(ring_gpu, debugger_inside_streamed_layers, .timeout = 300)
{
	struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = 4 };
	struct djn_gen_opts g = { .n_new = 40, .temperature = 0 };
	struct side r, s;
	const struct djn_ring_plan *p;
	char pat[32];
	float a[64], b[64];
	int site, hits = 0, na, nb;
	enum djn_stop why;

	need_gpu();
	side_open(&r, "models/stories260K.bin", "models/tok512.bin", NULL);
	side_open(&s, "models/stories260K.bin", "models/tok512.bin", &o);
	p = djn_ring_plan(djn_ring_of(s.m));
	/* a statistics condition in the first streamed layer, settled every 37
	 * sites and replayed from the chunk's start; a plain breakpoint in the
	 * last streamed layer that steers once */
	snprintf(pat, sizeof(pat), "L%d.mlp_out", p->streamed[0]);
	site = djn_site_find(&s.m->cfg, pat);
	cr_assert_gt(djn_bp_add(s.s, pat, "norm > 0 and pos >= 20", false), 0);
	cr_assert_gt(djn_bp_add(r.s, pat, "norm > 0 and pos >= 20", false), 0);
	snprintf(pat, sizeof(pat), "L%d.attn_out", p->streamed[p->n_streamed - 1]);
	cr_assert_gt(djn_bp_add(s.s, pat, "pos == 9", true), 0);
	cr_assert_gt(djn_bp_add(r.s, pat, "pos == 9", true), 0);
	cr_assert_eq(djn_session_start(s.s, once, 5, &g), DJN_OK);
	cr_assert_eq(djn_session_start(r.s, once, 5, &g), DJN_OK);
	for (;;) {
		why = djn_session_run(s.s, DJN_RUN_STEP, 37);
		cr_assert_eq(djn_session_run(r.s, DJN_RUN_STEP, 37), why);
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s.s));
		if (why == DJN_STOP_DONE)
			break;
		struct djn_cursor c = djn_session_cursor(s.s);
		cr_assert_eq(c.site, djn_session_cursor(r.s).site);
		if (why != DJN_STOP_BREAKPOINT)
			continue;
		cr_assert_eq(djn_session_read(s.s, c.site, a, 64), DJN_OK, "%s",
			     djn_session_errmsg(s.s));
		cr_assert_eq(djn_session_read(r.s, c.site, b, 64), DJN_OK);
		for (int i = 0; i < 64; i++)
			cr_assert_float_eq(a[i], b[i], 1e-5f * (1 + fabsf(b[i])), "at pos %d", c.pos);
		if (c.site != site) { /* the plain one: steer, and swap out meanwhile */
			cr_assert_eq(djn_steer_add(s.s, pat, DJN_STEER_SCALE, NULL, 0, -40, NULL, 0,
						   false), 0);
			cr_assert_eq(djn_steer_add(r.s, pat, DJN_STEER_SCALE, NULL, 0, -40, NULL, 0,
						   false), 0);
			cr_assert_eq(djn_session_swapout(s.s), DJN_OK, "%s", djn_session_errmsg(s.s));
			cr_assert_eq(djn_session_swapin(s.s), DJN_OK, "%s", djn_session_errmsg(s.s));
			cr_assert_eq(djn_session_swapout(s.s), DJN_OK); /* and back by itself */
		} else {
			hits++;
		}
	}
	cr_assert_eq(hits, 24);
	const int32_t *ta = djn_session_tokens(s.s, &na, NULL);
	const int32_t *tb = djn_session_tokens(r.s, &nb, NULL);
	cr_assert_eq(na, nb);
	cr_assert_arr_eq(ta, tb, sizeof(int32_t) * (size_t)na);
	side_close(&s);
	side_close(&r);
}

Test(ring_gpu, two_sessions_share_a_ring, .timeout = 300)
{
	struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = 3 };
	struct djn_gen_opts g = { .n_new = 40, .temperature = 0 };
	struct side r, s;
	struct djn_err err = { 0 };
	struct djn_session *b;
	struct trace ref;
	char pat[32];
	int n;
	enum djn_stop why;

	need_gpu();
	side_open(&r, "models/stories260K.bin", "models/tok512.bin", NULL);
	run_trace(r.s, once, 5, 40, &ref);
	side_open(&s, "models/stories260K.bin", "models/tok512.bin", &o);
	b = djn_session_new(s.m, s.be, NULL, &err);
	cr_assert_not_null(b, "%s", err.msg);
	snprintf(pat, sizeof(pat), "L%d.v", djn_ring_plan(djn_ring_of(s.m))->streamed[2]);
	cr_assert_gt(djn_bp_add(s.s, pat, NULL, false), 0);
	cr_assert_eq(djn_session_start(s.s, once, 5, &g), DJN_OK);
	cr_assert_eq(djn_session_start(b, once, 5, &g), DJN_OK);
	do {
		why = djn_session_run(s.s, DJN_RUN_CONTINUE, 1);
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s.s));
		if (djn_session_state(b) == DJN_RUN_PAUSED)
			cr_assert_neq(djn_session_run(b, DJN_RUN_FINISH, 1), DJN_STOP_ERROR);
		if (djn_session_state(b) == DJN_RUN_PAUSED)
			djn_session_run(b, DJN_RUN_STEP, 1);
	} while (why != DJN_STOP_DONE);
	const int32_t *t = djn_session_tokens(s.s, &n, NULL);
	cr_assert_eq(n, ref.n_tok);
	cr_assert_arr_eq(t, ref.tok, sizeof(int32_t) * (size_t)n);
	t = djn_session_tokens(b, &n, NULL);
	cr_assert_arr_eq(t, ref.tok, sizeof(int32_t) * (size_t)n);
	djn_session_free(b);
	trace_free(&ref);
	side_close(&s);
	side_close(&r);
}

Test(ring_gpu, too_small_budget_and_too_large_budget, .timeout = 120)
{
	struct djn_ring_opts o = { .vram_budget = 4096 };
	struct djn_err err = { 0 };
	struct djn_model *m;
	struct djn_backend *be;
	struct djn_session *s;
	size_t free_b, total_b;

	need_gpu();
	m = djn_model_load("models/stories260K.bin", "models/tok512.bin", &err);
	cr_assert_not_null(m, "%s", err.msg);
	be = djn_backend_new("cuda", 0, &err);
	cr_assert_not_null(be, "%s", err.msg);
	cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_OK);
	cr_assert_null(djn_session_new(m, be, NULL, &err));
	cr_assert(strstr(err.msg, "minimum of") && strstr(err.msg, "GiB"), "%s", err.msg);
	/* far above the free VRAM: planned for what is free, and said so */
	cr_assert_eq(be->i->mem_info(be, &free_b, &total_b), DJN_OK);
	o = (struct djn_ring_opts){ .vram_budget = total_b * 4, .n_stream_min = 2 };
	cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_OK);
	s = djn_session_new(m, be, NULL, &err);
	cr_assert_not_null(s, "%s", err.msg);
	cr_assert(strstr(djn_ring_plan(djn_ring_of(m))->note, "exceeds"), "%s",
		  djn_ring_plan(djn_ring_of(m))->note);
	djn_session_free(s);
	djn_model_unref(m);
	djn_backend_free(be);
}

/* DJINN_RING_MODEL=DIR: a model at size (the llama-2-13b synthetic) at
 * budgets of DJINN_RING_FRACTIONS of its weights (default 0.25 0.5 0.9) and
 * K = DJINN_RING_SLOTS (default 2 3 4): the same greedy tokens as resident,
 * logits within F16 rounding, and the decode time against the PCIe bound. */
Test(ring_gpu, model_at_size, .timeout = 3600)
{
	const char *dir = getenv("DJINN_RING_MODEL");
	const char *fr = getenv("DJINN_RING_FRACTIONS"), *ks = getenv("DJINN_RING_SLOTS");
	char fbuf[128], kbuf[64];
	struct side r, s;
	struct trace ref, t;
	int32_t ids[64];
	struct djn_err err = { 0 };

	need_gpu();
	if (!dir)
		cr_skip_test("DJINN_RING_MODEL not set");
	for (int i = 0; i < 64; i++)
		ids[i] = 32 + (i * 7) % 90;
	side_open(&r, dir, NULL, NULL);
	run_trace(r.s, ids, 64, 16, &ref);
	size_t weights = djn_model_weight_bytes(r.m);
	side_close(&r);
	snprintf(fbuf, sizeof(fbuf), "%s", fr ? fr : "0.25 0.5 0.9");
	for (char *f = strtok(fbuf, " "); f; f = strtok(NULL, " ")) {
		double frac = atof(f);
		snprintf(kbuf, sizeof(kbuf), "%s", ks ? ks : "2 3 4");
		for (char *save = NULL, *k = strtok_r(kbuf, " ", &save); k;
		     k = strtok_r(NULL, " ", &save)) {
			struct djn_ring_opts o = { .vram_budget = (size_t)(frac * (double)weights),
						   .n_slots = atoi(k) };
			double gbps = 0;
			char what[256];
			side_open(&s, dir, NULL, &o);
			struct djn_ring *ring = djn_ring_of(s.m);
			cr_assert_not_null(ring, "%.2f of the weights streams nothing", frac);
			const struct djn_ring_plan *p = djn_ring_plan(ring);
			run_trace(s.s, ids, 64, 16, &t);
			snprintf(what, sizeof(what), "%s at %.2f of its weights, K=%d", dir, frac,
				 p->n_slots);
			double worst = compare(&ref, &t, what);
			cr_assert_eq(djn_ring_measure(ring, &gbps, &err), DJN_OK, "%s", err.msg);
			printf("%s: %d of %d layers streamed, worst relative logit difference %.3g; "
			       "%.1f ms resident, %.1f ms streamed (64-token prompt + 16 tokens); "
			       "%.1f GB/s host to device, bound %.1f ms/token\n",
			       what, p->n_streamed, s.m->cfg.n_layer, worst, ref.ms, t.ms, gbps,
			       (double)p->stream_bytes / (gbps * 1e9) * 1e3);
			fflush(stdout);
			cr_expect_leq(worst, 1e-3, "%s", what);
			trace_free(&t);
			side_close(&s);
		}
	}
	trace_free(&ref);
}
