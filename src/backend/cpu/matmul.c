/* matmul.c - y = x W^T on the CPU, for every weight dtype.  Each output is a
 * sequential f32 sum in column order (as llama2.c's matmul), so results do
 * not depend on the thread count; quantized rows are dequantized block by
 * block inside the dot product, never as a whole matrix.  A transposed
 * weight (GPT-2's Conv1D as the file stores it) is widened a tile at a time
 * and summed in the same order, so both layouts give the same bits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

/* Four-lane partial sums over dequantized blocks: plain loops the compiler
 * vectorizes at -O2.  Used for every dtype but f32, whose sequential order
 * is kept so greedy tokens match llama2.c bit for bit. */
typedef float v4 __attribute__((vector_size(16)));

static inline float dot32(const float *w, const float *x, int n)
{
	v4 acc = { 0 }, a, b;

	for (int j = 0; j < n; j += 4) {
		memcpy(&a, w + j, sizeof(a));
		memcpy(&b, x + j, sizeof(b));
		acc += a * b;
	}
	return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

static float dot_row(enum djn_dtype t, const uint8_t *row, const float *x, int64_t n)
{
	float val = 0.0f, w[DJN_QK];

	switch (t) {
	case DJN_DTYPE_F32: {
		const float *wf = (const float *)row;
		for (int64_t j = 0; j < n; j++)
			val += wf[j] * x[j];
		return val;
	}
	case DJN_DTYPE_F16:
	case DJN_DTYPE_BF16: {
		int64_t j = 0;
		for (; j + DJN_QK <= n; j += DJN_QK) {
			for (int k = 0; k < DJN_QK; k++) {
				uint16_t h = rd16(row + 2 * (j + k));
				w[k] = t == DJN_DTYPE_BF16 ? djn_bf16_to_f32(h) : djn_f16_to_f32(h);
			}
			val += dot32(w, x + j, DJN_QK);
		}
		for (; j < n; j++) {
			uint16_t h = rd16(row + 2 * j);
			val += (t == DJN_DTYPE_BF16 ? djn_bf16_to_f32(h) : djn_f16_to_f32(h)) * x[j];
		}
		return val;
	}
	case DJN_DTYPE_Q8_0:
		for (int64_t b = 0; b < n / DJN_QK; b++, row += 34, x += DJN_QK) {
			for (int k = 0; k < DJN_QK; k++)
				w[k] = (float)(int8_t)row[2 + k];
			val += djn_f16_to_f32(rd16(row)) * dot32(w, x, DJN_QK);
		}
		return val;
	case DJN_DTYPE_Q4_0:
	case DJN_DTYPE_Q4_1: {
		bool q41 = t == DJN_DTYPE_Q4_1;
		size_t bb = q41 ? 20 : 18, off = q41 ? 4 : 2;
		float bias = q41 ? 0.0f : -8.0f;
		for (int64_t b = 0; b < n / DJN_QK; b++, row += bb, x += DJN_QK) {
			const uint8_t *qs = row + off;
			for (int k = 0; k < DJN_QK / 2; k++) {
				w[k] = (float)(qs[k] & 0xf) + bias;
				w[k + 16] = (float)(qs[k] >> 4) + bias;
			}
			val += djn_f16_to_f32(rd16(row)) * dot32(w, x, DJN_QK);
			if (q41) {
				v4 sx = { 0 }, a;
				for (int k = 0; k < DJN_QK; k += 4) {
					memcpy(&a, x + k, sizeof(a));
					sx += a;
				}
				val += djn_f16_to_f32(rd16(row + 2)) * ((sx[0] + sx[2]) + (sx[1] + sx[3]));
			}
		}
		return val;
	}
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
	int64_t n;
};

static void mm_range(void *p, int64_t begin, int64_t end)
{
	struct mm_ctx *c = p;
	int64_t rows = c->w->rows, cols = c->w->cols;
	const uint8_t *base = c->w->dev;

	/* row-major over outputs: a weight row is read once for all the
	 * chunk's tokens (prefill), and each output is still one dot product */
	int64_t n = c->n;
	for (int64_t t = begin; t < end; t++) {
		int64_t r = t / n, tok = t % n;
		float v = dot_row(c->w->dtype, base + (size_t)r * c->row_bytes,
				  c->x + (size_t)tok * cols, cols);
		c->y[(size_t)tok * rows + r] = c->bias ? v + c->bias[r] : v;
	}
}

/* A transposed weight, W[r][c] at element c * ld + r: a strip of TR outputs
 * reads TR contiguous elements of each stored row, widened into
 * tile[k][i] = W[r0 + i][j + k] for a block of DJN_QK inputs.  Each output
 * then adds exactly what dot_row adds for that block: for a whole f16/bf16
 * block dot32's four lanes (lane k % 4 sums its products in k order, then
 * (l0 + l2) + (l1 + l3)), kept here per output so the loops run along the
 * strip, contiguous and vectorized; for f32 and a tail block one product at
 * a time.  The sums are bit for bit those of the row-major layout.  TB
 * tokens share one widened tile. */
enum { TR = 64, TB = 8 };

/* One stored row's TR elements (a constant count: the loop vectorizes). */
static inline void widen_full(enum djn_dtype t, const uint8_t *src, float *d)
{
	uint16_t h[TR];

	if (t == DJN_DTYPE_F32) {
		memcpy(d, src, sizeof(float) * TR);
		return;
	}
	memcpy(h, src, sizeof(h));
	if (t == DJN_DTYPE_F16)
		for (int i = 0; i < TR; i++)
			d[i] = djn_f16_to_f32(h[i]);
	else
		for (int i = 0; i < TR; i++)
			d[i] = djn_bf16_to_f32(h[i]);
}

static void tile_f32(enum djn_dtype t, const uint8_t *src, size_t stride, int nr, int nk,
		     float tile[DJN_QK][TR])
{
	size_t es = djn_dtype_block_bytes(t);

	for (int k = 0; k < nk; k++, src += stride) {
		float *d = tile[k];
		if (nr == TR) {
			widen_full(t, src, d);
			continue;
		}
		/* a last, narrower strip: the loops below run over all TR
		 * (a constant trip count vectorizes) and its extra outputs are
		 * never stored */
		if (t == DJN_DTYPE_F32)
			memcpy(d, src, sizeof(float) * (size_t)nr);
		for (int i = 0; i < nr && t != DJN_DTYPE_F32; i++)
			d[i] = t == DJN_DTYPE_F16 ? djn_f16_to_f32(rd16(src + es * i))
						  : djn_bf16_to_f32(rd16(src + es * i));
		memset(d + nr, 0, sizeof(float) * (size_t)(TR - nr));
	}
}

static void mmt_range(void *p, int64_t begin, int64_t end)
{
	struct mm_ctx *c = p;
	const struct djn_weight *w = c->w;
	int64_t rows = w->rows, cols = w->cols;
	size_t es = djn_dtype_block_bytes(w->dtype), stride = (size_t)w->ld * es;
	const uint8_t *base = w->dev;
	bool blocks = w->dtype != DJN_DTYPE_F32;
	float tile[DJN_QK][TR], acc[TB][TR], lane[4][TR];

	for (int64_t tr = begin; tr < end; tr++) {
		int64_t r0 = tr * TR;
		int nr = rows - r0 < TR ? (int)(rows - r0) : TR;
		for (int64_t t0 = 0; t0 < c->n; t0 += TB) {
			int nt = c->n - t0 < TB ? (int)(c->n - t0) : TB;
			memset(acc, 0, sizeof(acc));
			for (int64_t j = 0; j < cols; j += DJN_QK) {
				int nk = cols - j < DJN_QK ? (int)(cols - j) : DJN_QK;
				tile_f32(w->dtype, base + (size_t)j * stride + (size_t)r0 * es, stride,
					 nr, nk, tile);
				for (int b = 0; b < nt; b++) {
					const float *x = c->x + (size_t)(t0 + b) * cols + j;
					float *a = acc[b];
					if (!blocks || nk < DJN_QK) {
						for (int k = 0; k < nk; k++) {
							const float xk = x[k];
							for (int i = 0; i < TR; i++)
								a[i] += tile[k][i] * xk;
						}
						continue;
					}
					memset(lane, 0, sizeof(lane));
					for (int k = 0; k < DJN_QK; k++) {
						const float xk = x[k];
						float *l = lane[k & 3];
						for (int i = 0; i < TR; i++)
							l[i] += tile[k][i] * xk;
					}
					for (int i = 0; i < TR; i++)
						a[i] += (lane[0][i] + lane[2][i]) + (lane[1][i] + lane[3][i]);
				}
			}
			for (int b = 0; b < nt; b++)
				for (int i = 0; i < nr; i++)
					c->y[(size_t)(t0 + b) * rows + r0 + i] =
						c->bias ? acc[b][i] + c->bias[r0 + i] : acc[b][i];
		}
	}
}

enum djn_status cpu_matmul(struct djn_backend *be, float *y, const float *x,
			   const struct djn_weight *w, const struct djn_weight *bias, int n)
{
	struct mm_ctx c = { y, x, w, NULL, djn_dtype_row_bytes(w->dtype, w->cols), n };
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
	if (w->ld)
		djn_pool_for(cpu_pool(be), (w->rows + TR - 1) / TR, 1, mmt_range, &c);
	else /* ~16k multiply-adds per task chunk keeps thread wake-ups amortized */
		djn_pool_for(cpu_pool(be), (int64_t)n * w->rows, 16384 / (w->cols ? w->cols : 1) + 1,
		     mm_range, &c);
	free(tmp);
	return DJN_OK;
}
