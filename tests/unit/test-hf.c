/* test-hf.c - Hugging Face directories: safetensors validation, config.json, llama/GPT-2 weight binding. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "djinn/model.h"
#include "model/hf.h"
#include "model/mapping.h"
#include "model/safetensors.h"

/* ------------------------------------------------------------ fixtures */

static char tmp[64];

static void setup(void)
{
	strcpy(tmp, "/tmp/djn-test-hf-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void teardown(void)
{
	nftw(tmp, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(hf, .init = setup, .fini = teardown);

static char *in_tmp(const char *name)
{
	static char buf[4][256];
	static int k;
	char *p = buf[k++ & 3];

	snprintf(p, 256, "%s/%s", tmp, name);
	return p;
}

static void write_file(const char *name, const void *data, size_t n)
{
	FILE *f = fopen(in_tmp(name), "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void write_text(const char *name, const char *text)
{
	write_file(name, text, strlen(text));
}

/* A safetensors file from a raw header and data; hdr_len overrides the
 * length field when not (uint64_t)-1. */
static void write_raw_st(const char *name, const char *header, uint64_t hdr_len,
			 const void *data, size_t n)
{
	size_t hn = strlen(header);
	uint8_t *buf = malloc(8 + hn + n);

	if (hdr_len == (uint64_t)-1)
		hdr_len = hn;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(hdr_len >> (8 * i));
	memcpy(buf + 8, header, hn);
	if (n)
		memcpy(buf + 8 + hn, data, n);
	write_file(name, buf, 8 + hn + n);
	free(buf);
}

/* A model's tensors: each element is seed + flat_index / 64, exact in f32. */
struct tspec {
	char name[96];
	int rank;
	int64_t shape[2];
	float seed;
};

struct spec {
	struct tspec t[96];
	int n;
};

static void add(struct spec *s, int rank, int64_t d0, int64_t d1, const char *fmt, ...)
{
	struct tspec *t = &s->t[s->n];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->rank = rank;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->seed = (float)s->n;
	s->n++;
}

static const struct tspec *spec_find(const struct spec *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->t[i].name, name))
			return &s->t[i];
	cr_assert_fail("no tensor '%s' in the spec", name);
	return NULL;
}

static float expect(const struct spec *s, const char *name, int64_t flat)
{
	return spec_find(s, name)->seed + (float)flat / 64.0f;
}

static void spec_remove(struct spec *s, const char *name)
{
	const struct tspec *t = spec_find(s, name);
	int i = (int)(t - s->t);

	memmove(&s->t[i], &s->t[i + 1], sizeof(s->t[0]) * (size_t)(s->n - i - 1));
	s->n--;
}

static int64_t n_elem(const struct tspec *t)
{
	return t->rank == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

/* Write tensors [from, to) of s as dtype ("F32", "F16", "BF16").  With
 * misalign, a 1-element BF16 tensor goes first so every other one starts at
 * an offset of 2 mod 4. */
static void write_st(const char *file, const struct spec *s, int from, int to,
		     const char *dtype, bool misalign)
{
	size_t es = strcmp(dtype, "F32") ? 2 : 4, total = misalign ? 2 : 0, off;
	cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
	uint8_t *data;
	char *hdr;
	size_t hn;

	cJSON_AddStringToObject(meta, "format", "pt");
	cJSON_AddItemToObject(root, "__metadata__", meta);
	for (int i = from; i < to; i++)
		total += (size_t)n_elem(&s->t[i]) * es;
	data = calloc(1, total + 1);
	off = 0;
	if (misalign) {
		cJSON *e = cJSON_CreateObject();
		int64_t one = 1;
		cJSON_AddStringToObject(e, "dtype", "BF16");
		cJSON_AddItemToObject(e, "shape", cJSON_CreateArray());
		cJSON_AddItemToArray(cJSON_GetObjectItem(e, "shape"), cJSON_CreateNumber((double)one));
		cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateArray());
		cJSON_AddItemToArray(cJSON_GetObjectItem(e, "data_offsets"), cJSON_CreateNumber(0));
		cJSON_AddItemToArray(cJSON_GetObjectItem(e, "data_offsets"), cJSON_CreateNumber(2));
		cJSON_AddItemToObject(root, "pad", e);
		off = 2;
	}
	for (int i = from; i < to; i++) {
		const struct tspec *t = &s->t[i];
		cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray();
		cJSON *offs = cJSON_CreateArray();
		int64_t n = n_elem(t);

		for (int r = 0; r < t->rank; r++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[r]));
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + (size_t)n * es)));
		cJSON_AddStringToObject(e, "dtype", dtype);
		cJSON_AddItemToObject(e, "shape", shape);
		cJSON_AddItemToObject(e, "data_offsets", offs);
		cJSON_AddItemToObject(root, t->name, e);
		for (int64_t k = 0; k < n; k++) {
			float v = t->seed + (float)k / 64.0f;
			uint16_t h;

			if (es == 4) {
				memcpy(data + off, &v, 4);
			} else {
				h = strcmp(dtype, "BF16") ? djn_f32_to_f16(v) : djn_f32_to_bf16(v);
				memcpy(data + off, &h, 2);
			}
			off += es;
		}
	}
	hdr = cJSON_PrintUnformatted(root);
	hn = strlen(hdr);
	/* pad with spaces to a multiple of 8, as writers do, unless misaligning */
	if (!misalign) {
		size_t padded = (hn + 7) / 8 * 8;
		hdr = realloc(hdr, padded + 1);
		memset(hdr + hn, ' ', padded - hn);
		hdr[padded] = '\0';
	}
	write_raw_st(file, hdr, (uint64_t)-1, data, total);
	free(hdr);
	free(data);
	cJSON_Delete(root);
}

enum { D = 8, HID = 16, NL = 2, NH = 2, NKV = 1, HD = D / NH, V = 16, P = 32 };

static void llama_spec(struct spec *s, bool lm_head)
{
	s->n = 0;
	add(s, 2, V, D, "model.embed_tokens.weight");
	for (int l = 0; l < NL; l++) {
		add(s, 1, D, 0, "model.layers.%d.input_layernorm.weight", l);
		add(s, 2, NH * HD, D, "model.layers.%d.self_attn.q_proj.weight", l);
		add(s, 2, NKV * HD, D, "model.layers.%d.self_attn.k_proj.weight", l);
		add(s, 2, NKV * HD, D, "model.layers.%d.self_attn.v_proj.weight", l);
		add(s, 2, D, NH * HD, "model.layers.%d.self_attn.o_proj.weight", l);
		add(s, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
		add(s, 2, HID, D, "model.layers.%d.mlp.gate_proj.weight", l);
		add(s, 2, HID, D, "model.layers.%d.mlp.up_proj.weight", l);
		add(s, 2, D, HID, "model.layers.%d.mlp.down_proj.weight", l);
	}
	add(s, 1, D, 0, "model.norm.weight");
	if (lm_head)
		add(s, 2, V, D, "lm_head.weight");
}

static const char *llama_config(const char *extra)
{
	static char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\",\n"
		 " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d,\n"
		 " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"vocab_size\": %d,\n"
		 " \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-05, \"hidden_act\": \"silu\",\n"
		 " \"torch_dtype\": \"float32\"%s%s}\n",
		 D, HID, NL, NH, NKV, V, P, extra ? ", " : "", extra ? extra : "");
	return buf;
}

static void gpt2_spec(struct spec *s, const char *px)
{
	s->n = 0;
	add(s, 2, V, D, "%swte.weight", px);
	add(s, 2, P, D, "%swpe.weight", px);
	for (int l = 0; l < NL; l++) {
		add(s, 1, D, 0, "%sh.%d.ln_1.weight", px, l);
		add(s, 1, D, 0, "%sh.%d.ln_1.bias", px, l);
		add(s, 2, D, 3 * D, "%sh.%d.attn.c_attn.weight", px, l);
		add(s, 1, 3 * D, 0, "%sh.%d.attn.c_attn.bias", px, l);
		add(s, 2, D, D, "%sh.%d.attn.c_proj.weight", px, l);
		add(s, 1, D, 0, "%sh.%d.attn.c_proj.bias", px, l);
		add(s, 1, D, 0, "%sh.%d.ln_2.weight", px, l);
		add(s, 1, D, 0, "%sh.%d.ln_2.bias", px, l);
		add(s, 2, D, 4 * D, "%sh.%d.mlp.c_fc.weight", px, l);
		add(s, 1, 4 * D, 0, "%sh.%d.mlp.c_fc.bias", px, l);
		add(s, 2, 4 * D, D, "%sh.%d.mlp.c_proj.weight", px, l);
		add(s, 1, D, 0, "%sh.%d.mlp.c_proj.bias", px, l);
	}
	add(s, 1, D, 0, "%sln_f.weight", px);
	add(s, 1, D, 0, "%sln_f.bias", px);
}

static const char *gpt2_config(const char *extra)
{
	static char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\",\n"
		 " \"n_embd\": %d, \"n_layer\": %d, \"n_head\": %d, \"n_positions\": %d,\n"
		 " \"n_ctx\": %d, \"vocab_size\": %d, \"layer_norm_epsilon\": 1e-05,\n"
		 " \"n_inner\": null, \"activation_function\": \"gelu_new\"%s%s}\n",
		 D, NL, NH, P, P, V, extra ? ", " : "", extra ? extra : "");
	return buf;
}

/* s with the first `from` replaced by `to` (one of four rotating buffers). */
static const char *subst(const char *s, const char *from, const char *to)
{
	static char buf[4][2048];
	static int k;
	char *out = buf[k++ & 3];
	const char *at = strstr(s, from);

	cr_assert_not_null(at, "'%s' not in %s", from, s);
	snprintf(out, 2048, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
	return out;
}

/* W[r][c] in either layout (ld > 0: GPT-2's Conv1D as the file stores it) */
static float f32_at(const struct djn_weight *w, int64_t r, int64_t c)
{
	size_t i = (size_t)(w->ld ? c * w->ld + r : r * w->cols + c);

	switch (w->dtype) {
	case DJN_DTYPE_F32:
		return ((const float *)w->host)[i];
	case DJN_DTYPE_BF16:
		return djn_bf16_to_f32(((const uint16_t *)w->host)[i]);
	case DJN_DTYPE_F16:
		return djn_f16_to_f32(((const uint16_t *)w->host)[i]);
	default:
		cr_assert_fail("unexpected dtype");
	}
	return 0;
}

static bool in_maps(const struct djn_model *m, const void *p)
{
	for (int i = 0; i < m->n_maps; i++) {
		const uint8_t *a = m->maps[i]->addr;
		if ((const uint8_t *)p >= a && (const uint8_t *)p < a + m->maps[i]->size)
			return true;
	}
	return false;
}

/* Load tmp and expect failure with code, the message containing both
 * `file` and `what`. */
static void expect_load_error(enum djn_status code, const char *file, const char *what)
{
	struct djn_err err = { 0 };
	struct djn_model *m = djn_model_load_hf(tmp, &err);
	size_t n = strlen(err.msg);

	cr_assert_null(m);
	cr_assert_eq(err.code, code, "code %d (%s), want %d: %s", err.code,
		     djn_status_str(err.code), code, err.msg);
	cr_assert(strstr(err.msg, file), "message does not name '%s': %s", file, err.msg);
	cr_assert(strstr(err.msg, what), "message does not say '%s': %s", what, err.msg);
	cr_assert(n > 0 && err.msg[n - 1] != '.' && err.msg[n - 1] != '\n', "%s", err.msg);
}

static void expect_st_error(enum djn_status code, const char *what)
{
	struct djn_err err = { 0 };
	struct djn_st_file *f = djn_st_open(in_tmp("x.safetensors"), &err);

	cr_assert_null(f);
	cr_assert_eq(err.code, code, "code %d, want %d: %s", err.code, code, err.msg);
	cr_assert(strstr(err.msg, "x.safetensors"), "message does not name the file: %s", err.msg);
	cr_assert(strstr(err.msg, what), "message does not say '%s': %s", what, err.msg);
}

static void valid_llama(struct spec *s, bool lm_head, const char *cfg_extra)
{
	llama_spec(s, lm_head);
	write_text("config.json", llama_config(cfg_extra));
	write_st("model.safetensors", s, 0, s->n, "F32", false);
}

/* -------------------------------------------------------- llama: good */

Test(hf, llama_untied)
{
	struct spec s;
	struct djn_err err = { 0 };
	struct djn_model *m;
	const struct djn_config *c;

	valid_llama(&s, true, "\"tie_word_embeddings\": false");
	m = djn_model_load_hf(tmp, &err);
	cr_assert_not_null(m, "%s", err.msg);
	c = &m->cfg;
	cr_assert_eq(m->format, DJN_FORMAT_HF);
	cr_assert_eq(c->arch, DJN_ARCH_LLAMA);
	cr_assert_eq(c->dim, D);
	cr_assert_eq(c->hidden_dim, HID);
	cr_assert_eq(c->n_layer, NL);
	cr_assert_eq(c->n_head, NH);
	cr_assert_eq(c->n_kv_head, NKV);
	cr_assert_eq(c->head_dim, HD);
	cr_assert_eq(c->vocab_size, V);
	cr_assert_eq(c->seq_len, P);
	cr_assert_float_eq(c->norm_eps, 1e-5f, 1e-12);
	cr_assert_float_eq(c->rope_theta, 10000.0f, 1e-3);
	cr_assert_eq(c->rope_style, DJN_ROPE_HALF);
	cr_assert_not(c->tied_embeddings);
	cr_assert_null(m->tok);
	cr_assert_eq(m->n_maps, 1);

	const struct djn_layer *L = &m->layers[1];
	cr_assert_eq(L->wq.rows, NH * HD);
	cr_assert_eq(L->wq.cols, D);
	cr_assert_eq(L->wk.rows, NKV * HD);
	cr_assert_eq(L->w_down.rows, D);
	cr_assert_eq(L->w_down.cols, HID);
	cr_assert_eq(L->attn_norm.rows, 1);
	cr_assert_eq(L->attn_norm.cols, D);
	cr_assert_eq(L->wk.dtype, DJN_DTYPE_F32);
	cr_assert_null(L->bq.host);
	cr_assert_str_eq(L->wk.name, "model.layers.1.self_attn.k_proj.weight");
	cr_assert_float_eq(f32_at(&L->wk, 3, 5),
			   expect(&s, "model.layers.1.self_attn.k_proj.weight", 3 * D + 5), 0);
	cr_assert_float_eq(f32_at(&L->w_down, 7, 15),
			   expect(&s, "model.layers.1.mlp.down_proj.weight", 7 * HID + 15), 0);
	cr_assert_float_eq(f32_at(&m->final_norm, 0, 2), expect(&s, "model.norm.weight", 2), 0);
	/* weights point into the mapping, not copies */
	cr_assert(in_maps(m, L->wq.host));
	cr_assert(in_maps(m, m->tok_embd.host));
	cr_assert_neq(m->output.host, m->tok_embd.host);
	cr_assert_str_eq(m->output.name, "lm_head.weight");
	cr_assert_float_eq(f32_at(&m->output, 1, 1), expect(&s, "lm_head.weight", D + 1), 0);
	cr_assert_eq(djn_model_weight_bytes(m), (size_t)(2 * V * D + D +
			NL * (2 * D + 2 * D * D + 2 * HD * D + 3 * HID * D)) * 4);
	djn_model_unref(m);
}

Test(hf, llama_tied_by_config)
{
	struct spec s;
	struct djn_err err = { 0 };
	struct djn_model *m;

	/* tied in the config: lm_head.weight, if any, is ignored as transformers does */
	valid_llama(&s, true, "\"tie_word_embeddings\": true");
	m = djn_model_load_hf(tmp, &err);
	cr_assert_not_null(m, "%s", err.msg);
	cr_assert(m->cfg.tied_embeddings);
	cr_assert_eq(m->output.host, m->tok_embd.host);
	djn_model_unref(m);
}

Test(hf, llama_lm_head_absent_is_tied)
{
	struct spec s;
	struct djn_err err = { 0 };
	struct djn_model *m;

	valid_llama(&s, false, NULL);
	m = djn_model_load_hf(tmp, &err);
	cr_assert_not_null(m, "%s", err.msg);
	cr_assert(m->cfg.tied_embeddings);
	cr_assert_eq(m->output.host, m->tok_embd.host);
	cr_assert_eq(m->output.rows, V);
	djn_model_unref(m);
}

Test(hf, llama_bf16_and_f16_keep_dtype)
{
	const char *dts[] = { "BF16", "F16" };
	enum djn_dtype want[] = { DJN_DTYPE_BF16, DJN_DTYPE_F16 };

	for (int i = 0; i < 2; i++) {
		struct spec s;
		struct djn_err err = { 0 };
		struct djn_model *m;
		float e;

		llama_spec(&s, true);
		write_text("config.json", llama_config(NULL));
		write_st("model.safetensors", &s, 0, s.n, dts[i], false);
		m = djn_model_load_hf(tmp, &err);
		cr_assert_not_null(m, "%s", err.msg);
		cr_assert_eq(m->layers[0].wv.dtype, want[i]);
		e = expect(&s, "model.layers.0.self_attn.v_proj.weight", 2 * D + 3);
		e = want[i] == DJN_DTYPE_BF16 ? djn_bf16_to_f32(djn_f32_to_bf16(e))
					      : djn_f16_to_f32(djn_f32_to_f16(e));
		cr_assert_float_eq(f32_at(&m->layers[0].wv, 2, 3), e, 0);
		djn_model_unref(m);
	}
}

Test(hf, llama_misaligned_data_is_copied_aligned)
{
	struct spec s;
	struct djn_err err = { 0 };
	struct djn_model *m;
	const struct djn_weight *w;

	llama_spec(&s, true);
	write_text("config.json", llama_config(NULL));
	write_st("model.safetensors", &s, 0, s.n, "F32", true);
	m = djn_model_load_hf(tmp, &err);
	cr_assert_not_null(m, "%s", err.msg);
	w = &m->layers[1].w_up;
	cr_assert_eq((uintptr_t)w->host % 4, 0);
	cr_assert_float_eq(f32_at(w, 5, 6),
			   expect(&s, "model.layers.1.mlp.up_proj.weight", 5 * D + 6), 0);
	djn_model_unref(m);
}

Test(hf, trailing_slash_and_name)
{
	struct spec s;
	struct djn_err err = { 0 };
	struct djn_model *m;
	char dir[300];

	valid_llama(&s, true, NULL);
	snprintf(dir, sizeof(dir), "%s//", tmp);
	m = djn_model_load_hf(dir, &err);
	cr_assert_not_null(m, "%s", err.msg);
	cr_assert_str_eq(m->name, strrchr(tmp, '/') + 1);
	djn_model_unref(m);
	/* and through the generic entry point */
	m = djn_model_load(tmp, NULL, &err);
	cr_assert_not_null(m, "%s", err.msg);
	cr_assert_eq(m->format, DJN_FORMAT_HF);
	djn_model_unref(m);
}

/* ------------------------------------------------------------ sharded */

static void write_index(const struct spec *s, int split, const char *a, const char *b)
{
	cJSON *root = cJSON_CreateObject(), *wm = cJSON_CreateObject();
	char *text;

	cJSON_AddItemToObject(cJSON_AddObjectToObject(root, "metadata"), "total_size",
			      cJSON_CreateNumber(1234));
	for (int i = 0; i < s->n; i++)
		cJSON_AddStringToObject(wm, s->t[i].name, i < split ? a : b);
	cJSON_AddItemToObject(root, "weight_map", wm);
	text = cJSON_Print(root);
	write_text("model.safetensors.index.json", text);
	free(text);
	cJSON_Delete(root);
}

static const char *SHARD1 = "model-00001-of-00002.safetensors";
static const char *SHARD2 = "model-00002-of-00002.safetensors";

static int sharded_llama(struct spec *s)
{
	int split;

	llama_spec(s, true);
	split = s->n / 2;
	write_text("config.json", llama_config(NULL));
	write_st(SHARD1, s, 0, split, "F32", false);
	write_st(SHARD2, s, split, s->n, "F32", false);
	return split;
}

Test(hf, llama_sharded)
{
	struct spec s;
	struct djn_err err = { 0 };
	struct djn_model *m;

	write_index(&s, sharded_llama(&s), SHARD1, SHARD2);
	m = djn_model_load_hf(tmp, &err);
	cr_assert_not_null(m, "%s", err.msg);
	cr_assert_eq(m->n_maps, 2);
	cr_assert(in_maps(m, m->tok_embd.host));
	cr_assert(in_maps(m, m->output.host));
	cr_assert_float_eq(f32_at(&m->tok_embd, 2, 2),
			   expect(&s, "model.embed_tokens.weight", 2 * D + 2), 0);
	cr_assert_float_eq(f32_at(&m->output, 15, 7), expect(&s, "lm_head.weight", 15 * D + 7), 0);
	cr_assert_float_eq(f32_at(&m->layers[1].w_gate, 9, 1),
			   expect(&s, "model.layers.1.mlp.gate_proj.weight", 9 * D + 1), 0);
	djn_model_unref(m);
}

Test(hf, sharded_rejects_paths)
{
	struct spec s;
	int split = sharded_llama(&s);

	write_index(&s, split, SHARD1, "../model-00002-of-00002.safetensors");
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors.index.json", "not a plain file name");
	write_index(&s, split, "sub/x.safetensors", SHARD2);
	expect_load_error(DJN_ERR_FORMAT, "sub/x.safetensors", "not a plain file name");
}

Test(hf, sharded_index_lists_tensor_not_in_shard)
{
	struct spec s;
	int split = sharded_llama(&s);

	/* every tensor said to be in shard 1: the second half is not */
	write_index(&s, s.n, SHARD1, SHARD2);
	(void)split;
	expect_load_error(DJN_ERR_FORMAT, SHARD1, "is listed in");
}

Test(hf, sharded_missing_shard_file)
{
	struct spec s;
	int split = sharded_llama(&s);

	write_index(&s, split, SHARD1, "model-00003-of-00002.safetensors");
	expect_load_error(DJN_ERR_IO, "model-00003-of-00002.safetensors", "cannot open");
}

Test(hf, sharded_bad_index)
{
	struct spec s;

	sharded_llama(&s);
	write_text("model.safetensors.index.json", "{\"weight_map\": {\"a\": 3}}");
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors.index.json", "must be a string");
	write_text("model.safetensors.index.json", "{\"metadata\": {}}");
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors.index.json", "'weight_map' is missing");
	write_text("model.safetensors.index.json", "{\"weight_map\": {}");
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors.index.json", "not valid JSON");
}

/* --------------------------------------------------------------- GPT-2 */

static void check_gpt2(const struct spec *s, const char *px, const char *dtype)
{
	struct djn_err err = { 0 };
	struct djn_model *m;
	char name[96];

	write_text("config.json", gpt2_config(NULL));
	write_st("model.safetensors", s, 0, s->n, dtype, false);
	m = djn_model_load_hf(tmp, &err);
	cr_assert_not_null(m, "%s", err.msg);
	cr_assert_eq(m->cfg.arch, DJN_ARCH_GPT2);
	cr_assert_eq(m->cfg.hidden_dim, 4 * D);
	cr_assert_eq(m->cfg.n_kv_head, NH);
	cr_assert_eq(m->cfg.seq_len, P);
	cr_assert(m->cfg.tied_embeddings);
	cr_assert_eq(m->output.host, m->tok_embd.host);
	cr_assert_eq(m->pos_embd.rows, P);

	const struct djn_layer *L = &m->layers[1];
	struct djn_weight *const parts[] = { (struct djn_weight *)&L->wq,
					     (struct djn_weight *)&L->wk,
					     (struct djn_weight *)&L->wv };
	struct djn_weight *const bparts[] = { (struct djn_weight *)&L->bq,
					      (struct djn_weight *)&L->bk,
					      (struct djn_weight *)&L->bv };
	bool bf = !strcmp(dtype, "BF16");

#define Q(x) (bf ? djn_bf16_to_f32(djn_f32_to_bf16(x)) : (x))
	snprintf(name, sizeof(name), "%sh.1.attn.c_attn.weight", px);
	for (int p = 0; p < 3; p++) {
		cr_assert_eq(parts[p]->rows, D);
		cr_assert_eq(parts[p]->cols, D);
		cr_assert_eq(parts[p]->dtype, bf ? DJN_DTYPE_BF16 : DJN_DTYPE_F32);
		cr_assert_str_eq(parts[p]->name, name);
		/* W_part[r][c] = c_attn[c][p*D + r]  (Conv1D stores [in, out]) */
		for (int r = 0; r < D; r++)
			for (int c = 0; c < D; c++)
				cr_assert_float_eq(f32_at(parts[p], r, c),
						   Q(expect(s, name, (int64_t)c * 3 * D + p * D + r)), 0,
						   "part %d [%d][%d]", p, r, c);
	}
	snprintf(name, sizeof(name), "%sh.1.attn.c_attn.bias", px);
	for (int p = 0; p < 3; p++) {
		cr_assert_eq(bparts[p]->rows, 1);
		cr_assert_eq(bparts[p]->cols, D);
		cr_assert_float_eq(f32_at(bparts[p], 0, 5), Q(expect(s, name, p * D + 5)), 0);
	}
	snprintf(name, sizeof(name), "%sh.1.mlp.c_fc.weight", px);
	cr_assert_eq(L->w_up.rows, 4 * D);
	cr_assert_eq(L->w_up.cols, D);
	cr_assert_float_eq(f32_at(&L->w_up, 20, 3), Q(expect(s, name, 3 * 4 * D + 20)), 0);
	snprintf(name, sizeof(name), "%sh.1.mlp.c_proj.weight", px);
	cr_assert_eq(L->w_down.rows, D);
	cr_assert_eq(L->w_down.cols, 4 * D);
	cr_assert_float_eq(f32_at(&L->w_down, 6, 30), Q(expect(s, name, 30 * D + 6)), 0);
	snprintf(name, sizeof(name), "%sh.1.attn.c_proj.weight", px);
	cr_assert_float_eq(f32_at(&L->wo, 1, 7), Q(expect(s, name, 7 * D + 1)), 0);
	snprintf(name, sizeof(name), "%sh.1.ln_2.bias", px);
	cr_assert_float_eq(f32_at(&L->mlp_norm_b, 0, 4), Q(expect(s, name, 4)), 0);
	snprintf(name, sizeof(name), "%sln_f.bias", px);
	cr_assert_float_eq(f32_at(&m->final_norm_b, 0, 1), Q(expect(s, name, 1)), 0);
#undef Q
	djn_model_unref(m);
}

Test(hf, gpt2_transformer_prefix_f32)
{
	struct spec s;

	gpt2_spec(&s, "transformer.");
	check_gpt2(&s, "transformer.", "F32");
}

Test(hf, gpt2_bare_names_bf16)
{
	struct spec s;

	gpt2_spec(&s, "");
	check_gpt2(&s, "", "BF16");
}

Test(hf, gpt2_conv1d_wrong_shape)
{
	struct spec s;

	gpt2_spec(&s, "transformer.");
	/* stored the torch.nn.Linear way round, [out, in] */
	s.t[4].shape[0] = 3 * D;
	s.t[4].shape[1] = D;
	cr_assert_str_eq(s.t[4].name, "transformer.h.0.attn.c_attn.weight");
	write_text("config.json", gpt2_config(NULL));
	write_st("model.safetensors", &s, 0, s.n, "F32", false);
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors",
			  "'transformer.h.0.attn.c_attn.weight' has shape [24, 8], expected [8, 24]");
}

/* ------------------------------------------------- weights: bad input */

Test(hf, missing_tensor)
{
	struct spec s;

	llama_spec(&s, true);
	spec_remove(&s, "model.layers.1.mlp.down_proj.weight");
	write_text("config.json", llama_config(NULL));
	write_st("model.safetensors", &s, 0, s.n, "F32", false);
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors",
			  "tensor 'model.layers.1.mlp.down_proj.weight' is missing");
}

Test(hf, missing_tensor_sharded_names_index)
{
	struct spec s;
	int split;

	llama_spec(&s, true);
	spec_remove(&s, "model.norm.weight");
	split = s.n / 2;
	write_text("config.json", llama_config(NULL));
	write_st(SHARD1, &s, 0, split, "F32", false);
	write_st(SHARD2, &s, split, s.n, "F32", false);
	write_index(&s, split, SHARD1, SHARD2);
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors.index.json",
			  "tensor 'model.norm.weight' is missing");
}

Test(hf, wrong_tensor_shape)
{
	struct spec s;
	struct tspec *t;

	llama_spec(&s, true);
	t = (struct tspec *)spec_find(&s, "model.layers.0.self_attn.q_proj.weight");
	t->shape[0] = 4;
	write_text("config.json", llama_config(NULL));
	write_st("model.safetensors", &s, 0, s.n, "F32", false);
	expect_load_error(DJN_ERR_FORMAT, tmp, "'model.layers.0.self_attn.q_proj.weight'");
	expect_load_error(DJN_ERR_FORMAT, tmp, "expected [8, 8]");
}

Test(hf, bad_safetensors_propagates)
{
	write_text("config.json", llama_config(NULL));
	write_text("model.safetensors", "abc");
	expect_load_error(DJN_ERR_FORMAT, "model.safetensors", "too short");
}

Test(hf, unsupported_dtype_propagates)
{
	write_text("config.json", llama_config(NULL));
	write_raw_st("model.safetensors",
		     "{\"model.embed_tokens.weight\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
		     (uint64_t)-1, "\0\0\0\0\0\0\0\0", 8);
	expect_load_error(DJN_ERR_UNSUPPORTED, "model.safetensors", "'model.embed_tokens.weight'");
	expect_load_error(DJN_ERR_UNSUPPORTED, "model.safetensors", "I64");
}

Test(hf, no_weights)
{
	write_text("config.json", llama_config(NULL));
	expect_load_error(DJN_ERR_IO, tmp, "no model.safetensors or model.safetensors.index.json");
}

Test(hf, no_config)
{
	struct spec s;

	llama_spec(&s, true);
	write_st("model.safetensors", &s, 0, s.n, "F32", false);
	expect_load_error(DJN_ERR_IO, "config.json", "cannot open");
}

Test(hf, not_a_directory)
{
	struct djn_err err = { 0 };

	write_text("file", "x");
	cr_assert_null(djn_model_load_hf(in_tmp("file"), &err));
	cr_assert_eq(err.code, DJN_ERR_IO);
	cr_assert(strstr(err.msg, "not a directory"), "%s", err.msg);
}

/* --------------------------------------------------- config.json: bad */

Test(hf, config_missing_field)
{
	struct spec s;

	llama_spec(&s, true);
	write_st("model.safetensors", &s, 0, s.n, "F32", false);
	write_text("config.json",
		   "{\"architectures\": [\"LlamaForCausalLM\"], \"intermediate_size\": 16}");
	expect_load_error(DJN_ERR_FORMAT, "config.json", "field 'hidden_size' is missing");
}

Test(hf, config_wrong_type)
{
	struct spec s;

	llama_spec(&s, true);
	write_st("model.safetensors", &s, 0, s.n, "F32", false);
	write_text("config.json", subst(llama_config(NULL), "\"num_hidden_layers\": 2",
					"\"num_hidden_layers\": \"2\""));
	expect_load_error(DJN_ERR_FORMAT, "config.json",
			  "field 'num_hidden_layers' must be an integer, got string");
}

Test(hf, config_unknown_architecture)
{
	write_text("config.json", "{\"architectures\": [\"BertForMaskedLM\"], \"hidden_size\": 8}");
	expect_load_error(DJN_ERR_UNSUPPORTED, "config.json", "architecture 'BertForMaskedLM'");
}

Test(hf, config_malformed_json)
{
	write_text("config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": }");
	expect_load_error(DJN_ERR_FORMAT, "config.json", "not valid JSON (error at byte");
}

static enum djn_status parse(const char *json, struct djn_config *c, struct djn_err *err)
{
	memset(c, 0, sizeof(*c));
	return djn_hf_parse_config(json, strlen(json), "config.json", c, err);
}

static void expect_config_error(const char *json, enum djn_status code, const char *what)
{
	struct djn_config c;
	struct djn_err err = { 0 };

	cr_assert_eq(parse(json, &c, &err), code, "want %d for %s: %s", code, json, err.msg);
	cr_assert(strstr(err.msg, "config.json: "), "%s", err.msg);
	cr_assert(strstr(err.msg, what), "message does not say '%s': %s", what, err.msg);
}

Test(hf, config_defaults_and_variants)
{
	struct djn_config c;
	struct djn_err err = { 0 };
	char buf[2048];

	/* no num_key_value_heads, rope_theta or tie_word_embeddings */
	cr_assert_eq(parse("{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64,"
			   "\"intermediate_size\":128,\"num_hidden_layers\":2,"
			   "\"num_attention_heads\":4,\"vocab_size\":256,"
			   "\"max_position_embeddings\":128,\"rms_norm_eps\":1e-6,"
			   "\"head_dim\":null,\"rope_scaling\":null,\"sliding_window\":4096}",
			   &c, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(c.n_kv_head, 4);
	cr_assert_eq(c.head_dim, 16);
	cr_assert_eq(c.seq_len, 128); /* the window is wider */
	cr_assert_float_eq(c.rope_theta, 10000.0f, 1e-3);
	cr_assert_not(c.tied_embeddings);
	/* explicit head_dim, theta, integral float, tied */
	snprintf(buf, sizeof(buf), "%s", llama_config("\"head_dim\": 8, \"rope_theta\": 500000.0, "
						      "\"tie_word_embeddings\": true"));
	cr_assert_eq(parse(buf, &c, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(c.head_dim, 8);
	cr_assert_float_eq(c.rope_theta, 500000.0f, 1e-3);
	cr_assert(c.tied_embeddings);
	/* a sliding window narrower than the context bounds it */
	cr_assert_eq(parse(llama_config("\"sliding_window\": 16"), &c, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(c.seq_len, 16);
	/* transformers 5 nests rope settings */
	snprintf(buf, sizeof(buf), "%s", llama_config("\"rope_parameters\": {\"rope_theta\": 1000.0, "
						      "\"rope_type\": \"default\"}"));
	cr_assert_eq(parse(buf, &c, &err), DJN_OK, "%s", err.msg);
	cr_assert_float_eq(c.rope_theta, 1000.0f, 1e-3);
	/* model_type when architectures is absent */
	cr_assert_eq(parse("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":2,\"n_head\":4,"
			   "\"n_ctx\":128,\"vocab_size\":256,\"layer_norm_epsilon\":1e-5}",
			   &c, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(c.arch, DJN_ARCH_GPT2);
	cr_assert_eq(c.seq_len, 128);
	cr_assert_eq(c.hidden_dim, 256);
	cr_assert(c.tied_embeddings);
	/* trailing whitespace and NULs are fine */
	cr_assert_eq(djn_hf_parse_config(gpt2_config(NULL), strlen(gpt2_config(NULL)) + 1,
					 "config.json", &c, &err), DJN_OK, "%s", err.msg);
}

Test(hf, config_errors)
{
	expect_config_error("", DJN_ERR_FORMAT, "not valid JSON");
	expect_config_error("[1, 2]", DJN_ERR_FORMAT, "not a JSON object");
	expect_config_error("{} x", DJN_ERR_FORMAT, "trailing data");
	expect_config_error("{}", DJN_ERR_FORMAT, "field 'architectures' is missing");
	expect_config_error("{\"architectures\": \"LlamaForCausalLM\"}", DJN_ERR_FORMAT,
			    "field 'architectures' must be an array, got string");
	expect_config_error("{\"architectures\": []}", DJN_ERR_FORMAT, "an empty array");
	expect_config_error("{\"model_type\": \"bert\"}", DJN_ERR_UNSUPPORTED, "model_type 'bert'");
	expect_config_error(subst(llama_config(NULL), "1e-05", "\"small\""), DJN_ERR_FORMAT,
			    "field 'rms_norm_eps' must be a number, got string");
	expect_config_error(subst(llama_config(NULL), "\"rms_norm_eps\": 1e-05,", ""),
			    DJN_ERR_FORMAT, "field 'rms_norm_eps' is missing");
	expect_config_error(subst(llama_config(NULL), "\"hidden_size\": 8", "\"hidden_size\": -8"),
			    DJN_ERR_FORMAT, "field 'hidden_size' is -8, must be in 1..");
	expect_config_error(subst(llama_config(NULL), "\"hidden_size\": 8", "\"hidden_size\": null"),
			    DJN_ERR_FORMAT, "field 'hidden_size' must not be null");
	expect_config_error(subst(llama_config(NULL), "\"vocab_size\": 16", "\"vocab_size\": 1.5"),
			    DJN_ERR_FORMAT, "field 'vocab_size' must be an integer, got 1.5");
	expect_config_error(subst(llama_config(NULL), "\"vocab_size\": 16", "\"vocab_size\": 1e99"),
			    DJN_ERR_FORMAT, "field 'vocab_size' is");
	expect_config_error(subst(llama_config(NULL), "\"vocab_size\": 16", "\"vocab_size\": [16]"),
			    DJN_ERR_FORMAT, "field 'vocab_size' must be an integer, got array");
	expect_config_error(subst(llama_config(NULL), "\"num_key_value_heads\": 1",
				  "\"num_key_value_heads\": 3"), DJN_ERR_FORMAT, "does not divide");
	/* Python keeps the last of two equal keys, cJSON the first: refuse both */
	expect_config_error(llama_config("\"num_key_value_heads\": 2"), DJN_ERR_FORMAT,
			    "field 'num_key_value_heads' appears twice");
	expect_config_error(llama_config("\"tie_word_embeddings\": 1"), DJN_ERR_FORMAT,
			    "field 'tie_word_embeddings' must be a boolean, got number");
	expect_config_error(llama_config("\"rope_theta\": null, \"rope_scaling\": "
					 "{\"rope_type\": \"llama3\", \"factor\": 8.0}"),
			    DJN_ERR_UNSUPPORTED, "rope type 'llama3'");
	expect_config_error(llama_config("\"rope_scaling\": {\"factor\": 8.0}"),
			    DJN_ERR_UNSUPPORTED, "rope_scaling");
	expect_config_error(llama_config("\"rope_parameters\": {\"rope_theta\": \"x\"}"),
			    DJN_ERR_FORMAT, "rope_parameters: field 'rope_theta' must be a number");
	expect_config_error(llama_config("\"mlp_bias\": true"), DJN_ERR_UNSUPPORTED, "mlp_bias");
	expect_config_error(subst(gpt2_config(NULL), "gelu_new", "relu"), DJN_ERR_UNSUPPORTED,
			    "activation_function 'relu'");
	expect_config_error(gpt2_config("\"scale_attn_by_inverse_layer_idx\": true"),
			    DJN_ERR_UNSUPPORTED, "scale_attn_by_inverse_layer_idx");
	expect_config_error("{\"architectures\": [\"GPT2LMHeadModel\"], \"n_embd\": 8, "
			    "\"n_layer\": 1, \"n_head\": 2, \"vocab_size\": 4, "
			    "\"layer_norm_epsilon\": 1e-5}", DJN_ERR_FORMAT,
			    "field 'n_positions' is missing");
	expect_config_error(llama_config("\"head_dim\": 3"), DJN_ERR_FORMAT, "bad head_dim 3");
}

/* ------------------------------------------------ safetensors: direct */

#define ENTRY(name, dtype, shape, b, e) \
	"\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static const uint8_t zeros[64];

Test(hf, st_valid_and_find)
{
	struct djn_err err = { 0 };
	struct djn_st_file *f;
	const struct djn_st_tensor *t;
	float v[8] = { 1, 2, 3, 4, 5, 6 }, x;

	/* metadata, a scalar, an empty tensor, space padding */
	write_raw_st("x.safetensors",
		     "{\"__metadata__\":{\"format\":\"pt\"}," ENTRY("b", "F32", "[2,3]", 0, 24) ","
		     ENTRY("a", "F16", "[]", 24, 26) "," ENTRY("e", "BF16", "[0,4]", 26, 26) "}   ",
		     (uint64_t)-1, v, 26);
	f = djn_st_open(in_tmp("x.safetensors"), &err);
	cr_assert_not_null(f, "%s", err.msg);
	cr_assert_eq(f->n_tensors, 3);
	t = djn_st_find(f, "b");
	cr_assert_not_null(t);
	cr_assert_eq(t->dtype, DJN_DTYPE_F32);
	cr_assert_eq(t->rank, 2);
	cr_assert_eq(t->shape[1], 3);
	cr_assert_eq(t->n_elem, 6);
	cr_assert_eq(t->n_bytes, 24);
	memcpy(&x, (const uint8_t *)t->data + 16, 4); /* the data need not be aligned */
	cr_assert_float_eq(x, 5.0f, 0);
	t = djn_st_find(f, "a");
	cr_assert_eq(t->rank, 0);
	cr_assert_eq(t->n_elem, 1);
	cr_assert_eq(djn_st_find(f, "e")->n_elem, 0);
	cr_assert_null(djn_st_find(f, "__metadata__"));
	cr_assert_null(djn_st_find(f, "c"));
	djn_st_free(f);
}

Test(hf, st_truncated)
{
	write_file("x.safetensors", "\x10\0\0", 3);
	expect_st_error(DJN_ERR_FORMAT, "file is 3 bytes, too short");
	write_file("x.safetensors", "", 0);
	expect_st_error(DJN_ERR_FORMAT, "file is 0 bytes, too short");
}

Test(hf, st_header_beyond_file)
{
	write_raw_st("x.safetensors", "{}", 100, NULL, 0);
	expect_st_error(DJN_ERR_FORMAT, "header length 100 runs past the end of the file (10 bytes)");
	write_raw_st("x.safetensors", "{}", (uint64_t)1 << 62, NULL, 0);
	expect_st_error(DJN_ERR_FORMAT, "is too large");
}

Test(hf, st_malformed_json)
{
	write_raw_st("x.safetensors", "{\"a\":{\"dtype\":", (uint64_t)-1, NULL, 0);
	expect_st_error(DJN_ERR_FORMAT, "header is not valid JSON");
	write_raw_st("x.safetensors", "{}xx", (uint64_t)-1, NULL, 0);
	expect_st_error(DJN_ERR_FORMAT, "trailing data at byte 10");
	write_raw_st("x.safetensors", "[]", (uint64_t)-1, NULL, 0);
	expect_st_error(DJN_ERR_FORMAT, "header is not a JSON object");
	write_raw_st("x.safetensors", "{\"__metadata__\":3}", (uint64_t)-1, NULL, 0);
	expect_st_error(DJN_ERR_FORMAT, "__metadata__ is not an object");
	write_raw_st("x.safetensors", "{\"a\":3}", (uint64_t)-1, NULL, 0);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'a' is not an object");
	write_raw_st("x.safetensors", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}",
		     (uint64_t)-1, zeros, 4);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'a' has no dtype string");
	write_raw_st("x.safetensors", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
		     (uint64_t)-1, zeros, 4);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'a' has no shape array");
}

Test(hf, st_offsets_out_of_range)
{
	write_raw_st("x.safetensors", "{" ENTRY("w", "F32", "[4]", 8, 24) "}", (uint64_t)-1,
		     zeros, 16);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'w' ends at byte 24, data has 16");
	write_raw_st("x.safetensors", "{" ENTRY("w", "F32", "[0]", 8, 4) "}", (uint64_t)-1,
		     zeros, 16);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'w' begins at byte 8, after its end 4");
	write_raw_st("x.safetensors", "{" ENTRY("w", "F32", "[1]", -4, 0) "}", (uint64_t)-1,
		     zeros, 16);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'w' has bad data_offsets");
	write_raw_st("x.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
		     (uint64_t)-1, zeros, 16);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'w' has bad data_offsets");
}

Test(hf, st_overlapping)
{
	write_raw_st("x.safetensors",
		     "{" ENTRY("a", "F32", "[4]", 0, 16) "," ENTRY("b", "F32", "[2]", 8, 16) ","
		     ENTRY("z", "F32", "[0]", 4, 4) "}",
		     (uint64_t)-1, zeros, 16);
	expect_st_error(DJN_ERR_FORMAT, "tensors 'a' and 'b' overlap (bytes 0..16 and 8..16)");
	/* a tensor inside a larger one, after a third that starts later */
	write_raw_st("x.safetensors",
		     "{" ENTRY("big", "F32", "[8]", 0, 32) "," ENTRY("in", "F32", "[1]", 4, 8) "}",
		     (uint64_t)-1, zeros, 32);
	expect_st_error(DJN_ERR_FORMAT, "overlap");
	write_raw_st("x.safetensors",
		     "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("a", "F32", "[1]", 4, 8) "}",
		     (uint64_t)-1, zeros, 8);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'a' appears twice");
}

Test(hf, st_unknown_dtype)
{
	write_raw_st("x.safetensors", "{" ENTRY("ids", "I64", "[2]", 0, 16) "}", (uint64_t)-1,
		     zeros, 16);
	expect_st_error(DJN_ERR_UNSUPPORTED, "tensor 'ids' has dtype I64");
	write_raw_st("x.safetensors", "{" ENTRY("q", "F8_E4M3", "[16]", 0, 16) "}", (uint64_t)-1,
		     zeros, 16);
	expect_st_error(DJN_ERR_UNSUPPORTED, "tensor 'q' has dtype F8_E4M3");
	write_raw_st("x.safetensors", "{" ENTRY("q", "WAT", "[16]", 0, 16) "}", (uint64_t)-1,
		     zeros, 16);
	expect_st_error(DJN_ERR_UNSUPPORTED, "dtype WAT");
}

Test(hf, st_shape_size_mismatch)
{
	write_raw_st("x.safetensors", "{" ENTRY("w", "F32", "[2,3]", 0, 20) "}", (uint64_t)-1,
		     zeros, 24);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'w' has 20 bytes, its shape [2, 3] of F32 needs 24");
	write_raw_st("x.safetensors", "{" ENTRY("w", "BF16", "[3]", 0, 5) "}", (uint64_t)-1,
		     zeros, 24);
	expect_st_error(DJN_ERR_FORMAT, "needs 6");
	write_raw_st("x.safetensors", "{" ENTRY("w", "F32", "[1,1,1,1,1]", 0, 4) "}", (uint64_t)-1,
		     zeros, 24);
	expect_st_error(DJN_ERR_UNSUPPORTED, "tensor 'w' has rank 5");
	write_raw_st("x.safetensors", "{" ENTRY("w", "F32", "[2,-3]", 0, 4) "}", (uint64_t)-1,
		     zeros, 24);
	expect_st_error(DJN_ERR_FORMAT, "tensor 'w' has a bad shape (dimension 1");
	write_raw_st("x.safetensors", "{" ENTRY("w", "F32", "[2.5]", 0, 4) "}", (uint64_t)-1,
		     zeros, 24);
	expect_st_error(DJN_ERR_FORMAT, "bad shape");
	write_raw_st("x.safetensors",
		     "{" ENTRY("w", "F32", "[4294967296,4294967296,4294967296]", 0, 4) "}",
		     (uint64_t)-1, zeros, 24);
	expect_st_error(DJN_ERR_FORMAT, "too many elements");
}
