/* matmul_layout_bench.c - the CPU matmul on a GPT-2 Conv1D weight kept as
 * the file stores it ([in, out], ld = out) against the same weight laid out
 * row-major (what the CPU computed from before, and what djn_model_weights_
 * rowmajor still makes for other backends), for gpt2-xl's c_fc shape
 * (in 1600, out 6400) in f16, bf16 and f32, one token (decode) and eight
 * (prefill).  The two outputs must be equal bit for bit; the bench says so
 * and exits 1 otherwise.
 *
 * Times are medians of TRIALS calls, host clock, the layouts alternating.
 *
 * usage: matmul_layout_bench [THREADS]   (a table on stdout) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "djinn/backend.h"

#include "bench_util.h"

#define IN 1600
#define OUT 6400
#define TRIALS 7

static struct djn_backend *be;

static uint32_t rng = 12345;

static float frand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (float)(rng >> 8) / (float)(1u << 24) * 0.2f - 0.1f;
}

static void put(enum djn_dtype t, uint8_t *p, float v)
{
	uint16_t h;

	if (t == DJN_DTYPE_F32) {
		memcpy(p, &v, 4);
		return;
	}
	h = t == DJN_DTYPE_F16 ? djn_f32_to_f16(v) : djn_f32_to_bf16(v);
	memcpy(p, &h, 2);
}

static double time_one(const struct djn_weight *w, float *y, const float *x, int n)
{
	double t0 = now_ms();

	if (be->i->matmul(be, y, x, w, NULL, n)) {
		fprintf(stderr, "matmul_layout_bench: %s\n", be->err.msg);
		exit(1);
	}
	return now_ms() - t0;
}

int main(int argc, char **argv)
{
	static const enum djn_dtype types[] = { DJN_DTYPE_F16, DJN_DTYPE_BF16, DJN_DTYPE_F32 };
	static const int toks[] = { 1, 8 };
	struct djn_err err = { 0 };
	int threads = argc > 1 ? atoi(argv[1]) : 1, bad = 0;

	if (!(be = djn_backend_new("cpu", threads, &err))) {
		fprintf(stderr, "matmul_layout_bench: %s\n", err.msg);
		return 1;
	}
	printf("CPU matmul, %d x %d weight, %d thread(s); median of %d, ms\n", OUT, IN, threads,
	       TRIALS);
	printf("%-5s %4s %12s %12s %8s  %s\n", "dtype", "toks", "row-major", "file layout",
	       "ratio", "same bits");
	for (size_t d = 0; d < sizeof(types) / sizeof(types[0]); d++) {
		enum djn_dtype t = types[d];
		size_t es = djn_dtype_block_bytes(t);
		uint8_t *file = malloc((size_t)IN * OUT * es), *rm = malloc((size_t)IN * OUT * es);
		float *x = malloc(sizeof(float) * IN * 8);
		float *ya = malloc(sizeof(float) * OUT * 8), *yb = malloc(sizeof(float) * OUT * 8);

		for (size_t k = 0; k < (size_t)IN; k++)
			for (size_t r = 0; r < (size_t)OUT; r++) {
				float v = frand();
				put(t, file + (k * OUT + r) * es, v);
				put(t, rm + (r * IN + k) * es, v);
			}
		for (int i = 0; i < IN * 8; i++)
			x[i] = frand();
		struct djn_weight wa = { .dtype = t, .rows = OUT, .cols = IN, .host = rm, .dev = rm };
		struct djn_weight wb = wa;
		wb.ld = OUT;
		wb.host = wb.dev = file;
		for (size_t k = 0; k < sizeof(toks) / sizeof(toks[0]); k++) {
			double ta[TRIALS], tb[TRIALS];
			int n = toks[k];
			for (int i = 0; i < TRIALS; i++) {
				ta[i] = time_one(&wa, ya, x, n);
				tb[i] = time_one(&wb, yb, x, n);
			}
			qsort(ta, TRIALS, sizeof(double), cmp_d);
			qsort(tb, TRIALS, sizeof(double), cmp_d);
			bool same = !memcmp(ya, yb, sizeof(float) * (size_t)OUT * (size_t)n);
			bad |= !same;
			printf("%-5s %4d %12.2f %12.2f %8.2f  %s\n", djn_dtype_name(t), n,
			       ta[TRIALS / 2], tb[TRIALS / 2], tb[TRIALS / 2] / ta[TRIALS / 2],
			       same ? "yes" : "NO");
		}
		free(file);
		free(rm);
		free(x);
		free(ya);
		free(yb);
	}
	djn_backend_free(be);
	return bad;
}
