/* attention.c - causal GQA attention over the paged KV cache, on the CPU,
 * following run.c's arithmetic (scores, softmax, weighted sum of v). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Element index of row `pos` of K (which = 0) or V (1) of layer in its
 * page, and that page. */
static inline size_t kv_off(const struct djn_kv_view *kv, int layer, int which, int pos)
{
	return (((size_t)layer * 2 + which) * kv->page_tokens + pos % kv->page_tokens) *
	       kv->kv_dim;
}

static inline void *kv_page(const struct djn_kv_view *kv, int pos)
{
	return kv->pages_host[pos / kv->page_tokens];
}

/* n elements of a row of the cache from element off, as f32: the f32
 * cache's own floats, or an f16 cache's halves widened into buf (exact). */
static inline const float *kv_read(const struct djn_kv_view *kv, int layer, int which, int pos,
				   size_t off, int n, float *buf)
{
	size_t at = kv_off(kv, layer, which, pos) + off;

	if (kv->dtype != DJN_DTYPE_F16)
		return (const float *)kv_page(kv, pos) + at;
	const uint16_t *h = (const uint16_t *)kv_page(kv, pos) + at;
	for (int i = 0; i < n; i++)
		buf[i] = djn_f16_to_f32(h[i]);
	return buf;
}

static void kv_write(const struct djn_kv_view *kv, int layer, int which, int pos,
		     const float *src)
{
	size_t at = kv_off(kv, layer, which, pos);

	if (kv->dtype != DJN_DTYPE_F16) {
		memcpy((float *)kv_page(kv, pos) + at, src, sizeof(float) * kv->kv_dim);
		return;
	}
	uint16_t *h = (uint16_t *)kv_page(kv, pos) + at;
	for (int i = 0; i < kv->kv_dim; i++)
		h[i] = djn_f32_to_f16(src[i]);
}

enum djn_status cpu_kv_store(struct djn_backend *be, const struct djn_kv_view *kv, int layer,
			     int pos0, int n, const float *k, const float *v)
{
	if (pos0 < 0 || pos0 + n > kv->n_pages * kv->page_tokens)
		return djn_err_set(&be->err, DJN_ERR_RANGE,
				   "kv_store: positions %d..%d beyond the %d cached", pos0,
				   pos0 + n - 1, kv->n_pages * kv->page_tokens);
	for (int i = 0; i < n; i++) {
		kv_write(kv, layer, 0, pos0 + i, k + (size_t)i * kv->kv_dim);
		kv_write(kv, layer, 1, pos0 + i, v + (size_t)i * kv->kv_dim);
	}
	return DJN_OK;
}

struct attn_ctx {
	float *out;
	const float *q;
	const struct djn_kv_view *kv;
	const struct djn_attn_shape *s;
};

void cpu_attention_head(float *xb, const float *q, const struct djn_kv_view *kv, int layer,
			int head_dim, int kvh, int pos, float *att)
{
	int hd = head_dim;
	float wide[DJN_CPU_MAX_HEAD_DIM];

	for (int u = 0; u <= pos; u++) {
		const float *k = kv_read(kv, layer, 0, u, (size_t)kvh * hd, hd, wide);
		float score = 0.0f;
		for (int i = 0; i < hd; i++)
			score += q[i] * k[i];
		score /= sqrtf((float)hd);
		att[u] = score;
	}
	cpu_softmax_row(att, pos + 1);
	memset(xb, 0, sizeof(float) * hd);
	for (int u = 0; u <= pos; u++) {
		const float *v = kv_read(kv, layer, 1, u, (size_t)kvh * hd, hd, wide);
		float a = att[u];
		for (int i = 0; i < hd; i++)
			xb[i] += a * v[i];
	}
}

static void attn_range(void *p, int64_t begin, int64_t end)
{
	struct attn_ctx *c = p;
	const struct djn_attn_shape *s = c->s;
	int hd = s->head_dim, group = s->n_head / s->n_kv_head;
	float *att = malloc(sizeof(float) * (size_t)(s->pos0 + s->n_rows));

	for (int64_t t = begin; t < end; t++) {
		int r = (int)(t / s->n_head), h = (int)(t % s->n_head);
		const float *q = c->q + ((size_t)r * s->n_head + h) * hd;
		float *xb = c->out + ((size_t)r * s->n_head + h) * hd;

		cpu_attention_head(xb, q, c->kv, s->layer, hd, h / group, s->pos0 + r, att);
	}
	free(att);
}

enum djn_status cpu_attention(struct djn_backend *be, float *out, const float *q,
			      const struct djn_kv_view *kv, const struct djn_attn_shape *s)
{
	struct attn_ctx c = { out, q, kv, s };

	if (s->pos0 + s->n_rows > kv->n_pages * kv->page_tokens)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "attention: position %d not cached",
				   s->pos0 + s->n_rows - 1);
	djn_pool_for(cpu_pool(be), (int64_t)s->n_rows * s->n_head, 2, attn_range, &c);
	return DJN_OK;
}
