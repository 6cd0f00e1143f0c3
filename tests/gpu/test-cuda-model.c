/* test-cuda-model.c - whole models on CUDA against the CPU reference:
 * stories260K greedy tokens identical in f32, logits within 1e-2 relative
 * in f16 and bf16, and SmolLM2's quantized weights. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "djinn/djinn.h"

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
