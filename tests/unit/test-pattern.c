/* test-pattern.c - attention patterns (djn_session_attn_pattern) on the CPU:
 * rows are distributions over the causal window; the pattern times V is the
 * engine's own attention output; a reference from q and k read at their
 * sites agrees; the chunk's K is taken from L.k before attention stores it;
 * misuse fails and leaves the session as it was. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

static struct djn_model *model;
static struct djn_backend *be;

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

static void setup_gpt2(void)
{
	load("tests/fixtures/hf/gpt2-f32", NULL);
}

static void teardown(void)
{
	djn_model_unref(model);
	djn_backend_free(be);
}

TestSuite(pattern, .init = setup, .fini = teardown);

static const int32_t llama_prompt[] = { 1, 403, 407, 261, 378 }; /* BOS "Once upon a time" */
static const int32_t gpt2_prompt[] = { 3, 1, 4, 1, 5 };
static const int32_t *prompt = llama_prompt;
static const struct djn_gen_opts greedy = { .n_new = 4, .stop_at_eos = false };

static int site_of(const char *name)
{
	int site = djn_site_find(&model->cfg, name);

	cr_assert_geq(site, 0, "%s", name);
	return site;
}

static float *read_site(struct djn_session *s, const char *name, int *rows, int *cols)
{
	int site = site_of(name);
	float *v;

	cr_assert_eq(djn_session_site_shape(s, site, rows, cols), DJN_OK, "%s",
		     djn_session_errmsg(s));
	v = malloc(sizeof(float) * (size_t)*rows * *cols);
	cr_assert_eq(djn_session_read(s, site, v, (size_t)*rows * *cols), DJN_OK);
	return v;
}

/* Through every chunk stopping at L{layer}.attn: the K and V rows of each
 * position as the sites L.k and L.v computed them, then at each stop the
 * pattern of every head against (1) the window: sums to 1, zero after;
 * (2) a reference from L.q and those K rows; (3) pattern . V == L.attn. */
static void check_layer(int layer, int n_chunks)
{
	const struct djn_config *c = &model->cfg;
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(model, be, NULL, &err);
	int hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;
	int group = c->n_head / c->n_kv_head, max = 5 + n_chunks;
	float *ks = calloc((size_t)max * kvd, sizeof(float));
	float *vs = calloc((size_t)max * kvd, sizeof(float));
	char name[32];

	cr_assert_not_null(s, "%s", err.msg);
	snprintf(name, sizeof(name), "L%d.attn", layer);
	cr_assert_gt(djn_bp_add(s, name, NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	for (int chunk = 0; chunk < n_chunks; chunk++) {
		struct djn_cursor cur;
		int rows, cols, width;
		float *q, *k, *v, *out, *p;
		cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT, "%s",
			     djn_session_errmsg(s));
		cur = djn_session_cursor(s);
		snprintf(name, sizeof(name), "L%d.q", layer);
		q = read_site(s, name, &rows, &cols);
		cr_assert_eq(cols, qd);
		snprintf(name, sizeof(name), "L%d.k", layer);
		k = read_site(s, name, &rows, &cols);
		snprintf(name, sizeof(name), "L%d.v", layer);
		v = read_site(s, name, &rows, &cols);
		memcpy(ks + (size_t)cur.pos * kvd, k, sizeof(float) * (size_t)rows * kvd);
		memcpy(vs + (size_t)cur.pos * kvd, v, sizeof(float) * (size_t)rows * kvd);
		snprintf(name, sizeof(name), "L%d.attn", layer);
		out = read_site(s, name, &rows, &cols);
		width = cur.pos + rows;
		p = malloc(sizeof(float) * (size_t)rows * width);
		for (int h = 0; h < c->n_head; h++) {
			int kvh = h / group;
			cr_assert_eq(djn_session_attn_pattern(s, layer, h, 0, rows, p), DJN_OK, "%s",
				     djn_session_errmsg(s));
			for (int r = 0; r < rows; r++) {
				int pos = cur.pos + r;
				const float *a = p + (size_t)r * width;
				double sum = 0, ref[16], mx = -INFINITY, z = 0;
				cr_assert_leq(pos + 1, 16);
				for (int u = 0; u < width; u++) {
					if (u > pos)
						cr_assert_eq(a[u], 0.0f, "row %d pos %d", r, u);
					else
						sum += a[u];
				}
				cr_assert(fabs(sum - 1) < 1e-6, "head %d row %d sums to %.9g", h, r, sum);
				/* the reference, in double, from q and k read at their sites
				 * (the engine sums in float: within 1e-5) */
				for (int u = 0; u <= pos; u++) {
					double d = 0;
					for (int i = 0; i < hd; i++)
						d += (double)q[(size_t)r * qd + h * hd + i] *
						     ks[(size_t)u * kvd + kvh * hd + i];
					ref[u] = d / sqrt((double)hd);
					mx = fmax(mx, ref[u]);
				}
				for (int u = 0; u <= pos; u++)
					z += ref[u] = exp(ref[u] - mx);
				for (int u = 0; u <= pos; u++)
					cr_assert(fabs(a[u] - ref[u] / z) < 1e-5,
						  "head %d row %d pos %d: %g, reference %g", h, r, u,
						  a[u], ref[u] / z);
				/* the pattern times V is what attention wrote */
				for (int i = 0; i < hd; i++) {
					double y = 0;
					for (int u = 0; u <= pos; u++)
						y += (double)a[u] * vs[(size_t)u * kvd + kvh * hd + i];
					float want = out[(size_t)r * qd + h * hd + i];
					cr_assert(fabs(y - want) < 1e-5,
						  "L%d head %d row %d col %d: pattern . V %g, attn %g",
						  layer, h, r, i, y, want);
				}
			}
		}
		/* rows one at a time are the rows of the whole */
		float *one = malloc(sizeof(float) * (size_t)width);
		cr_assert_eq(djn_session_attn_pattern(s, layer, c->n_head - 1, rows - 1, 1, one),
			     DJN_OK);
		cr_assert_arr_eq(one, p + (size_t)(rows - 1) * width, sizeof(float) * width);
		free(one);
		free(p);
		free(out);
		free(v);
		free(k);
		free(q);
	}
	free(vs);
	free(ks);
	djn_session_free(s);
}

Test(pattern, rows_are_the_attention_of_the_prompt_and_decode_steps)
{
	check_layer(0, 3);
	check_layer(3, 3);
}

Test(pattern, the_chunks_k_before_attention_stores_it)
{
	const struct djn_config *c = &model->cfg;
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(model, be, NULL, &err);
	float at_k[5 * 5], at_v[5 * 5], at_attn[5 * 5], row[5];

	cr_assert_not_null(s, "%s", err.msg);
	cr_assert_gt(djn_bp_add(s, "L2.q", NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT);
	/* at L2.q the chunk's K is not computed yet */
	cr_assert_eq(djn_session_attn_pattern(s, 2, 0, 0, 5, at_k), DJN_ERR_STATE);
	cr_assert(strstr(djn_session_errmsg(s), "'L2.k'"), "%s", djn_session_errmsg(s));
	/* an earlier layer's is in the cache */
	cr_assert_eq(djn_session_attn_pattern(s, 1, 0, 4, 1, row), DJN_OK, "%s",
		     djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(s, DJN_RUN_STEP, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_attn_pattern(s, 2, 5, 0, 5, at_k), DJN_OK, "%s",
		     djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(s, DJN_RUN_STEP, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_attn_pattern(s, 2, 5, 0, 5, at_v), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_STEP, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_cursor(s).site, djn_site_find(c, "L2.attn"));
	cr_assert_eq(djn_session_attn_pattern(s, 2, 5, 0, 5, at_attn), DJN_OK);
	cr_assert_arr_eq(at_k, at_attn, sizeof(at_k));
	cr_assert_arr_eq(at_v, at_attn, sizeof(at_v));
	djn_session_free(s);
}

Test(pattern, misuse_fails_and_changes_nothing)
{
	const struct djn_config *c = &model->cfg;
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(model, be, NULL, &err);
	struct djn_cursor before;
	float p[5 * 5];

	cr_assert_not_null(s, "%s", err.msg);
	cr_assert_eq(djn_session_attn_pattern(s, 0, 0, 0, 1, p), DJN_ERR_STATE);
	cr_assert(strstr(djn_session_errmsg(s), "not being run"), "%s", djn_session_errmsg(s));
	cr_assert_gt(djn_bp_add(s, "L1.mlp_out", NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT);
	before = djn_session_cursor(s);
	cr_assert_eq(djn_session_attn_pattern(s, 1, c->n_head, 0, 5, p), DJN_ERR_RANGE);
	cr_assert(strstr(djn_session_errmsg(s), "no head 8 (heads are 0..7)"), "%s",
		  djn_session_errmsg(s));
	cr_assert_eq(djn_session_attn_pattern(s, 1, -1, 0, 5, p), DJN_ERR_RANGE);
	cr_assert_eq(djn_session_attn_pattern(s, c->n_layer, 0, 0, 5, p), DJN_ERR_RANGE);
	cr_assert_eq(djn_session_attn_pattern(s, 1, 0, 3, 3, p), DJN_ERR_RANGE);
	cr_assert_eq(djn_session_attn_pattern(s, 1, 0, 0, 0, p), DJN_ERR_RANGE);
	/* q of a later layer is not computed yet */
	cr_assert_eq(djn_session_attn_pattern(s, 2, 0, 0, 5, p), DJN_ERR_STATE);
	cr_assert(strstr(djn_session_errmsg(s), "'L2.q' is not live"), "%s",
		  djn_session_errmsg(s));
	cr_assert_eq(djn_session_cursor(s).site, before.site, "the cursor moved");
	/* the run goes on as it would have */
	cr_assert_eq(djn_session_attn_pattern(s, 0, 7, 0, 5, p), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_FINISH, 0), DJN_STOP_STEP);
	djn_session_free(s);
}

Test(pattern, a_swapped_out_session_reads_its_kv_back)
{
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(model, be, NULL, &err);
	float before[6], after[6];

	cr_assert_not_null(s, "%s", err.msg);
	cr_assert_gt(djn_bp_add(s, "L4.attn", NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_cursor(s).pos, 5);
	cr_assert_eq(djn_session_attn_pattern(s, 4, 3, 0, 1, before), DJN_OK);
	cr_assert_eq(djn_session_swapout(s), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert(djn_session_swapped(s));
	cr_assert_eq(djn_session_attn_pattern(s, 4, 3, 0, 1, after), DJN_OK, "%s",
		     djn_session_errmsg(s));
	cr_assert_arr_eq(before, after, sizeof(before));
	djn_session_free(s);
}

/* GPT-2: no RoPE, one kv head per head */
Test(pattern_gpt2, rows_are_the_attention, .init = setup_gpt2, .fini = teardown)
{
	cr_assert_eq(model->cfg.arch, DJN_ARCH_GPT2);
	prompt = gpt2_prompt;
	check_layer(0, 2);
	check_layer(model->cfg.n_layer - 1, 2);
}
