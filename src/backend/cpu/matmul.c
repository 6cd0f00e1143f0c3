/* matmul.c - y = x W^T on the CPU, for every weight dtype.  Each output is a
 * sequential f32 sum in column order (as llama2.c's matmul), so results do
 * not depend on the thread count; quantized rows are dequantized block by
 * block inside the dot product, never as a whole matrix. */
#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static float dot_row(enum djn_dtype t, const uint8_t *row, const float *x, int64_t n)
{
	float val = 0.0f;

	switch (t) {
	case DJN_DTYPE_F32: {
		const float *w = (const float *)row;
		for (int64_t j = 0; j < n; j++)
			val += w[j] * x[j];
		break;
	}
	case DJN_DTYPE_F16:
		for (int64_t j = 0; j < n; j++)
			val += djn_f16_to_f32(rd16(row + 2 * j)) * x[j];
		break;
	case DJN_DTYPE_BF16:
		for (int64_t j = 0; j < n; j++)
			val += djn_bf16_to_f32(rd16(row + 2 * j)) * x[j];
		break;
	case DJN_DTYPE_Q8_0:
		for (int64_t b = 0; b < n / DJN_QK; b++, row += 34, x += DJN_QK) {
			float d = djn_f16_to_f32(rd16(row)), s = 0.0f;
			for (int j = 0; j < DJN_QK; j++)
				s += (float)(int8_t)row[2 + j] * x[j];
			val += d * s;
		}
		break;
	case DJN_DTYPE_Q4_0:
		for (int64_t b = 0; b < n / DJN_QK; b++, row += 18, x += DJN_QK) {
			float d = djn_f16_to_f32(rd16(row)), s = 0.0f;
			for (int j = 0; j < DJN_QK / 2; j++)
				s += (float)((row[2 + j] & 0xf) - 8) * x[j] +
				     (float)((row[2 + j] >> 4) - 8) * x[j + 16];
			val += d * s;
		}
		break;
	case DJN_DTYPE_Q4_1:
		for (int64_t b = 0; b < n / DJN_QK; b++, row += 20, x += DJN_QK) {
			float d = djn_f16_to_f32(rd16(row)), m = djn_f16_to_f32(rd16(row + 2));
			float s = 0.0f, sx = 0.0f;
			for (int j = 0; j < DJN_QK / 2; j++) {
				s += (float)(row[4 + j] & 0xf) * x[j] + (float)(row[4 + j] >> 4) * x[j + 16];
				sx += x[j] + x[j + 16];
			}
			val += d * s + m * sx;
		}
		break;
	default:
		DJN_ASSERT(!"unknown dtype");
	}
	return val;
}

struct mm_ctx {
	float *y;
	const float *x;
	const struct djn_weight *w;
	const float *bias;
	size_t row_bytes;
};

static void mm_range(void *p, int64_t begin, int64_t end)
{
	struct mm_ctx *c = p;
	int64_t rows = c->w->rows, cols = c->w->cols;
	const uint8_t *base = c->w->dev;

	for (int64_t t = begin; t < end; t++) {
		int64_t tok = t / rows, r = t % rows;
		float v = dot_row(c->w->dtype, base + (size_t)r * c->row_bytes,
				  c->x + (size_t)tok * cols, cols);
		c->y[(size_t)tok * rows + r] = c->bias ? v + c->bias[r] : v;
	}
}

enum djn_status cpu_matmul(struct djn_backend *be, float *y, const float *x,
			   const struct djn_weight *w, const struct djn_weight *bias, int n)
{
	struct mm_ctx c = { y, x, w, NULL, djn_dtype_row_bytes(w->dtype, w->cols) };
	float *tmp = NULL;

	if (bias) {
		if (bias->dtype == DJN_DTYPE_F32) {
			c.bias = bias->dev;
		} else {
			struct djn_weight b = *bias;
			b.host = bias->dev;
			tmp = djn_xmalloc(sizeof(float) * (size_t)bias->cols);
			djn_weight_row_f32(&b, 0, tmp);
			c.bias = tmp;
		}
	}
	/* ~16k multiply-adds per task chunk keeps thread wake-ups amortized */
	djn_pool_for(cpu_pool(be), (int64_t)n * w->rows, 16384 / (w->cols ? w->cols : 1) + 1,
		     mm_range, &c);
	free(tmp);
	return DJN_OK;
}
