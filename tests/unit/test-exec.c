/* test-exec.c - the engine API on stories260K (CPU): sites, stopping and
 * resuming, write-back, breakpoints with gdb's rules, checkpoints. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

static struct djn_model *model;
static struct djn_backend *be;

static void setup(void)
{
	struct djn_err err = { 0 };

	model = djn_model_load("models/stories260K.bin", "models/tok512.bin", &err);
	cr_assert_not_null(model, "%s", err.msg);
	/* DJINN_TEST_DEVICE=cuda runs the same tests on the GPU */
	const char *dev = getenv("DJINN_TEST_DEVICE");
	be = djn_backend_new(dev ? dev : "cpu", 2, &err);
	cr_assert_not_null(be, "%s", err.msg);
}

static void teardown(void)
{
	djn_model_unref(model);
	djn_backend_free(be);
}

TestSuite(exec, .init = setup, .fini = teardown);

static struct djn_session *session(void)
{
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(model, be, NULL, &err);

	cr_assert_not_null(s, "%s", err.msg);
	return s;
}

static const int32_t prompt[] = { 1, 403, 407, 261, 378 }; /* BOS "Once upon a time" */
static const struct djn_gen_opts greedy = { .n_new = 48, .temperature = 0, .stop_at_eos = true };

/* Generate with the given stepping and return the token count and ids. */
static int drive(struct djn_session *s, enum djn_run_mode mode, const struct djn_gen_opts *g,
		 int32_t *out)
{
	enum djn_stop why;
	int n;

	cr_assert_eq(djn_session_start(s, prompt, 5, g), DJN_OK, "%s", djn_session_errmsg(s));
	do
		why = djn_session_run(s, mode, 1);
	while (why != DJN_STOP_DONE && why != DJN_STOP_ERROR);
	cr_assert_eq(why, DJN_STOP_DONE, "%s", djn_session_errmsg(s));
	const int32_t *t = djn_session_tokens(s, &n, NULL);
	memcpy(out, t, sizeof(int32_t) * (size_t)n);
	return n;
}

Test(exec, site_names_and_patterns)
{
	const struct djn_config *c = &model->cfg;
	char buf[32], sug[4][32];
	int n = 0;

	cr_assert_eq(djn_site_count(c), 3 + 11 * 5);
	djn_site_name(c, 0, buf, sizeof(buf));
	cr_assert_str_eq(buf, "embed");
	djn_site_name(c, 1 + 11 * 2 + 10, buf, sizeof(buf));
	cr_assert_str_eq(buf, "L2.resid_post");
	cr_assert_eq(djn_site_find(c, "logits"), djn_site_count(c) - 1);
	cr_assert_eq(djn_site_find(c, "L9.q"), -1);
	for (int t = 0; t < djn_site_count(c); t++) {
		djn_site_name(c, t, buf, sizeof(buf));
		cr_assert_eq(djn_site_find(c, buf), t, "%s", buf);
	}
	cr_assert_eq(djn_site_find(c, "L01.q"), -1);
	cr_assert_eq(djn_site_find(c, "L1.q "), -1);
	cr_assert_eq(djn_site_find(c, "L-1.q"), -1);
	cr_assert_eq(djn_site_find(c, "L1"), -1);
	for (int s = 0; s < djn_site_count(c); s++)
		n += djn_site_match(c, "L*.resid_post", s);
	cr_assert_eq(n, 5);
	n = 0;
	for (int s = 0; s < djn_site_count(c); s++)
		n += djn_site_match(c, "L1-2.*", s);
	cr_assert_eq(n, 22);
	cr_assert(!djn_site_pattern_valid(c, "L7.q"));
	cr_assert(!djn_site_pattern_valid(c, "L1.bogus"));
	cr_assert_eq(djn_site_width(c, djn_site_find(c, "L0.k")), 32);
	cr_assert_eq(djn_site_width(c, djn_site_find(c, "L0.mlp_act")), 172);
	cr_assert_eq(djn_site_suggest(c, "L3.resid_pots", sug, 4), 1);
	cr_assert_str_eq(sug[0], "L3.resid_post");
}

/* Only near names are suggested; otherwise the reason (issue 14). */
Test(exec, site_suggestions_are_near_or_none)
{
	const struct djn_config *c = &model->cfg;
	char sug[4][32], why[256];

	cr_assert_eq(djn_site_suggest(c, "foo", sug, 4), 0);
	cr_assert_eq(djn_site_suggest(c, "L9.resid_post", sug, 4), 0);
	cr_assert_eq(djn_site_suggest(c, "L3.resid", sug, 4), 2);
	cr_assert_str_eq(sug[1], "L3.resid_post");
	cr_assert_eq(djn_site_suggest(c, "L*.resid_pots", sug, 4), 1);
	cr_assert_str_eq(sug[0], "L*.resid_post");
	cr_assert_eq(djn_site_suggest(c, "embd", sug, 4), 1);
	cr_assert_str_eq(sug[0], "embed");
	cr_assert(!djn_site_why(c, "L9.resid_post", why, sizeof(why)));
	cr_assert_str_eq(why, "layers are L0..L4");
	cr_assert(!djn_site_why(c, "foo", why, sizeof(why)));
	cr_assert_str_eq(why, "sites are embed, L0..L4.<kind>, final_norm, logits");
	cr_assert(djn_site_why(c, "logit", why, sizeof(why)));
	cr_assert_str_eq(why, "did you mean logits?");
}

Test(exec, breakpoints_every_layer_do_not_change_tokens)
{
	struct djn_session *a = session(), *b = session(), *c = session();
	int32_t ta[128], tb[128], tc[128];
	int na, nb, nc;

	na = drive(a, DJN_RUN_CONTINUE, &greedy, ta);
	cr_assert_gt(djn_bp_add(b, "L*.resid_post", NULL, false), 0);
	nb = drive(b, DJN_RUN_CONTINUE, &greedy, tb);
	nc = drive(c, DJN_RUN_STEP, &greedy, tc);
	cr_assert_eq(na, 53);
	cr_assert_eq(nb, na);
	cr_assert_eq(nc, na);
	cr_assert_arr_eq(ta, tb, sizeof(int32_t) * na);
	cr_assert_arr_eq(ta, tc, sizeof(int32_t) * na);
	struct djn_bp_info info;
	cr_assert(djn_bp_get(b, 0, &info));
	cr_assert_eq(info.hits, 5 * 48, "hits %ld", info.hits); /* 5 layers x 48 chunks */
	djn_session_free(a);
	djn_session_free(b);
	djn_session_free(c);
}

Test(exec, stop_read_write_resume)
{
	struct djn_session *s = session();
	int site = djn_site_find(&model->cfg, "L2.resid_post"), rows, cols;

	djn_bp_add(s, "L2.resid_post", NULL, true);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	struct djn_cursor cur = djn_session_cursor(s);
	cr_assert_eq(cur.site, site);
	cr_assert_eq(cur.layer, 2);
	cr_assert_eq(cur.pos, 0);
	cr_assert_eq(cur.n_rows, 5);
	cr_assert_eq(djn_session_site_shape(s, site, &rows, &cols), DJN_OK);
	cr_assert_eq(rows, 5);
	cr_assert_eq(cols, 64);
	cr_assert(!djn_session_site_live(s, site + 1));
	float *x = malloc(sizeof(float) * 5 * 64);
	cr_assert_eq(djn_session_read(s, site, x, 5 * 64), DJN_OK);
	for (int i = 0; i < 5 * 64; i++)
		x[i] = 0;
	cr_assert_eq(djn_session_write(s, site, x, 5 * 64), DJN_OK);
	cr_assert_neq(djn_session_write(s, site, x, 7), DJN_OK);
	cr_assert(strstr(djn_session_errmsg(s), "7 floats given, tensor has 5 x 64"));
	struct djn_stats st;
	cr_assert_eq(djn_session_stats(s, site, 0, 0, &st), DJN_OK);
	cr_assert_float_eq(st.l2, 0, 0);
	free(x);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	djn_session_free(s);
}

Test(exec, conditional_breakpoint_stops_where_it_first_holds)
{
	struct djn_session *s = session();
	struct djn_bp_info info;

	cr_assert_gt(djn_bp_add(s, "L*.attn_out", "pos == 9 and layer >= 3", false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	struct djn_cursor c = djn_session_cursor(s);
	cr_assert_eq(c.pos, 9);
	cr_assert_eq(c.layer, 3);
	cr_assert_eq(c.site, djn_site_find(&model->cfg, "L3.attn_out"));
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_cursor(s).layer, 4);
	djn_bp_get(s, 0, &info);
	cr_assert_eq(info.hits, 2);
	djn_session_free(s);
}

Test(exec, ignore_counts_and_tbreak_follow_gdb)
{
	struct djn_session *s = session();
	int id = djn_bp_add(s, "L0.q", NULL, false), t;
	struct djn_bp_info info;

	cr_assert_eq(djn_bp_ignore(s, id, 3), DJN_OK);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_cursor(s).pos, 7); /* chunks at 0,5,6 ignored */
	djn_bp_get(s, 0, &info);
	cr_assert_eq(info.hits, 4);
	cr_assert_eq(info.ignore_count, 0);
	t = djn_bp_add(s, "L1.v", NULL, true);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_last_hit(s), t);
	cr_assert(!djn_bp_get(s, 1, &info), "the tbreak is gone after its stop");
	cr_assert(djn_session_last_hit_info(s, &info));
	cr_assert_eq(info.id, t);
	cr_assert(info.temporary);
	cr_assert_eq(info.hits, 1);
	cr_assert_str_eq(info.pattern, "L1.v");
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_last_hit(s), id);
	cr_assert_eq(djn_session_cursor(s).pos, 8);
	djn_session_free(s);
}

Test(exec, token_breakpoint_and_until)
{
	struct djn_session *s = session();

	cr_assert_gt(djn_bp_add(s, "token 12", NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_cursor(s).pos, 12);
	cr_assert_eq(djn_session_cursor(s).site, -1);
	cr_assert_eq(djn_session_run(s, DJN_RUN_UNTIL_POS, 20), DJN_STOP_STEP);
	cr_assert_eq(djn_session_cursor(s).pos, 20);
	cr_assert_lt(djn_bp_add(s, "token x", NULL, false), 0);
	djn_session_free(s);
}

static void checkpoint_continuation(const struct djn_gen_opts *g)
{
	struct djn_session *s = session();
	int32_t first[128], again[128];
	int n1, n2, id;
	enum djn_stop why;

	djn_bp_add(s, "token 20", NULL, true);
	cr_assert_eq(djn_session_start(s, prompt, 5, g), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_run(s, DJN_RUN_STEP, 17), DJN_STOP_STEP); /* mid-token */
	id = djn_checkpoint_new(s);
	cr_assert_gt(id, 0, "%s", djn_session_errmsg(s));
	while ((why = djn_session_run(s, DJN_RUN_CONTINUE, 1)) != DJN_STOP_DONE)
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s));
	const int32_t *t = djn_session_tokens(s, &n1, NULL);
	memcpy(first, t, sizeof(int32_t) * (size_t)n1);
	for (int rep = 0; rep < 3; rep++) {
		cr_assert_eq(djn_checkpoint_restore(s, id), DJN_OK, "%s", djn_session_errmsg(s));
		cr_assert_eq(djn_session_cursor(s).pos, 20);
		while ((why = djn_session_run(s, DJN_RUN_CONTINUE, 1)) != DJN_STOP_DONE)
			cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s));
		t = djn_session_tokens(s, &n2, NULL);
		memcpy(again, t, sizeof(int32_t) * (size_t)n2);
		cr_assert_eq(n2, n1);
		cr_assert_arr_eq(first, again, sizeof(int32_t) * (size_t)n1);
	}
	cr_assert_eq(djn_checkpoint_restore(s, 99), DJN_ERR_NOTFOUND);
	cr_assert_eq(djn_checkpoint_delete(s, id), DJN_OK);
	djn_session_free(s);
}

Test(exec, checkpoint_restore_greedy)
{
	checkpoint_continuation(&greedy);
}

Test(exec, checkpoint_restore_seeded_sampling)
{
	struct djn_gen_opts g = { .n_new = 48, .temperature = 0.9f, .top_p = 0.9f, .seed = 5,
				  .stop_at_eos = false };
	checkpoint_continuation(&g);
}

/* A checkpoint of a run started and not run yet (no arena, no pages for
 * its first chunk): restoring it runs the same tokens (found by the fuzzer
 * of the command line: it read page pointers the cache did not have). */
Test(exec, checkpoint_of_a_run_not_begun)
{
	struct djn_session *s = session();
	int32_t first[128];
	int n1, n2, id;
	enum djn_stop why;

	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	id = djn_checkpoint_new(s);
	cr_assert_gt(id, 0, "%s", djn_session_errmsg(s));
	while ((why = djn_session_run(s, DJN_RUN_CONTINUE, 1)) != DJN_STOP_DONE)
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s));
	const int32_t *t = djn_session_tokens(s, &n1, NULL);
	memcpy(first, t, sizeof(int32_t) * (size_t)n1);
	cr_assert_eq(djn_checkpoint_restore(s, id), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_cursor(s).pos, 0);
	while ((why = djn_session_run(s, DJN_RUN_CONTINUE, 1)) != DJN_STOP_DONE)
		cr_assert_neq(why, DJN_STOP_ERROR, "%s", djn_session_errmsg(s));
	t = djn_session_tokens(s, &n2, NULL);
	cr_assert_eq(n2, n1);
	cr_assert_arr_eq(first, t, sizeof(int32_t) * (size_t)n1);
	djn_session_free(s);
}

Test(exec, steer_add_equals_write_back_by_hand)
{
	struct djn_session *a = session(), *b = session();
	int site = djn_site_find(&model->cfg, "L2.resid_post");
	float v[64], x[64], la[512], lb[512];

	for (int i = 0; i < 64; i++)
		v[i] = 0.25f * sinf((float)i);
	djn_bp_add(a, "L2.resid_post", "pos == 8", true);
	djn_bp_add(b, "L2.resid_post", "pos == 8", true);
	cr_assert_eq(djn_session_start(a, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_start(b, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(a, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_run(b, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_steer_add(a, "L2.resid_post", DJN_STEER_ADD, v, 64, 2.0f, NULL, 0, false), 0,
		     "%s", djn_session_errmsg(a));
	cr_assert_eq(djn_session_read(b, site, x, 64), DJN_OK);
	for (int i = 0; i < 64; i++)
		x[i] += 2.0f * v[i];
	cr_assert_eq(djn_session_write(b, site, x, 64), DJN_OK);
	cr_assert_eq(djn_session_run(a, DJN_RUN_FINISH, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_run(b, DJN_RUN_FINISH, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_read(a, djn_site_count(&model->cfg) - 1, la, 512), DJN_OK);
	cr_assert_eq(djn_session_read(b, djn_site_count(&model->cfg) - 1, lb, 512), DJN_OK);
	cr_assert_arr_eq(la, lb, sizeof(la));
	/* errors leave the session paused and usable */
	cr_assert_lt(djn_steer_add(a, "L2.resid_post", DJN_STEER_ADD, v, 63, 1, NULL, 0, true), 0);
	cr_assert(strstr(djn_session_errmsg(a), "the vector has 63 elements, the site has 64"));
	cr_assert_lt(djn_steer_add(a, "L9.q", DJN_STEER_SCALE, NULL, 0, 1, NULL, 0, true), 0);
	cr_assert_eq(djn_session_state(a), DJN_RUN_PAUSED);
	djn_session_free(a);
	djn_session_free(b);
}

Test(exec, zero_steer_changes_nothing_and_persistent_steer_changes_later_tokens)
{
	struct djn_session *a = session(), *b = session(), *c = session();
	int32_t ta[128], tb[128], tc[128];
	float zero[64] = { 0 }, big[64];
	int na, nb, nc;

	for (int i = 0; i < 64; i++)
		big[i] = (i % 2 ? 3.0f : -3.0f);
	na = drive(a, DJN_RUN_CONTINUE, &greedy, ta);
	cr_assert_gt(djn_steer_add(b, "L*.resid_post", DJN_STEER_ADD, zero, 64, 1, NULL, 0, true), 0);
	nb = drive(b, DJN_RUN_CONTINUE, &greedy, tb);
	cr_assert_eq(na, nb);
	cr_assert_arr_eq(ta, tb, sizeof(int32_t) * (size_t)na);
	cr_assert_gt(djn_steer_add(c, "L1.resid_post", DJN_STEER_ADD, big, 64, 1, NULL, 0, true), 0);
	nc = drive(c, DJN_RUN_CONTINUE, &greedy, tc);
	int changed = 0;
	for (int i = 5; i < na && i < nc; i++)
		changed += ta[i] != tc[i];
	cr_assert_gt(changed, 20, "a persistent steer should change most later tokens (%d)", changed);
	struct djn_steer_info si;
	cr_assert(djn_steer_get(c, 0, &si));
	cr_assert_eq(si.n_applied, 48);
	djn_session_free(a);
	djn_session_free(b);
	djn_session_free(c);
}

Test(exec, bad_calls_fail_cleanly)
{
	struct djn_session *s = session();
	int32_t bad[] = { 1, 9999 };

	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_ERROR);
	cr_assert_str_eq(djn_session_errmsg(s), "the program is not being run");
	cr_assert_eq(djn_session_start(s, bad, 2, &greedy), DJN_ERR_RANGE);
	cr_assert(strstr(djn_session_errmsg(s), "token 9999 (at 1) is outside the vocabulary of 512"));
	cr_assert_lt(djn_bp_add(s, "L1.resid_pots", NULL, false), 0);
	cr_assert_lt(djn_bp_add(s, "L1.q", "norm >> 3", false), 0);
	cr_assert(strstr(djn_session_errmsg(s), "condition 'norm >> 3'"), "%s", djn_session_errmsg(s));
	cr_assert_lt(djn_watch_add(s, "L1.q", NULL), 0);
	cr_assert_eq(djn_checkpoint_new(s), DJN_ERR_STATE);
	djn_session_free(s);
}

Test(exec, watchpoint_on_nan)
{
	struct djn_session *s = session();
	int site = djn_site_find(&model->cfg, "L1.mlp_out");

	cr_assert_gt(djn_watch_add(s, "L*.mlp_out", "nan"), 0);
	cr_assert_gt(djn_bp_add(s, "L1.mlp_out", "pos == 6", true), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	float x[64];
	cr_assert_eq(djn_session_read(s, site, x, 64), DJN_OK);
	x[3] = NAN;
	cr_assert_eq(djn_session_write(s, site, x, 64), DJN_OK);
	/* the NaN spreads: the watchpoint fires at the next layer's mlp_out */
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_WATCHPOINT);
	cr_assert_eq(djn_session_cursor(s).site, djn_site_find(&model->cfg, "L2.mlp_out"));
	djn_session_free(s);
}

/* A condition on tensor statistics is decided after the token (the stats are
 * reduced without waiting); the stop must still land on the first site where
 * it held, with that site's tensor as it was there. */
Test(exec, deferred_condition_stops_at_the_first_site_it_holds)
{
	struct djn_session *s = session();
	const struct djn_config *c = &model->cfg;
	float absmax[8], x[64];
	struct djn_stats st;
	char cond[128];
	int k = 0;

	cr_assert_gt(djn_bp_add(s, "L*.resid_post", "pos == 7", false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	for (int l = 0; l < c->n_layer; l++) {
		cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
		cr_assert_eq(djn_session_cursor(s).layer, l);
		cr_assert_eq(djn_session_stats(s, djn_session_cursor(s).site, 0, 0, &st), DJN_OK);
		absmax[l] = st.absmax;
		if (absmax[l] > absmax[k])
			k = l;
	}
	cr_assert_gt(k, 0, "the test needs a layer whose absmax exceeds layer 0's");
	float t = 0;
	for (int l = 0; l < k; l++)
		t = absmax[l] > t ? absmax[l] : t;
	djn_session_free(s);

	s = session();
	snprintf(cond, sizeof(cond), "absmax > %.9g and pos == 7", (double)t);
	int id = djn_bp_add(s, "L*.resid_post", cond, false);
	cr_assert_gt(id, 0, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT, "%s",
		     djn_session_errmsg(s));
	struct djn_cursor cur = djn_session_cursor(s);
	cr_assert_eq(cur.pos, 7);
	cr_assert_eq(cur.layer, k);
	cr_assert_eq(cur.site, djn_site_find(c, "L0.resid_post") + k * DJN_SITES_PER_LAYER);
	cr_assert_eq(djn_session_last_hit(s), id);
	cr_assert(!djn_session_site_live(s, cur.site + 1), "the replay stopped at the hit");
	cr_assert_eq(djn_session_read(s, cur.site, x, 64), DJN_OK);
	float am = 0;
	for (int i = 0; i < 64; i++)
		am = fabsf(x[i]) > am ? fabsf(x[i]) : am;
	cr_assert_float_eq(am, absmax[k], 0, "the tensor at the stop is the one the condition saw");
	/* a step from here goes on normally, and the run still ends */
	cr_assert_eq(djn_session_run(s, DJN_RUN_STEP, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_cursor(s).site, cur.site + 1);
	djn_bp_delete(s, id);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	djn_session_free(s);
}

/* With a limit on the Data segment, a session that needs KV pages swaps the
 * least recently used paused session out, and that one comes back (making
 * room in turn) token-identical when it runs again. */
Test(exec, full_data_segment_swaps_paused_sessions_out)
{
	struct djn_session *a = session(), *b = session(), *ref = session();
	struct djn_gen_opts g = { .n_new = 90, .temperature = 0, .stop_at_eos = false };
	int32_t want[128];
	int n_want, n, page = 5 * 2 * 16 * 32 * 4; /* layers x K,V x tokens x kv_dim x f32 */

	/* the reference: one run, no limit */
	cr_assert_eq(djn_session_start(ref, prompt, 5, &g), DJN_OK);
	cr_assert_eq(djn_session_run(ref, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	const int32_t *t = djn_session_tokens(ref, &n_want, NULL);
	memcpy(want, t, sizeof(int32_t) * (size_t)n_want);
	djn_session_free(ref);

	be->data_limit = be->data_bytes + 7 * (size_t)page; /* 95 tokens need 6 pages, 41 need 3 */
	djn_bp_add(a, "token 40", NULL, true);
	cr_assert_eq(djn_session_start(a, prompt, 5, &g), DJN_OK);
	cr_assert_eq(djn_session_run(a, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_start(b, prompt, 5, &g), DJN_OK);
	cr_assert_eq(djn_session_run(b, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(b));
	cr_assert(djn_session_swapped(a), "a paused session made room");
	cr_assert(!djn_session_swapped(b));
	cr_assert_leq(be->data_bytes, be->data_limit);
	t = djn_session_tokens(b, &n, NULL);
	cr_assert_eq(n, n_want);
	cr_assert_arr_eq(t, want, sizeof(int32_t) * (size_t)n);

	cr_assert_eq(djn_session_run(a, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(a));
	cr_assert(djn_session_swapped(b), "b, now the least recent, made room for a");
	t = djn_session_tokens(a, &n, NULL);
	cr_assert_eq(n, n_want);
	cr_assert_arr_eq(t, want, sizeof(int32_t) * (size_t)n);

	/* nothing left to swap: a clear error, and the session stays usable */
	djn_session_free(a);
	djn_session_free(b);
	be->data_limit = be->data_bytes + (size_t)page;
	struct djn_session *c = session();
	cr_assert_eq(djn_session_start(c, prompt, 5, &g), DJN_OK);
	enum djn_stop why;
	while ((why = djn_session_run(c, DJN_RUN_CONTINUE, 1)) == DJN_STOP_STEP)
		;
	cr_assert_eq(why, DJN_STOP_ERROR);
	cr_assert(strstr(djn_session_errmsg(c), "KV limit"), "%s", djn_session_errmsg(c));
	cr_assert_eq(djn_session_state(c), DJN_RUN_PAUSED);
	be->data_limit = 0;
	cr_assert_eq(djn_session_run(c, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(c));
	djn_session_free(c);
}
