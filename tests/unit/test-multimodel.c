/* test-multimodel.c - several models in one shared VRAM pool on the CPU
 * (where the "device" is host memory and every copy a memcpy): three tiny
 * llamas under a budget that holds one and a half of them give the tokens
 * each gives alone, in any order; eviction never takes the layer a paused
 * session is stopped in; a budget below one layer says so; freeing a model
 * gives its bytes back.  DJINN_TEST_DEVICE=cuda runs them on the GPU. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"
#include "djinn/mkmodel.h"

#define N_MODELS 3
#define GPT2 N_MODELS /* model N_MODELS is a tiny gpt2: layers of another size */
#define N_NEW 12
#define CTX 64

static struct djn_backend *be;
static char tmp[64];

static const char *device(void)
{
	const char *d = getenv("DJINN_TEST_DEVICE");

	return d ? d : "cpu";
}

/* Decode steps are recorded as graphs where the backend has them (CUDA),
 * unless DJINN_GRAPH=0. */
static bool graphs(void)
{
	const char *g = getenv("DJINN_GRAPH");

	return !strcmp(device(), "cuda") && !(g && !strcmp(g, "0"));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static void setup(void)
{
	struct djn_err err = { 0 };

	strcpy(tmp, "/tmp/djn-test-multimodel-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	for (int i = 0; i <= GPT2; i++) {
		char dir[128];
		snprintf(dir, sizeof(dir), "%s/m%d", tmp, i);
		struct djn_mkmodel_opts o = { .shape = i == GPT2 ? "tiny-gpt2" : "tiny-llama",
					      .dtype = DJN_DTYPE_F16,
					      .seed = 11 + (uint64_t)i, .out_dir = dir };
		cr_assert_eq(djn_mkmodel(&o, &err), DJN_OK, "%s", err.msg);
	}
	be = djn_backend_new(device(), 2, &err);
	cr_assert_not_null(be, "%s", err.msg);
}

static void teardown(void)
{
	djn_backend_free(be);
	nftw(tmp, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(pool, .init = setup, .fini = teardown, .timeout = 120);

/* Model i, in the shared pool when budget > 0. */
static struct djn_model *load(int i, size_t budget)
{
	struct djn_err err = { 0 };
	char dir[128];
	struct djn_model *m;

	snprintf(dir, sizeof(dir), "%s/m%d", tmp, i);
	m = djn_model_load(dir, NULL, &err);
	cr_assert_not_null(m, "%s", err.msg);
	if (budget) {
		struct djn_ring_opts o = { .vram_budget = budget, .shared = true };
		cr_assert_eq(djn_ring_configure(m, &o, &err), DJN_OK, "%s", err.msg);
	}
	return m;
}

static struct djn_session *session(struct djn_model *m)
{
	struct djn_err err = { 0 };
	struct djn_session_opts so = { .max_ctx = CTX };
	struct djn_session *s = djn_session_new(m, be, &so, &err);

	cr_assert_not_null(s, "%s", err.msg);
	return s;
}

static const int32_t prompt[] = { 1, 75, 104, 111, 32 };
static const struct djn_gen_opts greedy = { .n_new = N_NEW, .temperature = 0 };

static void generate(struct djn_session *s, int32_t *out)
{
	int n;

	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(s));
	const int32_t *t = djn_session_tokens(s, &n, NULL);
	cr_assert_eq(n, 5 + N_NEW);
	memcpy(out, t, sizeof(int32_t) * (size_t)n);
}

/* Each model alone, fully resident, no pool. */
static void reference(int32_t ref[N_MODELS][5 + N_NEW])
{
	for (int i = 0; i < N_MODELS; i++) {
		struct djn_model *m = load(i, 0);
		struct djn_session *s = session(m);
		generate(s, ref[i]);
		djn_session_free(s);
		djn_model_unref(m);
	}
	/* different models: equal tokens below mean something */
	cr_assert(memcmp(ref[0], ref[1], sizeof(ref[0])) || memcmp(ref[1], ref[2], sizeof(ref[0])));
}

/* Sizes of model i in a pool: its fixed part (embedding, head, working
 * set) and its layers. */
static void sizes_of(int i, size_t *fixed, size_t *layers)
{
	struct djn_model *m = load(i, (size_t)256 << 20); /* holds any of them */
	struct djn_session *s = session(m);
	struct djn_residency r;

	djn_ring_residency(m, &r);
	cr_assert(r.shared);
	cr_assert_eq(r.n_resident, m->cfg.n_layer);
	*fixed = r.fixed_bytes;
	*layers = r.host_bytes;
	djn_session_free(s);
	djn_model_unref(m);
}

static void sizes(size_t *fixed, size_t *layers)
{
	sizes_of(0, fixed, layers);
}

/* All three fixed parts and one and a half models' layers. */
static size_t one_and_a_half(void)
{
	size_t fixed, layers;

	sizes(&fixed, &layers);
	return N_MODELS * fixed + layers + layers / 2;
}

static void check_budget(struct djn_model *m)
{
	struct djn_residency r;

	djn_ring_residency(m, &r);
	cr_assert_leq(r.pool_used, r.pool_budget, "pool uses %zu of %zu", r.pool_used,
		      r.pool_budget);
}

Test(pool, three_models_one_and_a_half_budget_tokens_as_alone_in_any_order)
{
	static const int orders[][8] = {
		{ 0, 1, 2, 0, 1, 2, 0, 1 },
		{ 2, 1, 0, 0, 2, 2, 1, 0 },
		{ 1, 0, 1, 2, 0, 2, 1, 1 },
	};
	int32_t ref[N_MODELS][5 + N_NEW], got[5 + N_NEW];
	size_t budget;
	long evicted = 0;
	int partial = 0;

	reference(ref);
	budget = one_and_a_half();
	for (size_t o = 0; o < sizeof(orders) / sizeof(orders[0]); o++) {
		struct djn_model *m[N_MODELS];
		struct djn_session *s[N_MODELS];
		for (int i = 0; i < N_MODELS; i++) {
			m[i] = load(i, budget);
			s[i] = session(m[i]);
			check_budget(m[i]);
		}
		for (int k = 0; k < 8; k++) {
			int i = orders[o][k];
			struct djn_residency r;
			djn_ring_residency(m[i], &r);
			partial += r.n_resident > 0 && r.n_resident < r.n_layer;
			long g0 = djn_session_graph_steps(s[i]);
			generate(s[i], got);
			cr_assert_arr_eq(got, ref[i], sizeof(got), "order %zu request %d: model %d's "
					 "tokens differ from its run alone", o, k, i);
			check_budget(m[i]);
			djn_ring_residency(m[i], &r);
			/* the one just run is all there when it fits (it does) */
			cr_assert_eq(r.n_resident, r.n_layer, "model %d: %d of %d layers resident",
				     i, r.n_resident, r.n_layer);
			/* so its decode steps replay as graphs, wherever it was put */
			if (graphs())
				cr_assert_gt(djn_session_graph_steps(s[i]), g0, "order %zu request %d: "
					     "no decode step of model %d ran as a graph", o, k, i);
		}
		for (int i = 0; i < N_MODELS; i++) {
			struct djn_residency r;
			djn_ring_residency(m[i], &r);
			evicted += r.n_evicted;
		}
		for (int i = 0; i < N_MODELS; i++) {
			djn_session_free(s[i]);
			djn_model_unref(m[i]);
		}
	}
	cr_assert_gt(evicted, 0);
	cr_assert_gt(partial, 0, "some switch should find a model partly resident");
}

Test(pool, eviction_never_takes_a_paused_sessions_layer)
{
	int32_t ref[N_MODELS][5 + N_NEW], got[5 + N_NEW];
	size_t budget;
	struct djn_model *m[N_MODELS];
	struct djn_session *s[N_MODELS];
	char map[16];
	int n;

	reference(ref);
	budget = one_and_a_half();
	for (int i = 0; i < N_MODELS; i++) {
		m[i] = load(i, budget);
		s[i] = session(m[i]);
	}
	/* model 0 stops inside L2 during its third token */
	cr_assert_gt(djn_bp_add(s[0], "L2.attn_out", "pos == 7", false), 0);
	cr_assert_eq(djn_session_start(s[0], prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s[0], DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT, "%s",
		     djn_session_errmsg(s[0]));
	/* the others run, and run again: everything of model 0 that may go goes */
	for (int k = 0; k < 2; k++)
		for (int i = 1; i < N_MODELS; i++) {
			generate(s[i], got);
			cr_assert_arr_eq(got, ref[i], sizeof(got));
			djn_ring_layer_map(m[0], map, sizeof(map));
			cr_assert_eq(map[2], 'R', "model 0's L2 left while paused in it: %s", map);
		}
	struct djn_residency r;
	djn_ring_residency(m[0], &r);
	cr_assert_gt(r.n_evicted, 0, "model 0 lost nothing: the test shows nothing (%s)", map);
	cr_assert_lt(r.n_resident, r.n_layer);
	/* and it goes on to the tokens it gives alone */
	djn_bp_delete(s[0], 0);
	cr_assert_eq(djn_session_run(s[0], DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(s[0]));
	cr_assert_arr_eq(djn_session_tokens(s[0], &n, NULL), ref[0], sizeof(got));
	for (int i = 0; i < N_MODELS; i++) {
		djn_session_free(s[i]);
		djn_model_unref(m[i]);
	}
}

Test(pool, a_model_too_big_for_what_is_left_streams_through_the_slot)
{
	int32_t ref[N_MODELS][5 + N_NEW], got[5 + N_NEW];
	size_t fixed, layers;
	struct djn_model *m;
	struct djn_session *s;
	struct djn_residency r;

	reference(ref);
	sizes(&fixed, &layers);
	/* the fixed part, two of the four layers and the slot */
	m = load(1, fixed + layers / 2 + layers / 4);
	s = session(m);
	generate(s, got);
	cr_assert_arr_eq(got, ref[1], sizeof(got));
	djn_ring_residency(m, &r);
	cr_assert_eq(r.n_resident, 2, "%d resident", r.n_resident);
	cr_assert_eq(r.n_streamed, 2);
	cr_assert_gt(r.n_streamed_copies, 0);
	check_budget(m);
	djn_session_free(s);
	djn_model_unref(m);
}

Test(pool, budget_below_one_layer_says_so)
{
	size_t fixed, layers;
	struct djn_err err = { 0 };
	struct djn_session_opts so = { .max_ctx = CTX };
	struct djn_model *m;

	sizes(&fixed, &layers);
	m = load(0, fixed + layers / 8);
	cr_assert_null(djn_session_new(m, be, &so, &err));
	cr_assert_eq(err.code, DJN_ERR_NOMEM);
	cr_assert(strstr(err.msg, "is below the minimum of"), "%s", err.msg);
	cr_assert(strstr(err.msg, "one layer of"), "%s", err.msg);
	djn_model_unref(m);
}

Test(pool, freeing_a_model_gives_its_bytes_back)
{
	size_t budget = one_and_a_half(), before, fixed, layers;
	struct djn_model *a = load(0, budget), *b = load(1, budget);
	struct djn_session *sa = session(a), *sb = session(b);
	struct djn_residency r;

	sizes(&fixed, &layers);
	djn_ring_residency(a, &r);
	cr_assert_eq(r.pool_models, 2);
	before = r.pool_used;
	djn_ring_residency(b, &r);
	size_t b_bytes = r.fixed_bytes + r.resident_bytes + r.slot_bytes;
	cr_assert_gt(b_bytes, fixed);
	djn_session_free(sb);
	djn_ring_residency(b, &r);
	cr_assert(!r.shared, "b is not resident any more");
	djn_ring_residency(a, &r);
	cr_assert_eq(r.pool_models, 1);
	cr_assert_eq(r.pool_used, before - b_bytes);
	djn_session_free(sa);
	djn_model_unref(a);
	djn_model_unref(b);
}

/* A llama and a gpt2 (layers of different sizes) and a second llama: the
 * region's first fit leaves holes a larger layer does not fit, and the pool
 * evicts on until one opens.  Tokens as alone, the budget kept. */
Test(pool, layers_of_different_sizes_share_the_region)
{
	static const int order[] = { 0, GPT2, 1, GPT2, 0, 1 };
	int32_t ref[GPT2 + 1][5 + N_NEW], got[5 + N_NEW];
	size_t fl, ll, fg, lg, budget;
	struct djn_model *m[GPT2 + 1] = { 0 };
	struct djn_session *s[GPT2 + 1] = { 0 };
	long evicted = 0;

	for (int i = 0; i <= GPT2; i++) {
		if (i == 2)
			continue;
		struct djn_model *a = load(i, 0);
		struct djn_session *as = session(a);
		generate(as, ref[i]);
		djn_session_free(as);
		djn_model_unref(a);
	}
	sizes_of(0, &fl, &ll);
	sizes_of(GPT2, &fg, &lg);
	cr_assert_neq(ll / 4, lg / 4, "the layers differ in size: %zu, %zu", ll / 4, lg / 4);
	budget = 2 * fl + fg + ll + lg / 2;
	for (int i = 0; i <= GPT2; i++) {
		if (i == 2)
			continue;
		m[i] = load(i, budget);
		s[i] = session(m[i]);
		check_budget(m[i]);
	}
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		int i = order[k];
		generate(s[i], got);
		cr_assert_arr_eq(got, ref[i], sizeof(got), "request %zu: model %d's tokens differ "
				 "from its run alone", k, i);
		check_budget(m[i]);
	}
	for (int i = 0; i <= GPT2; i++) {
		struct djn_residency r;
		if (!m[i])
			continue;
		djn_ring_residency(m[i], &r);
		evicted += r.n_evicted;
		djn_session_free(s[i]);
		djn_model_unref(m[i]);
	}
	cr_assert_gt(evicted, 0);
}
