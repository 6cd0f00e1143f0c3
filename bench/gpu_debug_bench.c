/* gpu_debug_bench.c - what debugging costs on a real-sized model: decode
 * speed with and without armed breakpoints, inspect at a hit, checkpoint and
 * restore of a long KV cache, peak device memory; each beside its bound
 * (HBM roofline, device-to-device bandwidth) measured in the same run.
 *
 * usage: gpu_debug_bench MODEL_DIR [--device cuda] [--prompt 512] [--new 128]
 *                        [--ctx 2048]
 * Prints one JSON object on stdout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "djinn/djinn.h"
#include "djinn/vmu.h"

#include "bench_util.h"

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "gpu_debug_bench: %s: %s\n", what, msg);
	exit(1);
}

/* A seeded prompt of n ids in [3, vocab). */
static int32_t *prompt_ids(int n, int vocab)
{
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
	uint64_t x = 88172645463325252ull;

	for (int i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ids[i] = 3 + (int32_t)(x % (uint64_t)(vocab - 3));
	}
	return ids;
}

/* Prefill n_prompt, then decode n_new; returns ms for prefill and per token. */
static void timed_run(struct djn_session *s, const int32_t *ids, int n_prompt, int n_new,
		      double *prefill_ms, double *decode_ms)
{
	struct djn_gen_opts g = { .n_new = n_new, .temperature = 0 };
	struct djn_backend *be = djn_session_backend(s);
	enum djn_stop why;
	double t0, t1;

	if (djn_session_start(s, ids, n_prompt, &g))
		die("start", djn_session_errmsg(s));
	be->i->sync(be);
	t0 = now_ms();
	why = djn_session_run(s, DJN_RUN_FINISH, 1); /* prefill through logits */
	if (why != DJN_STOP_STEP)
		die("prefill", djn_session_errmsg(s));
	be->i->sync(be);
	t1 = now_ms();
	*prefill_ms = t1 - t0;
	/* first token sampled when moving on; time the rest */
	why = djn_session_run(s, DJN_RUN_STEP, 1);
	be->i->sync(be);
	t0 = now_ms();
	do
		why = djn_session_run(s, DJN_RUN_CONTINUE, 1);
	while (why == DJN_STOP_BREAKPOINT || why == DJN_STOP_WATCHPOINT);
	if (why != DJN_STOP_DONE)
		die("decode", djn_session_errmsg(s));
	be->i->sync(be);
	*decode_ms = (now_ms() - t0) / (n_new - 1);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *dev = "cuda";
	int n_prompt = 512, n_new = 128, ctx = 2048, reps = 3;
	bool decode_only = false;
	struct djn_err err = { 0 };

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--device") && i + 1 < argc)
			dev = argv[++i];
		else if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
			n_prompt = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--new") && i + 1 < argc)
			n_new = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ctx") && i + 1 < argc)
			ctx = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--decode-only")) /* for comparing builds or settings */
			decode_only = true;
		else
			dir = argv[i];
	}
	if (!dir)
		die("usage", "gpu_debug_bench MODEL_DIR [--device D] [--prompt N] [--new N] [--ctx N]");

	struct djn_backend *be = djn_backend_new(dev, 0, &err);
	if (!be)
		die(dev, err.msg);
	size_t free0, total;
	be->i->mem_info(be, &free0, &total);

	/* the bound: device-to-device copy bandwidth, bytes read + written */
	size_t nb = (size_t)1 << 30;
	void *a = be->i->alloc(be, nb), *b = be->i->alloc(be, nb);
	if (!a || !b)
		die("alloc", be->err.msg);
	be->i->memset0(be, a, nb);
	double bw[5];
	for (int r = 0; r < 5; r++) {
		be->i->sync(be);
		double t0 = now_ms();
		be->i->copy_d2d(be, b, a, nb);
		be->i->sync(be);
		bw[r] = 2.0 * nb / ((now_ms() - t0) / 1e3);
	}
	double d2d = median(bw, 5);
	be->i->dealloc(be, a);
	be->i->dealloc(be, b);

	struct djn_model *m = djn_model_load(dir, NULL, &err);
	if (!m)
		die(dir, err.msg);
	struct djn_session_opts so = { .max_ctx = ctx };
	struct djn_session *s = djn_session_new(m, be, &so, &err);
	if (!s)
		die("session", err.msg);
	size_t wbytes = djn_model_weight_bytes(m);
	int32_t *ids = prompt_ids(ctx, m->cfg.vocab_size);
	double roof_ms = wbytes / d2d * 1e3;

	/* 1: plain decode; 2: 32 resid_post breakpoints whose stats condition
	 * never holds; 3: the same with a condition that needs no stats */
	double pre[8], dec[8], dec_bp[8], dec_bp2[8], pf;
	timed_run(s, ids, n_prompt, 8, &pf, &dec[0]); /* warm-up */
	for (int r = 0; r < reps; r++)
		timed_run(s, ids, n_prompt, n_new, &pre[r], &dec[r]);
	if (decode_only) {
		double d0 = median(dec, reps);
		printf("{\"device\":\"%s\",\"weight_bytes\":%zu,\"d2d_bytes_per_s\":%.4g,"
		       "\"roofline_ms_per_token\":%.4f,\"decode_ms_per_token\":%.4f,"
		       "\"pct_of_roofline\":%.2f,\"graph_steps\":%ld}\n",
		       dev, wbytes, d2d, roof_ms, d0, 100.0 * roof_ms / d0, djn_session_graph_steps(s));
		free(ids);
		djn_session_free(s);
		djn_model_unref(m);
		djn_backend_free(be);
		return 0;
	}
	int id1 = djn_bp_add(s, "L*.resid_post", "norm > 1e30", false);
	if (id1 < 0)
		die("break", djn_session_errmsg(s));
	for (int r = 0; r < reps; r++)
		timed_run(s, ids, n_prompt, n_new, &pf, &dec_bp[r]);
	djn_bp_delete(s, 0);
	djn_bp_add(s, "L*.resid_post", "pos > 1000000", false);
	for (int r = 0; r < reps; r++)
		timed_run(s, ids, n_prompt, n_new, &pf, &dec_bp2[r]);
	djn_bp_delete(s, 0);
	long graph_steps = djn_session_graph_steps(s);
	/* 1b: the same decode op by op (no recorded graph), for comparison */
	double dec_ops[8];
	setenv("DJINN_GRAPH", "0", 1);
	struct djn_session *s_ops = djn_session_new(m, be, &so, &err);
	unsetenv("DJINN_GRAPH");
	if (!s_ops)
		die("session", err.msg);
	for (int r = 0; r < reps; r++)
		timed_run(s_ops, ids, n_prompt, n_new, &pf, &dec_ops[r]);
	djn_session_free(s_ops);
	double d_ops = median(dec_ops, reps);
	double ttft = median(pre, reps), d0 = median(dec, reps);
	double d1 = median(dec_bp, reps), d2 = median(dec_bp2, reps);

	/* 4: a breakpoint that hits: inspect (stats + an 8-value slice) of a
	 * hidden-size site */
	struct djn_gen_opts g = { .n_new = 64, .temperature = 0 };
	int site = djn_site_find(&m->cfg, "L16.resid_post");
	if (site < 0)
		site = djn_site_find(&m->cfg, "L0.resid_post");
	char sname[32];
	djn_site_name(&m->cfg, site, sname, sizeof(sname));
	djn_bp_add(s, sname, NULL, false);
	djn_session_start(s, ids, 16, &g);
	double ins[64];
	int n_ins = 0;
	float *row = malloc(sizeof(float) * (size_t)m->cfg.dim * 16); /* the 16-token prompt chunk */
	double drain[64];
	for (int k = 0; k < 40; k++) {
		struct djn_stats st;
		double ts = now_ms();
		if (djn_session_run(s, DJN_RUN_CONTINUE, 1) != DJN_STOP_BREAKPOINT)
			break;
		/* the stop returns as soon as the host reaches the site; the GPU
		 * catches up here (what a person waits for before the tensor exists) */
		be->i->sync(be);
		double t0 = now_ms();
		drain[n_ins] = t0 - ts;
		if (djn_session_stats(s, site, 0, 0, &st) ||
		    djn_session_read(s, site, row, (size_t)m->cfg.dim * djn_session_cursor(s).n_rows))
			die("inspect", djn_session_errmsg(s));
		ins[n_ins++] = now_ms() - t0;
	}
	double inspect_ms = median(ins + 1, n_ins - 1); /* the prompt chunk's is larger */
	double stop_ms = median(drain + 1, n_ins - 1);
	djn_bp_delete(s, 0);
	free(row);

	/* 5: checkpoint + restore of a ctx-token KV cache */
	struct djn_gen_opts g2 = { .n_new = 4, .temperature = 0 };
	if (djn_session_start(s, ids, ctx - 4, &g2))
		die("start", djn_session_errmsg(s));
	do /* the prompt goes in 512-token chunks: finish them all */
		if (djn_session_run(s, DJN_RUN_FINISH, 1) != DJN_STOP_STEP)
			die("prefill", djn_session_errmsg(s));
	while (djn_session_cursor(s).pos + djn_session_cursor(s).n_rows < ctx - 4 &&
	       djn_session_run(s, DJN_RUN_STEP, 1) == DJN_STOP_STEP);
	struct djn_mem_info mi;
	djn_session_mem(s, &mi);
	double ck[5], rs[5];
	for (int r = 0; r < 5; r++) {
		be->i->sync(be);
		double t0 = now_ms();
		int id = djn_checkpoint_new(s);
		be->i->sync(be);
		double t1 = now_ms();
		if (id < 0 || djn_checkpoint_restore(s, id))
			die("checkpoint", djn_session_errmsg(s));
		be->i->sync(be);
		double t2 = now_ms();
		djn_checkpoint_delete(s, id);
		ck[r] = t1 - t0;
		rs[r] = t2 - t1;
	}
	double ck_ms = median(ck, 5), rs_ms = median(rs, 5);
	size_t kv_bytes = mi.data_bytes;
	/* what a checkpoint copies, each way: the KV pages and the step's
	 * activations (the arena of a 512-row prompt chunk) */
	size_t ck_bytes = kv_bytes + mi.stack_used;
	size_t free1;
	be->i->mem_info(be, &free1, &total);
	size_t used = free0 - free1; /* everything djinn holds now (peak: nothing was freed) */

	printf("{\"model\":\"%s\",\"device\":\"%s\",\"weight_bytes\":%zu,\"d2d_bytes_per_s\":%.4g,"
	       "\"roofline_ms_per_token\":%.4f,\"prompt\":%d,\"new\":%d,\"ttft_ms\":%.3f,"
	       "\"decode_ms_per_token\":%.4f,\"pct_of_roofline\":%.2f,"
	       "\"graph_steps\":%ld,\"decode_ms_per_token_op_by_op\":%.4f,"
	       "\"decode_ms_bp_stats_never_hit\":%.4f,\"bp_stats_overhead_pct\":%.2f,"
	       "\"decode_ms_bp_pos_never_hit\":%.4f,\"bp_pos_overhead_pct\":%.2f,"
	       "\"inspect_ms\":%.4f,\"stop_to_tensor_ready_ms\":%.4f,\"inspect_site\":\"%s\",\"ckpt_ctx\":%d,\"kv_bytes\":%zu,"
	       "\"ckpt_bytes\":%zu,\"checkpoint_ms\":%.3f,\"restore_ms\":%.3f,"
	       "\"checkpoint_pct_of_d2d\":%.1f,\"restore_pct_of_d2d\":%.1f,"
	       "\"checkpoint_kv_only_pct_of_d2d\":%.1f,\"restore_kv_only_pct_of_d2d\":%.1f,"
	       "\"device_bytes_used\":%zu,"
	       "\"device_used_over_weights_plus_kv_pct\":%.2f}\n",
	       strrchr(dir, '/') && strrchr(dir, '/')[1] ? strrchr(dir, '/') + 1 : dir, dev, wbytes, d2d, roof_ms, n_prompt, n_new, ttft, d0, 100.0 * roof_ms / d0, graph_steps, d_ops, d1,
	       100.0 * (d1 / d0 - 1), d2, 100.0 * (d2 / d0 - 1), inspect_ms, stop_ms, sname, ctx, kv_bytes,
	       ck_bytes, ck_ms, rs_ms, 100.0 * (2.0 * ck_bytes / (ck_ms / 1e3)) / d2d,
	       100.0 * (2.0 * ck_bytes / (rs_ms / 1e3)) / d2d,
	       100.0 * (2.0 * kv_bytes / (ck_ms / 1e3)) / d2d,
	       100.0 * (2.0 * kv_bytes / (rs_ms / 1e3)) / d2d, used,
	       100.0 * ((double)used / (double)(wbytes + kv_bytes) - 1));
	free(ids);
	djn_session_free(s);
	djn_model_unref(m);
	djn_backend_free(be);
	return 0;
}
