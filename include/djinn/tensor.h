/* tensor.h - element types, weight matrices and the statistics of a tensor.
 *
 * Activations are always f32.  Weights keep the dtype they were stored in
 * (f32, f16, bf16, or a llama.cpp block quantization) and are converted
 * inside the matmul, so a 4-bit model stays 4-bit in memory.
 */
#ifndef DJINN_TENSOR_H
#define DJINN_TENSOR_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

enum djn_dtype {
	DJN_DTYPE_F32,
	DJN_DTYPE_F16,
	DJN_DTYPE_BF16,
	DJN_DTYPE_Q8_0, /* blocks of 32: f16 scale d, 32 x int8;          34 bytes */
	DJN_DTYPE_Q4_0, /* blocks of 32: f16 d, 16 bytes of nibbles (-8); 18 bytes */
	DJN_DTYPE_Q4_1, /* blocks of 32: f16 d, f16 m, 16 bytes nibbles;  20 bytes */
	DJN_DTYPE_COUNT
};

#define DJN_QK 32 /* elements per quantization block */

const char *djn_dtype_name(enum djn_dtype t);
/* Parse "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1" (case-insensitive). */
bool djn_dtype_parse(const char *s, enum djn_dtype *out);
/* Elements per block (1 for plain types, 32 for quantized ones). */
int djn_dtype_block(enum djn_dtype t);
/* Bytes of one block. */
size_t djn_dtype_block_bytes(enum djn_dtype t);
/* Bytes for a row of n elements; n must be a multiple of the block size. */
size_t djn_dtype_row_bytes(enum djn_dtype t, int64_t n);

/* A 2-D weight: rows x cols, y[r] = sum_c W[r][c] * x[c].
 * 1-D weights (norm gains, biases) have rows == 1.
 * `host` points into the model's mapping (or an owned buffer); `dev` is the
 * copy the backend computes from (== host on the CPU backend); neither is
 * owned by the struct.  `name` is the tensor's name in its file.
 * ld == 0: row-major, row r at host + r * row_bytes.  ld > 0 (plain dtypes
 * only): stored transposed as the file has it, W[r][c] at element
 * c * ld + r of host (GPT-2's Conv1D [in, out], q/k/v being column ranges
 * of one c_attn); only the CPU backend computes from such a weight, and
 * djn_model_weights_rowmajor makes them row-major for any other. */
struct djn_weight {
	enum djn_dtype dtype;
	int64_t rows, cols;
	const void *host;
	void *dev;
	const char *name;
	int64_t ld;
};

static inline bool djn_weight_present(const struct djn_weight *w)
{
	return w->host != NULL;
}

/* The bytes of the weight's own elements (a transposed column range counts
 * rows * cols, not the whole stored matrix). */
static inline size_t djn_weight_bytes(const struct djn_weight *w)
{
	return (size_t)w->rows * djn_dtype_row_bytes(w->dtype, w->cols);
}

/* Dequantize row r of w (cols elements) into out; either layout. */
void djn_weight_row_f32(const struct djn_weight *w, int64_t r, float *out);

/* IEEE half and bfloat16 conversions (round to nearest even). */
static inline float djn_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t djn_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* Exact, without branches (masks), so loops that widen halves vectorize:
 * the exponent is rebiased; 31 (inf, NaN) goes on to 255; a subnormal m is
 * made the normal 2^-14 * (1 + m/1024) and 2^-14 taken off, which leaves
 * m * 2^-24 exactly; the sign is put back last (so -0 stays -0). */
static inline float djn_f16_to_f32(uint16_t h)
{
	uint32_t o = (uint32_t)(h & 0x7fff) << 13, e = o & 0x0f800000u, os, u;
	uint32_t inf = 0u - (uint32_t)(e == 0x0f800000u), sub = 0u - (uint32_t)(e == 0);
	float f, fs;

	o += 0x38000000u + (inf & 0x38000000u);
	os = o + 0x00800000u;
	memcpy(&fs, &os, 4);
	fs -= 6.103515625e-05f;
	memcpy(&u, &fs, 4);
	u = (u & sub) | (o & ~sub);
	u |= (uint32_t)(h & 0x8000) << 16;
	memcpy(&f, &u, 4);
	return f;
}
uint16_t djn_f32_to_f16(float f);

/* What `inspect` reports about a tensor.  NaN and Inf elements are counted
 * and excluded from min/max/mean/std/l2. */
struct djn_stats {
	int64_t n;        /* elements looked at */
	int64_t n_nan, n_inf;
	float min, max;
	double mean, std; /* population std */
	double l2;        /* sqrt(sum x^2) */
	float absmax;
	int64_t argmax;   /* flat index of the max (first one) */
};

/* Reference implementation on host memory (the CPU backend uses it). */
void djn_stats_f32(const float *x, int64_t n, struct djn_stats *out);

#endif
