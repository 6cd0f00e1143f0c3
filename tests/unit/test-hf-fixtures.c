/* test-hf-fixtures.c - tiny Llama (GQA, untied head) and GPT-2 models made
 * with transformers (scripts/make-hf-fixtures.py) against the logits and
 * greedy tokens transformers computed for them. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

static cJSON *read_json(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;
	cJSON *j;

	cr_assert_not_null(f, "%s is missing", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	j = cJSON_Parse(buf);
	free(buf);
	cr_assert_not_null(j, "%s: bad JSON", path);
	return j;
}

struct fixture {
	char dir[64];
	double tol; /* max relative logit error, per position: ||d|| / ||ref|| */
	bool greedy;
};

/* Teacher-force the reference ids one position at a time, comparing every
 * position's logits, then check the greedy continuation. */
static void check(const struct fixture *fx)
{
	char path[128];
	struct djn_err err = { 0 };
	struct djn_model *m;
	const char *dev = getenv("DJINN_TEST_DEVICE"); /* cuda: the same on the GPU */
	struct djn_backend *be = djn_backend_new(dev ? dev : "cpu", 2, &err);
	struct djn_session *s;
	cJSON *ref;

	snprintf(path, sizeof(path), "tests/fixtures/hf/%s/reference.json", fx->dir);
	cr_assert_not_null(be, "%s", err.msg);
	ref = read_json(path);
	snprintf(path, sizeof(path), "tests/fixtures/hf/%s", fx->dir);
	m = djn_model_load(path, NULL, &err);
	cr_assert_not_null(m, "%s", err.msg);
	s = djn_session_new(m, be, NULL, &err);
	cr_assert_not_null(s, "%s", err.msg);

	const cJSON *ids = cJSON_GetObjectItem(ref, "input_ids");
	const cJSON *logits = cJSON_GetObjectItem(ref, "logits");
	const cJSON *greedy = cJSON_GetObjectItem(ref, "greedy");
	int n = cJSON_GetArraySize(ids), vocab = m->cfg.vocab_size, n_greedy = cJSON_GetArraySize(greedy);
	int32_t first = (int32_t)cJSON_GetArrayItem(ids, 0)->valueint;
	struct djn_gen_opts g = { .n_new = n - 1 + n_greedy, .temperature = 0 };
	float *got = malloc(sizeof(float) * (size_t)vocab);
	double worst = 0;

	cr_assert_eq(djn_session_start(s, &first, 1, &g), DJN_OK, "%s", djn_session_errmsg(s));
	for (int p = 0; p < n + n_greedy - 1; p++) {
		cr_assert_eq(djn_session_run(s, DJN_RUN_FINISH, 1), DJN_STOP_STEP, "%s",
			     djn_session_errmsg(s));
		cr_assert_eq(djn_session_read(s, djn_site_count(&m->cfg) - 1, got, (size_t)vocab),
			     DJN_OK);
		if (p < n) {
			const cJSON *row = cJSON_GetArrayItem(logits, p);
			double num = 0, den = 0;
			cr_assert_eq(cJSON_GetArraySize(row), vocab);
			for (int v = 0; v < vocab; v++) {
				double r = cJSON_GetArrayItem(row, v)->valuedouble;
				num += (got[v] - r) * (got[v] - r);
				den += r * r;
			}
			double rel = sqrt(num / den);
			worst = rel > worst ? rel : worst;
			cr_expect_leq(rel, fx->tol, "%s: position %d relative logit error %.3g > %.3g",
				      fx->dir, p, rel, fx->tol);
		}
		if (p + 1 < n) {
			cr_assert_eq(djn_session_force_token(s, (int32_t)cJSON_GetArrayItem(ids, p + 1)->valueint),
				     DJN_OK, "%s", djn_session_errmsg(s));
		} else if (fx->greedy) {
			int am = 0;
			for (int v = 1; v < vocab; v++)
				if (got[v] > got[am])
					am = v;
			cr_expect_eq(am, cJSON_GetArrayItem(greedy, p + 1 - n)->valueint,
				     "%s: greedy token %d is %d, transformers has %d", fx->dir, p + 1 - n,
				     am, cJSON_GetArrayItem(greedy, p + 1 - n)->valueint);
		} else {
			break;
		}
		enum djn_stop why = djn_session_run(s, DJN_RUN_STEP, 1);
		cr_assert(why == DJN_STOP_STEP || why == DJN_STOP_DONE);
	}
	printf("%s: worst relative logit error %.3g over %d positions\n", fx->dir, worst, n);
	fflush(stdout);
	free(got);
	djn_session_free(s);
	djn_model_unref(m);
	djn_backend_free(be);
	cJSON_Delete(ref);
}

ParameterizedTestParameters(hf_fixture, matches_transformers)
{
	static struct fixture fx[] = {
		{ "llama-gqa-f32", 1e-4, true },
		{ "llama-sharded-f32", 1e-4, true },
		{ "gpt2-f32", 1e-4, true },
		{ "llama-gqa-bf16", 2e-2, false },
		{ "gpt2-bf16", 2e-2, false },
	};
	return cr_make_param_array(struct fixture, fx, sizeof(fx) / sizeof(fx[0]));
}

ParameterizedTest(struct fixture *fx, hf_fixture, matches_transformers)
{
	check(fx);
}
