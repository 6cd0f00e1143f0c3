/* test-sched.c - the scheduler on stories260K (CPU): batched steps give each
 * session the tokens and logits it gets alone, bit for bit; debugging one
 * session of a batch; steering isolation; IO_WAIT under every policy. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/sched.h"
#include "djinn/vmu.h"

static struct djn_model *model;
static struct djn_backend *be;

static void setup(void)
{
	struct djn_err err = { 0 };

	model = djn_model_load("models/stories260K.bin", "models/tok512.bin", &err);
	cr_assert_not_null(model, "%s", err.msg);
	const char *dev = getenv("DJINN_TEST_DEVICE");
	be = djn_backend_new(dev ? dev : "cpu", 2, &err);
	cr_assert_not_null(be, "%s", err.msg);
}

static void teardown(void)
{
	djn_model_unref(model);
	djn_backend_free(be);
}

TestSuite(sched, .init = setup, .fini = teardown);

#define N_AGENTS 6
#define MAX_TOK 160

/* Mixed prompt lengths: 1 to 41 tokens, one longer than a step's budget. */
static int prompt(int i, int32_t *ids)
{
	static const int len[N_AGENTS] = { 5, 1, 41, 12, 3, 27 };
	ids[0] = 1;
	for (int j = 1; j < len[i]; j++)
		ids[j] = 3 + (int32_t)((i * 131 + j * 37) % 500);
	return len[i];
}

static bool on_cpu(void)
{
	const char *dev = getenv("DJINN_TEST_DEVICE");
	return !dev || !strcmp(dev, "cpu");
}

static struct djn_gen_opts gen(int i)
{
	struct djn_gen_opts g = { .n_new = 20 + 7 * i, .temperature = 0, .stop_at_eos = false };
	/* one samples, seeded, where batched and alone agree to the bit: on a
	 * GPU a batch's matmuls round otherwise than one row's, and a seeded
	 * draw that falls within that of a boundary of the distribution picks
	 * the neighbouring token (seen on the H100 with an f16 cache), so there
	 * it decodes greedily like the others */
	if (i == 3 && on_cpu()) {
		g.temperature = 0.8f;
		g.top_p = 0.9f;
		g.seed = 42;
	}
	return g;
}

static struct djn_session *started(int i)
{
	struct djn_err err = { 0 };
	/* 128 positions: 8 pages, what policy NONE reserves for a run */
	struct djn_session_opts so = { .max_ctx = 128 };
	struct djn_session *s = djn_session_new(model, be, &so, &err);
	int32_t ids[64];
	struct djn_gen_opts g = gen(i);

	cr_assert_not_null(s, "%s", err.msg);
	cr_assert_eq(djn_session_start(s, ids, prompt(i, ids), &g), DJN_OK, "%s",
		     djn_session_errmsg(s));
	return s;
}

struct result {
	int n;
	int32_t tok[MAX_TOK];
	float *logits; /* the last step's */
};

static void take(struct djn_session *s, struct result *r)
{
	const int32_t *t = djn_session_tokens(s, &r->n, NULL);
	int v = model->cfg.vocab_size;

	cr_assert_leq(r->n, MAX_TOK);
	memcpy(r->tok, t, sizeof(int32_t) * (size_t)r->n);
	r->logits = malloc(sizeof(float) * (size_t)v);
	cr_assert_eq(djn_session_read(s, djn_site_count(&model->cfg) - 1, r->logits, (size_t)v),
		     DJN_OK, "%s", djn_session_errmsg(s));
}

static void alone(int i, struct result *r)
{
	struct djn_session *s = started(i);
	enum djn_stop why = djn_session_run(s, DJN_RUN_CONTINUE, 1);

	cr_assert_eq(why, DJN_STOP_DONE, "%s", djn_session_errmsg(s));
	take(s, r);
	djn_session_free(s);
}

static void same(const struct result *a, const struct result *b, int i)
{
	cr_assert_eq(a->n, b->n, "agent %d: %d tokens batched, %d alone", i, a->n, b->n);
	for (int j = 0; j < a->n; j++)
		cr_assert_eq(a->tok[j], b->tok[j], "agent %d: token %d is %d batched, %d alone", i, j,
			     a->tok[j], b->tok[j]);
	/* bit for bit on the CPU; on a GPU a batch's matmuls may sum in
	 * another order than one row's: within 1e-4 of the largest logit
	 * (2e-3 with an f16 KV cache) */
	if (on_cpu()) {
		cr_assert_eq(memcmp(a->logits, b->logits,
				    sizeof(float) * (size_t)model->cfg.vocab_size), 0,
			     "agent %d: last logits differ", i);
		return;
	}
	float big = 0, diff = 0;
	for (int k = 0; k < model->cfg.vocab_size; k++) {
		big = fmaxf(big, fabsf(b->logits[k]));
		diff = fmaxf(diff, fabsf(a->logits[k] - b->logits[k]));
	}
	/* an f16 cache: a k or v a hair apart may round to the neighbouring
	 * half (2^-11 relative), so the tolerance is f16's */
	float tol = model->kv_dtype == DJN_DTYPE_F16 ? 2e-3f : 1e-4f;
	cr_assert_leq(diff, tol * big, "agent %d: logits differ by %g (largest %g)", i, diff, big);
}

static void release(struct result *r, int n)
{
	for (int i = 0; i < n; i++)
		free(r[i].logits);
}

static struct djn_sched *sched(enum djn_sched_policy p, int budget)
{
	struct djn_err err = { 0 };
	struct djn_sched_opts o = { .policy = p, .token_budget = budget };
	struct djn_sched *q = djn_sched_new(be, &o, &err);

	cr_assert_not_null(q, "%s", err.msg);
	return q;
}

static void batched_equals_alone(void)
{
	struct result ref[N_AGENTS], got[N_AGENTS];
	struct djn_session *s[N_AGENTS];
	struct djn_sched *q = sched(DJN_POLICY_SIGNAL, 16);
	struct djn_step_info info;
	int steps = 0, most = 0;

	for (int i = 0; i < N_AGENTS; i++)
		alone(i, &ref[i]);
	/* four at first, two join later; agent 1 leaves for a while and runs
	 * alone, then joins again */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(djn_sched_add(q, s[i] = started(i)), DJN_OK);
	for (;;) {
		if (steps == 5)
			cr_assert_eq(djn_sched_add(q, s[4] = started(4)), DJN_OK);
		if (steps == 9)
			cr_assert_eq(djn_sched_add(q, s[5] = started(5)), DJN_OK);
		if (steps == 12) {
			cr_assert_eq(djn_sched_remove(q, s[1]), DJN_OK);
			cr_assert_eq(djn_session_run(s[1], DJN_RUN_UNTIL_POS,
						     djn_session_cursor(s[1]).pos + 3),
				     DJN_STOP_STEP, "%s", djn_session_errmsg(s[1]));
			cr_assert_eq(djn_sched_add(q, s[1]), DJN_OK);
		}
		if (djn_sched_step(q, &info))
			break;
		steps++;
		if (info.n_batched > most)
			most = info.n_batched;
		/* the budget holds: the 41-token prompt went in chunks */
		cr_assert_leq(info.n_rows, 16);
		cr_assert_eq(info.n_alone, 0);
	}
	cr_assert_geq(most, 5, "at most %d sessions were batched", most);
	for (int i = 0; i < N_AGENTS; i++) {
		cr_assert_eq(djn_sched_phase(q, s[i]), DJN_PHASE_DONE);
		take(s[i], &got[i]);
		same(&got[i], &ref[i], i);
	}
	for (int i = 0; i < N_AGENTS; i++) {
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
	release(ref, N_AGENTS);
	release(got, N_AGENTS);
}

Test(sched, batched_equals_alone_with_joins_and_leaves) { batched_equals_alone(); }

/* A batch-invariant backend (CUDA with DJN_SKINNY=1; here the CPU told it
 * is one up to 8 rows, which its batch path is anyway): a session alone in
 * the scheduler runs through the batch path too, every step a pass of one
 * row or one chunk of at most 8 rows (the budget is 16), with the tokens
 * and logits of the session alone. */
Test(sched, batch_invariant_backend_runs_a_batch_of_one_as_a_batch)
{
	struct result ref, got;
	struct djn_sched *q = sched(DJN_POLICY_SIGNAL, 16);
	struct djn_sched_stats st;
	struct djn_step_info info;
	struct djn_session *s;
	int was = be->invariant_rows;

	alone(2, &ref); /* a 41-token prompt */
	be->invariant_rows = 8;
	cr_assert_eq(djn_sched_add(q, s = started(2)), DJN_OK);
	int steps = 0, most = 0;
	while (!djn_sched_step(q, &info)) {
		steps++;
		cr_assert_eq(info.n_batched, 1);
		cr_assert_leq(info.n_rows, 8);
		most = info.n_rows > most ? info.n_rows : most;
	}
	cr_assert_eq(most, 8, "the prompt went in chunks of at most %d rows", most);
	be->invariant_rows = was;
	djn_sched_stats(q, &st);
	cr_assert_eq(st.batch_passes, steps, "%ld batch passes in %d steps", st.batch_passes,
		     steps);
	cr_assert_eq(djn_sched_phase(q, s), DJN_PHASE_DONE);
	take(s, &got);
	same(&got, &ref, 2);
	djn_sched_remove(q, s);
	djn_session_free(s);
	djn_sched_free(q);
	release(&ref, 1);
	release(&got, 1);

	/* not batch-invariant: a batch of one is the session alone */
	q = sched(DJN_POLICY_SIGNAL, 16);
	cr_assert_eq(djn_sched_add(q, s = started(0)), DJN_OK);
	while (!djn_sched_step(q, &info))
		;
	djn_sched_stats(q, &st);
	cr_assert_eq(st.batch_passes, 0);
	djn_sched_remove(q, s);
	djn_session_free(s);
	djn_sched_free(q);
}

/* An f16 KV cache: batched still equals alone (both round k and v alike);
 * the dtype cannot change under a live session. */
Test(sched, f16_kv_batched_equals_alone)
{
	struct djn_err err = { 0 };

	cr_assert_eq(djn_model_set_kv_dtype(model, DJN_DTYPE_F16, &err), DJN_OK, "%s", err.msg);
	batched_equals_alone();
	struct djn_session *s = started(0);
	cr_assert_eq(djn_model_set_kv_dtype(model, DJN_DTYPE_F32, &err), DJN_ERR_STATE);
	cr_assert(strstr(err.msg, "free its sessions"), "message: %s", err.msg);
	cr_assert_eq(djn_model_set_kv_dtype(model, DJN_DTYPE_BF16, &err), DJN_ERR_INVALID);
	struct djn_mem_info half, full;
	djn_session_mem(s, &half);
	djn_session_free(s);
	cr_assert_eq(djn_model_set_kv_dtype(model, DJN_DTYPE_F32, &err), DJN_OK, "%s", err.msg);
	s = started(0);
	djn_session_mem(s, &full);
	cr_assert_eq(2 * half.data_page_bytes, full.data_page_bytes, "f16 pages of %zu bytes, f32 %zu",
		     half.data_page_bytes, full.data_page_bytes);
	djn_session_free(s);
}

Test(sched, breakpoint_in_one_session_while_three_run)
{
	struct result ref[4], got[4];
	struct djn_session *s[4];
	struct djn_sched *q = sched(DJN_POLICY_SIGNAL, 0);
	struct djn_step_info info;
	int site = djn_site_find(&model->cfg, "L2.resid_post"), hits = 0, others_moved = 0;

	for (int i = 0; i < 4; i++)
		alone(i, &ref[i]);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(djn_sched_add(q, s[i] = started(i)), DJN_OK);
	cr_assert_gt(djn_bp_add(s[2], "L2.resid_post", "pos >= 45 and pos < 48", false), 0);
	while (!djn_sched_step(q, &info)) {
		if (djn_sched_phase(q, s[2]) != DJN_PHASE_STOPPED)
			continue;
		/* stopped at its site, with its state intact; the others went on */
		struct djn_cursor c = djn_session_cursor(s[2]);
		cr_assert_eq(c.site, site);
		cr_assert(c.pos >= 45 && c.pos < 48, "stopped at pos %d", c.pos);
		hits++;
		int before = djn_session_cursor(s[0]).pos;
		for (int k = 0; k < 3 && !djn_sched_step(q, &info); k++)
			;
		cr_assert_eq(djn_sched_phase(q, s[2]), DJN_PHASE_STOPPED);
		cr_assert_eq(djn_session_cursor(s[2]).pos, c.pos, "the stopped session moved");
		if (djn_session_cursor(s[0]).pos > before ||
		    djn_sched_phase(q, s[0]) == DJN_PHASE_DONE)
			others_moved++;
		/* inspect, then let it go */
		struct djn_stats st;
		cr_assert_eq(djn_session_stats(s[2], site, 0, 0, &st), DJN_OK, "%s",
			     djn_session_errmsg(s[2]));
		cr_assert_eq(djn_sched_resume(q, s[2]), DJN_OK, "%s", djn_sched_errmsg(q));
	}
	cr_assert_eq(hits, 3);
	cr_assert_eq(others_moved, 3);
	for (int i = 0; i < 4; i++) {
		take(s[i], &got[i]);
		same(&got[i], &ref[i], i);
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
	release(ref, 4);
	release(got, 4);
}

Test(sched, steering_one_session_never_leaks)
{
	struct result ref[4], got[4], steered;
	struct djn_session *s[4];
	struct djn_sched *q = sched(DJN_POLICY_LRU, 0);

	for (int i = 0; i < 4; i++)
		alone(i, &ref[i]);
	/* agent 0 steered, alone */
	struct djn_session *a = started(0);
	cr_assert_gt(djn_steer_add(a, "L1.resid_post", DJN_STEER_SCALE, NULL, 0, 0.25f, NULL, 0,
				   true), 0);
	cr_assert_eq(djn_session_run(a, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	take(a, &steered);
	djn_session_free(a);
	cr_assert(memcmp(steered.tok, ref[0].tok, sizeof(int32_t) * (size_t)steered.n) != 0,
		  "the steer changed nothing: the test would prove nothing");

	for (int i = 0; i < 4; i++)
		cr_assert_eq(djn_sched_add(q, s[i] = started(i)), DJN_OK);
	cr_assert_gt(djn_steer_add(s[0], "L1.resid_post", DJN_STEER_SCALE, NULL, 0, 0.25f, NULL,
				   0, true), 0);
	while (!djn_sched_step(q, NULL))
		;
	take(s[0], &got[0]);
	same(&got[0], &steered, 0);
	for (int i = 1; i < 4; i++) {
		take(s[i], &got[i]);
		same(&got[i], &ref[i], i);
	}
	for (int i = 0; i < 4; i++) {
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
	release(ref, 4);
	release(got, 4);
	release(&steered, 1);
}

/* Agents that wait on a tool every 6 tokens, for 2 steps, under a KV limit
 * that holds about two of them: every policy, the same tokens as alone. */
static void agents_under(enum djn_sched_policy p)
{
	struct result ref[N_AGENTS], got[N_AGENTS];
	struct djn_session *s[N_AGENTS];
	struct djn_sched *q;
	int wait_until[N_AGENTS] = { 0 }, last_gen[N_AGENTS] = { 0 }, steps = 0;
	size_t saved = be->data_limit;
	struct djn_sched_stats st;

	for (int i = 0; i < N_AGENTS; i++)
		alone(i, &ref[i]);
	be->data_limit = 12 * 16 * (size_t)model->cfg.n_layer * 2 *
			 model->cfg.n_kv_head * model->cfg.head_dim * djn_kv_elem_bytes(model->kv_dtype);
	q = sched(p, 32);
	for (int i = 0; i < N_AGENTS; i++)
		cr_assert_eq(djn_sched_add(q, s[i] = started(i)), DJN_OK, "%s", djn_sched_errmsg(q));
	bool finished[N_AGENTS] = { false };
	for (;;) {
		for (int i = 0; i < N_AGENTS; i++) {
			if (finished[i])
				continue;
			enum djn_phase ph = djn_sched_phase(q, s[i]);
			int n, np;
			if (ph == DJN_PHASE_DONE) { /* its pages go: others may be admitted */
				finished[i] = true;
				djn_sched_remove(q, s[i]);
				continue;
			}
			djn_session_tokens(s[i], &n, &np);
			if (ph == DJN_PHASE_IO_WAIT && steps >= wait_until[i])
				cr_assert_eq(djn_sched_resume(q, s[i]), DJN_OK, "%s",
					     djn_sched_errmsg(q));
			else if (ph == DJN_PHASE_COMPUTE && n - np >= last_gen[i] + 6 &&
				 djn_session_cursor(s[i]).site == -1) {
				last_gen[i] = n - np;
				cr_assert_eq(djn_sched_io_wait(q, s[i]), DJN_OK, "%s",
					     djn_sched_errmsg(q));
				wait_until[i] = steps + 2;
			}
		}
		enum djn_status rc = djn_sched_step(q, NULL);
		bool left = false;
		for (int i = 0; i < N_AGENTS; i++)
			left = left || !finished[i];
		if (rc && !left)
			break;
		steps++;
		cr_assert_lt(steps, 2000, "the agents never finish");
	}
	djn_sched_stats(q, &st);
	for (int i = 0; i < N_AGENTS; i++) {
		cr_assert(finished[i] && djn_session_state(s[i]) == DJN_RUN_DONE, "agent %d: %s", i,
			  djn_session_errmsg(s[i]));
		take(s[i], &got[i]);
		same(&got[i], &ref[i], i);
	}
	if (p == DJN_POLICY_SIGNAL)
		cr_assert_gt(st.swaps_out, 0);
	if (p == DJN_POLICY_RECOMPUTE)
		cr_assert_gt(st.recomputes, 0);
	if (p == DJN_POLICY_LRU)
		cr_assert_gt(st.swaps_in, 0, "the limit never made room");
	if (p == DJN_POLICY_NONE) /* admission keeps every admitted cache in */
		cr_assert_eq(st.swaps_out + st.swaps_in, 0, "none swapped %ld out, %ld in",
			     st.swaps_out, st.swaps_in);
	for (int i = 0; i < N_AGENTS; i++)
		djn_session_free(s[i]);
	djn_sched_free(q);
	be->data_limit = saved;
	release(ref, N_AGENTS);
	release(got, N_AGENTS);
}

Test(sched, io_wait_signal) { agents_under(DJN_POLICY_SIGNAL); }
Test(sched, io_wait_lru) { agents_under(DJN_POLICY_LRU); }
Test(sched, io_wait_recompute) { agents_under(DJN_POLICY_RECOMPUTE); }
Test(sched, io_wait_none) { agents_under(DJN_POLICY_NONE); }

/* Swapped out and back, and recomputed, in halves: tokens as alone. */
static void f16_agents_under(enum djn_sched_policy p)
{
	struct djn_err err = { 0 };

	cr_assert_eq(djn_model_set_kv_dtype(model, DJN_DTYPE_F16, &err), DJN_OK, "%s", err.msg);
	agents_under(p);
	cr_assert_eq(djn_model_set_kv_dtype(model, DJN_DTYPE_F32, &err), DJN_OK, "%s", err.msg);
}

Test(sched, f16_kv_io_wait_signal) { f16_agents_under(DJN_POLICY_SIGNAL); }
Test(sched, f16_kv_io_wait_recompute) { f16_agents_under(DJN_POLICY_RECOMPUTE); }

/* io_wait under signal does not wait for its copies: the device pages go
 * at the next step (when the copies are done), and a resume that comes
 * first takes them back as they were; either way the tokens are those of
 * the session alone. */
Test(sched, signal_swap_out_is_asynchronous)
{
	struct result ref[2], got[2];
	struct djn_sched *q = sched(DJN_POLICY_SIGNAL, 0);
	struct djn_session *s[2];

	for (int i = 0; i < 2; i++) {
		alone(i, &ref[i]);
		cr_assert_eq(djn_sched_add(q, s[i] = started(i)), DJN_OK);
	}
	for (int k = 0; k < 6; k++)
		cr_assert_eq(djn_sched_step(q, NULL), DJN_OK, "%s", djn_sched_errmsg(q));
	size_t held = be->data_bytes;
	struct djn_mem_info mi;
	djn_session_mem(s[0], &mi);
	/* resumed before a step: the pages never left */
	cr_assert_eq(djn_sched_io_wait(q, s[0]), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert(djn_session_swapped(s[0]));
	cr_assert_eq(be->data_bytes, held, "the pages went before the copies were seen done");
	cr_assert_eq(djn_sched_resume(q, s[0]), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert(!djn_session_swapped(s[0]));
	cr_assert_eq(be->data_bytes, held);
	/* a step between: the pages go, and come back on resume */
	cr_assert_eq(djn_sched_io_wait(q, s[0]), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_step(q, NULL), DJN_OK, "%s", djn_sched_errmsg(q));
	/* (the other session may have taken one more page in that step) */
	cr_assert_leq(be->data_bytes + mi.data_bytes, held + mi.data_page_bytes,
		      "the swapped session's %zu bytes of pages are still on the device",
		      mi.data_bytes);
	cr_assert_gt(mi.data_bytes, 0);
	cr_assert_eq(djn_sched_resume(q, s[0]), DJN_OK, "%s", djn_sched_errmsg(q));
	while (!djn_sched_step(q, NULL))
		;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(djn_sched_phase(q, s[i]), DJN_PHASE_DONE);
		take(s[i], &got[i]);
		same(&got[i], &ref[i], i);
		djn_sched_remove(q, s[i]);
		djn_session_free(s[i]);
	}
	djn_sched_free(q);
	release(ref, 2);
	release(got, 2);
}

Test(sched, free_while_swapped_out)
{
	struct djn_sched *q = sched(DJN_POLICY_SIGNAL, 0);
	struct djn_session *a = started(0), *b = started(1);

	cr_assert_eq(djn_sched_add(q, a), DJN_OK);
	cr_assert_eq(djn_sched_add(q, b), DJN_OK);
	for (int k = 0; k < 8; k++)
		cr_assert_eq(djn_sched_step(q, NULL), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_io_wait(q, a), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert(djn_session_swapped(a));
	cr_assert_eq(djn_sched_remove(q, a), DJN_OK);
	djn_session_free(a);
	while (!djn_sched_step(q, NULL))
		;
	cr_assert_eq(djn_sched_phase(q, b), DJN_PHASE_DONE);
	djn_sched_remove(q, b);
	djn_session_free(b);
	djn_sched_free(q);
}

Test(sched, bad_calls_say_why_and_lose_nothing)
{
	struct djn_sched *q = sched(DJN_POLICY_SIGNAL, 0);
	struct djn_session *a = started(0), *b = started(1);
	struct djn_err err = { 0 };
	struct djn_sched_opts bad = { .policy = DJN_POLICY_SIGNAL, .token_budget = -1 };

	cr_assert_null(djn_sched_new(be, &bad, &err));
	cr_assert(strstr(err.msg, "budget"), "%s", err.msg);
	cr_assert_eq(djn_sched_add(q, a), DJN_OK);
	cr_assert_eq(djn_sched_add(q, a), DJN_ERR_INVALID);
	cr_assert(strstr(djn_sched_errmsg(q), "already"), "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_resume(q, a), DJN_ERR_STATE);
	cr_assert_str_eq(djn_sched_errmsg(q), "resume: the session is compute, not waiting or stopped");
	cr_assert_eq(djn_session_extend(a, NULL, 0, 0), DJN_ERR_INVALID);
	cr_assert(strstr(djn_session_errmsg(a), "at least 1"), "%s", djn_session_errmsg(a));
	cr_assert_eq(djn_sched_io_wait(q, b), DJN_ERR_NOTFOUND);
	cr_assert_str_eq(djn_sched_errmsg(q), "io_wait: the session is not scheduled");
	cr_assert_eq(djn_sched_io_wait(q, a), DJN_OK);
	cr_assert_eq(djn_sched_io_wait(q, a), DJN_ERR_STATE);
	cr_assert(strstr(djn_sched_errmsg(q), "io_wait"), "%s", djn_sched_errmsg(q));
	/* nothing else is runnable: the step says so; a is still waiting */
	cr_assert_eq(djn_sched_step(q, NULL), DJN_ERR_STATE);
	cr_assert_eq(djn_sched_phase(q, a), DJN_PHASE_IO_WAIT);
	cr_assert_eq(djn_sched_resume(q, a), DJN_OK);
	while (!djn_sched_step(q, NULL))
		;
	/* a finished turn may wait on a tool; not extended, it stays done */
	cr_assert_eq(djn_sched_io_wait(q, a), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_phase(q, a), DJN_PHASE_IO_WAIT);
	cr_assert_eq(djn_sched_resume(q, a), DJN_OK, "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_phase(q, a), DJN_PHASE_DONE);
	/* a finished session cannot join */
	cr_assert_eq(djn_sched_remove(q, a), DJN_OK);
	cr_assert_eq(djn_sched_add(q, a), DJN_ERR_STATE);
	cr_assert(strstr(djn_sched_errmsg(q), "start one"), "%s", djn_sched_errmsg(q));
	cr_assert_eq(djn_sched_remove(q, a), DJN_ERR_NOTFOUND);
	djn_session_free(a);
	djn_session_free(b);
	djn_sched_free(q);
}

/* A page table that lives apart from the host's (as on a GPU): the CPU
 * backend with host_memory off, so the KV cache keeps a second table. */
Test(sched, kv_table_complete_after_a_reserve_that_ran_out)
{
	struct djn_err err = { 0 };
	struct djn_backend *cpu = djn_backend_cpu_new(1, &err);
	struct djn_kv kv;
	size_t saved;

	cr_assert_not_null(cpu, "%s", err.msg);
	cpu->host_memory = false;
	cr_assert_eq(djn_kv_init(&kv, cpu, 2, 8, 4, 64, DJN_DTYPE_F32, &err), DJN_OK, "%s", err.msg);
	cr_assert(kv.dev_table != kv.host_table);
	saved = cpu->data_limit;
	/* room for 3 of the 5 pages asked: it fails with 3 taken ... */
	cpu->data_limit = 3 * djn_kv_page_bytes(&kv);
	cr_assert_eq(djn_kv_reserve(&kv, 20, &err), DJN_ERR_NOMEM);
	cr_assert_eq(kv.view.n_pages, 3);
	/* ... and after room is made, the retry takes the rest */
	cpu->data_limit = 0;
	cr_assert_eq(djn_kv_reserve(&kv, 20, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(kv.view.n_pages, 5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(kv.dev_table[i], kv.host_table[i], "page %d missing from the table", i);
	djn_kv_release(&kv);
	cpu->data_limit = saved;
	cpu->host_memory = true;
	djn_backend_free(cpu);
}

/* KV pages given back are kept and handed to the next page of the same
 * size, outside the data accounting; up to four sizes side by side. */
Test(sched, kv_pages_given_back_are_reused)
{
	struct djn_err err = { 0 };
	struct djn_backend *cpu = djn_backend_cpu_new(1, &err);
	struct djn_kv a, b, c;
	float *first[3];

	cr_assert_not_null(cpu, "%s", err.msg);
	cr_assert_eq(djn_kv_init(&a, cpu, 2, 8, 4, 64, DJN_DTYPE_F32, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_kv_reserve(&a, 12, &err), DJN_OK, "%s", err.msg);
	size_t pb = djn_kv_page_bytes(&a);
	cr_assert_eq(cpu->data_bytes, 3 * pb);
	for (int i = 0; i < 3; i++)
		first[i] = a.host_table[i];
	djn_kv_release(&a);
	cr_assert_eq(cpu->data_bytes, 0, "kept pages are not counted as held");
	cr_assert_eq(cpu->n_data_kept, 3);
	/* a limit of two pages still holds: the kept pages are outside it */
	cpu->data_limit = 2 * pb;
	cr_assert_eq(djn_kv_init(&b, cpu, 2, 8, 4, 64, DJN_DTYPE_F32, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_kv_reserve(&b, 12, &err), DJN_ERR_NOMEM);
	cr_assert_eq(b.view.n_pages, 2);
	cr_assert_eq(cpu->n_data_kept, 1);
	for (int i = 0; i < 2; i++) {
		bool seen = false;
		for (int j = 0; j < 3; j++)
			seen |= b.host_table[i] == first[j];
		cr_assert(seen, "page %d is a new allocation, not a kept one", i);
	}
	cpu->data_limit = 0;
	/* another page size (another model's KV shape) is kept beside it */
	cr_assert_eq(djn_kv_init(&c, cpu, 2, 16, 4, 64, DJN_DTYPE_F32, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_kv_reserve(&c, 4, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(cpu->n_data_kept, 1, "a page of another size is a new allocation");
	djn_kv_release(&c);
	djn_kv_release(&b);
	cr_assert_eq(cpu->n_data_kept, 4, "both sizes' pages are kept");
	cr_assert_eq(djn_backend_kept_bytes(cpu), 3 * pb + 2 * pb);
	cr_assert_eq(cpu->data_bytes, 0);
	/* four more sizes: the fifth and later take the place of the fewest */
	for (int d = 3; d <= 6; d++) {
		struct djn_kv e;
		cr_assert_eq(djn_kv_init(&e, cpu, 2, 8 * d, 4, 64, DJN_DTYPE_F32, &err), DJN_OK);
		cr_assert_eq(djn_kv_reserve(&e, 4, &err), DJN_OK, "%s", err.msg);
		djn_kv_release(&e);
	}
	size_t kept = 0;
	int n = 0;
	bool most = false;
	for (int i = 0; i < DJN_PAGE_SIZES; i++) {
		kept += cpu->data_kept[i].n * cpu->data_kept[i].page;
		n += cpu->data_kept[i].n;
		most |= cpu->data_kept[i].page == pb && cpu->data_kept[i].n == 3;
	}
	cr_assert(most, "the size with the most pages kept stays");
	cr_assert_eq(n, cpu->n_data_kept);
	cr_assert_eq(n, 3 + 3, "the first size's 3 and one each of the last three");
	cr_assert_eq(kept, djn_backend_kept_bytes(cpu));
	djn_backend_free(cpu); /* frees the kept pages: ASan would say */
}
