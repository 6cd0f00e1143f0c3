/* test-ringbuf.c - the ring buffer on the CPU, where the "device" is host
 * memory and every copy a memcpy: the planner's arithmetic and messages,
 * streamed runs against the fully resident model (tokens and logits bit for
 * bit), breakpoints, steering and condition replays inside streamed layers,
 * several sessions on one ring, and KV swap-out / swap-in.
 * DJINN_TEST_DEVICE=cuda runs the same tests on the GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"
#include "djinn/mkmodel.h"

#define N_NEW 40
#define MAX_TOK 64

static struct djn_backend *be;

static const char *device(void)
{
	const char *d = getenv("DJINN_TEST_DEVICE");

	return d ? d : "cpu";
}

static void setup(void)
{
	struct djn_err err = { 0 };

	be = djn_backend_new(device(), 2, &err);
	cr_assert_not_null(be, "%s", err.msg);
}

static void teardown(void)
{
	djn_backend_free(be);
}

TestSuite(ring, .init = setup, .fini = teardown, .timeout = 120);

static struct djn_model *load(void)
{
	struct djn_err err = { 0 };
	struct djn_model *m = djn_model_load("models/stories260K.bin", "models/tok512.bin", &err);

	cr_assert_not_null(m, "%s", err.msg);
	return m;
}

static struct djn_session *session(struct djn_model *m)
{
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(m, be, NULL, &err);

	cr_assert_not_null(s, "%s", err.msg);
	return s;
}

/* A fresh model with the given placement and one session on it. */
static struct djn_session *streamed(struct djn_model **mp, const struct djn_ring_opts *o)
{
	struct djn_err err = { 0 };
	struct djn_model *m = load();

	cr_assert_eq(djn_ring_configure(m, o, &err), DJN_OK, "%s", err.msg);
	*mp = m;
	return session(m);
}

static const int32_t prompt[] = { 1, 403, 407, 261, 378 }; /* BOS "Once upon a time" */
static const struct djn_gen_opts greedy = { .n_new = N_NEW, .temperature = 0, .stop_at_eos = true };

/* Greedy generation, keeping every chunk's logits. */
struct trace {
	int n_tok, n_chunks;
	int32_t tok[MAX_TOK];
	float logits[MAX_TOK][512];
};

static void run_trace(struct djn_session *s, struct trace *t)
{
	int logits = djn_site_count(&djn_session_model(s)->cfg) - 1;
	enum djn_stop why;
	const int32_t *ids;

	memset(t, 0, sizeof(*t));
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK, "%s", djn_session_errmsg(s));
	for (;;) {
		why = djn_session_run(s, DJN_RUN_FINISH, 1);
		cr_assert_eq(why, DJN_STOP_STEP, "%s", djn_session_errmsg(s));
		cr_assert_lt(t->n_chunks, MAX_TOK);
		cr_assert_eq(djn_session_read(s, logits, t->logits[t->n_chunks++], 512), DJN_OK, "%s",
			     djn_session_errmsg(s));
		why = djn_session_run(s, DJN_RUN_STEP, 1);
		if (why == DJN_STOP_DONE)
			break;
		cr_assert_eq(why, DJN_STOP_STEP, "%s", djn_session_errmsg(s));
	}
	ids = djn_session_tokens(s, &t->n_tok, NULL);
	memcpy(t->tok, ids, sizeof(int32_t) * (size_t)t->n_tok);
}

static void trace_eq(const struct trace *a, const struct trace *b, const char *what)
{
	cr_assert_eq(a->n_tok, b->n_tok, "%s: %d tokens, resident %d", what, b->n_tok, a->n_tok);
	cr_assert_arr_eq(a->tok, b->tok, sizeof(int32_t) * (size_t)a->n_tok, "%s: tokens differ",
			 what);
	cr_assert_eq(a->n_chunks, b->n_chunks);
	for (int c = 0; c < a->n_chunks; c++)
		cr_assert_arr_eq(a->logits[c], b->logits[c], sizeof(a->logits[c]),
				 "%s: logits of chunk %d differ", what, c);
}

static struct trace *reference(void)
{
	static struct trace ref;
	static bool have;

	if (!have) {
		struct djn_model *m = load();
		struct djn_session *s = session(m);
		run_trace(s, &ref);
		cr_assert_eq(ref.n_tok, 5 + N_NEW);
		djn_session_free(s);
		djn_model_unref(m);
		have = true;
	}
	return &ref;
}

/* The working set a session of stories260K counts (from a plan). */
static size_t working_set(void)
{
	struct djn_ring_opts o = { .n_stream_min = 1 };
	struct djn_model *m;
	struct djn_session *s = streamed(&m, &o);
	size_t ws = djn_ring_plan(djn_ring_of(m))->working_set;

	djn_session_free(s);
	djn_model_unref(m);
	return ws;
}

Test(ring, block_sizes_and_plain_plan)
{
	struct djn_model *m = load();
	struct djn_ring_plan p;
	struct djn_err err = { 0 };
	/* stories260K, f32: dim 64, hidden 172, kv_dim 32, vocab 512, tied */
	size_t layer = 256 + 16384 + 8192 + 8192 + 16384 + 256 + 3 * 44032;

	cr_assert_eq(djn_ring_block_bytes(m, 0), 512 * 64 * 4);
	for (int l = 1; l <= 5; l++)
		cr_assert_eq(djn_ring_block_bytes(m, l), layer, "layer %d: %zu", l,
			     djn_ring_block_bytes(m, l));
	cr_assert_eq(djn_ring_block_bytes(m, 6), 256); /* final norm; the head is tied */
	cr_assert_eq(djn_ring_plan_compute(&p, m, NULL, 1000, 0, &err), DJN_OK);
	cr_assert_eq(p.n_streamed, 0);
	cr_assert_eq(p.resident_bytes, 512 * 64 * 4 + 256 + 5 * layer);
	djn_ring_plan_release(&p);
	djn_model_unref(m);
}

Test(ring, plan_streams_the_fewest_layers_the_budget_allows)
{
	struct djn_model *m = load();
	struct djn_err err = { 0 };
	size_t L = djn_ring_block_bytes(m, 1), must = djn_ring_block_bytes(m, 0) + 256;
	size_t ws = 12345;

	/* 2 streamed at 2 slots take what all resident take: not a plan */
	for (int n = 3; n <= 5; n++) {
		struct djn_ring_plan p;
		struct djn_ring_opts o = { .vram_budget = must + (size_t)(5 - n) * L + 2 * L + ws };
		cr_assert_eq(djn_ring_plan_compute(&p, m, &o, ws, 0, &err), DJN_OK, "%s", err.msg);
		cr_assert_eq(p.n_streamed, n, "budget for %d: %d streamed", n, p.n_streamed);
		cr_assert_eq(p.n_slots, 2);
		cr_assert_eq(p.slot_bytes, L);
		cr_assert_eq(p.stream_bytes, (size_t)n * L);
		cr_assert_eq(p.host_bytes, (size_t)n * L);
		cr_assert_eq(p.device_bytes, o.vram_budget);
		cr_assert_eq(p.resident_bytes, must + (size_t)(5 - n) * L);
		/* streamed layers are spread out and ascending */
		for (int i = 1; i < n; i++)
			cr_assert_gt(p.streamed[i], p.streamed[i - 1]);
		int count = 0;
		for (int b = 0; b < p.n_blocks; b++)
			count += p.block_streamed[b];
		cr_assert_eq(count, n);
		cr_assert(!p.block_streamed[0] && !p.block_streamed[6]);
		/* one byte less streams one more layer (or fails at the minimum) */
		o.vram_budget--;
		djn_ring_plan_release(&p);
		enum djn_status st = djn_ring_plan_compute(&p, m, &o, ws, 0, &err);
		if (n < 5)
			cr_assert(st == DJN_OK && p.n_streamed == n + 1);
		else
			cr_assert_eq(st, DJN_ERR_NOMEM);
		djn_ring_plan_release(&p);
	}
	struct djn_ring_plan p;
	struct djn_ring_opts o = { .vram_budget = must + 5 * L + ws - 1 };
	cr_assert_eq(djn_ring_plan_compute(&p, m, &o, ws, 0, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(p.n_streamed, 3);
	djn_ring_plan_release(&p);
	o.vram_budget++;
	cr_assert_eq(djn_ring_plan_compute(&p, m, &o, ws, 0, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(p.n_streamed, 0);
	djn_ring_plan_release(&p);
	/* what the budget leaves after the fewest layers buys slots, up to 4
	 * (with equal layers only when more layers are streamed than needed) */
	for (int extra = 0; extra <= 3; extra++) {
		o = (struct djn_ring_opts){ .vram_budget = must + (2 + (size_t)extra) * L + ws,
					    .n_stream_min = 5 };
		cr_assert_eq(djn_ring_plan_compute(&p, m, &o, ws, 0, &err), DJN_OK, "%s", err.msg);
		cr_assert_eq(p.n_streamed, 5);
		cr_assert_eq(p.n_slots, extra < 2 ? 2 + extra : 4);
		djn_ring_plan_release(&p);
	}
	/* K given: it counts in the budget; fewer streamed layers than K clamp it */
	o = (struct djn_ring_opts){ .vram_budget = must + 3 * L + ws, .n_slots = 3 };
	cr_assert_eq(djn_ring_plan_compute(&p, m, &o, ws, 0, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(p.n_streamed, 5);
	cr_assert_eq(p.n_slots, 3);
	djn_ring_plan_release(&p);
	o = (struct djn_ring_opts){ .vram_budget = (size_t)1 << 40, .n_slots = 4, .n_stream_min = 2 };
	cr_assert_eq(djn_ring_plan_compute(&p, m, &o, ws, 0, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(p.n_streamed, 2);
	cr_assert_eq(p.n_slots, 2);
	cr_assert(strstr(p.note, "4 slots asked"), "%s", p.note);
	djn_ring_plan_release(&p);
	/* sync: one slot */
	o = (struct djn_ring_opts){ .vram_budget = must + L + ws, .sync = true };
	cr_assert_eq(djn_ring_plan_compute(&p, m, &o, ws, 0, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(p.n_streamed, 5);
	cr_assert_eq(p.n_slots, 1);
	cr_assert(p.sync);
	djn_ring_plan_release(&p);
	djn_model_unref(m);
}

Test(ring, too_small_budget_names_the_minimum_in_gib)
{
	struct djn_model *m = load();
	struct djn_err err = { 0 };
	struct djn_ring_opts o = { .vram_budget = 1024 };
	struct djn_session *s;
	const char *at;
	double gib;
	char arg[64];

	cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_OK);
	s = djn_session_new(m, be, NULL, &err);
	cr_assert_null(s);
	cr_assert_eq(err.code, DJN_ERR_NOMEM);
	at = strstr(err.msg, "minimum of ");
	cr_assert_not_null(at, "%s", err.msg);
	cr_assert(strstr(err.msg, "vram budget 1.0 KiB"), "%s", err.msg);
	cr_assert_eq(sscanf(at + 11, "%lf GiB", &gib), 1, "%s", err.msg);
	cr_assert(strstr(at, " GiB"), "%s", err.msg);
	/* the minimum it names is enough: given back, it plans */
	snprintf(arg, sizeof(arg), "%.6fG", gib);
	cr_assert(djn_size_parse(arg, &o.vram_budget));
	cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_OK);
	s = djn_session_new(m, be, NULL, &err);
	cr_assert_not_null(s, "%s (budget %s)", err.msg, arg);
	cr_assert_eq(djn_ring_plan(djn_ring_of(m))->n_streamed, 5);
	/* the weights are in use: the budget is fixed until the last session goes */
	cr_assert_eq(djn_ring_configure(m, NULL, &err), DJN_ERR_STATE);
	djn_session_free(s);
	djn_model_unref(m);
}

Test(ring, budget_above_free_vram_is_reported_and_planned_for)
{
	struct djn_model *m = load();
	struct djn_err err = { 0 };
	struct djn_ring_plan p;
	size_t L = djn_ring_block_bytes(m, 1), must = djn_ring_block_bytes(m, 0) + 256;
	struct djn_ring_opts o = { .vram_budget = (size_t)1 << 50 };

	/* free VRAM: room for 2 resident layers and 2 slots */
	cr_assert_eq(djn_ring_plan_compute(&p, m, &o, 0, must + 4 * L, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(p.n_streamed, 3);
	cr_assert_eq(p.budget_used, must + 4 * L);
	cr_assert(strstr(p.note, "exceeds the"), "%s", p.note);
	djn_ring_plan_release(&p);
	/* below the minimum even so: the error says it is the free VRAM */
	cr_assert_eq(djn_ring_plan_compute(&p, m, &o, 0, must + L, &err), DJN_ERR_NOMEM);
	cr_assert(strstr(err.msg, "free vram"), "%s", err.msg);
	cr_assert(strstr(err.msg, "GiB"), "%s", err.msg);
	djn_ring_plan_release(&p);
	/* bad options */
	o = (struct djn_ring_opts){ .n_slots = 9 };
	cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_ERR_INVALID);
	o = (struct djn_ring_opts){ .sync = true, .n_slots = 2 };
	cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_ERR_INVALID);
	djn_model_unref(m);
}

Test(ring, sizes_parse)
{
	size_t v;

	cr_assert(djn_size_parse("18G", &v) && v == (size_t)18 << 30);
	cr_assert(djn_size_parse("18GiB", &v) && v == (size_t)18 << 30);
	cr_assert(djn_size_parse("18gb", &v) && v == (size_t)18 << 30);
	cr_assert(djn_size_parse("1.5G", &v) && v == (size_t)3 << 29);
	cr_assert(djn_size_parse("512M", &v) && v == (size_t)512 << 20);
	cr_assert(djn_size_parse("64k", &v) && v == 65536);
	cr_assert(djn_size_parse("1073741824", &v) && v == (size_t)1 << 30);
	cr_assert(djn_size_parse("100B", &v) && v == 100);
	cr_assert(!djn_size_parse("", &v));
	cr_assert(!djn_size_parse("-1G", &v));
	cr_assert(!djn_size_parse("G", &v));
	cr_assert(!djn_size_parse("18X", &v));
	cr_assert(!djn_size_parse("18 G", &v));
	cr_assert(!djn_size_parse("18Gx", &v));
	cr_assert(!djn_size_parse("nan", &v));
	cr_assert(!djn_size_parse("1e30G", &v));
}

/* The placement that streams n layers through k slots, by budget where a
 * budget can ask for it, else by n_stream_min. */
static struct djn_ring_opts placement(int n, int k, size_t ws)
{
	struct djn_model *m = load();
	size_t L = djn_ring_block_bytes(m, 1), must = djn_ring_block_bytes(m, 0) + 256;
	struct djn_ring_opts o = { .n_slots = k };

	djn_model_unref(m);
	if (n > k) /* n == k would fit everything: that budget streams nothing */
		o.vram_budget = must + (size_t)(5 - n + k) * L + ws;
	else
		o = (struct djn_ring_opts){ .n_slots = k, .n_stream_min = n };
	return o;
}

Test(ring, streamed_runs_match_the_resident_model_bit_for_bit)
{
	struct trace *ref = reference(), *t = malloc(sizeof(*t));
	size_t ws = working_set();

	for (int n = 1; n <= 5; n++) {
		for (int k = 2; k <= 4; k++) {
			struct djn_ring_opts o = placement(n, k, ws);
			struct djn_model *m;
			struct djn_session *s = streamed(&m, &o);
			struct djn_ring *r = djn_ring_of(m);
			const struct djn_ring_plan *p = djn_ring_plan(r);
			struct djn_ring_stats st;
			char what[64];

			snprintf(what, sizeof(what), "%d streamed, K=%d%s", n, k,
				 o.n_stream_min ? "" : " (by budget)");
			cr_assert_not_null(r, "%s: no ring", what);
			cr_assert_eq(p->n_streamed, n, "%s: %d streamed", what, p->n_streamed);
			cr_assert_eq(p->n_slots, k < n ? k : n, "%s: %d slots", what, p->n_slots);
			run_trace(s, t);
			trace_eq(ref, t, what);
			djn_ring_stats(r, &st);
			/* every chunk copies every streamed block once when they
			 * take turns; with a slot each, once in all */
			if (n > k)
				cr_assert_geq(st.n_copies, (long)n * ref->n_chunks, "%s: %ld copies",
					      what, st.n_copies);
			else
				cr_assert_eq(st.n_copies, n, "%s: %ld copies", what, st.n_copies);
			cr_assert_eq(st.n_resync, 0, "%s: %ld out of order", what, st.n_resync);
			/* a streamed layer has no device address outside its slot */
			for (int i = 0; i < n; i++)
				cr_assert_null(m->layers[p->streamed[i]].wq.dev);
			djn_session_free(s);
			djn_model_unref(m);
		}
	}
	free(t);
}

Test(ring, synchronous_copies_and_one_slot_match_too)
{
	struct trace *ref = reference(), *t = malloc(sizeof(*t));
	size_t ws = working_set();
	struct djn_model *m0 = load();
	size_t L = djn_ring_block_bytes(m0, 1), must = djn_ring_block_bytes(m0, 0) + 256;
	struct djn_ring_opts opts[] = {
		{ .vram_budget = must + 2 * L + ws, .sync = true },  /* 4 streamed */
		{ .vram_budget = must + 2 * L + ws, .n_slots = 1 },  /* 4 streamed, K = 1 */
		{ .vram_budget = must + L + ws, .n_slots = 1 },      /* all streamed */
	};

	djn_model_unref(m0);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		struct djn_model *m;
		struct djn_session *s = streamed(&m, &opts[i]);
		const struct djn_ring_plan *p = djn_ring_plan(djn_ring_of(m));
		cr_assert_eq(p->n_slots, 1);
		cr_assert_eq(p->n_streamed, i == 2 ? 5 : 4);
		run_trace(s, t);
		trace_eq(ref, t, i == 0 ? "sync" : "K=1");
		djn_session_free(s);
		djn_model_unref(m);
	}
	free(t);
}

/* The first streamed layer past layer 0 (so its slot has been recycled
 * before a replay comes back to it). */
static int streamed_layer(struct djn_model *m)
{
	const struct djn_ring_plan *p = djn_ring_plan(djn_ring_of(m));

	return p->streamed[p->n_streamed - 1];
}

Test(ring, breakpoint_in_a_streamed_layer_inspect_steer_continue)
{
	struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = 4 };
	struct djn_model *m, *rm = load();
	struct djn_session *s = streamed(&m, &o), *r = session(rm);
	int l = streamed_layer(m), site, rows, cols;
	char pat[32];
	float a[5 * 64], b[5 * 64];
	struct trace *ref = reference();
	int n_a, n_b;

	snprintf(pat, sizeof(pat), "L%d.attn_out", l);
	site = djn_site_find(&m->cfg, pat);
	cr_assert(djn_ring_streams(djn_ring_of(m), l));
	cr_assert_gt(djn_bp_add(s, pat, "pos == 9", false), 0);
	cr_assert_gt(djn_bp_add(r, pat, "pos == 9", false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_start(r, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT, "%s",
		     djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(r, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_cursor(s).site, site);
	cr_assert_eq(djn_session_cursor(s).pos, 9);
	/* paused inside the layer: its weights are in a slot */
	cr_assert_not_null(m->layers[l].w_up.dev);
	cr_assert_eq(djn_session_site_shape(s, site, &rows, &cols), DJN_OK);
	cr_assert_eq(djn_session_read(s, site, a, (size_t)rows * cols), DJN_OK);
	cr_assert_eq(djn_session_read(r, site, b, (size_t)rows * cols), DJN_OK);
	cr_assert_arr_eq(a, b, sizeof(float) * (size_t)rows * cols);
	/* steer both the same way, then go on: still the same run */
	cr_assert_eq(djn_steer_add(s, pat, DJN_STEER_SCALE, NULL, 0, -40.0f, NULL, 0, false), 0);
	cr_assert_eq(djn_steer_add(r, pat, DJN_STEER_SCALE, NULL, 0, -40.0f, NULL, 0, false), 0);
	djn_bp_delete(s, 0);
	djn_bp_delete(r, 0);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(r, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	const int32_t *ta = djn_session_tokens(s, &n_a, NULL);
	const int32_t *tb = djn_session_tokens(r, &n_b, NULL);
	cr_assert_eq(n_a, n_b);
	cr_assert_arr_eq(ta, tb, sizeof(int32_t) * (size_t)n_a);
	/* the steer mattered (so the comparison above means something) */
	cr_assert(memcmp(ta, ref->tok, sizeof(int32_t) * (size_t)(n_a < ref->n_tok ? n_a : ref->n_tok)) ||
		  n_a != ref->n_tok);
	djn_session_free(s);
	djn_session_free(r);
	djn_model_unref(m);
	djn_model_unref(rm);
}

Test(ring, condition_replay_inside_a_streamed_layer)
{
	struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = 4 };
	struct djn_model *m, *rm = load();
	struct djn_session *s = streamed(&m, &o), *r = session(rm);
	int l = djn_ring_plan(djn_ring_of(m))->streamed[0], site, hits = 0, n;
	char pat[32];
	float a[64], b[64];
	struct trace *ref = reference();
	struct djn_ring_stats st;
	enum djn_stop why;

	/* A statistics condition is decided when the run stops (here: after
	 * every 37 sites), and the chunk is replayed from its start to the
	 * site: by then the pipeline is layers further on, the layer's slot
	 * holds another block, and the replay's first layers are out of order. */
	snprintf(pat, sizeof(pat), "L%d.mlp_out", l);
	site = djn_site_find(&m->cfg, pat);
	cr_assert(djn_ring_streams(djn_ring_of(m), l));
	cr_assert_gt(djn_bp_add(s, pat, "norm > 0 and pos >= 20", false), 0);
	cr_assert_gt(djn_bp_add(r, pat, "norm > 0 and pos >= 20", false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_start(r, prompt, 5, &greedy), DJN_OK);
	for (;;) {
		why = djn_session_run(s, DJN_RUN_STEP, 37);
		cr_assert_eq(djn_session_run(r, DJN_RUN_STEP, 37), why);
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s));
		if (why == DJN_STOP_DONE)
			break;
		cr_assert_eq(djn_session_cursor(s).site, djn_session_cursor(r).site);
		if (why != DJN_STOP_BREAKPOINT)
			continue;
		cr_assert_eq(djn_session_cursor(s).site, site);
		cr_assert_eq(djn_session_read(s, site, a, 64), DJN_OK, "%s", djn_session_errmsg(s));
		cr_assert_eq(djn_session_read(r, site, b, 64), DJN_OK);
		cr_assert_arr_eq(a, b, sizeof(a), "at pos %d", djn_session_cursor(s).pos);
		hits++;
	}
	cr_assert_eq(hits, N_NEW - 16, "%d hits", hits); /* chunks at positions 20 .. 43 */
	const int32_t *t = djn_session_tokens(s, &n, NULL);
	cr_assert_eq(n, ref->n_tok);
	cr_assert_arr_eq(t, ref->tok, sizeof(int32_t) * (size_t)n);
	djn_ring_stats(djn_ring_of(m), &st);
	cr_assert_gt(st.n_resync, 0, "the replays re-issued no copy");
	djn_session_free(s);
	djn_session_free(r);
	djn_model_unref(m);
	djn_model_unref(rm);
}

Test(ring, two_sessions_take_turns_on_one_ring)
{
	struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = 3 };
	struct djn_model *m;
	struct djn_session *a = streamed(&m, &o), *b = session(m);
	struct trace *ref = reference();
	int l = streamed_layer(m), n;
	char pat[32];
	enum djn_stop why;

	/* a pauses in the middle of a streamed layer every token; b runs a
	 * whole token in between, moving that layer out of its slot */
	snprintf(pat, sizeof(pat), "L%d.v", l);
	cr_assert_gt(djn_bp_add(a, pat, NULL, false), 0);
	cr_assert_eq(djn_session_start(a, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_start(b, prompt, 5, &greedy), DJN_OK);
	do {
		why = djn_session_run(a, DJN_RUN_CONTINUE, 1);
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(a));
		if (djn_session_state(b) == DJN_RUN_PAUSED)
			cr_assert_neq(djn_session_run(b, DJN_RUN_FINISH, 1), DJN_STOP_ERROR);
		if (djn_session_state(b) == DJN_RUN_PAUSED)
			djn_session_run(b, DJN_RUN_STEP, 1);
	} while (why != DJN_STOP_DONE);
	while (djn_session_state(b) == DJN_RUN_PAUSED)
		cr_assert_neq(djn_session_run(b, DJN_RUN_CONTINUE, 1), DJN_STOP_ERROR);
	const int32_t *t = djn_session_tokens(a, &n, NULL);
	cr_assert_eq(n, ref->n_tok);
	cr_assert_arr_eq(t, ref->tok, sizeof(int32_t) * (size_t)n);
	t = djn_session_tokens(b, &n, NULL);
	cr_assert_eq(n, ref->n_tok);
	cr_assert_arr_eq(t, ref->tok, sizeof(int32_t) * (size_t)n);
	djn_session_free(a);
	djn_session_free(b);
	djn_model_unref(m);
}

static void swap_case(const struct djn_ring_opts *o)
{
	struct djn_model *m;
	struct djn_session *s = o ? streamed(&m, o) : session(m = load());
	struct trace *ref = reference();
	struct djn_mem_info mi;
	size_t bytes;
	double ms;
	int n;

	cr_assert_gt(djn_bp_add(s, "L2.k", "pos == 17", true), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	djn_session_mem(s, &mi);
	size_t pages = mi.data_pages;
	cr_assert_eq(pages, 2); /* 18 positions, 16 a page */
	cr_assert_eq(djn_session_swapout(s), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert(djn_session_swapped(s));
	djn_session_mem(s, &mi);
	cr_assert_eq(mi.data_pages, 0);
	cr_assert_eq(mi.swap_bytes, pages * mi.data_page_bytes);
	djn_session_swap_last(s, &bytes, &ms);
	cr_assert_eq(bytes, pages * mi.data_page_bytes);
	cr_assert_eq(djn_session_swapout(s), DJN_OK); /* again: nothing to do */
	cr_assert_eq(djn_session_swapin(s), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert(!djn_session_swapped(s));
	djn_session_mem(s, &mi);
	cr_assert_eq(mi.data_pages, pages);
	cr_assert_eq(mi.swap_bytes, 0);
	/* a few tokens on, out again, then just continue: it comes back by itself */
	cr_assert_gt(djn_bp_add(s, "L4.attn", "pos == 30", true), 0);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_swapout(s), DJN_OK, "%s", djn_session_errmsg(s));
	/* a checkpoint of a swapped-out session brings the pages back first */
	int ck = djn_checkpoint_new(s);
	cr_assert_gt(ck, 0, "%s", djn_session_errmsg(s));
	cr_assert(!djn_session_swapped(s));
	cr_assert_eq(djn_session_swapout(s), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(s));
	const int32_t *t = djn_session_tokens(s, &n, NULL);
	cr_assert_eq(n, ref->n_tok);
	cr_assert_arr_eq(t, ref->tok, sizeof(int32_t) * (size_t)n);
	/* restore while swapped out: the checkpoint's pages win */
	cr_assert_eq(djn_session_swapout(s), DJN_OK);
	cr_assert_eq(djn_checkpoint_restore(s, ck), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	t = djn_session_tokens(s, &n, NULL);
	cr_assert_arr_eq(t, ref->tok, sizeof(int32_t) * (size_t)n);
	/* freed while out: the pool goes with it */
	cr_assert_eq(djn_session_swapout(s), DJN_OK);
	djn_session_free(s);
	djn_model_unref(m);
}

Test(ring, swapout_swapin_continues_token_identically)
{
	struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = 3 };

	swap_case(NULL);
	swap_case(&o);
}

Test(ring, describe_says_what_the_plan_is)
{
	struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = 3 };
	struct djn_model *m;
	struct djn_session *s = streamed(&m, &o);
	struct djn_ring *r = djn_ring_of(m);
	struct djn_ring_stats st;
	char buf[2048];
	double gbps = 0;

	cr_assert_eq(djn_ring_measure(r, &gbps, NULL), DJN_OK);
	cr_assert_gt(gbps, 0);
	djn_ring_stats(r, &st);
	djn_ring_describe(djn_ring_plan(r), &st, buf, sizeof(buf));
	cr_assert(strstr(buf, "Streamed:  3 layers: L0 L2 L4"), "%s", buf);
	cr_assert(strstr(buf, "Slots:     2 x"), "%s", buf);
	cr_assert(strstr(buf, "Per token:"), "%s", buf);
	cr_assert(strstr(buf, "Bandwidth:"), "%s", buf);
	cr_assert(strstr(buf, "PCIe bound"), "%s", buf);
	/* a run after the measurement finds its slots again */
	struct trace *t = malloc(sizeof(*t));
	run_trace(s, t);
	trace_eq(reference(), t, "after measuring");
	free(t);
	djn_session_free(s);
	djn_model_unref(m);
}

/* The block layouts stories260K lacks: an untied head in its own block, f16
 * weights (tiny-llama); GPT-2's biases, LayerNorm pairs and learned
 * positions in the embedding block (tiny-gpt2). */
static void synthetic(const char *shape, enum djn_dtype dtype)
{
	char dir[] = "/tmp/djn-ring-XXXXXX";
	struct djn_mkmodel_opts mo = { .shape = shape, .dtype = dtype, .seed = 7, .out_dir = dir,
				       .force = true, .n_threads = 2 };
	struct djn_err err = { 0 };
	struct trace *ref = malloc(sizeof(*ref)), *t = malloc(sizeof(*t));
	const struct djn_gen_opts g = { .n_new = 12, .temperature = 0 };
	const int32_t ids[] = { 72, 101, 108, 108, 111, 32 };

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(djn_mkmodel(&mo, &err), DJN_OK, "%s", err.msg);
	for (int pass = 0; pass < 4; pass++) {
		struct djn_model *m = djn_model_load(dir, NULL, &err);
		cr_assert_not_null(m, "%s", err.msg);
		int n_layer = m->cfg.n_layer;
		struct djn_ring_opts o = { .n_slots = 2, .n_stream_min = pass == 1 ? n_layer : 1 };
		if (pass == 3)
			o = (struct djn_ring_opts){ .sync = true, .n_stream_min = n_layer };
		if (pass)
			cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_OK, "%s", err.msg);
		struct djn_session *s = session(m);
		int logits = djn_site_count(&m->cfg) - 1;
		struct trace *x = pass ? t : ref;
		memset(x, 0, sizeof(*x));
		cr_assert_eq(djn_session_start(s, ids, 6, &g), DJN_OK, "%s", djn_session_errmsg(s));
		for (enum djn_stop why = DJN_STOP_STEP; why != DJN_STOP_DONE;) {
			cr_assert_eq(djn_session_run(s, DJN_RUN_FINISH, 1), DJN_STOP_STEP, "%s",
				     djn_session_errmsg(s));
			cr_assert_eq(djn_session_read(s, logits, x->logits[x->n_chunks++], 512), DJN_OK);
			why = djn_session_run(s, DJN_RUN_STEP, 1);
			cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s));
		}
		memcpy(x->tok, djn_session_tokens(s, &x->n_tok, NULL), sizeof(int32_t) * 18);
		if (pass) {
			const struct djn_ring_plan *p = djn_ring_plan(djn_ring_of(m));
			size_t V = 512 * (size_t)m->cfg.dim * djn_dtype_row_bytes(dtype, 1);
			cr_assert_eq(p->n_streamed, o.n_stream_min);
			if (m->cfg.arch == DJN_ARCH_GPT2) /* tied head; positions embedded */
				cr_assert_eq(p->block_bytes[0], V + (size_t)m->cfg.seq_len * m->cfg.dim * 4);
			else /* untied: the head is its own block */
				cr_assert_geq(p->block_bytes[n_layer + 1], V);
			trace_eq(ref, t, shape);
		}
		djn_session_free(s);
		djn_model_unref(m);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	free(ref);
	free(t);
}

Test(ring, synthetic_llama_untied_f16)
{
	synthetic("tiny-llama", DJN_DTYPE_F16);
}

Test(ring, synthetic_gpt2)
{
	synthetic("tiny-gpt2", DJN_DTYPE_F32);
}
