/* test-lens.c - the logit lens (djn_session_lens): at the last layer's
 * resid_post it is the model's own head, bit for bit on the CPU; row by row
 * it is what the whole chunk gives; misuse leaves the session as it was.
 * DJINN_TEST_DEVICE=cuda runs it on the GPU, where a one-row GEMV and a
 * chunk's GEMM (or the head's fused kernel) may round differently: there
 * "the same" is within 1e-4 of the largest logit's magnitude. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

static struct djn_model *model;
static struct djn_backend *be;

/* Equal logits: bit for bit on the CPU, within 1e-4 * max|want| elsewhere. */
static bool same_logits(const float *got, const float *want, int n)
{
	float big = 0, worst = 0;

	if (!strcmp(be->i->name, "cpu"))
		return !memcmp(got, want, sizeof(float) * (size_t)n);
	for (int i = 0; i < n; i++) {
		big = fabsf(want[i]) > big ? fabsf(want[i]) : big;
		worst = fabsf(got[i] - want[i]) > worst ? fabsf(got[i] - want[i]) : worst;
	}
	return worst <= 1e-4f * big;
}

static void load(const char *path, const char *tok)
{
	struct djn_err err = { 0 };
	const char *dev = getenv("DJINN_TEST_DEVICE");

	model = djn_model_load(path, tok, &err);
	cr_assert_not_null(model, "%s", err.msg);
	be = djn_backend_new(dev ? dev : "cpu", 2, &err);
	cr_assert_not_null(be, "%s", err.msg);
	/* DJINN_TEST_DEVICE=cuda must not quietly fall back to the CPU */
	cr_assert_str_eq(be->i->name, dev && !strncmp(dev, "cuda", 4) ? "cuda" : "cpu");
}

static void setup(void)
{
	load("models/stories260K.bin", "models/tok512.bin");
}

static void teardown(void)
{
	djn_model_unref(model);
	djn_backend_free(be);
}

TestSuite(lens, .init = setup, .fini = teardown);

static struct djn_session *session(void)
{
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(model, be, NULL, &err);

	cr_assert_not_null(s, "%s", err.msg);
	return s;
}

static const int32_t prompt[] = { 1, 403, 407, 261, 378 }; /* BOS "Once upon a time" */
static const struct djn_gen_opts greedy = { .n_new = 6, .stop_at_eos = true };

/* Run to the logits of the chunk that starts at pos (cursor at logits). */
static void to_logits(struct djn_session *s, int pos)
{
	const struct djn_config *c = &model->cfg;
	int bp = djn_bp_add(s, "logits", NULL, false);

	cr_assert_gt(bp, 0, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK, "%s",
		     djn_session_errmsg(s));
	for (;;) {
		enum djn_stop why = djn_session_run(s, DJN_RUN_CONTINUE, 0);
		cr_assert_eq(why, DJN_STOP_BREAKPOINT, "%s", djn_session_errmsg(s));
		if (djn_session_cursor(s).pos >= pos)
			break;
	}
	cr_assert_eq(djn_session_cursor(s).site, djn_site_count(c) - 1);
	djn_bp_delete(s, bp);
}

/* The head's logits and the lens of the last layer's last row. */
static void check_last_layer(struct djn_session *s)
{
	const struct djn_config *c = &model->cfg;
	int n_sites = djn_site_count(c), last = n_sites - 3, rows, cols;
	struct djn_cursor cur = djn_session_cursor(s);
	float *want = malloc(sizeof(float) * (size_t)c->vocab_size);
	float *got = malloc(sizeof(float) * (size_t)c->vocab_size);
	char name[32];

	djn_site_name(c, last, name, sizeof(name));
	cr_assert_eq(djn_site_kind(c, last), DJN_SITE_RESID_POST, "%s", name);
	cr_assert_eq(djn_session_read(s, n_sites - 1, want, (size_t)c->vocab_size), DJN_OK);
	cr_assert_eq(djn_session_site_shape(s, last, &rows, &cols), DJN_OK);
	cr_assert_eq(rows, cur.n_rows);
	cr_assert_eq(djn_session_lens(s, last, rows - 1, 1, got), DJN_OK, "%s",
		     djn_session_errmsg(s));
	cr_assert(same_logits(got, want, c->vocab_size),
		     "lens at %s row %d differs from the logits (%g vs %g at 0)", name, rows - 1,
		     got[0], want[0]);
	free(want);
	free(got);
}

Test(lens, last_layer_is_the_head_in_prefill)
{
	struct djn_session *s = session();

	to_logits(s, 0);
	cr_assert_eq(djn_session_cursor(s).n_rows, 5);
	check_last_layer(s);
	djn_session_free(s);
}

Test(lens, last_layer_is_the_head_in_decode)
{
	struct djn_session *s = session();

	to_logits(s, 7);
	cr_assert_eq(djn_session_cursor(s).n_rows, 1);
	check_last_layer(s);
	/* and after the run is done, on what the last chunk left */
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_DONE);
	check_last_layer(s);
	djn_session_free(s);
}

Test(lens, rows_at_once_are_rows_one_by_one)
{
	const struct djn_config *c = &model->cfg;
	struct djn_session *s = session();
	int V = c->vocab_size;
	float *all = malloc(sizeof(float) * 5 * (size_t)V), *one = malloc(sizeof(float) * (size_t)V);
	const char *sites[] = { "embed", "L0.resid_mid", "L2.resid_post" };

	to_logits(s, 0);
	for (int i = 0; i < 3; i++) {
		int site = djn_site_find(c, sites[i]);
		cr_assert(djn_site_residual(c, site), "%s", sites[i]);
		cr_assert_eq(djn_session_lens(s, site, 0, 5, all), DJN_OK, "%s: %s", sites[i],
			     djn_session_errmsg(s));
		for (int r = 0; r < 5; r++) {
			cr_assert_eq(djn_session_lens(s, site, r, 1, one), DJN_OK);
			cr_assert(same_logits(one, all + (size_t)r * V, V), "%s row %d", sites[i],
				  r);
		}
	}
	/* an earlier layer predicts something else than the last one */
	cr_assert_eq(djn_session_lens(s, djn_site_find(c, "embed"), 4, 1, one), DJN_OK);
	cr_assert_neq(memcmp(one, all + 4 * (size_t)V, sizeof(float) * (size_t)V), 0);
	free(all);
	free(one);
	djn_session_free(s);
}

Test(lens, misuse_leaves_the_session_as_it_was)
{
	const struct djn_config *c = &model->cfg;
	struct djn_session *s = session();
	float *out = malloc(sizeof(float) * 5 * (size_t)c->vocab_size);
	int l2 = djn_site_find(c, "L2.resid_post");

	cr_assert_not(djn_site_residual(c, djn_site_find(c, "L2.q")));
	cr_assert_not(djn_site_residual(c, djn_site_find(c, "final_norm")));
	cr_assert_not(djn_site_residual(c, djn_site_find(c, "logits")));
	cr_assert_not(djn_site_residual(c, -1));
	cr_assert_eq(djn_session_lens(s, l2, 0, 1, out), DJN_ERR_STATE); /* no run */

	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_STEP, 3), DJN_STOP_STEP); /* at L0.q */
	struct djn_cursor before = djn_session_cursor(s);
	cr_assert_eq(djn_session_lens(s, l2, 0, 1, out), DJN_ERR_STATE);
	cr_assert(strstr(djn_session_errmsg(s), "not live"), "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_lens(s, before.site, 0, 1, out), DJN_ERR_INVALID);
	cr_assert(strstr(djn_session_errmsg(s), "'L0.q' is not a residual-stream site"), "%s",
		  djn_session_errmsg(s));
	cr_assert_eq(djn_session_lens(s, 0, 5, 1, out), DJN_ERR_RANGE);
	cr_assert_eq(djn_session_lens(s, 0, 0, 0, out), DJN_ERR_RANGE);
	cr_assert_eq(djn_session_lens(s, 0, 0, 5, out), DJN_OK);
	struct djn_cursor after = djn_session_cursor(s);
	cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);

	/* and the run goes on to the tokens it would have given */
	int32_t a[16], b[16];
	int n_a, n_b;
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_DONE);
	const int32_t *t = djn_session_tokens(s, &n_a, NULL);
	memcpy(a, t, sizeof(int32_t) * (size_t)n_a);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_DONE);
	t = djn_session_tokens(s, &n_b, NULL);
	memcpy(b, t, sizeof(int32_t) * (size_t)n_b);
	cr_assert_eq(n_a, n_b);
	cr_assert_eq(memcmp(a, b, sizeof(int32_t) * (size_t)n_a), 0);
	free(out);
	djn_session_free(s);
}

/* GPT-2: layernorm with a bias, and the tied unembedding */
static void setup_gpt2(void)
{
	load("tests/fixtures/hf/gpt2-f32", NULL);
}

Test(lens_gpt2, last_layer_is_the_head, .init = setup_gpt2, .fini = teardown)
{
	struct djn_session *s = session();
	const int32_t ids[] = { 3, 1, 4, 1, 5 };
	int bp = djn_bp_add(s, "logits", NULL, false);

	cr_assert_eq(model->cfg.arch, DJN_ARCH_GPT2);
	cr_assert_gt(bp, 0);
	cr_assert_eq(djn_session_start(s, ids, 5, &greedy), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT);
	check_last_layer(s);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT);
	check_last_layer(s);
	djn_session_free(s);
}
