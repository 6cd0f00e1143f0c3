/* test-tenants.c - tenants on stories260K (CPU; DJINN_TEST_DEVICE=cuda on a GPU): the exact order of a
 * scripted trace under each order, starvation-freedom of priority, SLO
 * admission refused with a clear message and nothing lost, and parking
 * under memory pressure (lowest class first) with tokens as alone. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/sched.h"
#include "djinn/vmu.h"
#include "sched/sched_impl.h"

static struct djn_model *model;
static struct djn_backend *be;
static double now_ms; /* the scripted clock */

static double clock_of_test(void *ud)
{
	(void)ud;
	return now_ms;
}

static void setup(void)
{
	struct djn_err err = { 0 };

	model = djn_model_load("models/stories260K.bin", "models/tok512.bin", &err);
	cr_assert_not_null(model, "%s", err.msg);
	const char *dev = getenv("DJINN_TEST_DEVICE");
	be = djn_backend_new(dev ? dev : "cpu", 2, &err);
	cr_assert_not_null(be, "%s", err.msg);
	now_ms = 0;
}

static void teardown(void)
{
	djn_model_unref(model);
	djn_backend_free(be);
}

TestSuite(tenants, .init = setup, .fini = teardown);

#define MAX_TOK 128

/* A session of n_new greedy tokens after a prompt of len tokens. */
static struct djn_session *started(int i, int len, int n_new)
{
	struct djn_err err = { 0 };
	struct djn_session_opts so = { .max_ctx = 128 };
	struct djn_session *s = djn_session_new(model, be, &so, &err);
	struct djn_gen_opts g = { .n_new = n_new, .temperature = 0, .stop_at_eos = false };
	int32_t ids[64];

	cr_assert_not_null(s, "%s", err.msg);
	ids[0] = 1;
	for (int j = 1; j < len; j++)
		ids[j] = 3 + (int32_t)((i * 131 + j * 37) % 500);
	cr_assert_eq(djn_session_start(s, ids, len, &g), DJN_OK, "%s", djn_session_errmsg(s));
	return s;
}

static int alone_tokens(int i, int len, int n_new, int32_t *tok)
{
	struct djn_session *s = started(i, len, n_new);
	int n;

	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE, "%s",
		     djn_session_errmsg(s));
	const int32_t *t = djn_session_tokens(s, &n, NULL);
	cr_assert_leq(n, MAX_TOK);
	memcpy(tok, t, sizeof(*tok) * (size_t)n);
	djn_session_free(s);
	return n;
}

static void same_as_alone(struct djn_session *s, int i, int len, int n_new)
{
	int32_t ref[MAX_TOK];
	int n_ref = alone_tokens(i, len, n_new, ref), n;
	const int32_t *t = djn_session_tokens(s, &n, NULL);

	cr_assert_eq(djn_session_state(s), DJN_RUN_DONE, "session %d: %s", i,
		     djn_session_errmsg(s));
	cr_assert_eq(n, n_ref, "session %d: %d tokens, %d alone", i, n, n_ref);
	for (int j = 0; j < n; j++)
		cr_assert_eq(t[j], ref[j], "session %d: token %d is %d, %d alone", i, j, t[j],
			     ref[j]);
}

static struct djn_sched *sched(enum djn_sched_order order, int max_batch, int aging)
{
	struct djn_err err = { 0 };
	struct djn_sched_opts o = { .policy = DJN_POLICY_SIGNAL, .order = order,
				    .max_batch = max_batch, .aging = aging,
				    .clock_ms = clock_of_test };
	struct djn_sched *q = djn_sched_new(be, &o, &err);

	cr_assert_not_null(q, "%s", err.msg);
	return q;
}

/* A (batch, no SLO), B (standard, 50 ms), C (interactive, 20 ms),
 * D (interactive, 30 ms), added in that order at t = 0, one-token prompts;
 * max_batch 2; the clock goes 10 ms a step.  Returns the sessions that ran
 * in each of n steps, as letters ("CD CD BC ..."). */
static void trace(enum djn_sched_order order, int aging, int n, char *out)
{
	static const struct djn_tenant t[4] = {
		{ "a", DJN_CLASS_BATCH, 0 },
		{ "b", DJN_CLASS_STANDARD, 50 },
		{ "c", DJN_CLASS_INTERACTIVE, 20 },
		{ "d", DJN_CLASS_INTERACTIVE, 30 },
	};
	struct djn_sched *q = sched(order, 2, aging);
	struct djn_session *s[4];
	long before[4] = { 0 };

	for (int i = 0; i < 4; i++)
		cr_assert_eq(djn_sched_add_as(q, s[i] = started(i, 1, 40), &t[i]), DJN_OK, "%s",
			     djn_sched_errmsg(q));
	out[0] = 0;
	for (int k = 0; k < n; k++) {
		now_ms += 10;
		cr_assert_eq(djn_sched_step(q, NULL), DJN_OK, "%s", djn_sched_errmsg(q));
		if (k)
			strcat(out, " ");
		for (int i = 0; i < 4; i++) {
			struct djn_member_info mi;
			cr_assert_eq(djn_sched_member(q, s[i], &mi), DJN_OK);
			if (mi.steps > before[i])
				strncat(out, &"ABCD"[i], 1);
			before[i] = mi.steps;
		}
	}
	for (int i = 0; i < 4; i++) {
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
}

Test(tenants, fcfs_takes_the_first_arrivals)
{
	char got[64];

	trace(DJN_ORDER_FCFS, 0, 8, got);
	cr_assert_str_eq(got, "AB AB AB AB AB AB AB AB");
}

Test(tenants, rr_serves_the_longest_unserved_first)
{
	char got[64];

	trace(DJN_ORDER_RR, 0, 8, got);
	cr_assert_str_eq(got, "AB CD AB CD AB CD AB CD");
}

/* aging 2: a class up every 2 steps waited; ties to the longest wait.  By
 * hand from the rule (eff = class - waited / 2, waited in brackets):
 *   0: A2(0) B1(0) C0 D0 -> CD        4: A0(4) B1(1) C0(0) D0(0) -> AC
 *   1: A2(1) B1(1)       -> CD        5: A2(0) B0(2) C0(1) D0(1)... -> BD
 *   2: A1(2) B0(2)       -> BC        6: A2(1) B1(0) C0(1) D0(0) -> CD
 *   3: A1(3) B1(0) D0(1) -> CD        7: A1(2) B1(1)             -> CD */
Test(tenants, priority_is_strict_with_aging)
{
	char got[64];

	trace(DJN_ORDER_PRIORITY, 2, 8, got);
	cr_assert_str_eq(got, "CD CD BC CD AC BD CD CD");
	trace(DJN_ORDER_PRIORITY, 1000, 4, got); /* no aging in sight: strict */
	cr_assert_str_eq(got, "CD CD CD CD");
}

/* EDF on next-token deadlines (last token + SLO), ties by class then
 * arrival; A has no SLO and comes after them all:
 *   t=10: C20 D30 B50 -> CD   (C due 30, D 40)   t=50: C60 D60 -> CD
 *   t=20: C30 D40 B50 -> CD                      t=60: C70 D80 B90 -> CD
 *   t=30: C40 D50=B50, D interactive -> CD       t=70: C80 D90=B90 -> CD
 *   t=40: C50=B50, C interactive -> BC (B due 90) t=80: C90=B90 -> BC */
Test(tenants, slo_is_earliest_deadline_first)
{
	char got[64];

	trace(DJN_ORDER_SLO, 0, 8, got);
	cr_assert_str_eq(got, "CD CD CD BC CD CD CD BC");
}

/* Order slo caps a step's rows to 80% of the tightest SLO by the step model
 * (here 1 ms + 0.5 ms a row, SLO 10 ms: 14 rows) while a session with an SLO
 * is in the scheduler, and for 20 SLOs after the last left (a request that
 * arrives must find the step in flight short); then a prompt takes the
 * whole budget again.  The first token of a run is its time to first
 * token: no violation, however late. */
Test(tenants, slo_cap_holds_after_the_last_slo_session_left)
{
	struct djn_sched *q = sched(DJN_ORDER_SLO, 8, 0);
	struct djn_step_model sm = { .base_ms = 1, .row_ms = 0.5, .n = 1 };
	struct djn_tenant tu = { "u", DJN_CLASS_INTERACTIVE, 10 }, tb = { "b", DJN_CLASS_BATCH, 0 };
	struct djn_step_info info;
	struct djn_member_info mi;
	struct djn_session *u = started(0, 1, 2), *b = started(1, 60, 2);

	djn_sched_set_step_model(q, &sm);
	cr_assert_eq(djn_sched_add_as(q, u, &tu), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_add_as(q, b, &tb), DJN_OK, "%s", djn_sched_errmsg(q));
	now_ms = 100; /* u's first token 100 ms after its add: its ttft, not late */
	cr_assert_eq(djn_sched_step(q, &info), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert_eq(info.n_rows, 14, "with u: %d rows", info.n_rows);
	now_ms += 5;
	djn_sched_set_step_model(q, &sm);
	cr_assert_eq(djn_sched_step(q, &info), DJN_OK);
	cr_assert_eq(djn_sched_member(q, u, &mi), DJN_OK);
	cr_assert_eq(mi.tokens, 2);
	cr_assert_eq(mi.violations, 0, "the first token counted as late");
	djn_sched_remove(q, u);
	now_ms += 150; /* 15 SLOs later: still capped */
	djn_sched_set_step_model(q, &sm);
	cr_assert_eq(djn_sched_step(q, &info), DJN_OK);
	cr_assert_eq(info.n_rows, 14, "after u left: %d rows", info.n_rows);
	now_ms += 300; /* past 20 SLOs: the whole budget */
	djn_sched_set_step_model(q, &sm);
	cr_assert_eq(djn_sched_step(q, &info), DJN_OK);
	cr_assert_gt(info.n_rows, 14, "long after u left: %d rows", info.n_rows);
	djn_sched_remove(q, b);
	djn_session_free(u);
	djn_session_free(b);
	djn_sched_free(q);
}

/* Three interactive sessions and one batch session, max_batch 2, aging 3:
 * the batch session runs at least once every 2 * aging + ceil(4 / 2) steps,
 * and every session's tokens are its tokens alone. */
Test(tenants, priority_never_starves_batch_work)
{
	struct djn_sched *q = sched(DJN_ORDER_PRIORITY, 2, 3);
	struct djn_session *s[4];
	const int bound = 2 * 3 + 2;
	int gap = 0, worst = 0, steps = 0;

	for (int i = 0; i < 4; i++) {
		struct djn_tenant t = { i ? "user" : "eval",
					i ? DJN_CLASS_INTERACTIVE : DJN_CLASS_BATCH, 0 };
		cr_assert_eq(djn_sched_add_as(q, s[i] = started(i, 3, 30), &t), DJN_OK);
	}
	while (djn_sched_phase(q, s[0]) == DJN_PHASE_COMPUTE) {
		struct djn_member_info mi;
		long before;
		cr_assert_eq(djn_sched_member(q, s[0], &mi), DJN_OK);
		before = mi.steps;
		cr_assert_eq(djn_sched_step(q, NULL), DJN_OK, "%s", djn_sched_errmsg(q));
		cr_assert_eq(djn_sched_member(q, s[0], &mi), DJN_OK);
		gap = mi.steps > before ? 0 : gap + 1;
		worst = gap > worst ? gap : worst;
		cr_assert_leq(gap, bound, "the batch session waited %d steps in a row", gap);
		cr_assert_lt(++steps, 1000);
	}
	cr_assert_geq(worst, 2 * 3, "it never had to wait for aging (%d)", worst);
	while (!djn_sched_step(q, NULL))
		;
	for (int i = 0; i < 4; i++) {
		same_as_alone(s[i], i, 3, 30);
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
}

/* Step model: 5 ms + 1 ms a row, max_batch 2.  Sessions with a 10 ms SLO:
 * one (6 ms) and two (7 ms) fit 80% of it; a third needs two steps of 7 ms
 * each for a token: refused, with a message that says who and why, and
 * nothing changes; a session with a loose SLO is refused for the others'. */
Test(tenants, slo_admission_refuses_clearly_and_loses_nothing)
{
	struct djn_sched *q = sched(DJN_ORDER_SLO, 2, 0);
	struct djn_step_model sm = { .base_ms = 5, .row_ms = 1, .n = 1 };
	struct djn_session *s[5];
	struct djn_tenant t = { "alice", DJN_CLASS_INTERACTIVE, 10 };

	djn_sched_set_step_model(q, &sm);
	cr_assert_float_eq(djn_sched_predict_ms(q, 2), 7.0, 1e-9);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(djn_sched_add_as(q, s[i] = started(i, 4, 12), &t), DJN_OK, "%s",
			     djn_sched_errmsg(q));
	t.name = "bob";
	s[2] = started(2, 4, 12);
	cr_assert_eq(djn_sched_add_as(q, s[2], &t), DJN_ERR_STATE);
	cr_assert_str_eq(djn_sched_errmsg(q),
			 "admission: tenant 'bob' (interactive, slo 10 ms) refused: predicted "
			 "token latency 14 ms (3 sessions with an slo; a step 5 ms + 1 ms a row + "
			 "a margin of 0 ms) is over 80% of its slo");
	t = (struct djn_tenant){ "carol", DJN_CLASS_STANDARD, 100 };
	cr_assert_eq(djn_sched_add_as(q, s[2], &t), DJN_ERR_STATE);
	cr_assert_str_eq(djn_sched_errmsg(q),
			 "admission: tenant 'carol' (standard, slo 100 ms) refused: predicted "
			 "token latency 14 ms (3 sessions with an slo; a step 5 ms + 1 ms a row + "
			 "a margin of 0 ms) is over 80% of the slo 10 ms of tenant 'alice'");
	cr_assert(!djn_sched_has(q, s[2]));
	cr_assert_eq(djn_session_state(s[2]), DJN_RUN_PAUSED);
	/* without an SLO it is admitted, and everyone gets its own tokens */
	t.slo_ms = 0;
	cr_assert_eq(djn_sched_add_as(q, s[2], &t), DJN_OK, "%s", djn_sched_errmsg(q));
	/* bad tenants */
	s[3] = started(3, 4, 12);
	t = (struct djn_tenant){ "two words", DJN_CLASS_BATCH, 0 };
	cr_assert_eq(djn_sched_add_as(q, s[3], &t), DJN_ERR_INVALID);
	cr_assert_str_eq(djn_sched_errmsg(q), "scheduler: tenant name 'two words' has a space "
					      "or control character at byte 3");
	t = (struct djn_tenant){ "x", DJN_CLASS_BATCH, -1 };
	cr_assert_eq(djn_sched_add_as(q, s[3], &t), DJN_ERR_INVALID);
	cr_assert(!djn_sched_has(q, s[3]));
	cr_assert_eq(djn_session_run(s[3], DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	while (!djn_sched_step(q, NULL))
		;
	for (int i = 0; i < 4; i++) {
		same_as_alone(s[i], i, 4, 12);
		if (i < 3)
			djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
}

/* Under slo with a KV term in the model, each row is charged its reads:
 * three batch sessions decoding at position ~61 and an interactive one
 * (SLO 20 ms) arriving.  Model: 5 ms + 0.01 ms a row + 100 ms a thousand
 * positions read; 80% of the SLO leaves 11 ms past the base: one batch row
 * (~6.2 ms) and the interactive prompt (0.11 ms) fit, a second batch row
 * does not.  Without the KV term the row cap (1100 rows) takes them all. */
static int rows_when_slo_arrives(double kv_ms)
{
	struct djn_sched *q = sched(DJN_ORDER_SLO, 8, 0);
	struct djn_step_model sm = { .base_ms = 5, .row_ms = 0.01, .kv_ms = kv_ms, .n = 1 };
	struct djn_tenant bt = { "eval", DJN_CLASS_BATCH, 0 }, ut = { "user", DJN_CLASS_INTERACTIVE, 20 };
	struct djn_step_info info;
	struct djn_session *s[4];

	djn_sched_set_step_model(q, &sm);
	cr_assert_float_eq(djn_sched_predict_kv_ms(q, 2, 1000), 5 + 0.02 + kv_ms, 1e-9);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(djn_sched_add_as(q, s[i] = started(i, 60, 20), &bt), DJN_OK, "%s",
			     djn_sched_errmsg(q));
	for (int k = 0; k < 2; k++) /* the prompts, then a decode step */
		cr_assert_eq(djn_sched_step(q, NULL), DJN_OK, "%s", djn_sched_errmsg(q));
	for (int i = 0; i < 3; i++)
		cr_assert_eq(djn_session_cursor(s[i]).n_rows, 1, "session %d is not decoding", i);
	djn_sched_set_step_model(q, &sm); /* the steps' times (0 ms, scripted) forgotten */
	cr_assert_eq(djn_sched_add_as(q, s[3] = started(3, 1, 4), &ut), DJN_OK, "%s",
		     djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_step(q, &info), DJN_OK, "%s", djn_sched_errmsg(q));
	struct djn_member_info mi;
	cr_assert_eq(djn_sched_member(q, s[3], &mi), DJN_OK);
	cr_assert_eq(mi.steps, 1, "the interactive prompt waited");
	while (!djn_sched_step(q, NULL))
		;
	for (int i = 0; i < 4; i++) {
		same_as_alone(s[i], i, i < 3 ? 60 : 1, i < 3 ? 20 : 4);
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
	return info.n_rows;
}

Test(tenants, slo_cap_charges_each_row_its_reads)
{
	cr_assert_eq(rows_when_slo_arrives(100), 2);
	cr_assert_eq(rows_when_slo_arrives(0), 4);
}

/* The row cap under slo keeps the tail of the model's over-runs free: an
 * interactive session (SLO 20.5 ms), the model 5 ms + 0.5 ms a row (16.4
 * ms of the SLO leave 22 rows); 64 steps as predicted leave the cap there;
 * 64 more of which every other one takes 4 ms longer shrink it, and by
 * the margin reported; with DJN_SLO_MARGIN=0 only the model learns.  Before
 * the session comes there is no cap, and steps that over-run then leave
 * the margin at 0. */
static int cap_after_over_runs(bool margin, double *margin_ms)
{
	struct djn_step_model sm = { .base_ms = 5, .row_ms = 0.5, .n = 1 }, got;
	struct djn_tenant ut = { "user", DJN_CLASS_INTERACTIVE, 20.5 };
	struct djn_session *u = started(0, 1, 4);
	double ms_left, row_ms, kv_ms;

	if (!margin)
		setenv("DJN_SLO_MARGIN", "0", 1);
	struct djn_sched *q = sched(DJN_ORDER_SLO, 8, 0);
	unsetenv("DJN_SLO_MARGIN");
	djn_sched_set_step_model(q, &sm);
	cr_assert_eq(djn_sched_row_cap(q, &ms_left, &row_ms, &kv_ms), 512, "a cap with no slo");
	for (int k = 0; k < 64; k++) {
		double t0 = now_ms;
		now_ms += 5 + 0.5 * 100 + 20;
		djn_sched_account(q, 100, 0, t0);
		now_ms += 100;
	}
	djn_sched_step_model(q, &got);
	cr_assert_float_eq(got.margin_ms, 0, 1e-9, "uncapped steps moved the margin");
	djn_sched_set_step_model(q, &sm);
	cr_assert_eq(djn_sched_add_as(q, u, &ut), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_row_cap(q, &ms_left, &row_ms, &kv_ms), 22);
	for (int k = 0; k < 128; k++) {
		int rows = k % 4 < 2 ? 4 : 12;
		double t0 = now_ms;
		now_ms += 5 + 0.5 * rows + (k >= 64 && k % 2 ? 4 : 0);
		djn_sched_account(q, rows, 0, t0);
		now_ms += 100; /* idle between steps: no gap in the model */
		if (k == 63) {
			djn_sched_step_model(q, &got);
			cr_assert_float_eq(got.margin_ms, 0, 1e-6);
			int c = djn_sched_row_cap(q, &ms_left, &row_ms, &kv_ms);
			cr_assert_eq(c, 22, "cap %d after steps as predicted", c);
		}
	}
	djn_sched_step_model(q, &got);
	*margin_ms = got.margin_ms;
	int cap = djn_sched_row_cap(q, &ms_left, &row_ms, &kv_ms);
	djn_sched_remove(q, u);
	djn_session_free(u);
	djn_sched_free(q);
	return cap;
}

Test(tenants, slo_cap_keeps_the_over_runs_free)
{
	double with_ms, without_ms;
	int with = cap_after_over_runs(true, &with_ms), without = cap_after_over_runs(false, &without_ms);

	cr_assert_float_eq(without_ms, 0, 1e-9);
	cr_assert(with_ms > 1 && with_ms <= 4, "margin %g ms", with_ms);
	cr_assert_lt(with, without, "cap %d with the margin, %d without", with, without);
	cr_assert_leq(without, 22);
}

/* The headroom is the share of the SLO a capped step takes: 20.5 ms at 0.9
 * leaves 18.45 - 5 ms, 26 rows of 0.5 ms (22 at the default 0.8); one over
 * 1 is refused at creation with the reason. */
Test(tenants, slo_headroom_sets_the_cap)
{
	struct djn_step_model sm = { .base_ms = 5, .row_ms = 0.5, .n = 1 };
	struct djn_tenant ut = { "user", DJN_CLASS_INTERACTIVE, 20.5 };
	struct djn_session *u = started(0, 1, 4);
	struct djn_err err = { 0 };
	double ms_left, row_ms, kv_ms;
	struct djn_sched_opts o = { .policy = DJN_POLICY_SIGNAL, .order = DJN_ORDER_SLO,
				    .max_batch = 8, .slo_headroom = 0.9,
				    .clock_ms = clock_of_test };
	struct djn_sched *q = djn_sched_new(be, &o, &err);

	cr_assert_not_null(q, "%s", err.msg);
	djn_sched_set_step_model(q, &sm);
	cr_assert_eq(djn_sched_add_as(q, u, &ut), DJN_OK, "%s", djn_sched_errmsg(q));
	int cap = djn_sched_row_cap(q, &ms_left, &row_ms, &kv_ms);
	cr_assert_eq(cap, 26, "cap %d at headroom 0.9", cap);
	djn_sched_remove(q, u);
	djn_session_free(u);
	djn_sched_free(q);

	o.slo_headroom = 1.5;
	cr_assert_null(djn_sched_new(be, &o, &err));
	cr_assert(strstr(err.msg, "headroom in (0, 1]"), "%s", err.msg);
}

/* A KV limit of about two sessions' caches and three sessions (batch,
 * standard, interactive): the batch one is parked first, the interactive
 * one never, and all of them finish with their tokens alone. */
Test(tenants, parking_takes_the_lowest_class_and_keeps_tokens)
{
	static const enum djn_class cls[3] = { DJN_CLASS_BATCH, DJN_CLASS_STANDARD,
					       DJN_CLASS_INTERACTIVE };
	size_t saved = be->data_limit;
	struct djn_sched *q = sched(DJN_ORDER_PRIORITY, 0, 0);
	struct djn_session *s[3];
	long parked[3] = { 0 };
	int steps = 0;

	/* 40-token prompts, 60 new: 100 positions, 7 pages a session */
	be->data_limit = 12 * 16 * (size_t)model->cfg.n_layer * 2 * model->cfg.n_kv_head *
			 model->cfg.head_dim * djn_kv_elem_bytes(model->kv_dtype);
	for (int i = 0; i < 3; i++) {
		struct djn_tenant t = { "t", cls[i], 0 };
		cr_assert_eq(djn_sched_add_as(q, s[i] = started(i, 40, 60), &t), DJN_OK);
	}
	while (!djn_sched_step(q, NULL)) {
		for (int i = 0; i < 3; i++) {
			struct djn_member_info mi;
			cr_assert_eq(djn_sched_member(q, s[i], &mi), DJN_OK);
			parked[i] += mi.parked;
			cr_assert_neq(mi.phase, DJN_PHASE_STOPPED, "session %d failed: %s", i,
				      djn_session_errmsg(s[i]));
		}
		cr_assert_lt(++steps, 2000);
	}
	cr_assert_gt(parked[0], 0, "the batch session was never parked");
	cr_assert_eq(parked[2], 0, "the interactive session was parked %ld steps", parked[2]);
	for (int i = 0; i < 3; i++) {
		same_as_alone(s[i], i, 40, 60);
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
	be->data_limit = saved;
}

/* Memory pressure as the experiment has it (policy none, a KV limit of three
 * sessions' caches, sixteen requests handed over at once): a started
 * session holds no arena and no pages before it runs; a session run in a
 * batch holds only its head's tensors, so that all of them together never
 * hold one prefill chunk's arena (but for a batch of one, which runs
 * alone); the sessions that do not fit wait, and
 * all complete with their tokens alone. */
Test(tenants, waiting_sessions_hold_no_arena_and_all_complete)
{
	enum { N = 16, LEN = 40, NEW = 24 };
	size_t saved = be->data_limit;
	struct djn_err err = { 0 };
	struct djn_sched_opts o = { .policy = DJN_POLICY_NONE, .max_batch = 8,
				    .clock_ms = clock_of_test };
	struct djn_sched *q = djn_sched_new(be, &o, &err);
	struct djn_session *s[N];
	struct djn_mem_info mi;
	int steps = 0;

	cr_assert_not_null(q, "%s", err.msg);
	/* one prefill chunk's arena, laid out by a session alone */
	struct djn_session *one = started(0, LEN, NEW);
	djn_session_mem(one, &mi);
	cr_assert_eq(mi.stack_bytes, 0, "a started session holds %zu arena bytes", mi.stack_bytes);
	cr_assert_eq(djn_session_run(one, DJN_RUN_STEP, 1), DJN_STOP_STEP, "%s",
		     djn_session_errmsg(one));
	djn_session_mem(one, &mi);
	size_t prefill = mi.stack_bytes;
	cr_assert_gt(prefill, 0);
	djn_session_free(one);

	/* 128 positions a session (the context), 8 pages; three fit */
	be->data_limit = 3 * 128 * (size_t)model->cfg.n_layer * 2 * model->cfg.n_kv_head *
			 model->cfg.head_dim * djn_kv_elem_bytes(model->kv_dtype);
	size_t data0 = be->data_bytes;
	for (int i = 0; i < N; i++) {
		struct djn_tenant t = { "eval", DJN_CLASS_BATCH, 0 };
		cr_assert_eq(djn_sched_add_as(q, s[i] = started(i, LEN, NEW), &t), DJN_OK, "%s",
			     djn_sched_errmsg(q));
		djn_session_mem(s[i], &mi);
		cr_assert_eq(mi.stack_bytes, 0, "session %d holds %zu arena bytes before it runs", i,
			     mi.stack_bytes);
	}
	cr_assert_eq(be->data_bytes, data0, "started sessions took %zu bytes of KV pages",
		     be->data_bytes - data0);
	/* as the experiment does: a finished request leaves (its pages with it) */
	int done = 0;
	while (!djn_sched_step(q, NULL)) {
		size_t stack = 0, most = 0;
		for (int i = 0; i < N; i++) {
			if (!s[i])
				continue;
			struct djn_member_info m;
			cr_assert_eq(djn_sched_member(q, s[i], &m), DJN_OK);
			cr_assert_neq(m.phase, DJN_PHASE_STOPPED, "session %d failed: %s", i,
				      djn_session_errmsg(s[i]));
			djn_session_mem(s[i], &mi);
			stack += mi.stack_bytes;
			most = mi.stack_bytes > most ? mi.stack_bytes : most;
			cr_assert(m.phase != DJN_PHASE_QUEUED || mi.stack_bytes == 0,
				  "session %d waits holding %zu arena bytes", i, mi.stack_bytes);
		}
		/* a batch of one runs alone, in its own arena: all the others
		 * together hold less than one prefill chunk's */
		cr_assert_lt(stack - most, prefill,
			     "step %d: the sessions hold %zu arena bytes, one prefill chunk %zu",
			     steps, stack - most, prefill);
		cr_assert_leq(be->data_bytes, be->data_limit);
		for (int i = 0; i < N; i++) {
			if (!s[i] || djn_session_state(s[i]) != DJN_RUN_DONE)
				continue;
			same_as_alone(s[i], i, LEN, NEW);
			djn_sched_remove(q, s[i]);
			djn_session_free(s[i]);
			s[i] = NULL;
			done++;
		}
		cr_assert_lt(++steps, 2000);
	}
	cr_assert_eq(done, N, "%d of %d completed: %s", done, N, djn_sched_errmsg(q));
	djn_sched_free(q);
	be->data_limit = saved;
}

/* Many decoding sessions hold little: an arena far larger than the chunk
 * ahead (a prefill's) is given back to the backend; one a little larger
 * stays the session's. */
Test(tenants, a_prefill_arena_is_given_back_for_decode)
{
	struct djn_arena a;
	struct djn_err err = { 0 };
	size_t big = (size_t)32 << 20, small = (size_t)1 << 20;

	cr_assert_eq(djn_arena_init(&a, be, big, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_arena_fit(&a, big / 4, &err), DJN_OK);
	cr_assert_eq(a.cap, big, "an arena 4 times the need is kept");
	cr_assert_eq(djn_arena_fit(&a, small, &err), DJN_OK);
	cr_assert_eq(a.cap, small, "an arena 32 times the need is given back");
	cr_assert_not_null(djn_arena_floats(&a, small / sizeof(float)));
	cr_assert_eq(djn_arena_fit(&a, 2 * small, &err), DJN_OK);
	cr_assert_eq(a.cap, 2 * small, "it grows again");
	djn_arena_release(&a);
}

/* An arena given back is kept on the backend and taken by the next arena
 * it suits (no device allocation or free in the step loop); one far
 * larger than the need is not. */
Test(tenants, arenas_given_back_are_reused)
{
	struct djn_arena a, b, c;
	struct djn_err err = { 0 };
	size_t big = (size_t)64 << 20, small = (size_t)1 << 20;

	djn_backend_trim(be);
	cr_assert_eq(djn_arena_init(&a, be, small, &err), DJN_OK, "%s", err.msg);
	char *was = a.base;
	djn_arena_release(&a);
	cr_assert_eq(be->n_kept, 1);
	cr_assert_eq(djn_arena_init(&b, be, small / 2, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(b.base, was, "the kept arena is taken");
	cr_assert_eq(b.cap, small, "with the size it has");
	cr_assert_eq(be->n_kept, 0);
	cr_assert_eq(djn_arena_fit(&b, big, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(be->n_kept, 1, "the small one is kept when the arena grows");
	cr_assert_eq(djn_arena_fit(&b, small, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(b.base, was, "shrinking takes the small one back");
	cr_assert_eq(be->n_kept, 1);
	/* the big one kept is far too large for a 1 MiB arena */
	cr_assert_eq(djn_arena_init(&c, be, small, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(c.cap, small);
	cr_assert_eq(be->n_kept, 1);
	djn_arena_release(&b);
	djn_arena_release(&c);
	cr_assert_eq(be->n_kept, 3);
	djn_backend_trim(be);
	cr_assert_eq(be->n_kept, 0);
}
