/* model.c - the model object: ownership, validation, and the loader switch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stdint.h>

#include "djinn/model.h"
#include "djinn/progress.h"
#include "model/mapping.h"

const char *djn_arch_name(enum djn_arch a)
{
	return a == DJN_ARCH_GPT2 ? "gpt2" : "llama";
}

const char *djn_format_name(enum djn_format f)
{
	switch (f) {
	case DJN_FORMAT_LLAMA2C: return "llama2.c";
	case DJN_FORMAT_GGUF: return "gguf";
	case DJN_FORMAT_HF: return "hf";
	}
	return "?";
}

struct djn_model *djn_model_alloc(enum djn_format fmt, const char *path)
{
	struct djn_model *m = djn_xcalloc(1, sizeof(*m));
	const char *base = strrchr(path, '/');

	m->refcount = 1;
	m->format = fmt;
	m->path = djn_xstrdup(path);
	m->name = djn_xstrdup(base && base[1] ? base + 1 : path);
	return m;
}

void djn_model_own_map(struct djn_model *m, struct djn_mapping *map)
{
	m->maps = djn_xrealloc(m->maps, sizeof(*m->maps) * (size_t)(m->n_maps + 1));
	m->maps[m->n_maps++] = map;
}

void *djn_model_own(struct djn_model *m, void *buf)
{
	m->owned = djn_xrealloc(m->owned, sizeof(*m->owned) * (size_t)(m->n_owned + 1));
	m->owned[m->n_owned++] = buf;
	return buf;
}

void djn_model_ref(struct djn_model *m)
{
	m->refcount++;
}

void djn_model_unref(struct djn_model *m)
{
	if (!m || --m->refcount > 0)
		return;
	for (int i = 0; i < m->n_maps; i++)
		djn_mapping_close(m->maps[i]);
	for (int i = 0; i < m->n_owned; i++)
		free(m->owned[i]);
	free(m->maps);
	free(m->owned);
	free(m->layers);
	djn_tok_free(m->tok);
	free(m->chat_template);
	free(m->tok_found);
	free(m->path);
	free(m->name);
	free(m);
}

enum djn_status djn_config_validate(struct djn_config *c, const char *path,
				    struct djn_err *err)
{
#define POS(field, max)                                                              \
	if (c->field <= 0 || c->field > (max))                                       \
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: " #field " is %d, must be in 1..%d", \
				   path, c->field, (max))
	POS(dim, 1 << 16);
	POS(hidden_dim, 1 << 18);
	POS(n_layer, 1024);
	POS(n_head, 1024);
	POS(vocab_size, 1 << 22);
	POS(seq_len, 1 << 24);
#undef POS
	if (c->n_kv_head == 0)
		c->n_kv_head = c->n_head;
	if (c->n_kv_head < 0 || c->n_kv_head > c->n_head || c->n_head % c->n_kv_head)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: n_kv_head %d does not divide n_head %d", path,
				   c->n_kv_head, c->n_head);
	if (c->head_dim == 0) {
		if (c->dim % c->n_head)
			return djn_err_set(err, DJN_ERR_FORMAT,
					   "%s: dim %d is not a multiple of n_head %d", path,
					   c->dim, c->n_head);
		c->head_dim = c->dim / c->n_head;
	}
	if (c->head_dim <= 0 || c->head_dim > 1024 || (c->arch == DJN_ARCH_LLAMA && c->head_dim % 2))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad head_dim %d", path, c->head_dim);
	if (!(c->norm_eps > 0 && c->norm_eps < 1))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: norm eps %g out of range", path,
				   (double)c->norm_eps);
	if (c->arch == DJN_ARCH_LLAMA && !(c->rope_theta > 0))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: rope theta %g must be positive",
				   path, (double)c->rope_theta);
	return DJN_OK;
}

static enum djn_status check(const struct djn_model *m, const struct djn_weight *w,
			     const char *what, int layer, int64_t rows, int64_t cols,
			     bool required, struct djn_err *err)
{
	char name[64];

	if (layer >= 0)
		snprintf(name, sizeof(name), "layer %d %s", layer, what);
	else
		snprintf(name, sizeof(name), "%s", what);
	if (!djn_weight_present(w)) {
		if (!required)
			return DJN_OK;
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: missing tensor for %s", m->path, name);
	}
	if (w->rows != rows || w->cols != cols)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' (%s) has shape [%lld, %lld], expected [%lld, %lld]",
				   m->path, w->name ? w->name : "?", name, (long long)w->rows,
				   (long long)w->cols, (long long)rows, (long long)cols);
	if (w->cols % djn_dtype_block(w->dtype))
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' has %lld columns, not a multiple of %s's block",
				   m->path, w->name ? w->name : "?", (long long)w->cols,
				   djn_dtype_name(w->dtype));
	return DJN_OK;
}

enum djn_status djn_model_validate(const struct djn_model *m, struct djn_err *err)
{
	const struct djn_config *c = &m->cfg;
	int64_t d = c->dim, h = c->hidden_dim, qd = (int64_t)c->n_head * c->head_dim;
	int64_t kvd = (int64_t)c->n_kv_head * c->head_dim;
	bool gpt2 = c->arch == DJN_ARCH_GPT2;
	enum djn_status st;

#define CK(w, what, l, r, cc, req)                                         \
	if ((st = check(m, (w), (what), (l), (r), (cc), (req), err)))      \
		return st
	CK(&m->tok_embd, "token embedding", -1, c->vocab_size, d, true);
	CK(&m->pos_embd, "position embedding", -1, c->seq_len, d, gpt2);
	CK(&m->final_norm, "final norm", -1, 1, d, true);
	CK(&m->final_norm_b, "final norm bias", -1, 1, d, gpt2);
	CK(&m->output, "output", -1, c->vocab_size, d, true);
	for (int l = 0; l < c->n_layer; l++) {
		const struct djn_layer *L = &m->layers[l];
		CK(&L->attn_norm, "attn_norm", l, 1, d, true);
		CK(&L->attn_norm_b, "attn_norm bias", l, 1, d, gpt2);
		CK(&L->wq, "wq", l, qd, d, true);
		CK(&L->wk, "wk", l, kvd, d, true);
		CK(&L->wv, "wv", l, kvd, d, true);
		CK(&L->bq, "bq", l, 1, qd, gpt2);
		CK(&L->bk, "bk", l, 1, kvd, gpt2);
		CK(&L->bv, "bv", l, 1, kvd, gpt2);
		CK(&L->wo, "wo", l, d, qd, true);
		CK(&L->bo, "bo", l, 1, d, gpt2);
		CK(&L->mlp_norm, "mlp_norm", l, 1, d, true);
		CK(&L->mlp_norm_b, "mlp_norm bias", l, 1, d, gpt2);
		CK(&L->w_gate, "w_gate", l, h, d, !gpt2);
		CK(&L->w_up, "w_up", l, h, d, true);
		CK(&L->b_up, "b_up", l, 1, h, gpt2);
		CK(&L->w_down, "w_down", l, d, h, true);
		CK(&L->b_down, "b_down", l, 1, d, gpt2);
	}
#undef CK
	return DJN_OK;
}

void djn_model_for_each_weight(struct djn_model *m,
			       void (*fn)(struct djn_weight *w, void *ud), void *ud)
{
	struct djn_weight *top[] = { &m->tok_embd, &m->pos_embd, &m->final_norm,
				     &m->final_norm_b, &m->output };

	for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
		if (top[i] == &m->output && m->cfg.tied_embeddings &&
		    m->output.host == m->tok_embd.host)
			continue;
		if (djn_weight_present(top[i]))
			fn(top[i], ud);
	}
	for (int l = 0; l < m->cfg.n_layer; l++) {
		struct djn_layer *L = &m->layers[l];
		struct djn_weight *ws[] = { &L->attn_norm, &L->attn_norm_b, &L->wq, &L->wk,
					    &L->wv, &L->bq, &L->bk, &L->bv, &L->wo, &L->bo,
					    &L->mlp_norm, &L->mlp_norm_b, &L->w_gate, &L->w_up,
					    &L->b_up, &L->w_down, &L->b_down };
		for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
			if (djn_weight_present(ws[i]))
				fn(ws[i], ud);
	}
}

static void add_bytes(struct djn_weight *w, void *ud)
{
	*(size_t *)ud += djn_weight_bytes(w);
}

size_t djn_model_weight_bytes(const struct djn_model *m)
{
	size_t n = 0;

	djn_model_for_each_weight((struct djn_model *)m, add_bytes, &n);
	return n;
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && !strcmp(s + a - b, suf);
}

struct djn_model *djn_model_load(const char *path, const char *tokenizer_path,
				 struct djn_err *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return djn_err_set(err, DJN_ERR_IO, "%s: no such file or directory", path), NULL;
	if (S_ISDIR(st.st_mode))
		return djn_model_load_hf(path, err);
	if (has_suffix(path, ".gguf"))
		return djn_model_load_gguf(path, err);
	if (has_suffix(path, ".bin"))
		return djn_model_load_llama2c(path, tokenizer_path, err);
	djn_err_set(err, DJN_ERR_UNSUPPORTED,
		    "%s: not a model: unknown model format (expected a directory, .gguf or "
		    "llama2.c .bin)", path);
	return NULL;
}

struct cast_ctx {
	enum djn_dtype to;
	struct djn_model *m;
	const void *tied_from; /* tok_embd's bytes before the cast, to re-tie output */
};

static void cast_one(struct djn_weight *w, void *ud)
{
	struct cast_ctx *c = ud;
	size_t n = (size_t)w->cols;
	float *row;
	uint8_t *out;

	if (w->rows == 1 || w->dtype == c->to)
		return;
	row = djn_xmalloc(sizeof(float) * n);
	out = djn_xmalloc((size_t)w->rows * djn_dtype_row_bytes(c->to, w->cols));
	for (int64_t r = 0; r < w->rows; r++) {
		djn_weight_row_f32(w, r, row);
		uint8_t *o = out + (size_t)r * djn_dtype_row_bytes(c->to, w->cols);
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			switch (c->to) {
			case DJN_DTYPE_F32:
				memcpy(o + 4 * i, &row[i], 4);
				continue;
			case DJN_DTYPE_F16:
				h = djn_f32_to_f16(row[i]);
				break;
			default:
				h = djn_f32_to_bf16(row[i]);
				break;
			}
			memcpy(o + 2 * i, &h, 2);
		}
	}
	free(row);
	w->dtype = c->to;
	w->ld = 0;
	w->host = djn_model_own(c->m, out);
}

struct rowmajor_ctx {
	struct djn_model *m;
	struct djn_err *err;
	enum djn_status st;
	size_t done, total;
};

static void count_transposed(struct djn_weight *w, void *ud)
{
	if (w->ld)
		((struct rowmajor_ctx *)ud)->total += djn_weight_bytes(w);
}

/* Tiles of 32 x 32 elements keep both sides in cache; the element size is
 * a constant in each branch so the copies are plain loads and stores. */
static void rowmajor_one(struct djn_weight *w, void *ud)
{
	enum { T = 32 };
	struct rowmajor_ctx *c = ud;
	size_t es = djn_dtype_block_bytes(w->dtype), n = djn_weight_bytes(w);
	const uint8_t *src = w->host;
	uint8_t *dst;

	if (!w->ld || c->st)
		return;
	if (!(dst = malloc(n ? n : 1))) {
		c->st = djn_err_set(c->err, DJN_ERR_NOMEM,
				    "%s: cannot allocate %zu bytes to lay out tensor '%s' row-major",
				    c->m->name, n, w->name);
		return;
	}
	for (int64_t c0 = 0; c0 < w->cols; c0 += T)
		for (int64_t r0 = 0; r0 < w->rows; r0 += T)
			for (int64_t k = c0; k < c0 + T && k < w->cols; k++) {
				const uint8_t *s = src + ((size_t)k * (size_t)w->ld + (size_t)r0) * es;
				for (int64_t r = r0; r < r0 + T && r < w->rows; r++, s += es) {
					uint8_t *d = dst + ((size_t)r * (size_t)w->cols + (size_t)k) * es;
					if (es == 2)
						memcpy(d, s, 2);
					else
						memcpy(d, s, 4);
				}
			}
	w->host = djn_model_own(c->m, dst);
	w->ld = 0;
	c->done += n;
	djn_progress("laying out weights", c->done, c->total);
}

enum djn_status djn_model_weights_rowmajor(struct djn_model *m, struct djn_err *err)
{
	struct rowmajor_ctx c = { m, err, DJN_OK, 0, 0 };

	djn_model_for_each_weight(m, count_transposed, &c);
	if (c.total)
		djn_model_for_each_weight(m, rowmajor_one, &c);
	return c.st;
}

enum djn_status djn_model_cast(struct djn_model *m, enum djn_dtype t, struct djn_err *err)
{
	struct cast_ctx c = { t, m, m->tok_embd.host };
	bool tied = m->output.host == m->tok_embd.host;

	if (t != DJN_DTYPE_F32 && t != DJN_DTYPE_F16 && t != DJN_DTYPE_BF16)
		return djn_err_set(err, DJN_ERR_UNSUPPORTED,
				   "%s: cannot convert weights to %s (f32, f16 or bf16)", m->name,
				   djn_dtype_name(t));
	if (m->text)
		return djn_err_set(err, DJN_ERR_STATE,
				   "%s: weights are in use by a session; convert before starting one",
				   m->name);
	djn_model_for_each_weight(m, cast_one, &c);
	if (tied)
		m->output = m->tok_embd;
	return DJN_OK;
}
