/* llama2c.c - loader for llama2.c's legacy checkpoint (.bin): a header of
 * seven int32 and then f32 arrays in a fixed order, mapped in place. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "djinn/model.h"
#include "model/mapping.h"

struct bin_header {
	int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

/* Hand out consecutive f32 arrays of the file, checking each fits. */
struct cursor {
	const struct djn_mapping *map;
	size_t off;
	struct djn_err *err;
};

static const float *take(struct cursor *c, size_t n_floats, const char *what)
{
	size_t bytes = n_floats * sizeof(float);
	const float *p;

	if (bytes / sizeof(float) != n_floats || c->off + bytes > c->map->size ||
	    c->off + bytes < c->off) {
		djn_err_set(c->err, DJN_ERR_FORMAT,
			    "%s: truncated: %s needs %zu bytes at offset %zu, file has %zu",
			    c->map->path, what, bytes, c->off, c->map->size);
		return NULL;
	}
	p = (const float *)(c->map->addr + c->off);
	c->off += bytes;
	return p;
}

static void set_w(struct djn_weight *w, const float *base, size_t idx, int64_t rows,
		  int64_t cols, const char *name)
{
	w->dtype = DJN_DTYPE_F32;
	w->rows = rows;
	w->cols = cols;
	w->host = base + idx * (size_t)rows * (size_t)cols;
	w->name = name;
}

/* A llama2.c tokenizer.bin: int32 max_token_length, then (f32 score, int32
 * len, bytes) records; checks the first two. */
static bool looks_like_tokenizer(const struct djn_mapping *map)
{
	int32_t max_len, len0, len1;
	size_t off;

	if (map->size < 12)
		return false;
	memcpy(&max_len, map->addr, 4);
	memcpy(&len0, map->addr + 8, 4);
	if (max_len <= 0 || max_len > 65536 || len0 < 0 || len0 > max_len)
		return false;
	off = 12 + (size_t)len0;
	if (map->size < off + 8)
		return true;
	memcpy(&len1, map->addr + off + 4, 4);
	return len1 >= 0 && len1 <= max_len;
}

/* The header does not describe a model: say so first, then why. */
static void not_a_model(const struct djn_mapping *map, const char *path, struct djn_err *err)
{
	char why[DJN_ERRMSG_MAX];
	size_t n = strlen(path);

	snprintf(why, sizeof(why), "%s",
		 !strncmp(err->msg, path, n) && !strncmp(err->msg + n, ": ", 2) ? err->msg + n + 2
										: err->msg);
	if (looks_like_tokenizer(map))
		djn_err_set(err, DJN_ERR_FORMAT, "%s: this is not a model: it is a llama2.c "
						 "tokenizer (give it with --tokenizer FILE)", path);
	else
		djn_err_set(err, DJN_ERR_FORMAT, "%s: this is not a llama2.c model (its header: %s)",
			    path, why);
}

/* llama2.c names its tokenizers tokenizer.bin and tok<vocab>.bin (tok512.bin
 * for stories260K): the first beside the checkpoint, or NULL. */
static bool find_beside(const char *path, int n_vocab, char *out, size_t n)
{
	const char *slash = strrchr(path, '/');
	int dl = slash ? (int)(slash - path + 1) : 0;
	char names[2][32];

	snprintf(names[0], sizeof(names[0]), "tokenizer.bin");
	snprintf(names[1], sizeof(names[1]), "tok%d.bin", n_vocab);
	for (int i = 0; i < 2; i++) {
		FILE *f;
		snprintf(out, n, "%.*s%s", dl, path, names[i]);
		if ((f = fopen(out, "rb"))) {
			fclose(f);
			return true;
		}
	}
	return false;
}

struct djn_model *djn_model_load_llama2c(const char *path, const char *tok_path,
					 struct djn_err *err)
{
	struct djn_mapping *map = djn_mapping_open(path, err);
	struct djn_model *m;
	struct bin_header h;
	struct djn_config *c;
	bool shared;

	if (!map)
		return NULL;
	m = djn_model_alloc(DJN_FORMAT_LLAMA2C, path);
	djn_model_own_map(m, map);
	if (map->size < sizeof(h)) {
		djn_err_set(err, DJN_ERR_FORMAT, "%s: truncated: %zu bytes, the header needs %zu",
			    path, map->size, sizeof(h));
		not_a_model(map, path, err);
		goto out_free;
	}
	memcpy(&h, map->addr, sizeof(h));
	shared = h.vocab_size > 0;
	c = &m->cfg;
	c->arch = DJN_ARCH_LLAMA;
	c->dim = h.dim;
	c->hidden_dim = h.hidden_dim;
	c->n_layer = h.n_layers;
	c->n_head = h.n_heads;
	c->n_kv_head = h.n_kv_heads;
	c->vocab_size = h.vocab_size == INT32_MIN ? 0 : (shared ? h.vocab_size : -h.vocab_size);
	c->seq_len = h.seq_len;
	c->norm_eps = 1e-5f;
	c->rope_theta = 10000.0f;
	c->rope_style = DJN_ROPE_INTERLEAVED;
	c->tied_embeddings = shared;
	if (c->n_kv_head <= 0) {
		djn_err_set(err, DJN_ERR_FORMAT, "%s: n_kv_heads is %d, must be positive", path,
			    c->n_kv_head);
		not_a_model(map, path, err);
		goto out_free;
	}
	if (djn_config_validate(c, path, err)) {
		not_a_model(map, path, err);
		goto out_free;
	}

	{
		struct cursor cur = { map, sizeof(h), err };
		int64_t d = c->dim, hd = c->head_dim, L = c->n_layer, hid = c->hidden_dim;
		int64_t qd = c->n_head * hd, kvd = c->n_kv_head * hd;
		const float *emb, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_f;
		const float *wcls;

		if (!(emb = take(&cur, (size_t)(c->vocab_size * d), "token_embedding_table")) ||
		    !(rms_att = take(&cur, (size_t)(L * d), "rms_att_weight")) ||
		    !(wq = take(&cur, (size_t)(L * d * qd), "wq")) ||
		    !(wk = take(&cur, (size_t)(L * d * kvd), "wk")) ||
		    !(wv = take(&cur, (size_t)(L * d * kvd), "wv")) ||
		    !(wo = take(&cur, (size_t)(L * qd * d), "wo")) ||
		    !(rms_ffn = take(&cur, (size_t)(L * d), "rms_ffn_weight")) ||
		    !(w1 = take(&cur, (size_t)(L * d * hid), "w1")) ||
		    !(w2 = take(&cur, (size_t)(L * hid * d), "w2")) ||
		    !(w3 = take(&cur, (size_t)(L * d * hid), "w3")) ||
		    !(rms_f = take(&cur, (size_t)d, "rms_final_weight")) ||
		    !take(&cur, (size_t)(c->seq_len * hd / 2), "freq_cis_real") ||
		    !take(&cur, (size_t)(c->seq_len * hd / 2), "freq_cis_imag"))
			goto out_free;
		wcls = emb;
		if (!shared && !(wcls = take(&cur, (size_t)(c->vocab_size * d), "wcls")))
			goto out_free;

		m->layers = djn_xcalloc((size_t)L, sizeof(*m->layers));
		set_w(&m->tok_embd, emb, 0, c->vocab_size, d, "token_embedding_table");
		set_w(&m->output, wcls, 0, c->vocab_size, d, shared ? "token_embedding_table" : "wcls");
		set_w(&m->final_norm, rms_f, 0, 1, d, "rms_final_weight");
		for (int64_t l = 0; l < L; l++) {
			struct djn_layer *ly = &m->layers[l];
			set_w(&ly->attn_norm, rms_att, (size_t)l, 1, d, "rms_att_weight");
			set_w(&ly->wq, wq, (size_t)l, qd, d, "wq");
			set_w(&ly->wk, wk, (size_t)l, kvd, d, "wk");
			set_w(&ly->wv, wv, (size_t)l, kvd, d, "wv");
			set_w(&ly->wo, wo, (size_t)l, d, qd, "wo");
			set_w(&ly->mlp_norm, rms_ffn, (size_t)l, 1, d, "rms_ffn_weight");
			set_w(&ly->w_gate, w1, (size_t)l, hid, d, "w1");
			set_w(&ly->w_down, w2, (size_t)l, d, hid, "w2");
			set_w(&ly->w_up, w3, (size_t)l, hid, d, "w3");
		}
	}
	if (djn_model_validate(m, err))
		goto out_free;

	if (tok_path) {
		m->tok = djn_tok_load_llama2c(tok_path, c->vocab_size, err);
		if (!m->tok)
			goto out_free;
	} else {
		/* llama2.c's convention: the tokenizer beside the checkpoint */
		char tp[4096];
		if (find_beside(path, c->vocab_size, tp, sizeof(tp))) {
			m->tok = djn_tok_load_llama2c(tp, c->vocab_size, err);
			if (!m->tok)
				goto out_free;
			m->tok_found = djn_xstrdup(tp);
		}
	}
	return m;

out_free:
	djn_model_unref(m);
	return NULL;
}
