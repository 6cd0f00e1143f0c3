/* test-cuda-model.c - whole models on CUDA against the CPU reference:
 * stories260K greedy tokens identical in f32, logits within 1e-2 relative
 * in f16 and bf16, and SmolLM2's quantized weights; the batched step's
 * fused ops and its batch-invariant mode. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "djinn/djinn.h"
#include "djinn/mkmodel.h"
#include "djinn/sched.h"

static void need_gpu(void)
{
	if (djn_cuda_device_count() == 0)
		cr_skip_test("no CUDA device");
}

struct side {
	struct djn_model *m;
	struct djn_backend *be;
	struct djn_session *s;
};

static void side_open(struct side *x, const char *path, const char *tok, const char *dev,
		      enum djn_dtype cast)
{
	struct djn_err err = { 0 };

	x->m = djn_model_load(path, tok, &err);
	cr_assert_not_null(x->m, "%s", err.msg);
	if (cast != DJN_DTYPE_COUNT)
		cr_assert_eq(djn_model_cast(x->m, cast, &err), DJN_OK, "%s", err.msg);
	x->be = djn_backend_new(dev, 0, &err);
	cr_assert_not_null(x->be, "%s", err.msg);
	x->s = djn_session_new(x->m, x->be, NULL, &err);
	cr_assert_not_null(x->s, "%s", err.msg);
}

static void side_close(struct side *x)
{
	djn_session_free(x->s);
	djn_model_unref(x->m);
	djn_backend_free(x->be);
}

/* Greedy-generate n tokens on both, teacher-forcing the CPU's choice on the
 * GPU so one early difference cannot cascade; return the worst relative
 * logit error and count argmax disagreements. */
static double compare(struct side *cpu, struct side *gpu, const int32_t *prompt, int n_prompt,
		      int n, int *disagree)
{
	struct djn_gen_opts g = { .n_new = n, .temperature = 0 };
	int vocab = cpu->m->cfg.vocab_size, logits = djn_site_count(&cpu->m->cfg) - 1;
	float *a = malloc(sizeof(float) * (size_t)vocab), *b = malloc(sizeof(float) * (size_t)vocab);
	double worst = 0;

	*disagree = 0;
	cr_assert_eq(djn_session_start(cpu->s, prompt, n_prompt, &g), DJN_OK);
	cr_assert_eq(djn_session_start(gpu->s, prompt, n_prompt, &g), DJN_OK);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(djn_session_run(cpu->s, DJN_RUN_FINISH, 1), DJN_STOP_STEP, "%s",
			     djn_session_errmsg(cpu->s));
		cr_assert_eq(djn_session_run(gpu->s, DJN_RUN_FINISH, 1), DJN_STOP_STEP, "%s",
			     djn_session_errmsg(gpu->s));
		cr_assert_eq(djn_session_read(cpu->s, logits, a, (size_t)vocab), DJN_OK);
		cr_assert_eq(djn_session_read(gpu->s, logits, b, (size_t)vocab), DJN_OK);
		double num = 0, den = 0;
		int am = 0, bm = 0;
		for (int v = 0; v < vocab; v++) {
			num += (double)(a[v] - b[v]) * (a[v] - b[v]);
			den += (double)a[v] * a[v];
			am = a[v] > a[am] ? v : am;
			bm = b[v] > b[bm] ? v : bm;
		}
		cr_assert(!isnan(num), "NaN in the GPU logits at step %d", i);
		worst = fmax(worst, sqrt(num / den));
		*disagree += am != bm;
		cr_assert_eq(djn_session_force_token(gpu->s, am), DJN_OK);
		enum djn_stop w1 = djn_session_run(cpu->s, DJN_RUN_STEP, 1);
		enum djn_stop w2 = djn_session_run(gpu->s, DJN_RUN_STEP, 1);
		if (w1 == DJN_STOP_DONE || w2 == DJN_STOP_DONE)
			break;
	}
	free(a);
	free(b);
	return worst;
}

static const int32_t once[] = { 1, 403, 407, 261, 378 };

Test(cuda_model, stories260K_f32_greedy_tokens_identical, .timeout = 300)
{
	struct side c, g;
	int bad;

	need_gpu();
	side_open(&c, "models/stories260K.bin", "models/tok512.bin", "cpu", DJN_DTYPE_COUNT);
	side_open(&g, "models/stories260K.bin", "models/tok512.bin", "cuda", DJN_DTYPE_COUNT);
	double worst = compare(&c, &g, once, 1, 255, &bad);
	printf("stories260K f32: worst relative logit error %.3g, %d argmax differences in 255\n",
	       worst, bad);
	cr_expect_eq(bad, 0);
	cr_expect_leq(worst, 1e-4);
	worst = compare(&c, &g, once, 5, 100, &bad);
	cr_expect_eq(bad, 0, "prompted: %d argmax differences", bad);
	side_close(&c);
	side_close(&g);
}

static void half(enum djn_dtype t)
{
	struct side c, g;
	int bad;

	need_gpu();
	side_open(&c, "models/stories260K.bin", "models/tok512.bin", "cpu", t);
	side_open(&g, "models/stories260K.bin", "models/tok512.bin", "cuda", t);
	double worst = compare(&c, &g, once, 5, 128, &bad);
	printf("stories260K %s: worst relative logit error %.3g, %d argmax differences in 128\n",
	       djn_dtype_name(t), worst, bad);
	cr_expect_leq(worst, 1e-2);
	side_close(&c);
	side_close(&g);
}

Test(cuda_model, stories260K_f16_logits_within_1e_2, .timeout = 300)
{
	half(DJN_DTYPE_F16);
}

Test(cuda_model, stories260K_bf16_logits_within_1e_2, .timeout = 300)
{
	half(DJN_DTYPE_BF16);
}

/* f32 weights, an f16 KV cache on both: the cache rounds alike, but a k
 * or v a hair apart may round to the neighbouring half (2^-11 relative):
 * within 3e-3, greedy tokens the same.  A 5-token prompt (the split and small
 * prefill kernels, the fused store), then 80 (the tiled and GEMM prefill). */
Test(cuda_model, stories260K_f16_kv_cache_matches_cpu, .timeout = 300)
{
	struct side c, g;
	struct djn_err err = { 0 };
	int32_t longer[80];
	int bad;

	need_gpu();
	side_open(&c, "models/stories260K.bin", "models/tok512.bin", "cpu", DJN_DTYPE_COUNT);
	side_open(&g, "models/stories260K.bin", "models/tok512.bin", "cuda", DJN_DTYPE_COUNT);
	djn_session_free(c.s);
	djn_session_free(g.s);
	cr_assert_eq(djn_model_set_kv_dtype(c.m, DJN_DTYPE_F16, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_model_set_kv_dtype(g.m, DJN_DTYPE_F16, &err), DJN_OK, "%s", err.msg);
	c.s = djn_session_new(c.m, c.be, NULL, &err);
	g.s = djn_session_new(g.m, g.be, NULL, &err);
	cr_assert(c.s && g.s, "%s", err.msg);
	double worst = compare(&c, &g, once, 5, 120, &bad);
	printf("stories260K f16 KV: worst relative logit error %.3g, %d argmax differences in "
	       "120\n", worst, bad);
	cr_expect_leq(worst, 3e-3);
	cr_expect_eq(bad, 0);
	longer[0] = 1;
	for (int i = 1; i < 80; i++)
		longer[i] = 3 + (i * 37) % 500;
	worst = compare(&c, &g, longer, 80, 40, &bad);
	printf("stories260K f16 KV, 80-token prompt: worst %.3g, %d argmax differences\n", worst,
	       bad);
	cr_expect_leq(worst, 3e-3);
	side_close(&c);
	side_close(&g);
}

Test(cuda_model, smollm2_q4_1_matches_cpu, .timeout = 600)
{
	struct side c, g;
	int bad, n;
	int32_t *ids;
	struct djn_err err;

	need_gpu();
	if (access("models/SmolLM2-135M-Instruct.Q4_1.gguf", R_OK))
		cr_skip_test("models/SmolLM2-135M-Instruct.Q4_1.gguf is not here (scripts/models.sh)");
	side_open(&c, "models/SmolLM2-135M-Instruct.Q4_1.gguf", NULL, "cpu", DJN_DTYPE_COUNT);
	side_open(&g, "models/SmolLM2-135M-Instruct.Q4_1.gguf", NULL, "cuda", DJN_DTYPE_COUNT);
	const char *p = "The capital of France is";
	cr_assert_eq(djn_tok_encode(c.m->tok, p, strlen(p), false, false, &ids, &n, &err), DJN_OK);
	double worst = compare(&c, &g, ids, n, 32, &bad);
	printf("smollm2 q4_1: worst relative logit error %.3g, %d argmax differences in 32\n", worst,
	       bad);
	cr_expect_leq(worst, 1e-3);
	cr_expect_leq(bad, 1);
	free(ids);
	side_close(&c);
	side_close(&g);
}

/* --- decode steps replayed as CUDA graphs ------------------------------------ */

/* A GPU session on stories260K (cast to t), with recorded steps or without. */
static void graph_side(struct side *x, enum djn_dtype t, bool graphs)
{
	if (!graphs)
		setenv("DJINN_GRAPH", "0", 1);
	side_open(x, "models/stories260K.bin", "models/tok512.bin", "cuda", t);
	unsetenv("DJINN_GRAPH");
}

static int greedy_continue(struct side *x, int n_new, int32_t *out, float *logits)
{
	struct djn_gen_opts g = { .n_new = n_new, .temperature = 0 };
	int n, vocab = x->m->cfg.vocab_size, site = djn_site_count(&x->m->cfg) - 1;

	cr_assert_eq(djn_session_start(x->s, once, 5, &g), DJN_OK);
	/* stop after the last chunk's logits, before the run ends */
	cr_assert_eq(djn_session_run(x->s, DJN_RUN_UNTIL_POS, 5 + n_new - 2), DJN_STOP_STEP, "%s",
		     djn_session_errmsg(x->s));
	cr_assert_eq(djn_session_run(x->s, DJN_RUN_FINISH, 1), DJN_STOP_STEP, "%s",
		     djn_session_errmsg(x->s));
	cr_assert_eq(djn_session_read(x->s, site, logits, (size_t)vocab), DJN_OK);
	const int32_t *t = djn_session_tokens(x->s, &n, NULL);
	memcpy(out, t, sizeof(int32_t) * (size_t)n);
	return n;
}

/* Replayed steps compute what op-by-op steps compute, bit for bit: the
 * fused ops round as the separate ones, and attention splits its keys alike. */
static void graph_identical(enum djn_dtype t)
{
	struct side a, b;
	int32_t ta[256], tb[256];
	float la[512], lb[512];

	need_gpu();
	graph_side(&a, t, true);
	graph_side(&b, t, false);
	int na = greedy_continue(&a, 200, ta, la), nb = greedy_continue(&b, 200, tb, lb);
	long steps = djn_session_graph_steps(a.s);
	printf("%s: %ld of %d steps replayed from a graph\n", djn_dtype_name(t), steps, na - 5);
	cr_assert_geq(steps, 190, "only %ld steps ran as a graph", steps);
	cr_assert_eq(djn_session_graph_steps(b.s), 0);
	cr_assert_eq(na, nb);
	cr_assert_arr_eq(ta, tb, sizeof(int32_t) * (size_t)na, "tokens differ");
	cr_assert_arr_eq(la, lb, sizeof(float) * 512, "last logits differ");
	side_close(&a);
	side_close(&b);
}

Test(cuda_graph, replay_bit_identical_f32, .timeout = 300)
{
	graph_identical(DJN_DTYPE_COUNT);
}

Test(cuda_graph, replay_bit_identical_f16, .timeout = 300)
{
	graph_identical(DJN_DTYPE_F16);
}

/* Breakpoints checked after a replayed step stop where op-by-op steps stop,
 * with the same tensors: an immediate condition, and one on statistics
 * (decided after the step, the chunk replayed op by op up to the hit). */
static void stop_alike(const char *pattern, const char *cond, const char *expect)
{
	struct side a, b;
	struct side *x[2] = { &a, &b };
	struct djn_gen_opts g = { .n_new = 64, .temperature = 0 };
	float va[2][512];
	int site[2], pos[2];

	need_gpu();
	graph_side(&a, DJN_DTYPE_COUNT, true);
	graph_side(&b, DJN_DTYPE_COUNT, false);
	for (int i = 0; i < 2; i++) {
		struct djn_session *s = x[i]->s;
		int rows, cols;
		cr_assert_gt(djn_bp_add(s, pattern, cond, false), 0);
		cr_assert_eq(djn_session_start(s, once, 5, &g), DJN_OK);
		cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_BREAKPOINT, "%s",
			     djn_session_errmsg(s));
		struct djn_cursor cu = djn_session_cursor(s);
		pos[i] = cu.pos;
		site[i] = cu.site;
		cr_assert_eq(djn_session_site_shape(s, site[i], &rows, &cols), DJN_OK);
		cr_assert_leq((size_t)rows * cols, 512);
		cr_assert_eq(djn_session_read(s, site[i], va[i], (size_t)rows * cols), DJN_OK);
	}
	cr_assert_gt(djn_session_graph_steps(a.s), 0, "no step ran as a graph before the stop");
	cr_assert_eq(site[0], site[1]);
	cr_assert_eq(pos[0], pos[1]);
	cr_assert_arr_eq(va[0], va[1], sizeof(float) * 64, "the stopped site's tensor differs");
	/* and both go on to the same tokens */
	int32_t ta[128], tb[128];
	int na, nb;
	for (int i = 0; i < 2; i++) {
		djn_bp_delete(x[i]->s, 1);
		cr_assert_eq(djn_session_run(x[i]->s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	}
	memcpy(ta, djn_session_tokens(a.s, &na, NULL), sizeof(int32_t) * 69);
	memcpy(tb, djn_session_tokens(b.s, &nb, NULL), sizeof(int32_t) * 69);
	cr_assert_eq(na, nb);
	cr_assert_arr_eq(ta, tb, sizeof(int32_t) * (size_t)na);
	char name[32];
	djn_site_name(&a.m->cfg, site[0], name, sizeof(name));
	cr_assert_str_eq(name, expect);
	cr_assert_eq(pos[0], 30);
	side_close(&a);
	side_close(&b);
}

Test(cuda_graph, breakpoint_after_replay_immediate, .timeout = 300)
{
	stop_alike("L3.attn_out", "pos == 30", "L3.attn_out");
}

Test(cuda_graph, breakpoint_after_replay_stats, .timeout = 300)
{
	/* statistics in the condition: decided after the step, then the chunk
	 * is run op by op up to the first site where it held */
	stop_alike("L*.attn_norm", "pos == 30 and norm > 0 and layer >= 1", "L1.attn_norm");
}

/* --- the batched step's fused ops ---------------------------------------------
 *
 * stories260K in f16 through the scheduler: 20 sessions of mixed prompts (a
 * decode step of 32 padded rows: the f16 GEMMs, where src/exec/batch.c fuses
 * the norms, SwiGLU and the residual adds into them and RoPE with the KV
 * store), 24 new greedy tokens each, with every fusion on and with
 * DJN_BATCH_FUSE=0.  Bounds: the same tokens, the last logits within 1e-4 of
 * the largest (only the residual adds inside the GEMM may sum in another
 * order; everything else is the same bits), and decode steps replayed as
 * graphs both ways. */
#define FUSE_SESS 20
#define FUSE_NEW 24

struct fuse_run {
	int n[FUSE_SESS];
	int32_t tok[FUSE_SESS][64];
	float *logits[FUSE_SESS];
	int vocab;
	long graph_steps;
};

/* Session i of a mixed batch: a prompt of 1 + 7i mod 29 tokens, n_new
 * greedy tokens, started and added to q. */
static struct djn_session *mixed_session(struct djn_model *m, struct djn_backend *be,
					 struct djn_sched *q, int i, int n_new)
{
	struct djn_err err = { 0 };
	struct djn_session_opts so = { .max_ctx = 64 };
	struct djn_gen_opts g = { .n_new = n_new, .temperature = 0 };
	int32_t ids[32];
	int len = 1 + (i * 7) % 29;

	ids[0] = 1;
	for (int j = 1; j < len; j++)
		ids[j] = 3 + (int32_t)((i * 131 + j * 37) % 500);
	struct djn_session *s = djn_session_new(m, be, &so, &err);
	cr_assert_not_null(s, "%s", err.msg);
	cr_assert_eq(djn_session_start(s, ids, len, &g), DJN_OK, "%s", djn_session_errmsg(s));
	cr_assert_eq(djn_sched_add(q, s), DJN_OK, "%s", djn_sched_errmsg(q));
	return s;
}

static void fuse_run(const char *fuse, struct fuse_run *r)
{
	struct djn_err err = { 0 };
	struct djn_session *ss[FUSE_SESS];
	struct djn_sched_stats st;
	struct djn_step_info info;

	setenv("DJN_BATCH_FUSE", fuse, 1); /* read when the scheduler makes its batch */
	struct djn_model *m = djn_model_load("models/stories260K.bin", "models/tok512.bin", &err);
	cr_assert_not_null(m, "%s", err.msg);
	cr_assert_eq(djn_model_cast(m, DJN_DTYPE_F16, &err), DJN_OK, "%s", err.msg);
	struct djn_backend *be = djn_backend_new("cuda", 0, &err);
	cr_assert_not_null(be, "%s", err.msg);
	struct djn_sched_opts o = { .policy = DJN_POLICY_SIGNAL, .token_budget = 512,
				    .max_batch = FUSE_SESS };
	struct djn_sched *q = djn_sched_new(be, &o, &err);
	cr_assert_not_null(q, "%s", err.msg);
	const int vocab = m->cfg.vocab_size, logits = djn_site_count(&m->cfg) - 1;
	r->vocab = vocab;
	for (int i = 0; i < FUSE_SESS; i++)
		ss[i] = mixed_session(m, be, q, i, FUSE_NEW);
	for (int k = 0; k < 200 && djn_sched_step(q, &info) == DJN_OK; k++)
		;
	djn_sched_stats(q, &st);
	r->graph_steps = st.graph_steps;
	for (int i = 0; i < FUSE_SESS; i++) {
		int np;
		const int32_t *t = djn_session_tokens(ss[i], &r->n[i], &np);
		cr_assert_eq(r->n[i] - np, FUSE_NEW, "DJN_BATCH_FUSE=%s: session %d made %d tokens: %s",
			     fuse, i, r->n[i] - np, djn_session_errmsg(ss[i]));
		memcpy(r->tok[i], t, sizeof(int32_t) * (size_t)r->n[i]);
		r->logits[i] = malloc(sizeof(float) * (size_t)vocab);
		cr_assert_eq(djn_session_read(ss[i], logits, r->logits[i], (size_t)vocab), DJN_OK,
			     "%s", djn_session_errmsg(ss[i]));
		djn_sched_remove(q, ss[i]);
		djn_session_free(ss[i]);
	}
	djn_sched_free(q);
	djn_backend_free(be);
	djn_model_unref(m);
	unsetenv("DJN_BATCH_FUSE");
}

Test(cuda_batch, fused_step_matches_unfused_f16, .timeout = 300)
{
	struct fuse_run *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

	need_gpu();
	fuse_run("1", a);
	fuse_run("0", b);
	const int vocab = a->vocab;
	cr_expect_gt(a->graph_steps, 0, "fused: no decode step replayed as a graph");
	cr_expect_gt(b->graph_steps, 0, "unfused: no decode step replayed as a graph");
	for (int i = 0; i < FUSE_SESS; i++) {
		cr_assert_eq(a->n[i], b->n[i]);
		cr_expect_arr_eq(a->tok[i], b->tok[i], sizeof(int32_t) * (size_t)a->n[i],
				 "session %d: fused and unfused tokens differ", i);
		float big = 0, diff = 0;
		for (int k = 0; k < vocab; k++) {
			big = fmaxf(big, fabsf(b->logits[i][k]));
			diff = fmaxf(diff, fabsf(a->logits[i][k] - b->logits[i][k]));
		}
		cr_expect_leq(diff, 1e-4f * big, "session %d: last logits differ by %g (largest %g)",
			      i, diff, big);
		free(a->logits[i]);
		free(b->logits[i]);
	}
	printf("fused batch step: graph steps %ld fused, %ld unfused\n", a->graph_steps,
	       b->graph_steps);
	free(a);
	free(b);
}

/* --- the batch-invariant mode -------------------------------------------------
 *
 * DJN_SKINNY=1 on tiny-llama-256 in f16 (every GEMM in the skinny kernel's
 * tiles): 12 sessions of mixed prompts in one scheduler (prefill chunks of at
 * most 64 rows, then decode steps of 12 rows padded to 16), and each of them
 * alone in a scheduler of its own (a batch of one, padded too, through the
 * same batch path).  Bound: the same tokens and the same last logits, bit
 * for bit, and the runs alone are batch passes. */
#define INV_SESS 12
#define INV_NEW 20

static void inv_run(const char *dir, int first, int count, struct fuse_run *r)
{
	struct djn_err err = { 0 };
	struct djn_session *ss[INV_SESS];
	struct djn_sched_stats st;
	struct djn_step_info info;

	struct djn_model *m = djn_model_load(dir, NULL, &err);
	cr_assert_not_null(m, "%s", err.msg);
	struct djn_backend *be = djn_backend_new("cuda", 0, &err);
	cr_assert_not_null(be, "%s", err.msg);
	cr_assert_eq(be->invariant_rows, 64, "DJN_SKINNY=1 and invariant_rows %d",
		     be->invariant_rows);
	struct djn_sched_opts o = { .policy = DJN_POLICY_SIGNAL, .token_budget = 512,
				    .max_batch = INV_SESS };
	struct djn_sched *q = djn_sched_new(be, &o, &err);
	cr_assert_not_null(q, "%s", err.msg);
	const int vocab = m->cfg.vocab_size, logits = djn_site_count(&m->cfg) - 1;
	r->vocab = vocab;
	for (int i = first; i < first + count; i++)
		ss[i - first] = mixed_session(m, be, q, i, INV_NEW);
	int steps = 0;
	while (steps < 400 && djn_sched_step(q, &info) == DJN_OK) {
		cr_assert_leq(info.n_rows, 64, "a step of %d rows", info.n_rows);
		steps++;
	}
	djn_sched_stats(q, &st);
	cr_assert_eq(st.batch_passes, steps, "%ld batch passes in %d steps", st.batch_passes,
		     steps);
	r->graph_steps += st.graph_steps;
	for (int i = first; i < first + count; i++) {
		struct djn_session *s = ss[i - first];
		int np;
		const int32_t *t = djn_session_tokens(s, &r->n[i], &np);
		cr_assert_eq(r->n[i] - np, INV_NEW, "session %d made %d tokens: %s", i,
			     r->n[i] - np, djn_session_errmsg(s));
		memcpy(r->tok[i], t, sizeof(int32_t) * (size_t)r->n[i]);
		r->logits[i] = malloc(sizeof(float) * (size_t)vocab);
		cr_assert_eq(djn_session_read(s, logits, r->logits[i], (size_t)vocab), DJN_OK, "%s",
			     djn_session_errmsg(s));
		djn_sched_remove(q, s);
		djn_session_free(s);
	}
	djn_sched_free(q);
	djn_backend_free(be);
	djn_model_unref(m);
}

Test(cuda_batch, invariant_mode_batch_equals_alone_bit_for_bit, .timeout = 300)
{
	char dir[] = "/tmp/djn-invariant-XXXXXX", cmd[64];
	struct djn_mkmodel_opts mo = { .shape = "tiny-llama-256", .dtype = DJN_DTYPE_F16,
				       .seed = 5, .force = true };
	struct fuse_run *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct djn_err err = { 0 };

	need_gpu();
	cr_assert_not_null(mkdtemp(dir));
	mo.out_dir = dir;
	cr_assert_eq(djn_mkmodel(&mo, &err), DJN_OK, "%s", err.msg);
	setenv("DJN_SKINNY", "1", 1); /* read when the backend is made */
	inv_run(dir, 0, INV_SESS, a);
	for (int i = 0; i < INV_SESS; i++)
		inv_run(dir, i, 1, b);
	unsetenv("DJN_SKINNY");
	cr_expect_gt(a->graph_steps, 0, "batched: no decode step replayed as a graph");
	for (int i = 0; i < INV_SESS; i++) {
		cr_assert_eq(a->n[i], b->n[i]);
		cr_expect_arr_eq(a->tok[i], b->tok[i], sizeof(int32_t) * (size_t)a->n[i],
				 "session %d: tokens in the batch and alone differ", i);
		int differ = 0;
		for (int k = 0; k < a->vocab; k++)
			differ += memcmp(&a->logits[i][k], &b->logits[i][k], sizeof(float)) != 0;
		cr_expect_eq(differ, 0, "session %d: %d of %d last logits differ from alone", i,
			     differ, a->vocab);
		free(a->logits[i]);
		free(b->logits[i]);
	}
	free(a);
	free(b);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)system(cmd);
}
