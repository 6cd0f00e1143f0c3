/* batch_bench.c - batched decode through the scheduler: aggregate tokens/s
 * at several batch sizes against batch 1, each beside its HBM roofline (the
 * weights read once a step, plus every session's KV cache) measured in the
 * same run; batch 1 through the scheduler beside a session run alone; the
 * greedy tokens of the first sessions beside the same prompts run alone.
 *
 * usage: batch_bench MODEL_DIR [--device cuda] [--batches 1,8,32,64,128]
 *                    [--prompt 128] [--new 64] [--check 4] [--kv-dtype f32|f16]
 * (batch 1 alone and every batch use the same KV dtype)
 * Prints one JSON object on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "djinn/sched.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "batch_bench: %s: %s\n", what, msg);
	exit(1);
}

/* Session i's prompt: n seeded ids in [3, vocab). */
static void prompt_ids(int32_t *ids, int n, int vocab, int i)
{
	uint64_t x = 88172645463325252ull ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);

	for (int k = 0; k < n; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ids[k] = 3 + (int32_t)(x % (uint64_t)(vocab - 3));
	}
}

static struct djn_session *started(struct djn_model *m, struct djn_backend *be, int i,
				   int n_prompt, int n_new)
{
	struct djn_err err = { 0 };
	struct djn_session_opts so = { .max_ctx = n_prompt + n_new + 1 };
	struct djn_session *s = djn_session_new(m, be, &so, &err);
	struct djn_gen_opts g = { .n_new = n_new, .temperature = 0 };
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_prompt);

	if (!s)
		die("session", err.msg);
	prompt_ids(ids, n_prompt, m->cfg.vocab_size, i);
	if (djn_session_start(s, ids, n_prompt, &g))
		die("start", djn_session_errmsg(s));
	free(ids);
	return s;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *dev = "cuda", *batches = "1,8,32,64,128", *kvd = "f32";
	int n_prompt = 128, n_new = 64, n_check = 4;
	struct djn_err err = { 0 };

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--device") && i + 1 < argc)
			dev = argv[++i];
		else if (!strcmp(argv[i], "--batches") && i + 1 < argc)
			batches = argv[++i];
		else if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
			n_prompt = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--new") && i + 1 < argc)
			n_new = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--check") && i + 1 < argc)
			n_check = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--kv-dtype") && i + 1 < argc)
			kvd = argv[++i];
		else
			dir = argv[i];
	}
	if (!dir || n_prompt < 1 || n_new < 8)
		die("usage", "batch_bench MODEL_DIR [--device D] [--batches 1,8,...] [--prompt N] "
			     "[--new N>=8] [--check N] [--kv-dtype f32|f16]");
	enum djn_dtype kvt;
	if (!djn_dtype_parse(kvd, &kvt))
		die("--kv-dtype", kvd);
	struct djn_backend *be = djn_backend_new(dev, 0, &err);
	if (!be)
		die(dev, err.msg);

	/* the bound: device-to-device copy bandwidth, bytes read + written */
	size_t nb = (size_t)1 << 30;
	void *a = be->i->alloc(be, nb), *b = be->i->alloc(be, nb);
	if (!a || !b)
		die("alloc", be->err.msg);
	be->i->memset0(be, a, nb);
	double d2d = 0;
	for (int r = 0; r < 5; r++) {
		be->i->sync(be);
		double t0 = now_ms();
		be->i->copy_d2d(be, b, a, nb);
		be->i->sync(be);
		double bw = 2.0 * nb / ((now_ms() - t0) / 1e3);
		if (bw > d2d)
			d2d = bw;
	}
	be->i->dealloc(be, a);
	be->i->dealloc(be, b);

	struct djn_model *m = djn_model_load(dir, NULL, &err);
	if (!m)
		die(dir, err.msg);
	if (djn_model_set_kv_dtype(m, kvt, &err))
		die("--kv-dtype", err.msg);
	const struct djn_config *c = &m->cfg;
	size_t wbytes = djn_model_weight_bytes(m);
	size_t kv_tok = (size_t)c->n_layer * 2 * c->n_kv_head * c->head_dim * djn_kv_elem_bytes(kvt);

	/* batch 1 alone (djn_session_run), the reference for the scheduler's */
	double solo_ms = 0;
	int32_t *ref[64] = { 0 };
	int ref_n[64] = { 0 };
	if (n_check > 64)
		n_check = 64;
	{
		for (int i = 0; i <= n_check; i++) { /* i == n_check: a warm-up, then timed */
			struct djn_session *s = started(m, be, i < n_check ? i : 0, n_prompt, n_new);
			if (djn_session_run(s, DJN_RUN_UNTIL_POS, n_prompt) != DJN_STOP_STEP)
				die("prefill", djn_session_errmsg(s));
			be->i->sync(be);
			double t0 = now_ms();
			if (djn_session_run(s, DJN_RUN_CONTINUE, 1) != DJN_STOP_DONE)
				die("decode", djn_session_errmsg(s));
			be->i->sync(be);
			solo_ms = (now_ms() - t0) / (n_new - 1);
			if (i < n_check) {
				int n;
				const int32_t *t = djn_session_tokens(s, &n, NULL);
				ref[i] = malloc(sizeof(int32_t) * (size_t)n);
				memcpy(ref[i], t, sizeof(int32_t) * (size_t)n);
				ref_n[i] = n;
			}
			djn_session_free(s);
		}
	}

	printf("{\"bench\":\"batch_decode\",\"model\":\"%s\",\"device\":\"%s\",\"weight_bytes\":%zu,"
	       "\"kv_dtype\":\"%s\",\"kv_bytes_per_token\":%zu,\"d2d_bytes_per_s\":%.4g,\"prompt\":%d,\"new\":%d,"
	       "\"solo_decode_ms_per_token\":%.4f,\"batches\":[",
	       strrchr(dir, '/') && strrchr(dir, '/')[1] ? strrchr(dir, '/') + 1 : dir, dev, wbytes,
	       djn_dtype_name(kvt), kv_tok, d2d, n_prompt, n_new, solo_ms);
	const char *p = batches;
	bool first = true;
	while (*p) {
		int B = atoi(p);
		while (*p && *p != ',')
			p++;
		if (*p == ',')
			p++;
		if (B < 1)
			continue;
		struct djn_sched_opts o = { .policy = DJN_POLICY_SIGNAL, .token_budget = 8192,
					    .max_batch = B };
		struct djn_sched *q = djn_sched_new(be, &o, &err);
		struct djn_session **ss = calloc((size_t)B, sizeof(*ss));
		struct djn_step_info info;
		if (!q)
			die("sched", err.msg);
		for (int i = 0; i < B; i++)
			if (djn_sched_add(q, ss[i] = started(m, be, i, n_prompt, n_new)))
				die("add", djn_sched_errmsg(q));
		/* prefill every session (chunks under the budget), then the
		 * first decode step (graphs recorded); then time the decode */
		double tp0 = now_ms();
		for (bool decoding = false; !decoding;) {
			if (djn_sched_step(q, &info))
				die("prefill step", djn_sched_errmsg(q));
			decoding = true;
			for (int i = 0; i < B; i++)
				decoding = decoding && djn_session_cursor(ss[i]).n_rows == 1;
		}
		double prefill_ms = now_ms() - tp0;
		for (int k = 0; k < 2; k++)
			if (djn_sched_step(q, &info))
				die("warm-up step", djn_sched_errmsg(q));
		int pos0 = djn_session_cursor(ss[0]).pos, steps = 0;
		struct djn_sched_stats st0, st1;
		djn_sched_stats(q, &st0);
		be->i->sync(be);
		double t0 = now_ms();
		while (djn_session_state(ss[0]) == DJN_RUN_PAUSED) {
			if (djn_sched_step(q, &info))
				die("decode step", djn_sched_errmsg(q));
			steps++;
		}
		be->i->sync(be);
		double ms = (now_ms() - t0) / steps;
		djn_sched_stats(q, &st1);
		/* mean KV read a step: positions 0 .. pos of every session */
		double pos_mean = pos0 + (steps - 1) / 2.0 + 1;
		double bytes = (double)wbytes + (double)B * pos_mean * (double)kv_tok;
		double roof_ms = bytes / d2d * 1e3;
		/* greedy tokens against the same prompt alone; where they part,
		 * how many generated tokens agreed first (a near-tie flipped by
		 * the batch's other summation order, or a bug: the mean says) */
		int same = 0, checked = 0;
		double agreed = 0;
		for (int i = 0; i < B && i < n_check; i++) {
			int n, k = n_prompt;
			const int32_t *t = djn_session_tokens(ss[i], &n, NULL);
			checked++;
			same += n == ref_n[i] && !memcmp(t, ref[i], sizeof(int32_t) * (size_t)n);
			while (k < n && k < ref_n[i] && t[k] == ref[i][k])
				k++;
			agreed += (double)(k - n_prompt) / (n_new);
		}
		printf("%s{\"batch\":%d,\"decode_ms_per_step\":%.4f,\"tokens_per_s\":%.1f,"
		       "\"roofline_ms_per_step\":%.4f,\"pct_of_roofline\":%.1f,\"bytes_per_step\":%.4g,"
		       "\"prefill_ms\":%.2f,\"steps\":%d,\"graph_steps\":%ld,"
		       "\"device_peak_bytes\":%zu,\"greedy_same_as_alone\":%d,\"checked\":%d,"
		       "\"agreed_before_parting\":%.3f}",
		       first ? "" : ",", B, ms, B * 1e3 / ms, roof_ms, 100.0 * roof_ms / ms, bytes,
		       prefill_ms, steps, st1.graph_steps - st0.graph_steps, st1.device_peak_bytes,
		       same, checked, checked ? agreed / checked : 1.0);
		fflush(stdout);
		first = false;
		for (int i = 0; i < B; i++) {
			djn_sched_remove(q, ss[i]);
			djn_session_free(ss[i]);
		}
		free(ss);
		djn_sched_free(q);
	}
	printf("]}\n");
	for (int i = 0; i < n_check; i++)
		free(ref[i]);
	djn_model_unref(m);
	djn_backend_free(be);
	return 0;
}
