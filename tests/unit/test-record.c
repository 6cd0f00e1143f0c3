/* test-record.c - recording (djn_record_*): the rows kept for every position
 * are, bit for bit, what a breakpoint at that site and position reads (on
 * any backend: both are copies of the same buffer); a new run forgets the
 * last one's; misuse is refused with the reason.  DJINN_TEST_DEVICE=cuda
 * runs it on the GPU (decode steps then run as graphs, checked after). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

#include "model_fixture.h"

TestSuite(record, .init = setup, .fini = teardown);

static const int32_t prompt[] = { 1, 403, 407, 261, 378 }; /* BOS "Once upon a time" */
static const struct djn_gen_opts greedy = { .n_new = 5 };

static struct djn_session *session(void)
{
	struct djn_err err = { 0 };
	struct djn_session *s = djn_session_new(model, be, NULL, &err);

	cr_assert_not_null(s, "%s", err.msg);
	return s;
}

Test(record, rows_are_what_a_breakpoint_reads)
{
	const struct djn_config *c = &model->cfg;
	const char *names[] = { "L0.resid_post", "L2.q", "L4.resid_post", "logits" };
	int sites[4], W[4], n_stops = 0;
	float *live[4][8] = { { 0 } };
	int pos[8], rows[8];
	struct djn_session *s = session();

	cr_assert_eq(djn_record_add(s, "L*.resid_post"), DJN_OK);
	cr_assert_eq(djn_record_add(s, "L2.q"), DJN_OK);
	cr_assert_eq(djn_record_add(s, "logits"), DJN_OK);
	cr_assert_eq(djn_record_count(s), 3);
	for (int i = 0; i < 4; i++) {
		sites[i] = djn_site_find(c, names[i]);
		W[i] = djn_site_width(c, sites[i]);
		cr_assert(djn_record_site(s, sites[i]), "%s", names[i]);
	}
	cr_assert_not(djn_record_site(s, djn_site_find(c, "L2.k")));
	cr_assert_gt(djn_bp_add(s, "logits", NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	/* at each chunk's logits every site of it is live (a small arena) */
	while (djn_session_run(s, DJN_RUN_CONTINUE, 0) == DJN_STOP_BREAKPOINT) {
		struct djn_cursor cur = djn_session_cursor(s);
		cr_assert_lt(n_stops, 8);
		pos[n_stops] = cur.pos;
		rows[n_stops] = cur.n_rows;
		for (int i = 0; i < 4; i++) {
			int r, w;
			cr_assert_eq(djn_session_site_shape(s, sites[i], &r, &w), DJN_OK);
			live[i][n_stops] = malloc(sizeof(float) * (size_t)r * w);
			cr_assert_eq(djn_session_read(s, sites[i], live[i][n_stops], (size_t)r * w),
				     DJN_OK, "%s", djn_session_errmsg(s));
		}
		n_stops++;
	}
	cr_assert_eq(djn_session_state(s), DJN_RUN_DONE);
	cr_assert_eq(n_stops, 5, "the prompt and four steps");
	cr_assert_eq(djn_record_positions(s, sites[0]), 9);
	for (int k = 0; k < n_stops; k++) {
		for (int i = 0; i < 4; i++) {
			bool head = i == 3;
			int n = head ? 1 : rows[k], p0 = head ? pos[k] + rows[k] - 1 : pos[k];
			float *got = malloc(sizeof(float) * (size_t)n * W[i]);
			cr_assert_eq(djn_record_read(s, sites[i], p0, n, got), DJN_OK, "%s",
				     djn_session_errmsg(s));
			cr_assert_eq(memcmp(got, live[i][k], sizeof(float) * (size_t)n * W[i]), 0,
				     "%s at pos %d..%d", names[i], p0, p0 + n - 1);
			free(got);
			free(live[i][k]);
		}
	}
	/* the head has the prompt's last position only */
	float *one = malloc(sizeof(float) * (size_t)c->vocab_size);
	cr_assert_eq(djn_record_read(s, sites[3], 2, 1, one), DJN_ERR_STATE);
	cr_assert(strstr(djn_session_errmsg(s), "never computed"), "%s", djn_session_errmsg(s));
	free(one);
	djn_session_free(s);
}

Test(record, a_new_run_forgets_and_errors_say_why)
{
	const struct djn_config *c = &model->cfg;
	int site = djn_site_find(c, "L1.resid_post");
	float row[64];
	struct djn_session *s = session();
	struct djn_gen_opts one = { .n_new = 1 };

	cr_assert_eq(djn_record_add(s, "L9.q"), DJN_ERR_INVALID);
	cr_assert(strstr(djn_session_errmsg(s), "layers are L0..L4"), "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_record_count(s), 0);
	cr_assert_eq(djn_record_add(s, "L1.resid_post"), DJN_OK);
	cr_assert_eq(djn_record_positions(s, site), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_DONE);
	cr_assert_eq(djn_record_positions(s, site), 9);
	cr_assert_eq(djn_record_read(s, site, 8, 1, row), DJN_OK);
	cr_assert_eq(djn_record_read(s, site, 8, 2, row), DJN_ERR_RANGE);
	cr_assert_eq(djn_session_start(s, prompt, 3, &one), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_DONE);
	cr_assert_eq(djn_record_positions(s, site), 3, "the new run's positions only");
	cr_assert_eq(djn_record_read(s, djn_site_find(c, "L2.resid_post"), 0, 1, row),
		     DJN_ERR_STATE);
	djn_record_clear(s);
	cr_assert_eq(djn_record_count(s), 0);
	cr_assert_eq(djn_record_positions(s, site), 0);
	djn_session_free(s);
}

/* A row changed while paused at a recorded site (a write-back, a one-shot
 * steer) is what flowed on, so the record holds the changed row. */
Test(record, a_write_while_paused_is_recorded)
{
	const struct djn_config *c = &model->cfg;
	int site = djn_site_find(c, "L1.resid_post"), rows, w;
	struct djn_session *s = session();
	float *t, *got;

	cr_assert_eq(djn_record_add(s, "L1.resid_post"), DJN_OK);
	cr_assert_gt(djn_bp_add(s, "L1.resid_post", NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &greedy), DJN_OK);
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 0), DJN_STOP_BREAKPOINT);
	cr_assert_eq(djn_session_site_shape(s, site, &rows, &w), DJN_OK);
	t = malloc(sizeof(float) * (size_t)rows * w);
	got = malloc(sizeof(float) * (size_t)rows * w);
	cr_assert_eq(djn_session_read(s, site, t, (size_t)rows * w), DJN_OK);
	for (int i = 0; i < rows * w; i++)
		t[i] = 0.25f * (float)(i % 7);
	cr_assert_eq(djn_session_write(s, site, t, (size_t)rows * w), DJN_OK);
	cr_assert_eq(djn_record_read(s, site, 0, rows, got), DJN_OK);
	cr_assert_eq(memcmp(got, t, sizeof(float) * (size_t)rows * w), 0);
	free(t);
	free(got);
	djn_session_free(s);
}
