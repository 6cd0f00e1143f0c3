/* test-cuda-ops.c - every CUDA op against the CPU reference, with a stated bound
 * (ggml's test-backend-ops, for djinn).
 *
 * Each test draws seeded random inputs (never zeros), runs the op on the CPU
 * backend and on the CUDA backend, and compares
 *     ||cuda - cpu|| / ||cpu||   <=  1e-5  f32 elementwise, norms, rope, attention
 *                                          (f32 and f16 caches alike: both sides
 *                                          read the same halves)
 *                                <=  1e-4  f32 matmul (summation order differs)
 *                                <=  1e-3  f16 / bf16 / quantized matmul
 * argmax exactly, stats to 1e-5 relative.  Criterion forks a process per test,
 * so CUDA is initialised inside each test; without a GPU every test reports
 * itself skipped, never passed.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/backend.h"

#define BOUND_EW 1e-5
#define BOUND_MM_F32 1e-4
#define BOUND_MM_LOW 1e-3

/* --- harness --------------------------------------------------------------- */

struct pair {
	struct djn_backend *cpu, *gpu;
};

/* The CPU backend's results do not depend on its thread count (each output is
 * one task's sequential sum), so the heavy matmul tests use every core. */
static struct pair pair_open(int cpu_threads)
{
	struct djn_err err = { 0 };
	struct pair p;

	if (djn_cuda_device_count() <= 0)
		cr_skip_test("no CUDA device (djn_cuda_device_count() == 0)");
	p.cpu = djn_backend_cpu_new(cpu_threads, &err);
	cr_assert(p.cpu, "cpu backend: %s", err.msg);
	p.gpu = djn_backend_cuda_new(0, &err);
	cr_assert(p.gpu, "cuda backend: %s", err.msg);
	return p;
}

static void pair_close(struct pair *p)
{
	djn_backend_free(p->gpu);
	djn_backend_free(p->cpu);
}

static uint64_t rng_s;

static void rng_seed(uint64_t s)
{
	rng_s = s * 0x9e3779b97f4a7c15ull + 1;
}

static uint64_t rng_u64(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [-1, 1), never closer to zero than 1/1024. */
static float rng_f(void)
{
	for (;;) {
		float v = (float)((double)(rng_u64() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
		if (fabsf(v) >= 1.0f / 1024)
			return v;
	}
}

static float *rand_vec(size_t n, float scale)
{
	float *v = malloc(sizeof(float) * (n ? n : 1));

	cr_assert(v);
	for (size_t i = 0; i < n; i++)
		v[i] = rng_f() * scale;
	return v;
}

static void *gpu_alloc(struct djn_backend *g, size_t bytes)
{
	void *d = g->i->alloc(g, bytes);

	cr_assert(d, "alloc %zu: %s", bytes, g->err.msg);
	return d;
}

static void *gpu_put(struct djn_backend *g, const void *src, size_t bytes)
{
	void *d = gpu_alloc(g, bytes);

	cr_assert_eq(g->i->copy_h2d(g, d, src, bytes), DJN_OK, "copy_h2d: %s", g->err.msg);
	return d;
}

static void gpu_get(struct djn_backend *g, void *dst, const void *src, size_t bytes)
{
	cr_assert_eq(g->i->copy_d2h(g, dst, src, bytes), DJN_OK, "copy_d2h: %s", g->err.msg);
}

static double rel_err(const float *got, const float *ref, size_t n)
{
	double num = 0, den = 0;

	for (size_t i = 0; i < n; i++) {
		double d = (double)got[i] - ref[i];
		num += d * d;
		den += (double)ref[i] * ref[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define OK(be, call) cr_assert_eq((call), DJN_OK, "%s: %s", #call, (be)->err.msg)

/* A weight with the same bytes on both backends. */
struct tweight {
	struct djn_weight cpu, gpu;
};

static uint16_t f16_of(float v)
{
	return djn_f32_to_f16(v);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void tweight_new(struct pair *p, struct tweight *w, enum djn_dtype t, int64_t rows,
			int64_t cols, float scale)
{
	size_t rb = djn_dtype_row_bytes(t, cols), bytes = rb * (size_t)rows;
	uint8_t *h = malloc(bytes);

	cr_assert(h);
	for (int64_t r = 0; r < rows; r++) {
		uint8_t *row = h + (size_t)r * rb;
		switch (t) {
		case DJN_DTYPE_F32:
			for (int64_t c = 0; c < cols; c++) {
				float v = rng_f() * scale;
				memcpy(row + 4 * c, &v, 4);
			}
			break;
		case DJN_DTYPE_F16:
			for (int64_t c = 0; c < cols; c++)
				put16(row + 2 * c, f16_of(rng_f() * scale));
			break;
		case DJN_DTYPE_BF16:
			for (int64_t c = 0; c < cols; c++)
				put16(row + 2 * c, djn_f32_to_bf16(rng_f() * scale));
			break;
		case DJN_DTYPE_Q8_0:
			for (int64_t b = 0; b < cols / DJN_QK; b++) {
				uint8_t *bp = row + b * 34;
				put16(bp, f16_of(scale / 127 * (0.5f + 0.5f * fabsf(rng_f()))));
				for (int j = 0; j < DJN_QK; j++)
					bp[2 + j] = (uint8_t)(int8_t)(rng_f() * 127);
			}
			break;
		case DJN_DTYPE_Q4_0:
			for (int64_t b = 0; b < cols / DJN_QK; b++) {
				uint8_t *bp = row + b * 18;
				put16(bp, f16_of(scale / 8 * (0.5f + 0.5f * fabsf(rng_f()))));
				for (int j = 0; j < 16; j++)
					bp[2 + j] = (uint8_t)rng_u64();
			}
			break;
		case DJN_DTYPE_Q4_1:
			for (int64_t b = 0; b < cols / DJN_QK; b++) {
				uint8_t *bp = row + b * 20;
				put16(bp, f16_of(scale / 16 * (0.5f + 0.5f * fabsf(rng_f()))));
				put16(bp + 2, f16_of(-scale * 0.5f * fabsf(rng_f())));
				for (int j = 0; j < 16; j++)
					bp[4 + j] = (uint8_t)rng_u64();
			}
			break;
		default:
			cr_assert_fail("dtype %d", t);
		}
	}
	w->cpu = (struct djn_weight){ .dtype = t, .rows = rows, .cols = cols, .host = h, .dev = h,
				      .name = "test.weight" };
	w->gpu = w->cpu;
	w->gpu.dev = gpu_put(p->gpu, h, bytes);
}

static void tweight_free(struct pair *p, struct tweight *w)
{
	p->gpu->i->dealloc(p->gpu, w->gpu.dev);
	free((void *)w->cpu.host);
}

/* --- matmul ---------------------------------------------------------------- */

struct mm_case {
	int rows, cols, n;
	bool bias;
};

static void check_matmul(struct pair *p, enum djn_dtype t, const struct mm_case *mc,
			 size_t x_offset)
{
	struct djn_backend *cpu = p->cpu, *gpu = p->gpu;
	struct tweight w, b;
	size_t nx = (size_t)mc->n * mc->cols, ny = (size_t)mc->n * mc->rows;
	float *x = rand_vec(nx, 1.0f), *y_cpu = malloc(sizeof(float) * ny);
	float *y_gpu = malloc(sizeof(float) * ny);
	double bound = t == DJN_DTYPE_F32 ? BOUND_MM_F32 : BOUND_MM_LOW;

	tweight_new(p, &w, t, mc->rows, mc->cols, 1.0f / sqrtf((float)mc->cols));
	if (mc->bias)
		tweight_new(p, &b, t == DJN_DTYPE_F16 ? DJN_DTYPE_F16 : DJN_DTYPE_F32, 1, mc->rows,
			    0.5f);
	/* x_offset floats into the buffer: an unaligned x takes the generic path */
	uint8_t *xd = gpu_alloc(gpu, sizeof(float) * (nx + x_offset));
	float *xg = (float *)xd + x_offset;
	float *yd = gpu_alloc(gpu, sizeof(float) * ny);
	OK(gpu, gpu->i->copy_h2d(gpu, xg, x, sizeof(float) * nx));

	OK(cpu, cpu->i->matmul(cpu, y_cpu, x, &w.cpu, mc->bias ? &b.cpu : NULL, mc->n));
	OK(gpu, gpu->i->matmul(gpu, yd, xg, &w.gpu, mc->bias ? &b.gpu : NULL, mc->n));
	gpu_get(gpu, y_gpu, yd, sizeof(float) * ny);

	double e = rel_err(y_gpu, y_cpu, ny);
	cr_log_info("matmul %s %dx%d n=%d%s%s: rel err %.3g", djn_dtype_name(t), mc->rows,
		    mc->cols, mc->n, mc->bias ? " +bias" : "", x_offset ? " unaligned x" : "", e);
	cr_expect(e <= bound, "matmul %s %dx%d n=%d%s%s: rel err %.3g > %.0e", djn_dtype_name(t),
		  mc->rows, mc->cols, mc->n, mc->bias ? " +bias" : "",
		  x_offset ? " unaligned x" : "", e, bound);

	gpu->i->dealloc(gpu, xd);
	gpu->i->dealloc(gpu, yd);
	tweight_free(p, &w);
	if (mc->bias)
		tweight_free(p, &b);
	free(x);
	free(y_cpu);
	free(y_gpu);
}

static const struct mm_case decode_cases[] = {
	{ 4096, 4096, 1, false }, { 4096, 4096, 3, false },  { 11008, 4096, 1, false },
	{ 11008, 4096, 3, false }, { 4096, 11008, 1, false }, { 4096, 11008, 8, false },
	{ 512, 288, 1, false },    { 512, 288, 3, true },     { 172, 64, 1, false },
	{ 172, 64, 3, false },     { 172, 64, 8, true },      { 288, 512, 5, false },
};

static const struct mm_case prefill_cases[] = {
	{ 512, 288, 64, false }, { 512, 288, 64, true },    { 172, 64, 64, false },
	{ 172, 64, 512, true },  { 512, 288, 512, false },  { 4096, 4096, 64, false },
	{ 11008, 4096, 64, false }, { 4096, 4096, 512, false }, { 172, 64, 9, false },
};

static void run_cases(enum djn_dtype t, const struct mm_case *cases, size_t n_cases,
		      uint64_t seed)
{
	struct pair p = pair_open(0);

	rng_seed(seed);
	for (size_t i = 0; i < n_cases; i++)
		check_matmul(&p, t, &cases[i], 0);
	pair_close(&p);
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

Test(matmul, decode_f32) { run_cases(DJN_DTYPE_F32, decode_cases, N_OF(decode_cases), 11); }
Test(matmul, decode_f16) { run_cases(DJN_DTYPE_F16, decode_cases, N_OF(decode_cases), 12); }
Test(matmul, decode_bf16) { run_cases(DJN_DTYPE_BF16, decode_cases, N_OF(decode_cases), 13); }
Test(matmul, decode_q8_0) { run_cases(DJN_DTYPE_Q8_0, decode_cases, N_OF(decode_cases), 14); }
Test(matmul, decode_q4_0) { run_cases(DJN_DTYPE_Q4_0, decode_cases, N_OF(decode_cases), 15); }
Test(matmul, decode_q4_1) { run_cases(DJN_DTYPE_Q4_1, decode_cases, N_OF(decode_cases), 16); }
Test(matmul, prefill_f32) { run_cases(DJN_DTYPE_F32, prefill_cases, N_OF(prefill_cases), 21); }
Test(matmul, prefill_f16) { run_cases(DJN_DTYPE_F16, prefill_cases, N_OF(prefill_cases), 22); }
Test(matmul, prefill_bf16) { run_cases(DJN_DTYPE_BF16, prefill_cases, N_OF(prefill_cases), 23); }
Test(matmul, prefill_q8_0) { run_cases(DJN_DTYPE_Q8_0, prefill_cases, N_OF(prefill_cases), 24); }
Test(matmul, prefill_q4_0) { run_cases(DJN_DTYPE_Q4_0, prefill_cases, N_OF(prefill_cases), 25); }
Test(matmul, prefill_q4_1) { run_cases(DJN_DTYPE_Q4_1, prefill_cases, N_OF(prefill_cases), 26); }

/* Shapes and pointers the fast kernels refuse: odd columns, an unaligned x. */
/* matmul_group over n > 8 rows of f16/bf16 weights (a prefill, a batch of
 * sessions) rounds x once for the group: bit for bit what one matmul each
 * gives (DJN_GEMM_SHARED_X=0), with and without swiglu, and within
 * BOUND_MM_LOW of the CPU's. */
static void check_group_shared(struct pair *p, enum djn_dtype t, int n, bool swiglu)
{
	struct djn_backend *g = p->gpu, *c = p->cpu;
	const int cols = 256, n_w = swiglu ? 2 : 3;
	const int rows[3] = { swiglu ? 344 : 256, swiglu ? 344 : 128, 128 };
	struct tweight w[3];
	const struct djn_weight *wg[3], *wc[3];
	float *yd[3], *ys[3], *x = rand_vec((size_t)n * cols, 1.0f);
	float *xd = gpu_put(g, x, sizeof(float) * n * cols);
	size_t ny[3];

	for (int i = 0; i < n_w; i++) {
		tweight_new(p, &w[i], t, rows[i], cols, 1.0f / 16);
		wg[i] = &w[i].gpu;
		wc[i] = &w[i].cpu;
		ny[i] = (size_t)n * rows[i];
		yd[i] = gpu_alloc(g, sizeof(float) * ny[i]);
		ys[i] = malloc(sizeof(float) * ny[i]);
	}
	float *a = malloc(sizeof(float) * ny[0]), *b = malloc(sizeof(float) * ny[0]);

	setenv("DJN_GEMM_SHARED_X", "0", 1);
	OK(g, g->i->matmul_group(g, yd, xd, wg, n_w, n, swiglu, NULL));
	unsetenv("DJN_GEMM_SHARED_X");
	for (int i = 0; i < n_w; i++)
		gpu_get(g, ys[i], yd[i], sizeof(float) * ny[i]);
	OK(g, g->i->matmul_group(g, yd, xd, wg, n_w, n, swiglu, NULL));
	for (int i = 0; i < n_w; i++) {
		gpu_get(g, a, yd[i], sizeof(float) * ny[i]);
		cr_expect_arr_eq(a, ys[i], sizeof(float) * ny[i],
				 "matmul_group %s n=%d%s: output %d differs from one matmul each",
				 djn_dtype_name(t), n, swiglu ? " swiglu" : "", i);
	}
	/* and the first output against the CPU */
	OK(c, c->i->matmul(c, b, x, wc[0], NULL, n));
	if (swiglu) {
		float *up = malloc(sizeof(float) * ny[1]);
		OK(c, c->i->matmul(c, up, x, wc[1], NULL, n));
		OK(c, c->i->swiglu(c, b, b, up, ny[0]));
		free(up);
	}
	gpu_get(g, a, yd[0], sizeof(float) * ny[0]);
	double e = rel_err(a, b, ny[0]);
	cr_expect(e <= BOUND_MM_LOW, "matmul_group %s n=%d%s: rel err %.3g against the cpu",
		  djn_dtype_name(t), n, swiglu ? " swiglu" : "", e);
	for (int i = 0; i < n_w; i++) {
		g->i->dealloc(g, yd[i]);
		free(ys[i]);
		tweight_free(p, &w[i]);
	}
	g->i->dealloc(g, xd);
	free(x);
	free(a);
	free(b);
}

Test(matmul, group_shares_x_rounding)
{
	struct pair p = pair_open(0);
	static const int ns[] = { 9, 64, 130 };

	rng_seed(27);
	for (size_t i = 0; i < N_OF(ns); i++)
		for (int sw = 0; sw < 2; sw++) {
			check_group_shared(&p, DJN_DTYPE_F16, ns[i], sw);
			check_group_shared(&p, DJN_DTYPE_BF16, ns[i], sw);
		}
	pair_close(&p);
}

Test(matmul, odd_shapes_and_alignment)
{
	static const struct mm_case odd[] = {
		{ 37, 75, 1, false }, { 37, 75, 3, true }, { 37, 75, 9, false }, { 1, 3, 2, true },
	};
	static const struct mm_case q[] = { { 40, 96, 1, false }, { 40, 96, 4, true } };
	struct pair p = pair_open(1);
	static const enum djn_dtype plain[] = { DJN_DTYPE_F32, DJN_DTYPE_F16, DJN_DTYPE_BF16 };
	static const enum djn_dtype all[] = { DJN_DTYPE_F32,  DJN_DTYPE_F16,  DJN_DTYPE_BF16,
					      DJN_DTYPE_Q8_0, DJN_DTYPE_Q4_0, DJN_DTYPE_Q4_1 };

	rng_seed(31);
	for (size_t t = 0; t < N_OF(plain); t++)
		for (size_t i = 0; i < N_OF(odd); i++)
			check_matmul(&p, plain[t], &odd[i], 0);
	for (size_t t = 0; t < N_OF(all); t++)
		for (size_t i = 0; i < N_OF(q); i++)
			check_matmul(&p, all[t], &q[i], 1);
	pair_close(&p);
}

/* --- elementwise ----------------------------------------------------------- */

enum ew_op { EW_SWIGLU, EW_GELU, EW_ADD, EW_AXPBY, EW_SCALE };

static const char *const ew_name[] = { "swiglu", "gelu", "add", "axpby", "axpby(x=NULL)" };

static void check_ew(struct pair *p, enum ew_op op, size_t n, size_t offset)
{
	struct djn_backend *cpu = p->cpu, *gpu = p->gpu;
	float *a = rand_vec(n, 4.0f), *b = rand_vec(n, 2.0f), *out = malloc(sizeof(float) * n);
	float *got = malloc(sizeof(float) * n);
	float *ad = (float *)gpu_alloc(gpu, sizeof(float) * (n + offset)) + offset;
	float *bd = (float *)gpu_alloc(gpu, sizeof(float) * (n + offset)) + offset;
	float *oalloc = (float *)gpu_alloc(gpu, sizeof(float) * (n + offset)) + offset;
	float *od = oalloc, *ref;

	OK(gpu, gpu->i->copy_h2d(gpu, ad, a, sizeof(float) * n));
	OK(gpu, gpu->i->copy_h2d(gpu, bd, b, sizeof(float) * n));
	switch (op) {
	case EW_SWIGLU:
		OK(cpu, cpu->i->swiglu(cpu, out, a, b, n));
		OK(gpu, gpu->i->swiglu(gpu, od, ad, bd, n));
		ref = out;
		break;
	case EW_GELU:
		OK(cpu, cpu->i->gelu(cpu, out, a, n));
		OK(gpu, gpu->i->gelu(gpu, od, ad, n));
		ref = out;
		break;
	case EW_ADD: /* in place: out aliases a */
		OK(cpu, cpu->i->add(cpu, a, a, b, n));
		OK(gpu, gpu->i->add(gpu, ad, ad, bd, n));
		ref = a;
		od = ad;
		break;
	case EW_AXPBY:
		OK(cpu, cpu->i->axpby(cpu, a, 0.75f, b, -1.5f, n));
		OK(gpu, gpu->i->axpby(gpu, ad, 0.75f, bd, -1.5f, n));
		ref = a;
		od = ad;
		break;
	default:
		OK(cpu, cpu->i->axpby(cpu, a, 1.25f, NULL, 3.0f, n));
		OK(gpu, gpu->i->axpby(gpu, ad, 1.25f, NULL, 3.0f, n));
		ref = a;
		od = ad;
		break;
	}
	gpu_get(gpu, got, od, sizeof(float) * n);
	double e = rel_err(got, ref, n);
	cr_expect(e <= BOUND_EW, "%s n=%zu offset=%zu: rel err %.3g", ew_name[op], n, offset, e);
	gpu->i->dealloc(gpu, ad - offset);
	gpu->i->dealloc(gpu, bd - offset);
	gpu->i->dealloc(gpu, oalloc - offset);
	free(a);
	free(b);
	free(out);
	free(got);
}

Test(elementwise, maps)
{
	struct pair p = pair_open(1);
	static const size_t sizes[] = { 1, 7, 4096, (1u << 20) + 3 };

	rng_seed(41);
	for (int op = EW_SWIGLU; op <= EW_SCALE; op++)
		for (size_t i = 0; i < N_OF(sizes); i++) {
			check_ew(&p, (enum ew_op)op, sizes[i], 0);
			check_ew(&p, (enum ew_op)op, sizes[i], 1);
		}
	pair_close(&p);
}

Test(elementwise, softmax)
{
	struct pair p = pair_open(1);
	static const int dims[][2] = { { 4, 32000 }, { 3, 7 }, { 17, 512 }, { 1, 1 } };

	rng_seed(42);
	for (size_t i = 0; i < N_OF(dims); i++) {
		int n = dims[i][0], dim = dims[i][1];
		size_t cnt = (size_t)n * dim;
		float *x = rand_vec(cnt, 10.0f), *got = malloc(sizeof(float) * cnt);
		float *xd = gpu_put(p.gpu, x, sizeof(float) * cnt);
		OK(p.cpu, p.cpu->i->softmax(p.cpu, x, n, dim));
		OK(p.gpu, p.gpu->i->softmax(p.gpu, xd, n, dim));
		gpu_get(p.gpu, got, xd, sizeof(float) * cnt);
		double e = rel_err(got, x, cnt);
		/* the CPU reference sums exp() sequentially in f32 (as run.c does):
		 * over 32000 terms its own error is ~sqrt(n) * 2^-24 ~ 1e-5, so the
		 * bound is 1e-4 here, not the elementwise 1e-5 */
		cr_expect(e <= 1e-4, "softmax %dx%d: rel err %.3g", n, dim, e);
		p.gpu->i->dealloc(p.gpu, xd);
		free(x);
		free(got);
	}
	pair_close(&p);
}

Test(elementwise, embed)
{
	struct pair p = pair_open(1);
	static const enum djn_dtype all[] = { DJN_DTYPE_F32,  DJN_DTYPE_F16,  DJN_DTYPE_BF16,
					      DJN_DTYPE_Q8_0, DJN_DTYPE_Q4_0, DJN_DTYPE_Q4_1 };
	const int rows = 1000, cols = 288, n = 9;
	int32_t ids[9] = { 0, 999, 17, 17, 500, 1, 998, 3, 250 };

	rng_seed(43);
	for (size_t t = 0; t < N_OF(all); t++) {
		struct tweight w;
		size_t cnt = (size_t)n * cols;
		float *ref = malloc(sizeof(float) * cnt), *got = malloc(sizeof(float) * cnt);
		tweight_new(&p, &w, all[t], rows, cols, 1.0f);
		int32_t *idd = gpu_put(p.gpu, ids, sizeof(ids));
		float *od = gpu_alloc(p.gpu, sizeof(float) * cnt);
		OK(p.cpu, p.cpu->i->embed(p.cpu, ref, &w.cpu, ids, n));
		OK(p.gpu, p.gpu->i->embed(p.gpu, od, &w.gpu, idd, n));
		gpu_get(p.gpu, got, od, sizeof(float) * cnt);
		double e = rel_err(got, ref, cnt);
		/* a gather: the same dequantization, so exact in practice */
		cr_expect(e <= 1e-7, "embed %s: rel err %.3g", djn_dtype_name(all[t]), e);
		p.gpu->i->dealloc(p.gpu, idd);
		p.gpu->i->dealloc(p.gpu, od);
		tweight_free(&p, &w);
		free(ref);
		free(got);
	}
	pair_close(&p);
}

/* A bad id cannot be seen before the kernel runs: it is reported, with the id,
 * at the next synchronizing call, and the backend stays usable. */
Test(elementwise, embed_bad_id)
{
	struct pair p = pair_open(1);
	struct tweight w;
	int32_t ids[3] = { 1, 1000, 2 };
	float out[3 * 64];

	rng_seed(44);
	tweight_new(&p, &w, DJN_DTYPE_F32, 1000, 64, 1.0f);
	int32_t *idd = gpu_put(p.gpu, ids, sizeof(ids));
	float *od = gpu_alloc(p.gpu, sizeof(out));
	OK(p.gpu, p.gpu->i->embed(p.gpu, od, &w.gpu, idd, 3));
	enum djn_status st = p.gpu->i->sync(p.gpu);
	cr_expect_eq(st, DJN_ERR_RANGE, "sync after a bad id returned %d (%s)", st,
		     p.gpu->err.msg);
	cr_expect(strstr(p.gpu->err.msg, "1000"), "message names the id: %s", p.gpu->err.msg);
	cr_expect(!p.gpu->poisoned);
	OK(p.gpu, p.gpu->i->sync(p.gpu));
	gpu_get(p.gpu, out, od, sizeof(out));
	cr_expect(isnan(out[64]) && !isnan(out[0]), "the bad row is NaN, the others are not");
	p.gpu->i->dealloc(p.gpu, idd);
	p.gpu->i->dealloc(p.gpu, od);
	tweight_free(&p, &w);
	pair_close(&p);
}

/* --- norms ----------------------------------------------------------------- */

Test(norm, rmsnorm)
{
	struct pair p = pair_open(1);
	static const int shapes[][2] = { { 7, 4096 }, { 3, 64 }, { 5, 1000 }, { 1, 2048 },
					 { 2, 16384 }, { 3, 4094 }, { 2, 24576 } };
	static const enum djn_dtype gt[] = { DJN_DTYPE_F32, DJN_DTYPE_F16, DJN_DTYPE_BF16 };

	rng_seed(51);
	for (size_t s = 0; s < N_OF(shapes); s++)
		for (size_t t = 0; t < N_OF(gt); t++) {
			int n = shapes[s][0], dim = shapes[s][1];
			size_t cnt = (size_t)n * dim;
			struct tweight g;
			float *x = rand_vec(cnt, 3.0f), *ref = malloc(sizeof(float) * cnt);
			float *got = malloc(sizeof(float) * cnt);
			tweight_new(&p, &g, gt[t], 1, dim, 2.0f);
			float *xd = gpu_put(p.gpu, x, sizeof(float) * cnt);
			float *od = gpu_alloc(p.gpu, sizeof(float) * cnt);
			OK(p.cpu, p.cpu->i->rmsnorm(p.cpu, ref, x, &g.cpu, n, dim, 1e-5f));
			OK(p.gpu, p.gpu->i->rmsnorm(p.gpu, od, xd, &g.gpu, n, dim, 1e-5f));
			gpu_get(p.gpu, got, od, sizeof(float) * cnt);
			double e = rel_err(got, ref, cnt);
			cr_expect(e <= BOUND_EW, "rmsnorm %dx%d gain %s: rel err %.3g", n, dim,
				  djn_dtype_name(gt[t]), e);
			p.gpu->i->dealloc(p.gpu, xd);
			p.gpu->i->dealloc(p.gpu, od);
			tweight_free(&p, &g);
			free(x);
			free(ref);
			free(got);
		}
	pair_close(&p);
}

Test(norm, layernorm)
{
	struct pair p = pair_open(1);
	static const int shapes[][2] = { { 5, 768 }, { 3, 64 }, { 2, 1001 } };

	rng_seed(52);
	for (size_t s = 0; s < N_OF(shapes); s++)
		for (int variant = 0; variant < 3; variant++) {
			/* 0: f32 gain + bias, 1: f32 gain, no bias, 2: f16 gain + bias */
			int n = shapes[s][0], dim = shapes[s][1];
			size_t cnt = (size_t)n * dim;
			struct tweight g, b;
			float *x = rand_vec(cnt, 3.0f), *ref = malloc(sizeof(float) * cnt);
			float *got = malloc(sizeof(float) * cnt);
			for (size_t i = 0; i < cnt; i++)
				x[i] += 1.5f; /* a mean far from 0 */
			tweight_new(&p, &g, variant == 2 ? DJN_DTYPE_F16 : DJN_DTYPE_F32, 1, dim, 2.0f);
			tweight_new(&p, &b, variant == 2 ? DJN_DTYPE_F16 : DJN_DTYPE_F32, 1, dim, 1.0f);
			float *xd = gpu_put(p.gpu, x, sizeof(float) * cnt);
			float *od = gpu_alloc(p.gpu, sizeof(float) * cnt);
			OK(p.cpu, p.cpu->i->layernorm(p.cpu, ref, x, &g.cpu, variant == 1 ? NULL : &b.cpu,
						      n, dim, 1e-5f));
			OK(p.gpu, p.gpu->i->layernorm(p.gpu, od, xd, &g.gpu,
						      variant == 1 ? NULL : &b.gpu, n, dim, 1e-5f));
			gpu_get(p.gpu, got, od, sizeof(float) * cnt);
			double e = rel_err(got, ref, cnt);
			cr_expect(e <= BOUND_EW, "layernorm %dx%d variant %d: rel err %.3g", n, dim,
				  variant, e);
			p.gpu->i->dealloc(p.gpu, xd);
			p.gpu->i->dealloc(p.gpu, od);
			tweight_free(&p, &g);
			tweight_free(&p, &b);
			free(x);
			free(ref);
			free(got);
		}
	pair_close(&p);
}

/* --- rope ------------------------------------------------------------------ */

Test(rope, both_styles)
{
	struct pair p = pair_open(1);
	static const struct {
		int n, n_head, head_dim, rot_dim, pos0;
		float theta;
	} cases[] = {
		{ 1, 8, 64, 64, 0, 10000.0f },     { 5, 8, 64, 64, 3000, 10000.0f },
		{ 3, 4, 128, 128, 4090, 500000.0f }, { 64, 8, 64, 32, 17, 10000.0f },
		{ 2, 12, 64, 16, 1000, 10000.0f },   { 7, 3, 80, 80, 123, 1000000.0f },
	};

	rng_seed(61);
	for (size_t i = 0; i < N_OF(cases); i++)
		for (int style = 0; style < 2; style++) {
			size_t cnt = (size_t)cases[i].n * cases[i].n_head * cases[i].head_dim;
			float *x = rand_vec(cnt, 2.0f), *got = malloc(sizeof(float) * cnt);
			float *xd = gpu_put(p.gpu, x, sizeof(float) * cnt);
			enum djn_rope_style st = style ? DJN_ROPE_HALF : DJN_ROPE_INTERLEAVED;
			OK(p.cpu, p.cpu->i->rope(p.cpu, x, cases[i].n, cases[i].n_head,
						 cases[i].head_dim, cases[i].rot_dim, cases[i].pos0,
						 cases[i].theta, st));
			OK(p.gpu, p.gpu->i->rope(p.gpu, xd, cases[i].n, cases[i].n_head,
						 cases[i].head_dim, cases[i].rot_dim, cases[i].pos0,
						 cases[i].theta, st));
			gpu_get(p.gpu, got, xd, sizeof(float) * cnt);
			double e = rel_err(got, x, cnt);
			cr_expect(e <= BOUND_EW, "rope case %zu %s: rel err %.3g", i,
				  style ? "half" : "interleaved", e);
			p.gpu->i->dealloc(p.gpu, xd);
			free(x);
			free(got);
		}
	pair_close(&p);
}

/* --- fused ops of a recorded step: bit for bit what the separate ops give -- */

Test(fused, matmul_add_equals_matmul_then_add)
{
	struct pair p = pair_open(1);
	static const enum djn_dtype types[] = { DJN_DTYPE_F32, DJN_DTYPE_F16, DJN_DTYPE_BF16,
						DJN_DTYPE_Q8_0, DJN_DTYPE_Q4_1 };
	static const int shapes[][3] = { { 4096, 4096, 1 }, { 288, 768, 3 }, { 64, 256, 9 } };
	struct djn_backend *g = p.gpu;

	rng_seed(81);
	for (size_t t = 0; t < N_OF(types); t++)
		for (size_t k = 0; k < N_OF(shapes); k++) {
			int rows = shapes[k][0], cols = shapes[k][1], n = shapes[k][2];
			size_t ny = (size_t)n * rows;
			struct tweight w;
			tweight_new(&p, &w, types[t], rows, cols, 1.0f / sqrtf((float)cols));
			float *x = rand_vec((size_t)n * cols, 1.0f), *r = rand_vec(ny, 1.0f);
			float *xd = gpu_put(g, x, sizeof(float) * n * cols);
			float *rd = gpu_put(g, r, sizeof(float) * ny);
			float *y1 = gpu_alloc(g, sizeof(float) * ny), *y2 = gpu_alloc(g, sizeof(float) * ny);
			float *z1 = gpu_alloc(g, sizeof(float) * ny);
			float *a = malloc(sizeof(float) * ny), *b = malloc(sizeof(float) * ny);
			OK(g, g->i->matmul(g, y1, xd, &w.gpu, NULL, n));
			OK(g, g->i->add(g, z1, rd, y1, ny));
			/* z aliases r, as the forward pass calls it */
			OK(g, g->i->matmul_add(g, y2, rd, xd, &w.gpu, rd, n));
			gpu_get(g, a, y1, sizeof(float) * ny);
			gpu_get(g, b, y2, sizeof(float) * ny);
			cr_expect_arr_eq(a, b, sizeof(float) * ny, "matmul_add %s %dx%d n=%d: y differs",
					 djn_dtype_name(types[t]), rows, cols, n);
			gpu_get(g, a, z1, sizeof(float) * ny);
			gpu_get(g, b, rd, sizeof(float) * ny);
			cr_expect_arr_eq(a, b, sizeof(float) * ny, "matmul_add %s %dx%d n=%d: z differs",
					 djn_dtype_name(types[t]), rows, cols, n);
			g->i->dealloc(g, xd);
			g->i->dealloc(g, rd);
			g->i->dealloc(g, y1);
			g->i->dealloc(g, y2);
			g->i->dealloc(g, z1);
			tweight_free(&p, &w);
			free(x);
			free(r);
			free(a);
			free(b);
		}
	pair_close(&p);
}

/* --- attention ------------------------------------------------------------- */

struct tkv {
	int n_pages;
	float **cpu_pages, **gpu_pages_host;
	float **gpu_pages_dev; /* device array of device pointers */
	struct djn_kv_view cpu, gpu;
};

/* The dtype of the caches tkv_new makes (the f16 tests set it). */
static enum djn_dtype kv_dt = DJN_DTYPE_F32;

/* A cache whose pages are in shuffled address order, filled with the same
 * random bytes on both sides (slots never written must never be read). */
static void tkv_new(struct pair *p, struct tkv *kv, int n_pages, int page_tokens, int n_layer,
		    int kv_dim)
{
	size_t pf = (size_t)n_layer * 2 * page_tokens * kv_dim;
	size_t pb = pf * djn_kv_elem_bytes(kv_dt);

	kv->n_pages = n_pages;
	kv->cpu_pages = malloc(sizeof(float *) * n_pages);
	kv->gpu_pages_host = malloc(sizeof(float *) * n_pages);
	for (int i = 0; i < n_pages; i++) {
		float *junk = rand_vec(pf, 100.0f);
		if (kv_dt == DJN_DTYPE_F16) /* halves of the same junk: finite, large */
			for (size_t e = 0; e < pf; e++)
				((uint16_t *)junk)[e] = f16_of(junk[e]);
		kv->cpu_pages[i] = junk;
		kv->gpu_pages_host[i] = gpu_put(p->gpu, junk, pb);
	}
	/* shuffle the page table, the same way for both */
	for (int i = n_pages - 1; i > 0; i--) {
		int j = (int)(rng_u64() % (uint64_t)(i + 1));
		float *t = kv->cpu_pages[i];
		kv->cpu_pages[i] = kv->cpu_pages[j];
		kv->cpu_pages[j] = t;
		t = kv->gpu_pages_host[i];
		kv->gpu_pages_host[i] = kv->gpu_pages_host[j];
		kv->gpu_pages_host[j] = t;
	}
	kv->gpu_pages_dev = gpu_put(p->gpu, kv->gpu_pages_host, sizeof(float *) * n_pages);
	kv->cpu = (struct djn_kv_view){ .pages = kv->cpu_pages, .pages_host = kv->cpu_pages,
					.n_pages = n_pages, .page_tokens = page_tokens,
					.n_layer = n_layer, .kv_dim = kv_dim, .dtype = kv_dt };
	kv->gpu = kv->cpu;
	kv->gpu.pages = kv->gpu_pages_dev;
	kv->gpu.pages_host = kv->gpu_pages_host;
}

static void tkv_free(struct pair *p, struct tkv *kv)
{
	for (int i = 0; i < kv->n_pages; i++) {
		free(kv->cpu_pages[i]);
		p->gpu->i->dealloc(p->gpu, kv->gpu_pages_host[i]);
	}
	p->gpu->i->dealloc(p->gpu, kv->gpu_pages_dev);
	free(kv->cpu_pages);
	free(kv->gpu_pages_host);
}

static void kv_store_both(struct pair *p, struct tkv *kv, int layer, int pos0, int n, float scale)
{
	size_t cnt = (size_t)n * kv->cpu.kv_dim;
	float *k = rand_vec(cnt, scale), *v = rand_vec(cnt, scale);
	float *kd = gpu_put(p->gpu, k, sizeof(float) * (cnt ? cnt : 1));
	float *vd = gpu_put(p->gpu, v, sizeof(float) * (cnt ? cnt : 1));

	OK(p->cpu, p->cpu->i->kv_store(p->cpu, &kv->cpu, layer, pos0, n, k, v));
	OK(p->gpu, p->gpu->i->kv_store(p->gpu, &kv->gpu, layer, pos0, n, kd, vd));
	p->gpu->i->dealloc(p->gpu, kd);
	p->gpu->i->dealloc(p->gpu, vd);
	free(k);
	free(v);
}

static void check_attention(struct pair *p, int head_dim, int n_head, int n_kv_head, int pos0,
			    int n_rows)
{
	const int page_tokens = 16, n_layer = 2, layer = 1;
	const int kv_dim = n_kv_head * head_dim, q_dim = n_head * head_dim;
	const int n_pages = (pos0 + n_rows + page_tokens - 1) / page_tokens + 1;
	struct tkv kv;
	size_t cnt = (size_t)n_rows * q_dim;

	tkv_new(p, &kv, n_pages, page_tokens, n_layer, kv_dim);
	/* history in both layers (layer 0 differs, so a wrong layer offset shows) */
	kv_store_both(p, &kv, 0, 0, pos0 + n_rows, 1.0f);
	kv_store_both(p, &kv, layer, 0, pos0, 1.0f);
	kv_store_both(p, &kv, layer, pos0, n_rows, 1.0f);

	/* the cache itself must match exactly where it was written */
	const size_t eb = djn_kv_elem_bytes(kv_dt);
	size_t pf = (size_t)n_layer * 2 * page_tokens * kv_dim;
	char *page = malloc(eb * pf);
	int bad = 0;
	for (int pg = 0; pg * page_tokens < pos0 + n_rows; pg++) {
		gpu_get(p->gpu, page, kv.gpu_pages_host[pg], eb * pf);
		for (int t = pg * page_tokens; t < (pg + 1) * page_tokens && t < pos0 + n_rows; t++)
			for (int l = 0; l < n_layer; l++)
				for (int w = 0; w < 2; w++) {
					size_t off = (((size_t)l * 2 + w) * page_tokens + t % page_tokens) *
						     kv_dim * eb;
					bad += memcmp(page + off, (const char *)kv.cpu_pages[pg] + off,
						      eb * kv_dim) != 0;
				}
	}
	cr_expect_eq(bad, 0, "kv_store: %d rows of the cache differ", bad);
	free(page);

	float *q = rand_vec(cnt, 3.0f), *ref = malloc(sizeof(float) * cnt);
	float *got = malloc(sizeof(float) * cnt);
	float *qd = gpu_put(p->gpu, q, sizeof(float) * cnt);
	float *od = gpu_alloc(p->gpu, sizeof(float) * cnt);
	struct djn_attn_shape s = { .n_head = n_head, .n_kv_head = n_kv_head, .head_dim = head_dim,
				    .layer = layer, .pos0 = pos0, .n_rows = n_rows };
	OK(p->cpu, p->cpu->i->attention(p->cpu, ref, q, &kv.cpu, &s));
	OK(p->gpu, p->gpu->i->attention(p->gpu, od, qd, &kv.gpu, &s));
	gpu_get(p->gpu, got, od, sizeof(float) * cnt);
	double e = rel_err(got, ref, cnt);
	const char *dt = kv_dt == DJN_DTYPE_F16 ? "f16" : "f32";
	cr_log_info("attention %s hd=%d heads=%d/%d pos0=%d rows=%d: rel err %.3g", dt, head_dim,
		    n_head, n_kv_head, pos0, n_rows, e);
	cr_expect(e <= BOUND_EW, "attention %s hd=%d heads=%d/%d pos0=%d rows=%d: rel err %.3g",
		  dt, head_dim, n_head, n_kv_head, pos0, n_rows, e);
	p->gpu->i->dealloc(p->gpu, qd);
	p->gpu->i->dealloc(p->gpu, od);
	free(q);
	free(ref);
	free(got);
	tkv_free(p, &kv);
}

/* A step recorded at one position and replayed at others computes what the
 * ops compute when run at those positions, bit for bit (cache of kv_dt). */
static void check_replay(void)
{
	struct pair p = pair_open(1);
	struct djn_backend *g = p.gpu;
	const int hd = 64, nh = 8, nkv = 4, kv_dim = nkv * hd, q_dim = nh * hd;
	struct tkv kv;
	struct djn_graph *gr = NULL;

	rng_seed(83);
	tkv_new(&p, &kv, 200, 16, 2, kv_dim); /* 3200 positions of junk history */
	float *q = rand_vec(q_dim, 2.0f), *k = rand_vec(kv_dim, 1.0f), *v = rand_vec(kv_dim, 1.0f);
	float *qd = gpu_alloc(g, sizeof(float) * q_dim), *kd = gpu_alloc(g, sizeof(float) * kv_dim);
	float *vd = gpu_put(g, v, sizeof(float) * kv_dim), *od = gpu_alloc(g, sizeof(float) * q_dim);
	float *a = malloc(sizeof(float) * q_dim), *b = malloc(sizeof(float) * q_dim);
	struct djn_attn_shape sh = { nh, nkv, hd, 1, 0, 1 };

#define STEP(pos)                                                                             \
	do {                                                                                  \
		sh.pos0 = (pos);                                                              \
		OK(g, g->i->rope(g, qd, 1, nh, hd, hd, (pos), 10000.0f, DJN_ROPE_HALF));       \
		OK(g, g->i->rope(g, kd, 1, nkv, hd, hd, (pos), 10000.0f, DJN_ROPE_HALF));      \
		OK(g, g->i->kv_store(g, &kv.gpu, 1, (pos), 1, kd, vd));                        \
		OK(g, g->i->attention(g, od, qd, &kv.gpu, &sh));                               \
	} while (0)
	/* warm the scratch buffers, then record at 100 */
	STEP(100);
	OK(g, g->i->graph_begin(g, 100));
	STEP(100);
	OK(g, g->i->graph_end(g, &gr));
	cr_assert_not_null(gr);
	static const int at[] = { 5, 100, 1000, 3100, 63, 64, 65 };
	for (size_t i = 0; i < N_OF(at); i++) {
		OK(g, g->i->copy_h2d(g, qd, q, sizeof(float) * q_dim));
		OK(g, g->i->copy_h2d(g, kd, k, sizeof(float) * kv_dim));
		OK(g, g->i->graph_launch(g, gr, at[i]));
		gpu_get(g, a, od, sizeof(float) * q_dim);
		OK(g, g->i->copy_h2d(g, qd, q, sizeof(float) * q_dim));
		OK(g, g->i->copy_h2d(g, kd, k, sizeof(float) * kv_dim));
		STEP(at[i]);
		gpu_get(g, b, od, sizeof(float) * q_dim);
		cr_expect_arr_eq(a, b, sizeof(float) * q_dim, "replay at %d differs", at[i]);
	}
#undef STEP
	/* a recording refuses what it cannot replay: two rows, another position */
	OK(g, g->i->graph_begin(g, 7));
	cr_expect_eq(g->i->rope(g, qd, 1, nh, hd, hd, 8, 10000.0f, DJN_ROPE_HALF), DJN_ERR_STATE);
	struct djn_graph *bad = NULL;
	cr_expect_neq(g->i->graph_end(g, &bad), DJN_OK);
	cr_expect_null(bad);
	/* and the backend works normally after */
	OK(g, g->i->rope(g, qd, 1, nh, hd, hd, 8, 10000.0f, DJN_ROPE_HALF));
	OK(g, g->i->sync(g));
	g->i->graph_free(g, gr);
	g->i->dealloc(g, qd);
	g->i->dealloc(g, kd);
	g->i->dealloc(g, vd);
	g->i->dealloc(g, od);
	tkv_free(&p, &kv);
	free(q);
	free(k);
	free(v);
	free(a);
	free(b);
	pair_close(&p);
}

Test(graph, replay_at_other_positions) { check_replay(); }

/* The same with an f16 cache (attention.cu's f16 split kernel). */
Test(graph, replay_at_other_positions_f16)
{
	kv_dt = DJN_DTYPE_F16;
	check_replay();
}

/* The fused q/k/v step, matmul_group with rope, against matmul_group, rope
 * on q and k and kv_store: q, k, v and the cache, bit for bit. */
static void check_qkv_step(struct pair *p, enum djn_dtype t, int dim, int n_head, int n_kv_head,
			   int head_dim, int pos, enum djn_rope_style style)
{
	struct djn_backend *g = p->gpu;
	const int page_tokens = 16, n_layer = 2, layer = 1, kv_dim = n_kv_head * head_dim;
	const int rows[3] = { n_head * head_dim, kv_dim, kv_dim };
	const int n_pages = pos / page_tokens + 1;
	size_t pf = (size_t)n_layer * 2 * page_tokens * kv_dim;
	struct tweight w[3], gain;
	const struct djn_weight *ws[3];
	float *y1[3], *y2[3];
	struct tkv a, b;

	tweight_new(p, &gain, DJN_DTYPE_F32, 1, dim, 1.0f);
	for (int i = 0; i < 3; i++) {
		tweight_new(p, &w[i], t, rows[i], dim, 1.0f / sqrtf((float)dim));
		ws[i] = &w[i].gpu;
		y1[i] = gpu_alloc(g, sizeof(float) * rows[i]);
		y2[i] = gpu_alloc(g, sizeof(float) * rows[i]);
	}
	uint64_t seed = rng_s;
	tkv_new(p, &a, n_pages, page_tokens, n_layer, kv_dim);
	rng_s = seed;
	tkv_new(p, &b, n_pages, page_tokens, n_layer, kv_dim);
	float *x = rand_vec(dim, 2.0f), *xd = gpu_put(g, x, sizeof(float) * dim);
	float *n1 = gpu_alloc(g, sizeof(float) * dim);
	size_t big = pf > (size_t)rows[0] ? pf : (size_t)rows[0];
	float *h1 = malloc(sizeof(float) * big), *h2 = malloc(sizeof(float) * big);

	OK(g, g->i->rmsnorm(g, n1, xd, &gain.gpu, 1, dim, 1e-6f));
	OK(g, g->i->matmul_group(g, y1, n1, ws, 3, 1, false, NULL));
	OK(g, g->i->rope(g, y1[0], 1, n_head, head_dim, head_dim, pos, 10000.0f, style));
	OK(g, g->i->rope(g, y1[1], 1, n_kv_head, head_dim, head_dim, pos, 10000.0f, style));
	OK(g, g->i->kv_store(g, &a.gpu, layer, pos, 1, y1[1], y1[2]));
	struct djn_qkv_rope rp = { &b.gpu, layer, pos, head_dim, 10000.0f, style };
	OK(g, g->i->matmul_group(g, y2, n1, ws, 3, 1, false, &rp));

	for (int i = 0; i < 3; i++) {
		gpu_get(g, h1, y1[i], sizeof(float) * rows[i]);
		gpu_get(g, h2, y2[i], sizeof(float) * rows[i]);
		cr_expect_arr_eq(h1, h2, sizeof(float) * rows[i],
				 "qkv step %s dim %d hd %d %s: %c differs", djn_dtype_name(t), dim,
				 head_dim, style == DJN_ROPE_HALF ? "half" : "interleaved", "qkv"[i]);
	}
	for (int pg = 0; pg < n_pages; pg++) {
		gpu_get(g, h1, a.gpu_pages_host[pg], sizeof(float) * pf);
		gpu_get(g, h2, b.gpu_pages_host[pg], sizeof(float) * pf);
		cr_expect_arr_eq(h1, h2, sizeof(float) * pf, "qkv step dim %d: cache page %d differs",
				 dim, pg);
	}
	for (int i = 0; i < 3; i++) {
		tweight_free(p, &w[i]);
		g->i->dealloc(g, y1[i]);
		g->i->dealloc(g, y2[i]);
	}
	tweight_free(p, &gain);
	tkv_free(p, &a);
	tkv_free(p, &b);
	g->i->dealloc(g, xd);
	g->i->dealloc(g, n1);
	free(x);
	free(h1);
	free(h2);
}

Test(fused, qkv_step_equals_separate_ops)
{
	struct pair p = pair_open(1);

	rng_seed(85);
	for (int style = 0; style < 2; style++) {
		enum djn_rope_style st = style ? DJN_ROPE_HALF : DJN_ROPE_INTERLEAVED;
		check_qkv_step(&p, DJN_DTYPE_F16, 4096, 32, 32, 128, 700, st);  /* Llama-2-7B */
		check_qkv_step(&p, DJN_DTYPE_BF16, 2048, 16, 4, 128, 33, st);   /* GQA */
		check_qkv_step(&p, DJN_DTYPE_F16, 576, 9, 3, 64, 5, st);        /* SmolLM2-135M */
		check_qkv_step(&p, DJN_DTYPE_F32, 64, 8, 4, 8, 250, st);        /* stories260K */
		check_qkv_step(&p, DJN_DTYPE_F16, 96, 2, 1, 12, 0, st); /* k rows 12: rope done apart */
	}
	pair_close(&p);
}

static const int attn_cases[][2] = {
	/* pos0, n_rows: decode, short prefix, page-crossing prefill, pos0 > 0 with
	 * several rows, long decode (split-KV with many chunks) */
	{ 0, 1 },   { 37, 1 },  { 5, 3 },    { 15, 2 },  { 0, 64 },  { 20, 45 },
	{ 31, 17 }, { 300, 100 }, { 2000, 1 }, { 1500, 3 }, { 999, 8 }, { 0, 9 },
};

Test(attention, gqa_hd64)
{
	struct pair p = pair_open(1);

	rng_seed(71);
	for (size_t i = 0; i < N_OF(attn_cases); i++)
		check_attention(&p, 64, 8, 4, attn_cases[i][0], attn_cases[i][1]);
	pair_close(&p);
}

Test(attention, gqa_hd128)
{
	struct pair p = pair_open(1);

	rng_seed(72);
	for (size_t i = 0; i < N_OF(attn_cases); i++)
		check_attention(&p, 128, 8, 4, attn_cases[i][0], attn_cases[i][1]);
	pair_close(&p);
}

/* head_dim not a multiple of 32 (partial lanes) or of 4 (no tiled prefill),
 * multi-query (1 kv head), 256 (the largest) */
Test(attention, other_shapes)
{
	struct pair p = pair_open(1);

	rng_seed(73);
	check_attention(&p, 80, 8, 8, 40, 30);
	check_attention(&p, 96, 6, 2, 100, 1);
	check_attention(&p, 33, 4, 1, 10, 20);
	check_attention(&p, 256, 4, 2, 50, 40);
	check_attention(&p, 256, 4, 2, 500, 1);
	check_attention(&p, 64, 8, 1, 7, 70); /* multi-query through the GEMM path */
	pair_close(&p);
}

/* An f16 cache: the stores bit for bit as the CPU rounds them, and attention
 * within BOUND_EW of the CPU's (both read the same halves, exactly widened:
 * only the summation order differs).  Decode rows (the split kernel: lane =
 * 4 dims, 8 positions a warp step, through the page table) at every tail:
 * lengths 1, 15, 16, 17, 31, 32, 33, 63..65, 100, 127..129, several chunks
 * (2000), and 3..8 rows of different lengths; head_dim 64, 128 (one 128-dim
 * slice), 256 (two), 96 and 80 (lanes past the head idle), 8 (stories260K),
 * 33 (not a multiple of 4: the scalar kernel); MHA, GQA, MQA.  Pages are in
 * shuffled order, the history is large finite halves: a position read that
 * the CPU does not read shows. */
static const int f16_decode_cases[][2] = {
	{ 0, 1 },   { 14, 1 },  { 15, 1 },  { 16, 1 },   { 30, 1 },   { 31, 1 },
	{ 32, 1 },  { 62, 1 },  { 63, 1 },  { 64, 1 },   { 99, 1 },   { 126, 1 },
	{ 127, 1 }, { 128, 1 }, { 255, 1 }, { 1999, 1 }, { 5, 3 },    { 15, 2 },
	{ 29, 4 },  { 60, 8 },  { 999, 8 }, { 1500, 3 }, { 121, 7 },  { 0, 8 },
};

static void check_f16_decode(uint64_t seed)
{
	struct pair p = pair_open(1);
	static const int shapes[][3] = { /* head_dim, heads, kv heads */
		{ 128, 8, 4 }, { 128, 4, 4 }, { 64, 8, 8 }, { 64, 6, 2 },
	};

	kv_dt = DJN_DTYPE_F16;
	rng_seed(seed);
	for (size_t sh = 0; sh < N_OF(shapes); sh++)
		for (size_t i = 0; i < N_OF(f16_decode_cases); i++)
			check_attention(&p, shapes[sh][0], shapes[sh][1], shapes[sh][2],
					f16_decode_cases[i][0], f16_decode_cases[i][1]);
	check_attention(&p, 256, 4, 2, 50, 1);
	check_attention(&p, 256, 4, 2, 500, 3);
	check_attention(&p, 96, 6, 2, 100, 1);
	check_attention(&p, 80, 8, 8, 16, 2);
	check_attention(&p, 8, 8, 4, 33, 1);
	check_attention(&p, 33, 4, 1, 17, 1);
	check_attention(&p, 128, 8, 1, 40, 1); /* multi-query */
	/* prefill rows through the tiled kernel and the GEMM path, on halves */
	check_attention(&p, 64, 8, 4, 20, 45);
	check_attention(&p, 128, 8, 4, 0, 64);
	kv_dt = DJN_DTYPE_F32;
	pair_close(&p);
}

Test(attention, f16_cache, .timeout = 120) { check_f16_decode(75); }

/* The kernel kept for comparing (DJN_ATTN_F16_OLD=1) on the same cases. */
Test(attention, f16_cache_old_kernel, .timeout = 120)
{
	setenv("DJN_ATTN_F16_OLD", "1", 1);
	check_f16_decode(76);
}

Test(attention, range_errors)
{
	struct pair p = pair_open(1);
	struct tkv kv;
	float *buf;

	rng_seed(74);
	tkv_new(&p, &kv, 2, 16, 1, 64);
	buf = gpu_alloc(p.gpu, sizeof(float) * 64 * 4);
	cr_expect_eq(p.gpu->i->kv_store(p.gpu, &kv.gpu, 0, 31, 2, buf, buf), DJN_ERR_RANGE);
	cr_expect_eq(p.gpu->i->kv_store(p.gpu, &kv.gpu, 1, 0, 1, buf, buf), DJN_ERR_RANGE);
	struct djn_attn_shape s = { .n_head = 1, .n_kv_head = 1, .head_dim = 64, .layer = 0,
				    .pos0 = 32, .n_rows = 1 };
	cr_expect_eq(p.gpu->i->attention(p.gpu, buf, buf, &kv.gpu, &s), DJN_ERR_RANGE);
	cr_expect(!p.gpu->poisoned);
	p.gpu->i->dealloc(p.gpu, buf);
	tkv_free(&p, &kv);
	pair_close(&p);
}

/* --- reductions ------------------------------------------------------------ */

Test(reduce, argmax)
{
	struct pair p = pair_open(1);
	const int n = 100003;
	float *x;
	int want, got;

	rng_seed(81);
	x = rand_vec((size_t)n, 1.0f);
	/* ties: the first index wins */
	x[90001] = 5.0f;
	x[500] = 5.0f;
	x[70000] = 5.0f;
	x[0] = NAN; /* a NaN is never the maximum, even first */
	x[3] = NAN;
	float *xd = gpu_put(p.gpu, x, sizeof(float) * n);
	OK(p.cpu, p.cpu->i->argmax(p.cpu, x, n, &want));
	OK(p.gpu, p.gpu->i->argmax(p.gpu, xd, n, &got));
	cr_expect_eq(want, 500);
	cr_expect_eq(got, want, "argmax: cuda %d, cpu %d", got, want);

	/* sizes around the block boundaries, and a max at the very end */
	static const int sizes[] = { 1, 2, 255, 256, 257, 1024, 1025, 4097, 1 << 20 };
	for (size_t i = 0; i < N_OF(sizes); i++) {
		float *y = rand_vec((size_t)sizes[i], 1.0f);
		y[sizes[i] - 1] = 2.0f;
		float *yd = gpu_put(p.gpu, y, sizeof(float) * sizes[i]);
		OK(p.cpu, p.cpu->i->argmax(p.cpu, y, sizes[i], &want));
		OK(p.gpu, p.gpu->i->argmax(p.gpu, yd, sizes[i], &got));
		cr_expect_eq(got, want, "argmax n=%d: cuda %d, cpu %d", sizes[i], got, want);
		p.gpu->i->dealloc(p.gpu, yd);
		free(y);
	}

	/* all NaN: index 0, as the CPU */
	float nans[5] = { NAN, NAN, NAN, NAN, NAN };
	float *nd = gpu_put(p.gpu, nans, sizeof(nans));
	OK(p.cpu, p.cpu->i->argmax(p.cpu, nans, 5, &want));
	OK(p.gpu, p.gpu->i->argmax(p.gpu, nd, 5, &got));
	cr_expect_eq(got, want);
	/* -inf and NaN only: the first -inf */
	nans[2] = -INFINITY;
	nans[4] = -INFINITY;
	OK(p.gpu, p.gpu->i->copy_h2d(p.gpu, nd, nans, sizeof(nans)));
	OK(p.cpu, p.cpu->i->argmax(p.cpu, nans, 5, &want));
	OK(p.gpu, p.gpu->i->argmax(p.gpu, nd, 5, &got));
	cr_expect_eq(got, want, "argmax -inf/NaN: cuda %d, cpu %d", got, want);

	p.gpu->i->dealloc(p.gpu, nd);
	p.gpu->i->dealloc(p.gpu, xd);
	free(x);
	pair_close(&p);
}

static void expect_stats(const struct djn_stats *a, const struct djn_stats *b, const char *what)
{
	cr_expect_eq(a->n, b->n, "%s: n", what);
	cr_expect_eq(a->n_nan, b->n_nan, "%s: n_nan %lld vs %lld", what, (long long)a->n_nan,
		     (long long)b->n_nan);
	cr_expect_eq(a->n_inf, b->n_inf, "%s: n_inf", what);
	cr_expect_eq(a->argmax, b->argmax, "%s: argmax %lld vs %lld", what, (long long)a->argmax,
		     (long long)b->argmax);
	if (isnan(b->min)) {
		cr_expect(isnan(a->min) && isnan(a->max) && isnan(a->mean) && isnan(a->std),
			  "%s: no finite value, expected NaN moments", what);
		return;
	}
	cr_expect_eq(a->min, b->min, "%s: min %g vs %g", what, a->min, b->min);
	cr_expect_eq(a->max, b->max, "%s: max %g vs %g", what, a->max, b->max);
	cr_expect_eq(a->absmax, b->absmax, "%s: absmax", what);
#define REL(f)                                                                         \
	cr_expect(fabs(a->f - b->f) <= 1e-5 * fabs(b->f) + 1e-12, "%s: " #f " %.9g vs %.9g", \
		  what, a->f, b->f)
	REL(mean);
	REL(std);
	REL(l2);
#undef REL
}

Test(reduce, stats)
{
	struct pair p = pair_open(1);
	static const int64_t sizes[] = { 1, 3, 1000, (1 << 22) + 5 };

	rng_seed(82);
	for (size_t i = 0; i < N_OF(sizes); i++) {
		int64_t n = sizes[i];
		float *x = rand_vec((size_t)n, 2.0f);
		struct djn_stats want, got;
		char what[64];
		for (int64_t j = 0; j < n; j += 997)
			x[j] += 0.5f;
		if (n > 100) {
			x[7] = NAN;
			x[n - 1] = INFINITY;
			x[n / 2] = -INFINITY;
			x[n / 3] = NAN;
			x[n / 4] = 9.0f; /* a tie for the max: the first one counts */
			x[n / 5 * 4] = 9.0f;
			x[n / 6] = -9.5f;
		}
		float *xd = gpu_put(p.gpu, x, sizeof(float) * n);
		OK(p.cpu, p.cpu->i->stats(p.cpu, x, n, &want));
		OK(p.gpu, p.gpu->i->stats(p.gpu, xd, n, &got));
		snprintf(what, sizeof(what), "stats n=%lld", (long long)n);
		expect_stats(&got, &want, what);
		p.gpu->i->dealloc(p.gpu, xd);
		free(x);
	}

	float odd[4] = { NAN, INFINITY, NAN, -INFINITY };
	struct djn_stats want, got;
	float *od = gpu_put(p.gpu, odd, sizeof(odd));
	OK(p.cpu, p.cpu->i->stats(p.cpu, odd, 4, &want));
	OK(p.gpu, p.gpu->i->stats(p.gpu, od, 4, &got));
	expect_stats(&got, &want, "stats of NaN/Inf only");
	p.gpu->i->dealloc(p.gpu, od);
	pair_close(&p);
}

/* --- the backend itself ---------------------------------------------------- */

Test(backend, describe_memory_copies)
{
	struct pair p = pair_open(1);
	char line[256];
	size_t fr = 0, tot = 0;

	p.gpu->i->describe(p.gpu, line, sizeof(line));
	cr_expect(strstr(line, "cuda:0"), "describe: %s", line);
	OK(p.gpu, p.gpu->i->mem_info(p.gpu, &fr, &tot));
	cr_expect(tot > 0 && fr <= tot, "mem_info: %zu free of %zu", fr, tot);

	float a[1000], b[1000];
	rng_seed(91);
	for (int i = 0; i < 1000; i++)
		a[i] = rng_f();
	float *d1 = gpu_put(p.gpu, a, sizeof(a)), *d2 = gpu_alloc(p.gpu, sizeof(a));
	OK(p.gpu, p.gpu->i->copy_d2d(p.gpu, d2, d1, sizeof(a)));
	gpu_get(p.gpu, b, d2, sizeof(b));
	cr_expect(memcmp(a, b, sizeof(a)) == 0, "h2d, d2d, d2h round trip");
	OK(p.gpu, p.gpu->i->memset0(p.gpu, d2, sizeof(a)));
	gpu_get(p.gpu, b, d2, sizeof(b));
	cr_expect(b[0] == 0.0f && b[999] == 0.0f, "memset0");
	p.gpu->i->dealloc(p.gpu, d1);
	p.gpu->i->dealloc(p.gpu, d2);
	pair_close(&p);
}

Test(backend, out_of_memory_is_an_error)
{
	struct pair p = pair_open(1);
	void *d = p.gpu->i->alloc(p.gpu, (size_t)1 << 50);

	cr_expect_null(d);
	cr_expect_eq(p.gpu->err.code, DJN_ERR_NOMEM);
	cr_expect(strstr(p.gpu->err.msg, "cannot allocate") && strstr(p.gpu->err.msg, "free of"),
		  "message: %s", p.gpu->err.msg);
	cr_expect(!p.gpu->poisoned);
	/* and the device still works */
	float one = 1.0f, back = 0.0f;
	float *x = gpu_put(p.gpu, &one, sizeof(one));
	gpu_get(p.gpu, &back, x, sizeof(back));
	cr_expect_eq(back, 1.0f);
	p.gpu->i->dealloc(p.gpu, x);
	pair_close(&p);
}

/* An illegal address poisons the backend: the fault is reported, and every
 * later call fails fast with DJN_ERR_DEVICE instead of touching the device. */
Test(backend, sticky_error_poisons)
{
	struct pair p = pair_open(1);
	float *bogus[1] = { (float *)(uintptr_t)0x10 };
	void *pages = gpu_put(p.gpu, bogus, sizeof(bogus));
	float *k = gpu_alloc(p.gpu, sizeof(float) * 64);
	struct djn_kv_view kv = { .pages = (float *const *)pages, .pages_host = bogus,
				  .n_pages = 1, .page_tokens = 16, .n_layer = 1, .kv_dim = 64 };

	OK(p.gpu, p.gpu->i->memset0(p.gpu, k, sizeof(float) * 64));
	enum djn_status st = p.gpu->i->kv_store(p.gpu, &kv, 0, 0, 1, k, k);
	if (st == DJN_OK)
		st = p.gpu->i->sync(p.gpu);
	cr_expect_eq(st, DJN_ERR_DEVICE, "the fault is reported: %d (%s)", st, p.gpu->err.msg);
	cr_expect(p.gpu->poisoned, "the backend is poisoned");
	st = p.gpu->i->add(p.gpu, k, k, k, 64);
	cr_expect_eq(st, DJN_ERR_DEVICE);
	cr_expect(strstr(p.gpu->err.msg, "poisoned"), "message: %s", p.gpu->err.msg);
	cr_expect_null(p.gpu->i->alloc(p.gpu, 16));
	pair_close(&p);
}
