/* tensor.c - dtype table, half-precision conversion, dequantization, stats. */
#include <math.h>
#include <strings.h>

#include "djinn/status.h"
#include "djinn/tensor.h"

static const struct {
	const char *name;
	int block;
	size_t block_bytes;
} dtypes[DJN_DTYPE_COUNT] = {
	[DJN_DTYPE_F32] = { "f32", 1, 4 },
	[DJN_DTYPE_F16] = { "f16", 1, 2 },
	[DJN_DTYPE_BF16] = { "bf16", 1, 2 },
	[DJN_DTYPE_Q8_0] = { "q8_0", DJN_QK, 2 + DJN_QK },
	[DJN_DTYPE_Q4_0] = { "q4_0", DJN_QK, 2 + DJN_QK / 2 },
	[DJN_DTYPE_Q4_1] = { "q4_1", DJN_QK, 4 + DJN_QK / 2 },
};

const char *djn_dtype_name(enum djn_dtype t)
{
	return (unsigned)t < DJN_DTYPE_COUNT ? dtypes[t].name : "?";
}

bool djn_dtype_parse(const char *s, enum djn_dtype *out)
{
	for (int t = 0; t < DJN_DTYPE_COUNT; t++) {
		if (!strcasecmp(s, dtypes[t].name)) {
			*out = (enum djn_dtype)t;
			return true;
		}
	}
	return false;
}

int djn_dtype_block(enum djn_dtype t)
{
	return dtypes[t].block;
}

size_t djn_dtype_block_bytes(enum djn_dtype t)
{
	return dtypes[t].block_bytes;
}

size_t djn_dtype_row_bytes(enum djn_dtype t, int64_t n)
{
	return (size_t)(n / dtypes[t].block) * dtypes[t].block_bytes;
}

uint16_t djn_f32_to_f16(float f)
{
	uint32_t u, sign, man;
	int32_t exp;

	memcpy(&u, &f, 4);
	sign = (u >> 16) & 0x8000;
	exp = (int32_t)((u >> 23) & 0xff);
	man = u & 0x7fffff;
	if (exp == 0xff) /* inf / nan */
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
	exp = exp - 127 + 15;
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (exp <= 0) { /* subnormal or zero */
		if (exp < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		int shift = 14 - exp;
		uint32_t half = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
	uint32_t rem = man & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++; /* may carry into the exponent, which is still right */
	return (uint16_t)h;
}

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

/* Row r of a transposed weight: element c is c * ld + r of the stored matrix. */
static void row_f32_strided(const struct djn_weight *w, int64_t r, float *out)
{
	size_t es = djn_dtype_block_bytes(w->dtype);
	const uint8_t *p = (const uint8_t *)w->host + (size_t)r * es;

	for (int64_t c = 0; c < w->cols; c++, p += (size_t)w->ld * es) {
		switch (w->dtype) {
		case DJN_DTYPE_F32:
			memcpy(&out[c], p, 4);
			break;
		case DJN_DTYPE_F16:
			out[c] = djn_f16_to_f32(rd16(p));
			break;
		case DJN_DTYPE_BF16:
			out[c] = djn_bf16_to_f32(rd16(p));
			break;
		default:
			DJN_ASSERT(!"transposed weights are f32, f16 or bf16");
		}
	}
}

void djn_weight_row_f32(const struct djn_weight *w, int64_t r, float *out)
{
	size_t rb = djn_dtype_row_bytes(w->dtype, w->cols);
	const uint8_t *row = (const uint8_t *)w->host + (size_t)r * rb;
	int64_t n = w->cols;

	if (w->ld) {
		row_f32_strided(w, r, out);
		return;
	}
	switch (w->dtype) {
	case DJN_DTYPE_F32:
		memcpy(out, row, (size_t)n * 4);
		break;
	case DJN_DTYPE_F16:
		for (int64_t i = 0; i < n; i++)
			out[i] = djn_f16_to_f32(rd16(row + 2 * i));
		break;
	case DJN_DTYPE_BF16:
		for (int64_t i = 0; i < n; i++)
			out[i] = djn_bf16_to_f32(rd16(row + 2 * i));
		break;
	case DJN_DTYPE_Q8_0:
		for (int64_t b = 0; b < n / DJN_QK; b++, row += 34) {
			float d = djn_f16_to_f32(rd16(row));
			for (int j = 0; j < DJN_QK; j++)
				out[b * DJN_QK + j] = d * (float)(int8_t)row[2 + j];
		}
		break;
	case DJN_DTYPE_Q4_0:
		for (int64_t b = 0; b < n / DJN_QK; b++, row += 18) {
			float d = djn_f16_to_f32(rd16(row));
			for (int j = 0; j < DJN_QK / 2; j++) {
				out[b * DJN_QK + j] = d * (float)((row[2 + j] & 0xf) - 8);
				out[b * DJN_QK + j + 16] = d * (float)((row[2 + j] >> 4) - 8);
			}
		}
		break;
	case DJN_DTYPE_Q4_1:
		for (int64_t b = 0; b < n / DJN_QK; b++, row += 20) {
			float d = djn_f16_to_f32(rd16(row)), m = djn_f16_to_f32(rd16(row + 2));
			for (int j = 0; j < DJN_QK / 2; j++) {
				out[b * DJN_QK + j] = d * (float)(row[4 + j] & 0xf) + m;
				out[b * DJN_QK + j + 16] = d * (float)(row[4 + j] >> 4) + m;
			}
		}
		break;
	default:
		DJN_ASSERT(!"unknown dtype");
	}
}

void djn_stats_f32(const float *x, int64_t n, struct djn_stats *o)
{
	double sum = 0, sq = 0;
	int64_t k = 0;

	memset(o, 0, sizeof(*o));
	o->n = n;
	o->argmax = -1;
	o->min = INFINITY;
	o->max = -INFINITY;
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		if (isnan(v)) {
			o->n_nan++;
			continue;
		}
		if (isinf(v)) {
			o->n_inf++;
			continue;
		}
		if (v < o->min)
			o->min = v;
		if (v > o->max) {
			o->max = v;
			o->argmax = i;
		}
		sum += v;
		sq += (double)v * v;
		k++;
	}
	if (k == 0) {
		o->min = o->max = NAN;
		o->mean = o->std = NAN;
		return;
	}
	o->mean = sum / (double)k;
	double var = sq / (double)k - o->mean * o->mean;
	o->std = var > 0 ? sqrt(var) : 0;
	o->l2 = sqrt(sq);
	o->absmax = fabsf(o->min) > fabsf(o->max) ? fabsf(o->min) : fabsf(o->max);
}
