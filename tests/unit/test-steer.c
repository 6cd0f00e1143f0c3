/* test-steer.c - steering is exact: the engine's steer gives the same logits
 * and tokens as computing the forward with the change written by hand
 * (djn_session_read, edit, djn_session_write) at the same stop. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

#define BIN "models/stories260K.bin"
#define TOK "models/tok512.bin"
#define PROMPT "Once upon a time"
#define STEP_POS 9
#define N_NEW 24

static struct djn_model *m;
static struct djn_backend *be;
static int32_t *ids;
static int n_ids;

static void setup(void)
{
	struct djn_err err = { 0 };

	m = djn_model_load(BIN, TOK, &err);
	cr_assert(m, "%s", err.msg);
	be = djn_backend_cpu_new(1, &err);
	cr_assert(be, "%s", err.msg);
	cr_assert_eq(djn_tok_encode(m->tok, PROMPT, strlen(PROMPT), true, false, &ids, &n_ids, &err),
		     DJN_OK, "%s", err.msg);
}

static void teardown(void)
{
	free(ids);
	djn_model_unref(m);
	djn_backend_free(be);
}

static struct djn_session *begin(void)
{
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(m, be, NULL, &err);
	struct djn_gen_opts g = { .n_new = N_NEW, .temperature = 0, .top_p = 1,
				  .stop_at_eos = false };

	cr_assert(s, "%s", err.msg);
	cr_assert_eq(djn_session_start(s, ids, n_ids, &g), DJN_OK, "%s", djn_session_errmsg(s));
	return s;
}

/* A vector that moves things: not small, not constant. */
static float *vec(float scale)
{
	float *v = malloc(sizeof(float) * (size_t)m->cfg.dim);

	for (int i = 0; i < m->cfg.dim; i++)
		v[i] = scale * sinf(0.7f * (float)i + 0.3f);
	return v;
}

static void run_to(struct djn_session *s, const char *cond)
{
	int id = djn_bp_add(s, "L2.resid_post", cond, true);

	cr_assert_gt(id, 0, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT, "%s",
		     djn_session_errmsg(s));
}

static float *logits(struct djn_session *s)
{
	int site = djn_site_count(&m->cfg) - 1, rows, cols;
	float *out;

	cr_assert_eq(djn_session_site_shape(s, site, &rows, &cols), DJN_OK, "%s",
		     djn_session_errmsg(s));
	out = malloc(sizeof(float) * (size_t)rows * cols);
	cr_assert_eq(djn_session_read(s, site, out, (size_t)rows * cols), DJN_OK);
	return out;
}

/* x += v on every row of the paused L2.resid_post, through the host. */
static void add_by_hand(struct djn_session *s, const float *v)
{
	int site = djn_site_find(&m->cfg, "L2.resid_post"), rows, cols;
	float *x;

	cr_assert_eq(djn_session_site_shape(s, site, &rows, &cols), DJN_OK);
	x = malloc(sizeof(float) * (size_t)rows * cols);
	cr_assert_eq(djn_session_read(s, site, x, (size_t)rows * cols), DJN_OK);
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++)
			x[(size_t)r * cols + c] += v[c];
	cr_assert_eq(djn_session_write(s, site, x, (size_t)rows * cols), DJN_OK);
	free(x);
}

static void same_tokens(struct djn_session *a, struct djn_session *b)
{
	int na, nb;
	const int32_t *ta = djn_session_tokens(a, &na, NULL), *tb = djn_session_tokens(b, &nb, NULL);

	cr_assert_eq(na, nb);
	cr_expect_arr_eq(ta, tb, sizeof(int32_t) * (size_t)na);
}

TestSuite(steer, .init = setup, .fini = teardown);

Test(steer, one_shot_add_equals_the_forward_done_by_hand)
{
	struct djn_session *hand = begin(), *steer = begin(), *plain = begin();
	float *v = vec(2.0f), *lh, *ls, *lp;
	int n = m->cfg.vocab_size;

	run_to(hand, "pos == 9");
	run_to(steer, "pos == 9");
	run_to(plain, "pos == 9");
	cr_assert_eq(djn_session_cursor(steer).pos, STEP_POS);
	add_by_hand(hand, v);
	cr_assert_eq(djn_steer_add(steer, "L2.resid_post", DJN_STEER_ADD, v, m->cfg.dim, 1.0f,
				   NULL, 0, false), 0, "%s", djn_session_errmsg(steer));
	cr_assert_eq(djn_session_run(hand, DJN_RUN_FINISH, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_run(steer, DJN_RUN_FINISH, 1), DJN_STOP_STEP);
	cr_assert_eq(djn_session_run(plain, DJN_RUN_FINISH, 1), DJN_STOP_STEP);
	lh = logits(hand);
	ls = logits(steer);
	lp = logits(plain);
	/* exact: both add the same floats to the same floats */
	cr_expect_arr_eq(lh, ls, sizeof(float) * (size_t)n, "steer and by-hand logits differ");
	cr_expect(memcmp(lh, lp, sizeof(float) * (size_t)n), "the vector changed nothing");
	/* and the rest of the run agrees token for token */
	cr_assert_eq(djn_session_run(hand, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	cr_assert_eq(djn_session_run(steer, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	same_tokens(hand, steer);
	free(lh);
	free(ls);
	free(lp);
	free(v);
	djn_session_free(hand);
	djn_session_free(steer);
	djn_session_free(plain);
}

Test(steer, scaled_add_equals_adding_the_scaled_vector)
{
	struct djn_session *hand = begin(), *steer = begin();
	float *v = vec(1.0f), *v3 = vec(3.0f), *lh, *ls;

	/* 3 * sin(...) computed on the host equals scale 3 applied to sin(...) */
	for (int i = 0; i < m->cfg.dim; i++)
		v3[i] = 3.0f * v[i];
	run_to(hand, "pos == 9");
	run_to(steer, "pos == 9");
	add_by_hand(hand, v3);
	cr_assert_eq(djn_steer_add(steer, "L2.resid_post", DJN_STEER_ADD, v, m->cfg.dim, 3.0f,
				   NULL, 0, false), 0);
	djn_session_run(hand, DJN_RUN_FINISH, 1);
	djn_session_run(steer, DJN_RUN_FINISH, 1);
	lh = logits(hand);
	ls = logits(steer);
	cr_expect_arr_eq(lh, ls, sizeof(float) * (size_t)m->cfg.vocab_size);
	free(lh);
	free(ls);
	free(v);
	free(v3);
	djn_session_free(hand);
	djn_session_free(steer);
}

Test(steer, persistent_add_equals_editing_every_token_by_hand)
{
	struct djn_session *hand = begin(), *steer = begin(), *plain = begin();
	float *v = vec(1.5f), *lh, *ls;
	enum djn_stop why;
	int stops = 0;

	cr_assert_gt(djn_steer_add(steer, "L2.resid_post", DJN_STEER_ADD, v, m->cfg.dim, 1.0f,
				   NULL, 0, true), 0, "%s", djn_session_errmsg(steer));
	cr_assert_gt(djn_bp_add(hand, "L2.resid_post", NULL, false), 0);
	while ((why = djn_session_run(hand, DJN_RUN_CONTINUE, 1)) == DJN_STOP_BREAKPOINT) {
		add_by_hand(hand, v);
		stops++;
	}
	cr_assert_eq(why, DJN_STOP_DONE, "%s", djn_session_errmsg(hand));
	cr_assert_eq(stops, N_NEW, "one stop per chunk: the prompt and each new token");
	cr_assert_eq(djn_session_run(steer, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	cr_assert_eq(djn_session_run(plain, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	same_tokens(hand, steer);
	lh = logits(hand);
	ls = logits(steer);
	cr_expect_arr_eq(lh, ls, sizeof(float) * (size_t)m->cfg.vocab_size);
	/* it changed the story: a steer that changes nothing tests nothing */
	int na, np;
	const int32_t *ta = djn_session_tokens(steer, &na, NULL), *tp = djn_session_tokens(plain, &np, NULL);
	cr_expect(na != np || memcmp(ta, tp, sizeof(int32_t) * (size_t)na),
		  "the persistent steer changed no token");
	struct djn_steer_info si;
	cr_assert(djn_steer_get(steer, 0, &si));
	cr_expect_eq(si.n_applied, N_NEW);
	free(lh);
	free(ls);
	free(v);
	djn_session_free(hand);
	djn_session_free(steer);
	djn_session_free(plain);
}

Test(steer, zero_vector_changes_nothing)
{
	struct djn_session *steer = begin(), *plain = begin();
	float *z = calloc((size_t)m->cfg.dim, sizeof(float)), *ls, *lp;

	cr_assert_gt(djn_steer_add(steer, "L*.resid_post", DJN_STEER_ADD, z, m->cfg.dim, 1.0f,
				   NULL, 0, true), 0);
	cr_assert_eq(djn_session_run(steer, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	cr_assert_eq(djn_session_run(plain, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	same_tokens(steer, plain);
	ls = logits(steer);
	lp = logits(plain);
	cr_expect_arr_eq(ls, lp, sizeof(float) * (size_t)m->cfg.vocab_size);
	free(ls);
	free(lp);
	free(z);
	djn_session_free(steer);
	djn_session_free(plain);
}

Test(steer, wrong_width_is_refused_and_changes_nothing)
{
	struct djn_session *s = begin();
	float *v = vec(1.0f);

	run_to(s, "pos == 9");
	cr_expect_lt(djn_steer_add(s, "L2.resid_post", DJN_STEER_ADD, v, m->cfg.dim - 1, 1.0f,
				   NULL, 0, false), 0);
	cr_expect_str_eq(djn_session_errmsg(s),
			 "steer 'L2.resid_post': the vector has 63 elements, the site has 64");
	cr_expect_eq(djn_session_state(s), DJN_RUN_PAUSED);
	free(v);
	djn_session_free(s);
}

/* x += v on the rows of the paused L2.resid_post at positions [p0, p1). */
static void add_by_hand_at(struct djn_session *s, const float *v, int p0, int p1)
{
	int site = djn_site_find(&m->cfg, "L2.resid_post"), rows, cols;
	struct djn_cursor cur = djn_session_cursor(s);
	float *x;

	cr_assert_eq(djn_session_site_shape(s, site, &rows, &cols), DJN_OK);
	x = malloc(sizeof(float) * (size_t)rows * cols);
	cr_assert_eq(djn_session_read(s, site, x, (size_t)rows * cols), DJN_OK);
	for (int r = 0; r < rows; r++)
		if (cur.pos + r >= p0 && cur.pos + r < p1)
			for (int c = 0; c < cols; c++)
				x[(size_t)r * cols + c] += v[c];
	cr_assert_eq(djn_session_write(s, site, x, (size_t)rows * cols), DJN_OK);
	free(x);
}

Test(steer, positions_steer_those_rows_only)
{
	struct djn_session *hand = begin(), *steer = begin(), *plain = begin();
	float *v = vec(2.0f), *lh, *ls;
	int site = djn_site_find(&m->cfg, "L2.resid_post"), rows, cols, n = m->cfg.dim;
	enum djn_stop why;

	/* one-shot at pos 1..2 of the prompt's rows: the others stay bit for bit */
	run_to(steer, NULL);
	run_to(plain, NULL);
	cr_assert_eq(djn_session_site_shape(steer, site, &rows, &cols), DJN_OK);
	cr_assert_eq(rows, n_ids);
	float *a = malloc(sizeof(float) * (size_t)rows * cols), *b = malloc(sizeof(float) * (size_t)rows * cols);
	cr_assert_eq(djn_steer_add_at(steer, "L2.resid_post", DJN_STEER_ADD, v, n, 1.0f, NULL, 0,
				      false, 1, 3), 0, "%s", djn_session_errmsg(steer));
	djn_session_read(steer, site, a, (size_t)rows * cols);
	djn_session_read(plain, site, b, (size_t)rows * cols);
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++) {
			float want = b[(size_t)r * cols + c] + (r == 1 || r == 2 ? v[c] : 0.0f);
			cr_assert_eq(memcmp(&a[(size_t)r * cols + c], &want, sizeof(float)), 0,
				     "row %d col %d", r, c);
		}
	/* none of the paused rows at the positions: refused, nothing changed */
	cr_assert_lt(djn_steer_add_at(steer, "L2.resid_post", DJN_STEER_ZERO, NULL, 0, 1.0f, NULL,
				      0, false, 40, -1), 0);
	djn_session_read(steer, site, b, (size_t)rows * cols);
	cr_assert_arr_eq(a, b, sizeof(float) * (size_t)rows * cols);
	free(a);
	free(b);
	djn_session_free(steer);
	djn_session_free(plain);

	/* persistent at pos 2 and 10..11: the same as the edit by hand there */
	steer = begin();
	cr_assert_gt(djn_steer_add_at(steer, "L2.resid_post", DJN_STEER_ADD, v, n, 1.0f, NULL, 0,
				      true, 2, 3), 0);
	cr_assert_gt(djn_steer_add_at(steer, "L2.resid_post", DJN_STEER_ADD, v, n, 1.0f, NULL, 0,
				      true, 10, 12), 0);
	cr_assert_gt(djn_bp_add(hand, "L2.resid_post", NULL, false), 0);
	while ((why = djn_session_run(hand, DJN_RUN_CONTINUE, 1)) == DJN_STOP_BREAKPOINT) {
		add_by_hand_at(hand, v, 2, 3);
		add_by_hand_at(hand, v, 10, 12);
	}
	cr_assert_eq(why, DJN_STOP_DONE, "%s", djn_session_errmsg(hand));
	cr_assert_eq(djn_session_run(steer, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	same_tokens(hand, steer);
	lh = logits(hand);
	ls = logits(steer);
	cr_expect_arr_eq(lh, ls, sizeof(float) * (size_t)m->cfg.vocab_size);
	struct djn_steer_info si;
	cr_assert(djn_steer_get(steer, 0, &si));
	cr_expect_eq(si.n_applied, 1, "pos 2 is in the prompt's chunk only");
	cr_expect_eq(si.pos0, 2);
	cr_expect_eq(si.pos1, 3);
	cr_assert(djn_steer_get(steer, 1, &si));
	cr_expect_eq(si.n_applied, 2, "pos 10 and 11: one chunk each");
	free(lh);
	free(ls);
	free(v);
	djn_session_free(hand);
	djn_session_free(steer);
}
