/* bp_overhead.c - what armed breakpoints whose conditions never hold cost a
 * 256-token greedy run on the CPU backend (stories260K): the median of several
 * runs with no breakpoints, and with each set armed, and the ratio.  A
 * benchmark, not a test: it prints, it does not judge.
 *
 * usage: bp_overhead [MODEL TOKENIZER] [RUNS]   (bench/bp_overhead.sh builds it) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "djinn/djinn.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct config {
	const char *name;
	const char *bps[4][2]; /* pattern, condition */
	bool watch;            /* the last entry is a watchpoint */
};

static const struct config configs[] = {
	{ "none", { { NULL } } },
	{ "L*.resid_post if norm > 1e30; watch logits nan",
	  { { "L*.resid_post", "norm > 1e30" }, { "logits", "nan" } }, true },
	{ "L*.resid_post if pos < 0 (no statistics needed)", { { "L*.resid_post", "pos < 0" } } },
	{ "every site (*) if absmax > 1e30", { { "*", "absmax > 1e30" } } },
};

int main(int argc, char **argv)
{
	const char *model = argc > 2 ? argv[1] : "models/stories260K.bin";
	const char *tokp = argc > 2 ? argv[2] : "models/tok512.bin";
	int runs = argc == 2 ? atoi(argv[1]) : argc > 3 ? atoi(argv[3]) : 11;
	int n_cfg = (int)(sizeof(configs) / sizeof(configs[0]));
	struct djn_err err = { 0 };
	struct djn_model *m = djn_model_load(model, tokp, &err);
	struct djn_backend *be;
	struct djn_session *s[8];
	struct djn_gen_opts g = { .n_new = 256, .temperature = 0, .top_p = 1, .stop_at_eos = false };
	double *t[8], med[8];
	int32_t *ids;
	int n_ids;

	if (!m) {
		fprintf(stderr, "bp_overhead: %s\n", err.msg);
		return 1;
	}
	if (!(be = djn_backend_new("cpu", 0, &err))) {
		fprintf(stderr, "bp_overhead: %s\n", err.msg);
		return 1;
	}
	if (runs < 1)
		runs = 11;
	djn_tok_encode(m->tok, "Once upon a time", 16, true, false, &ids, &n_ids, &err);
	for (int c = 0; c < n_cfg; c++) {
		s[c] = djn_session_new(m, be, NULL, &err);
		t[c] = calloc((size_t)runs, sizeof(double));
		for (int k = 0; k < 4 && configs[c].bps[k][0]; k++) {
			bool w = configs[c].watch && (k == 3 || !configs[c].bps[k + 1][0]);
			int id = w ? djn_watch_add(s[c], configs[c].bps[k][0], configs[c].bps[k][1])
				   : djn_bp_add(s[c], configs[c].bps[k][0], configs[c].bps[k][1], false);
			if (id < 0) {
				fprintf(stderr, "bp_overhead: %s\n", djn_session_errmsg(s[c]));
				return 1;
			}
		}
	}
	/* interleave the configurations so drift (turbo, other load) hits all */
	for (int r = -1; r < runs; r++) {
		for (int c = 0; c < n_cfg; c++) {
			double t0 = now();
			djn_session_start(s[c], ids, n_ids, &g);
			enum djn_stop why = djn_session_run(s[c], DJN_RUN_CONTINUE, 1);
			double dt = now() - t0;
			if (why != DJN_STOP_DONE) {
				fprintf(stderr, "bp_overhead: '%s' stopped (%d): %s\n", configs[c].name,
					why, djn_session_errmsg(s[c]));
				return 1;
			}
			if (r >= 0) /* the first round warms up */
				t[c][r] = dt;
		}
	}
	printf("256-token greedy run, %s, cpu backend, median of %d runs\n", model, runs);
	for (int c = 0; c < n_cfg; c++) {
		qsort(t[c], (size_t)runs, sizeof(double), cmp);
		med[c] = t[c][runs / 2];
		if (c == 0)
			printf("  %-52s %8.2f ms\n", configs[c].name, 1e3 * med[c]);
		else
			printf("  %-52s %8.2f ms   ratio %.3f (%+.1f%%)\n", configs[c].name,
			       1e3 * med[c], med[c] / med[0], 100.0 * (med[c] / med[0] - 1));
	}
	for (int c = 0; c < n_cfg; c++) {
		djn_session_free(s[c]);
		free(t[c]);
	}
	free(ids);
	djn_model_unref(m);
	djn_backend_free(be);
	return 0;
}
