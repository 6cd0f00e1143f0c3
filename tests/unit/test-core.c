/* test-core.c - dtypes, half-precision conversion, dequantization, stats,
 * the thread pool, and the CPU ops against straightforward references. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/pool.h"
#include "djinn/backend.h"
#include "djinn/tensor.h"

Test(core, f16_round_trips_every_half)
{
	for (uint32_t h = 0; h < 65536; h++) {
		float f = djn_f16_to_f32((uint16_t)h);
		if (isnan(f))
			continue;
		cr_assert_eq(djn_f32_to_f16(f), h, "half 0x%04x -> %g -> 0x%04x", h, f,
			     djn_f32_to_f16(f));
	}
}

Test(core, f16_rounds_to_nearest_even)
{
	cr_assert_eq(djn_f32_to_f16(1.0f), 0x3c00);
	cr_assert_eq(djn_f32_to_f16(65504.0f), 0x7bff);
	cr_assert_eq(djn_f32_to_f16(65520.0f), 0x7c00); /* rounds up to inf */
	cr_assert_eq(djn_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie -> even */
	cr_assert_eq(djn_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
	cr_assert_eq(djn_f32_to_f16(5.9604645e-8f), 0x0001);
}

Test(core, bf16_conversion)
{
	cr_assert_eq(djn_f32_to_bf16(1.0f), 0x3f80);
	cr_assert_float_eq(djn_bf16_to_f32(0x3f80), 1.0f, 0);
	cr_assert_eq(djn_f32_to_bf16(1.00390625f), 0x3f80); /* tie -> even */
	cr_assert(isnan(djn_bf16_to_f32(djn_f32_to_bf16(NAN))));
}

Test(core, dtype_table)
{
	enum djn_dtype t;

	cr_assert(djn_dtype_parse("Q4_1", &t) && t == DJN_DTYPE_Q4_1);
	cr_assert(!djn_dtype_parse("q5_k", &t));
	cr_assert_eq(djn_dtype_row_bytes(DJN_DTYPE_Q8_0, 64), 68);
	cr_assert_eq(djn_dtype_row_bytes(DJN_DTYPE_Q4_0, 64), 36);
	cr_assert_eq(djn_dtype_row_bytes(DJN_DTYPE_Q4_1, 64), 40);
	cr_assert_eq(djn_dtype_row_bytes(DJN_DTYPE_BF16, 7), 14);
}

Test(core, dequantize_blocks)
{
	uint8_t q8[34], q4[18], q41[20];
	float out[32];
	uint16_t d = djn_f32_to_f16(0.5f), m = djn_f32_to_f16(-1.0f);
	struct djn_weight w = { .rows = 1, .cols = 32 };

	memcpy(q8, &d, 2);
	for (int i = 0; i < 32; i++)
		q8[2 + i] = (uint8_t)(int8_t)(i - 16);
	w.dtype = DJN_DTYPE_Q8_0;
	w.host = q8;
	djn_weight_row_f32(&w, 0, out);
	for (int i = 0; i < 32; i++)
		cr_assert_float_eq(out[i], 0.5f * (i - 16), 0);

	memcpy(q4, &d, 2);
	for (int i = 0; i < 16; i++)
		q4[2 + i] = (uint8_t)((i & 0xf) | ((15 - i) << 4));
	w.dtype = DJN_DTYPE_Q4_0;
	w.host = q4;
	djn_weight_row_f32(&w, 0, out);
	for (int i = 0; i < 16; i++) {
		cr_assert_float_eq(out[i], 0.5f * (i - 8), 0);
		cr_assert_float_eq(out[i + 16], 0.5f * (15 - i - 8), 0);
	}

	memcpy(q41, &d, 2);
	memcpy(q41 + 2, &m, 2);
	memcpy(q41 + 4, q4 + 2, 16);
	w.dtype = DJN_DTYPE_Q4_1;
	w.host = q41;
	djn_weight_row_f32(&w, 0, out);
	for (int i = 0; i < 16; i++)
		cr_assert_float_eq(out[i], 0.5f * i - 1.0f, 0);
}

Test(core, stats_skip_nan_and_inf)
{
	float x[] = { 1, -3, NAN, 2, INFINITY, 0 };
	struct djn_stats s;

	djn_stats_f32(x, 6, &s);
	cr_assert_eq(s.n, 6);
	cr_assert_eq(s.n_nan, 1);
	cr_assert_eq(s.n_inf, 1);
	cr_assert_float_eq(s.min, -3, 0);
	cr_assert_float_eq(s.max, 2, 0);
	cr_assert_eq(s.argmax, 3);
	cr_assert_float_eq(s.mean, 0, 1e-12);
	cr_assert_float_eq(s.l2, sqrt(14.0), 1e-9);
	cr_assert_float_eq(s.std, sqrt(14.0 / 4), 1e-9);
	cr_assert_float_eq(s.absmax, 3, 0);
}

static void mark(void *ctx, int64_t b, int64_t e)
{
	int *seen = ctx;

	for (int64_t i = b; i < e; i++)
		__atomic_add_fetch(&seen[i], 1, __ATOMIC_RELAXED);
}

Test(core, pool_covers_each_index_once)
{
	struct djn_pool *p = djn_pool_new(4);
	int seen[1001] = { 0 };

	for (int rep = 0; rep < 50; rep++)
		djn_pool_for(p, 1001, 1, mark, seen);
	for (int i = 0; i < 1001; i++)
		cr_assert_eq(seen[i], 50);
	djn_pool_free(p);
}

static float frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return ((float)(*s >> 40) / (float)(1 << 24)) * 2.0f - 1.0f;
}

Test(core, cpu_matmul_all_dtypes_match_dequantized_reference)
{
	struct djn_err err;
	struct djn_backend *be = djn_backend_cpu_new(2, &err);
	enum { R = 37, C = 64, N = 3 };
	uint64_t seed = 7;
	float wf[R * C], x[N * C], y[N * R], ref, deq[C];
	enum djn_dtype types[] = { DJN_DTYPE_F32, DJN_DTYPE_F16, DJN_DTYPE_BF16, DJN_DTYPE_Q8_0,
				   DJN_DTYPE_Q4_0, DJN_DTYPE_Q4_1 };

	for (int i = 0; i < R * C; i++)
		wf[i] = frand(&seed);
	for (int i = 0; i < N * C; i++)
		x[i] = frand(&seed);
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		size_t rb = djn_dtype_row_bytes(types[t], C);
		uint8_t *buf = calloc(R, rb);
		for (int r = 0; r < R; r++) {
			uint8_t *row = buf + r * rb;
			for (int b = 0; b < C; b += (types[t] >= DJN_DTYPE_Q8_0 ? 32 : C)) {
				const float *src = wf + r * C + b;
				switch (types[t]) {
				case DJN_DTYPE_F32: memcpy(row, src, C * 4); break;
				case DJN_DTYPE_F16:
					for (int i = 0; i < C; i++) {
						uint16_t h = djn_f32_to_f16(src[i]);
						memcpy(row + 2 * i, &h, 2);
					}
					break;
				case DJN_DTYPE_BF16:
					for (int i = 0; i < C; i++) {
						uint16_t h = djn_f32_to_bf16(src[i]);
						memcpy(row + 2 * i, &h, 2);
					}
					break;
				default: { /* crude quantizers: the test checks the dot, not them */
					uint8_t *blk = row + (b / 32) * djn_dtype_block_bytes(types[t]);
					uint16_t d = djn_f32_to_f16(types[t] == DJN_DTYPE_Q8_0 ? 1.0f / 127 : 1.0f / 7);
					uint16_t mn = djn_f32_to_f16(-1.0f);
					memcpy(blk, &d, 2);
					for (int i = 0; i < 32; i++) {
						float v = src[i];
						if (types[t] == DJN_DTYPE_Q8_0) {
							blk[2 + i] = (uint8_t)(int8_t)lrintf(v * 127);
						} else if (types[t] == DJN_DTYPE_Q4_0) {
							int q = (int)lrintf(v * 7) + 8;
							q = q < 0 ? 0 : q > 15 ? 15 : q;
							blk[2 + (i & 15)] |= (uint8_t)(i < 16 ? q : q << 4);
						} else {
							memcpy(blk + 2, &mn, 2);
							uint16_t d2 = djn_f32_to_f16(2.0f / 15);
							memcpy(blk, &d2, 2);
							int q = (int)lrintf((v + 1.0f) * 7.5f);
							q = q < 0 ? 0 : q > 15 ? 15 : q;
							blk[4 + (i & 15)] |= (uint8_t)(i < 16 ? q : q << 4);
						}
					}
				}
				}
			}
		}
		struct djn_weight w = { types[t], R, C, buf, buf, "w" };
		cr_assert_eq(be->i->matmul(be, y, x, &w, NULL, N), DJN_OK);
		for (int n = 0; n < N; n++) {
			for (int r = 0; r < R; r++) {
				djn_weight_row_f32(&w, r, deq);
				ref = 0;
				for (int c = 0; c < C; c++)
					ref += deq[c] * x[n * C + c];
				cr_assert_float_eq(y[n * R + r], ref, 1e-4, "%s row %d tok %d: %g vs %g",
						   djn_dtype_name(types[t]), r, n, y[n * R + r], ref);
			}
		}
		free(buf);
	}
	djn_backend_free(be);
}

Test(core, cpu_rope_styles_rotate_the_right_pairs)
{
	struct djn_err err;
	struct djn_backend *be = djn_backend_cpu_new(1, &err);
	float a[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, b[8];

	memcpy(b, a, sizeof(a));
	be->i->rope(be, a, 1, 1, 8, 8, 3, 10000.0f, DJN_ROPE_INTERLEAVED);
	be->i->rope(be, b, 1, 1, 8, 8, 3, 10000.0f, DJN_ROPE_HALF);
	/* pair 0 angle = pos * 1 = 3 rad */
	cr_assert_float_eq(a[0], 1 * cosf(3) - 2 * sinf(3), 1e-6);
	cr_assert_float_eq(a[1], 1 * sinf(3) + 2 * cosf(3), 1e-6);
	cr_assert_float_eq(b[0], 1 * cosf(3) - 5 * sinf(3), 1e-6);
	cr_assert_float_eq(b[4], 1 * sinf(3) + 5 * cosf(3), 1e-6);
	djn_backend_free(be);
}

Test(core, backend_spec_errors)
{
	struct djn_err err = { 0 };

	cr_assert_null(djn_backend_new("tpu", 1, &err));
	cr_assert(strstr(err.msg, "device 'tpu'"));
	cr_assert_null(djn_backend_new("cuda:x", 1, &err));
	cr_assert(strstr(err.msg, "cuda:N"));
	if (djn_cuda_device_count() == 0) {
		cr_assert_null(djn_backend_new("cuda", 1, &err));
		cr_assert(strstr(err.msg, "cuda"), "%s", err.msg);
		struct djn_backend *be = djn_backend_new("auto", 1, &err);
		cr_assert_not_null(be);
		cr_assert_str_eq(be->i->name, "cpu");
		djn_backend_free(be);
	}
}

#include <criterion/redirect.h>

#include "djinn/progress.h"

Test(core, progress_line_only_when_enabled_and_worth_it, .init = cr_redirect_stderr)
{
	size_t big = (size_t)1 << 30;

	djn_progress("quiet", 1, big);             /* off by default */
	djn_progress_enable(true);
	djn_progress("small", 1, (size_t)1 << 20); /* under 256 MiB: nothing */
	djn_progress("load", big / 2, big);
	djn_progress("load", big / 2 + 1, big);    /* within 100 ms: skipped */
	djn_progress("load", big, big);            /* the end always prints */
	djn_progress_enable(false);
	fflush(stderr);
	cr_assert_stderr_eq_str("\rload: 0.5/1.1 GB  50%\rload: 1.1/1.1 GB 100%\n");
}
