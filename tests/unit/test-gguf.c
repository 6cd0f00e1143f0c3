/* test-gguf.c - the GGUF loader: the real stories260K file, and small files written here to break it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "djinn/model.h"

#define STORIES_GGUF "models/stories260K.gguf"
#define STORIES_BIN "../shared/models/stories260K.bin"

/* ggml type ids and gguf value types, spelled out here rather than taken from
 * the loader so the test checks the format, not the implementation. */
enum { T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q5_K = 13, T_BF16 = 30 };
enum { V_U8, V_I8, V_U16, V_I16, V_U32, V_I32, V_F32, V_BOOL, V_STR, V_ARR, V_U64, V_I64, V_F64 };

/* --- a tiny GGUF writer ---------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void put_u8(struct buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(struct buf *b, uint16_t v) { put_u8(b, (uint8_t)v); put_u8(b, (uint8_t)(v >> 8)); }
static void put_u32(struct buf *b, uint32_t v) { put_u16(b, (uint16_t)v); put_u16(b, (uint16_t)(v >> 16)); }
static void put_u64(struct buf *b, uint64_t v) { put_u32(b, (uint32_t)v); put_u32(b, (uint32_t)(v >> 32)); }
static void put_f32(struct buf *b, float f) { uint32_t u; memcpy(&u, &f, 4); put_u32(b, u); }
static void put_f64(struct buf *b, double f) { uint64_t u; memcpy(&u, &f, 8); put_u64(b, u); }

static void put_str(struct buf *b, const char *s)
{
	put_u64(b, strlen(s));
	put(b, s, strlen(s));
}

struct tkv {
	char key[96];
	uint32_t type;
	struct buf val; /* the value as serialized, after the type */
};

struct ttensor {
	char name[96];
	uint32_t n_dims;
	uint64_t ne[5];
	uint32_t type;
	struct buf data;
	int64_t offset; /* -1: placed by the writer */
};

struct tfile {
	char magic[4];
	uint32_t version;
	uint32_t align;            /* how the writer lays the data out */
	int64_t n_kv_hdr, n_t_hdr; /* -1: the true counts */
	struct tkv kv[96];
	int n_kv;
	struct ttensor t[96];
	int n_t;
};

static void tf_init(struct tfile *f)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->magic, "GGUF", 4);
	f->version = 3;
	f->align = 32;
	f->n_kv_hdr = f->n_t_hdr = -1;
}

static void tf_release(struct tfile *f)
{
	for (int i = 0; i < f->n_kv; i++)
		free(f->kv[i].val.p);
	for (int i = 0; i < f->n_t; i++)
		free(f->t[i].data.p);
}

static void tf_del(struct tfile *f, const char *key)
{
	for (int i = 0; i < f->n_kv; i++) {
		if (!strcmp(f->kv[i].key, key)) {
			free(f->kv[i].val.p);
			memmove(&f->kv[i], &f->kv[i + 1], sizeof(f->kv[0]) * (size_t)(f->n_kv - i - 1));
			f->n_kv--;
			return;
		}
	}
}

/* The value buffer for key, emptied; an existing key keeps its place. */
static struct buf *tf_kv(struct tfile *f, const char *key, uint32_t type)
{
	struct tkv *kv = NULL;

	for (int i = 0; i < f->n_kv; i++)
		if (!strcmp(f->kv[i].key, key))
			kv = &f->kv[i];
	if (!kv) {
		cr_assert_lt(f->n_kv, 96);
		kv = &f->kv[f->n_kv++];
		memset(kv, 0, sizeof(*kv));
		snprintf(kv->key, sizeof(kv->key), "%s", key);
	}
	kv->type = type;
	kv->val.len = 0;
	return &kv->val;
}

static void tf_u32(struct tfile *f, const char *k, uint32_t v) { put_u32(tf_kv(f, k, V_U32), v); }
static void tf_f32(struct tfile *f, const char *k, float v) { put_f32(tf_kv(f, k, V_F32), v); }
static void tf_bool(struct tfile *f, const char *k, bool v) { put_u8(tf_kv(f, k, V_BOOL), v); }
static void tf_str(struct tfile *f, const char *k, const char *v) { put_str(tf_kv(f, k, V_STR), v); }

static void tf_arr_str(struct tfile *f, const char *k, int n, const char *const *v)
{
	struct buf *b = tf_kv(f, k, V_ARR);

	put_u32(b, V_STR);
	put_u64(b, (uint64_t)n);
	for (int i = 0; i < n; i++)
		put_str(b, v[i]);
}

static void tf_arr_f32(struct tfile *f, const char *k, int n, const float *v)
{
	struct buf *b = tf_kv(f, k, V_ARR);

	put_u32(b, V_F32);
	put_u64(b, (uint64_t)n);
	for (int i = 0; i < n; i++)
		put_f32(b, v[i]);
}

static void tf_arr_i32(struct tfile *f, const char *k, int n, const int32_t *v)
{
	struct buf *b = tf_kv(f, k, V_ARR);

	put_u32(b, V_I32);
	put_u64(b, (uint64_t)n);
	for (int i = 0; i < n; i++)
		put_u32(b, (uint32_t)v[i]);
}

static struct ttensor *tf_find(struct tfile *f, const char *name)
{
	for (int i = 0; i < f->n_t; i++)
		if (!strcmp(f->t[i].name, name))
			return &f->t[i];
	cr_assert_fail("test bug: no tensor %s", name);
	return NULL;
}

static void tf_tdel(struct tfile *f, const char *name)
{
	struct ttensor *t = tf_find(f, name);
	int i = (int)(t - f->t);

	free(t->data.p);
	memmove(t, t + 1, sizeof(*t) * (size_t)(f->n_t - i - 1));
	f->n_t--;
}

/* A deterministic value in [-1, 1) for element i of the tensor seeded s. */
static float val(uint32_t s, size_t i)
{
	uint32_t x = s * 2654435761u ^ (uint32_t)i * 2246822519u;

	x ^= x >> 15;
	x *= 2246822519u;
	x ^= x >> 13;
	return (float)(x & 0xffff) / 32768.0f - 1.0f;
}

static uint32_t name_seed(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

/* Add a tensor of ne0 x ne1 elements of `type` (f32/f16/bf16) with values
 * from val(); quantized data is put in by the caller. */
static struct ttensor *tf_tensor(struct tfile *f, const char *name, uint32_t type,
				 uint32_t n_dims, uint64_t ne0, uint64_t ne1)
{
	struct ttensor *t;
	uint32_t s = name_seed(name);

	cr_assert_lt(f->n_t, 96);
	t = &f->t[f->n_t++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->n_dims = n_dims;
	t->ne[0] = ne0;
	t->ne[1] = n_dims > 1 ? ne1 : 1;
	t->type = type;
	t->offset = -1;
	for (size_t i = 0; i < ne0 * t->ne[1]; i++) {
		if (type == T_F32)
			put_f32(&t->data, val(s, i));
		else if (type == T_F16)
			put_u16(&t->data, djn_f32_to_f16(val(s, i)));
		else if (type == T_BF16)
			put_u16(&t->data, djn_f32_to_bf16(val(s, i)));
	}
	return t;
}

static uint8_t *tf_bytes(const struct tfile *f, size_t *len)
{
	struct buf b = { 0 };
	size_t data_start, end = 0, *offs = calloc((size_t)f->n_t + 1, sizeof(size_t));

	put(&b, f->magic, 4);
	put_u32(&b, f->version);
	put_u64(&b, f->n_t_hdr >= 0 ? (uint64_t)f->n_t_hdr : (uint64_t)f->n_t);
	put_u64(&b, f->n_kv_hdr >= 0 ? (uint64_t)f->n_kv_hdr : (uint64_t)f->n_kv);
	for (int i = 0; i < f->n_kv; i++) {
		put_str(&b, f->kv[i].key);
		put_u32(&b, f->kv[i].type);
		put(&b, f->kv[i].val.p, f->kv[i].val.len);
	}
	for (int i = 0; i < f->n_t; i++) {
		const struct ttensor *t = &f->t[i];

		if (t->offset >= 0) {
			offs[i] = (size_t)t->offset;
		} else {
			end = (end + f->align - 1) / f->align * f->align;
			offs[i] = end;
			end += t->data.len;
		}
		put_str(&b, t->name);
		put_u32(&b, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			put_u64(&b, t->ne[d]);
		put_u32(&b, t->type);
		put_u64(&b, offs[i]);
	}
	while (f->n_t && b.len % f->align)
		put_u8(&b, 0);
	data_start = b.len;
	for (size_t i = 0; i < end; i++)
		put_u8(&b, 0);
	for (int i = 0; i < f->n_t; i++)
		if (offs[i] + f->t[i].data.len <= end)
			memcpy(b.p + data_start + offs[i], f->t[i].data.p, f->t[i].data.len);
	free(offs);
	*len = b.len;
	return b.p;
}

/* --- a tiny llama ---------------------------------------------------------- */

struct tiny {
	int dim, hidden, n_layer, n_head, n_kv_head, ctx;
	uint32_t type; /* of the 2-D weights */
	bool tied;
};

static const char *const tiny_tokens[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
					   "\xe2\x96\x81" "a", "\xe2\x96\x81" "b" };
#define TINY_VOCAB 8

static void tiny_llama(struct tfile *f, const struct tiny *o)
{
	static const float scores[TINY_VOCAB] = { 0, 0, 0, -1, -2, -3, -4, -5 };
	static const int32_t types[TINY_VOCAB] = { 2, 3, 3, 1, 1, 1, 1, 1 };
	int kvd = o->dim / o->n_head * o->n_kv_head;
	char n[64];

	tf_init(f);
	tf_str(f, "general.architecture", "llama");
	tf_str(f, "general.name", "tiny");
	tf_u32(f, "llama.context_length", (uint32_t)o->ctx);
	tf_u32(f, "llama.embedding_length", (uint32_t)o->dim);
	tf_u32(f, "llama.feed_forward_length", (uint32_t)o->hidden);
	tf_u32(f, "llama.block_count", (uint32_t)o->n_layer);
	tf_u32(f, "llama.attention.head_count", (uint32_t)o->n_head);
	tf_u32(f, "llama.attention.head_count_kv", (uint32_t)o->n_kv_head);
	tf_f32(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	tf_str(f, "tokenizer.ggml.model", "llama");
	tf_arr_str(f, "tokenizer.ggml.tokens", TINY_VOCAB, tiny_tokens);
	tf_arr_f32(f, "tokenizer.ggml.scores", TINY_VOCAB, scores);
	tf_arr_i32(f, "tokenizer.ggml.token_type", TINY_VOCAB, types);
	tf_u32(f, "tokenizer.ggml.bos_token_id", 1);
	tf_u32(f, "tokenizer.ggml.eos_token_id", 2);

	tf_tensor(f, "token_embd.weight", o->type, 2, (uint64_t)o->dim, TINY_VOCAB);
	tf_tensor(f, "output_norm.weight", T_F32, 1, (uint64_t)o->dim, 1);
	if (!o->tied)
		tf_tensor(f, "output.weight", o->type, 2, (uint64_t)o->dim, TINY_VOCAB);
	for (int l = 0; l < o->n_layer; l++) {
#define T(suffix, ty, nd, a, b)                                              \
	snprintf(n, sizeof(n), "blk.%d." suffix, l);                         \
	tf_tensor(f, n, (ty), (nd), (uint64_t)(a), (uint64_t)(b))
		T("attn_norm.weight", T_F32, 1, o->dim, 1);
		T("attn_q.weight", o->type, 2, o->dim, o->dim);
		T("attn_k.weight", o->type, 2, o->dim, kvd);
		T("attn_v.weight", o->type, 2, o->dim, kvd);
		T("attn_output.weight", o->type, 2, o->dim, o->dim);
		T("ffn_norm.weight", T_F32, 1, o->dim, 1);
		T("ffn_gate.weight", o->type, 2, o->dim, o->hidden);
		T("ffn_up.weight", o->type, 2, o->dim, o->hidden);
		T("ffn_down.weight", o->type, 2, o->hidden, o->dim);
#undef T
	}
}

static const struct tiny tiny_default = {
	.dim = 16, .hidden = 24, .n_layer = 2, .n_head = 4, .n_kv_head = 2, .ctx = 64,
	.type = T_F32,
};

/* --- running the loader on a written file ---------------------------------- */

static char tmp_path[64];

static const char *write_bytes(const uint8_t *p, size_t len)
{
	int fd;

	snprintf(tmp_path, sizeof(tmp_path), "/tmp/djn-test-gguf-XXXXXX.gguf");
	fd = mkstemps(tmp_path, 5);
	cr_assert_geq(fd, 0, "mkstemps: %s", strerror(errno));
	cr_assert_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
	return tmp_path;
}

static const char *tf_write(const struct tfile *f)
{
	size_t len;
	uint8_t *p = tf_bytes(f, &len);
	const char *path = write_bytes(p, len);

	free(p);
	return path;
}

static struct djn_model *load(const struct tfile *f, struct djn_err *err)
{
	const char *path = tf_write(f);
	struct djn_model *m = djn_model_load_gguf(path, err);

	unlink(path);
	return m;
}

static struct djn_model *load_ok(const struct tfile *f)
{
	struct djn_err err = { 0 };
	struct djn_model *m = load(f, &err);

	cr_assert_not_null(m, "load failed: %s", err.msg);
	return m;
}

/* The load fails with `code`, and the message names the file and contains
 * each of the NULL-terminated words. */
static void expect_fail_bytes(const uint8_t *p, size_t len, enum djn_status code, ...)
{
	struct djn_err err = { 0 };
	const char *path = write_bytes(p, len), *w;
	struct djn_model *m = djn_model_load_gguf(path, &err);
	va_list ap;

	unlink(path);
	cr_log_info("%s", err.msg);
	cr_assert_null(m, "loaded a bad file");
	cr_assert_eq(err.code, code, "code %d (%s), expected %d: %s", err.code,
		     djn_status_str(err.code), code, err.msg);
	cr_assert(strncmp(err.msg, path, strlen(path)) == 0, "message does not start with the path: %s",
		  err.msg);
	va_start(ap, code);
	while ((w = va_arg(ap, const char *)))
		cr_assert(strstr(err.msg, w), "message lacks \"%s\": %s", w, err.msg);
	va_end(ap);
}

#define expect_fail(f, code, ...)                                                  \
	do {                                                                       \
		size_t len_;                                                       \
		uint8_t *p_ = tf_bytes((f), &len_);                                \
		expect_fail_bytes(p_, len_, (code), __VA_ARGS__, NULL);            \
		free(p_);                                                          \
	} while (0)

/* --- the real model -------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *p;
	long n;

	cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	p = malloc((size_t)n);
	cr_assert_eq(fread(p, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return p;
}

Test(gguf, stories260k_config)
{
	struct djn_err err = { 0 };
	struct djn_model *m = djn_model_load_gguf(STORIES_GGUF, &err);
	const struct djn_config *c;

	cr_assert_not_null(m, "%s", err.msg);
	c = &m->cfg;
	cr_expect_eq(m->format, DJN_FORMAT_GGUF);
	cr_expect_eq(c->arch, DJN_ARCH_LLAMA);
	cr_expect_eq(c->dim, 64);
	cr_expect_eq(c->hidden_dim, 172);
	cr_expect_eq(c->n_layer, 5);
	cr_expect_eq(c->n_head, 8);
	cr_expect_eq(c->n_kv_head, 4);
	cr_expect_eq(c->head_dim, 8);
	cr_expect_eq(c->vocab_size, 512);
	cr_expect_eq(c->seq_len, 2048);
	cr_expect_float_eq(c->norm_eps, 1e-5f, 1e-9f);
	cr_expect_float_eq(c->rope_theta, 10000.0f, 1e-3f);
	cr_expect_eq(c->rope_style, DJN_ROPE_INTERLEAVED);
	cr_expect_not(c->tied_embeddings, "the file has its own output.weight");
	cr_expect_str_eq(m->name, "llama");
	cr_expect_null(m->chat_template);
	cr_expect_str_eq(m->layers[3].w_down.name, "blk.3.ffn_down.weight");
	cr_expect_eq(m->layers[3].w_down.rows, 64);
	cr_expect_eq(m->layers[3].w_down.cols, 172);
	cr_expect_eq(m->final_norm.rows, 1);
	cr_expect_eq(m->final_norm.cols, 64);
	cr_expect_null(m->tok_embd.dev);
	/* all 48 tensors, f32, packed after the 14176-byte header */
	cr_expect_eq(djn_model_weight_bytes(m), (size_t)(1185376 - 14176));

	cr_assert_not_null(m->tok);
	cr_expect_eq(djn_tok_n_vocab(m->tok), 512);
	cr_expect_eq(djn_tok_bos(m->tok), 1);
	cr_expect_eq(djn_tok_eos(m->tok), 2);
	cr_expect_eq(djn_tok_kind(m->tok), DJN_TOK_SPM);
	cr_expect(djn_tok_add_bos(m->tok));
	djn_model_unref(m);
}

/* The .bin holds the same weights as f32: every byte must agree. */
Test(gguf, stories260k_weights_match_llama2c)
{
	struct djn_err err = { 0 };
	struct djn_model *m = djn_model_load_gguf(STORIES_GGUF, &err);
	size_t len, off;
	uint8_t *bin = read_file(STORIES_BIN, &len);
	int32_t h[7];
	int dim, hid, L, kvd, vocab;

	cr_assert_not_null(m, "%s", err.msg);
	memcpy(h, bin, sizeof(h));
	dim = h[0], hid = h[1], L = h[2], vocab = h[5];
	kvd = dim * h[4] / h[3];
	cr_assert_eq(dim, m->cfg.dim);
	cr_assert_eq(vocab, m->cfg.vocab_size);

	off = 28;
#define SKIP(n) (off += (size_t)(n) * 4)
#define SAME(w, what)                                                                      \
	do {                                                                               \
		cr_assert_eq((w).dtype, DJN_DTYPE_F32, "%s", what);                        \
		cr_assert(memcmp((w).host, bin + off, djn_weight_bytes(&(w))) == 0,        \
			  "%s differs from the .bin", what);                               \
	} while (0)
	SAME(m->tok_embd, "token_embd");
	SAME(m->output, "output");
	SKIP(vocab * dim);
	for (int l = 0; l < L; l++, SKIP(dim))
		SAME(m->layers[l].attn_norm, "attn_norm");
	for (int l = 0; l < L; l++, SKIP(dim * dim))
		SAME(m->layers[l].wq, "attn_q");
	SKIP(2 * kvd * dim); /* wk of layers 0, 1 */
	SAME(m->layers[2].wk, "blk.2.attn_k");
	cr_assert_eq(m->layers[2].wk.rows, kvd);
	SKIP((L - 2) * kvd * dim);
	for (int l = 0; l < L; l++, SKIP(kvd * dim))
		SAME(m->layers[l].wv, "attn_v");
	for (int l = 0; l < L; l++, SKIP(dim * dim))
		SAME(m->layers[l].wo, "attn_output");
	for (int l = 0; l < L; l++, SKIP(dim))
		SAME(m->layers[l].mlp_norm, "ffn_norm");
	for (int l = 0; l < L; l++, SKIP(hid * dim))
		SAME(m->layers[l].w_gate, "ffn_gate");
	for (int l = 0; l < L; l++, SKIP(dim * hid))
		SAME(m->layers[l].w_down, "ffn_down");
	for (int l = 0; l < L; l++, SKIP(hid * dim))
		SAME(m->layers[l].w_up, "ffn_up");
	SAME(m->final_norm, "output_norm");
#undef SAME
#undef SKIP
	free(bin);
	djn_model_unref(m);
}

Test(gguf, missing_file)
{
	struct djn_err err = { 0 };

	cr_assert_null(djn_model_load_gguf("/nonexistent/x.gguf", &err));
	cr_assert_eq(err.code, DJN_ERR_IO);
	cr_assert(strstr(err.msg, "/nonexistent/x.gguf"), "%s", err.msg);
}

/* --- good small files ------------------------------------------------------ */

Test(gguf, tiny_loads)
{
	struct tfile f;
	struct djn_model *m;

	tiny_llama(&f, &tiny_default);
	tf_str(&f, "tokenizer.chat_template", "{{ messages }}");
	tf_bool(&f, "tokenizer.ggml.add_bos_token", false);
	m = load_ok(&f);
	cr_expect_eq(m->cfg.dim, 16);
	cr_expect_eq(m->cfg.n_layer, 2);
	cr_expect_eq(m->cfg.head_dim, 4);
	cr_expect_eq(m->cfg.vocab_size, TINY_VOCAB);
	cr_expect_str_eq(m->name, "tiny");
	cr_expect_str_eq(m->chat_template, "{{ messages }}");
	cr_expect_not(m->cfg.tied_embeddings);
	cr_expect_not(djn_tok_add_bos(m->tok));
	cr_expect_eq(djn_tok_n_vocab(m->tok), TINY_VOCAB);
	cr_expect_eq(m->layers[1].wk.rows, 8);
	cr_expect_eq(m->layers[1].wk.cols, 16);
	cr_expect_str_eq(m->layers[1].wk.name, "blk.1.attn_k.weight");
	cr_expect_eq(((const float *)m->layers[1].wk.host)[5],
		     val(name_seed("blk.1.attn_k.weight"), 5));
	tf_release(&f);
	djn_model_unref(m);
}

Test(gguf, absent_output_means_tied)
{
	struct tfile f;
	struct tiny o = tiny_default;
	struct djn_model *m;

	o.tied = true;
	tiny_llama(&f, &o);
	m = load_ok(&f);
	cr_expect(m->cfg.tied_embeddings);
	cr_expect_eq(m->output.host, m->tok_embd.host);
	cr_expect_eq(m->output.rows, TINY_VOCAB);
	tf_release(&f);
	djn_model_unref(m);
}

Test(gguf, version_2_and_alignment_64)
{
	struct tfile f;
	struct djn_model *m;

	tiny_llama(&f, &tiny_default);
	f.version = 2;
	f.align = 64;
	tf_u32(&f, "general.alignment", 64);
	m = load_ok(&f);
	cr_expect_eq((uintptr_t)m->layers[0].wq.host % 64, 0);
	cr_expect_eq((uintptr_t)m->layers[1].w_down.host % 64, 0);
	tf_release(&f);
	djn_model_unref(m);
}

/* Every value type, nested arrays, and config keys in unusual integer and
 * float widths: all parsed, and the config still right. */
Test(gguf, all_value_types)
{
	struct tfile f;
	struct djn_model *m;
	struct buf *b;

	tiny_llama(&f, &tiny_default);
	put_u8(tf_kv(&f, "x.u8", V_U8), 200);
	put_u8(tf_kv(&f, "x.i8", V_I8), 0x80);
	put_u16(tf_kv(&f, "x.u16", V_U16), 65535);
	put_u16(tf_kv(&f, "x.i16", V_I16), 0x8000);
	put_u32(tf_kv(&f, "x.i32", V_I32), 0xffffffffu);
	put_f32(tf_kv(&f, "x.f32", V_F32), 1.5f);
	put_u8(tf_kv(&f, "x.bool", V_BOOL), 1);
	put_str(tf_kv(&f, "x.str", V_STR), "");
	put_u64(tf_kv(&f, "x.u64", V_U64), UINT64_MAX);
	put_u64(tf_kv(&f, "x.i64", V_I64), (uint64_t)-5);
	put_f64(tf_kv(&f, "x.f64", V_F64), -2.25);
	b = tf_kv(&f, "x.empty_arr", V_ARR);
	put_u32(b, V_U64);
	put_u64(b, 0);
	b = tf_kv(&f, "x.nested", V_ARR); /* [[1, 2], ["a", "bc"], []] */
	put_u32(b, V_ARR);
	put_u64(b, 3);
	put_u32(b, V_U16);
	put_u64(b, 2);
	put_u16(b, 1);
	put_u16(b, 2);
	put_u32(b, V_STR);
	put_u64(b, 2);
	put_str(b, "a");
	put_str(b, "bc");
	put_u32(b, V_BOOL);
	put_u64(b, 0);
	put_u64(tf_kv(&f, "llama.block_count", V_U64), 2);
	put_u16(tf_kv(&f, "llama.embedding_length", V_I16), 16);
	put_u8(tf_kv(&f, "llama.attention.head_count", V_U8), 4);
	put_u64(tf_kv(&f, "llama.context_length", V_I64), 128);
	put_f64(tf_kv(&f, "llama.attention.layer_norm_rms_epsilon", V_F64), 1e-6);
	tf_f32(&f, "llama.rope.freq_base", 500000.0f);
	tf_u32(&f, "llama.rope.dimension_count", 4);
	tf_u32(&f, "llama.vocab_size", TINY_VOCAB);
	m = load_ok(&f);
	cr_expect_eq(m->cfg.n_layer, 2);
	cr_expect_eq(m->cfg.dim, 16);
	cr_expect_eq(m->cfg.n_head, 4);
	cr_expect_eq(m->cfg.seq_len, 128);
	cr_expect_float_eq(m->cfg.norm_eps, 1e-6f, 1e-12f);
	cr_expect_float_eq(m->cfg.rope_theta, 500000.0f, 1e-3f);
	tf_release(&f);
	djn_model_unref(m);
}

/* Extra tensors the llama graph does not use are allowed (rope_freqs, say). */
Test(gguf, extra_tensors_ignored)
{
	struct tfile f;
	struct djn_model *m;

	tiny_llama(&f, &tiny_default);
	tf_tensor(&f, "rope_freqs.weight", T_F32, 1, 2, 1);
	m = load_ok(&f);
	tf_release(&f);
	djn_model_unref(m);
}

/* --- quantized weights: quantized here as ggml does, dequantized by djinn -- */

static float f16r(float x)
{
	return djn_f16_to_f32(djn_f32_to_f16(x));
}

/* Quantize n values (n % 32 == 0) as ggml's reference quantizers do; write
 * into b and put the values ggml would dequantize to in deq. */
static void quantize(uint32_t type, const float *x, int n, struct buf *b, float *deq)
{
	for (int i0 = 0; i0 < n; i0 += 32) {
		const float *v = x + i0;
		float *o = deq + i0;

		if (type == T_Q8_0) {
			float amax = 0;
			for (int j = 0; j < 32; j++)
				amax = fmaxf(amax, fabsf(v[j]));
			float d = amax / 127, id = d ? 1 / d : 0;
			put_u16(b, djn_f32_to_f16(d));
			for (int j = 0; j < 32; j++) {
				int8_t q = (int8_t)roundf(v[j] * id);
				put_u8(b, (uint8_t)q);
				o[j] = f16r(d) * q;
			}
		} else if (type == T_Q4_0) {
			float amax = 0, max = 0;
			for (int j = 0; j < 32; j++)
				if (fabsf(v[j]) > amax)
					amax = fabsf(v[j]), max = v[j];
			float d = max / -8, id = d ? 1 / d : 0;
			uint8_t q[32];
			put_u16(b, djn_f32_to_f16(d));
			for (int j = 0; j < 32; j++) {
				int qi = (int)(v[j] * id + 8.5f);
				q[j] = (uint8_t)(qi > 15 ? 15 : qi);
				o[j] = f16r(d) * (q[j] - 8);
			}
			for (int j = 0; j < 16; j++)
				put_u8(b, (uint8_t)(q[j] | q[j + 16] << 4));
		} else { /* Q4_1 */
			float mn = v[0], mx = v[0];
			for (int j = 1; j < 32; j++)
				mn = fminf(mn, v[j]), mx = fmaxf(mx, v[j]);
			float d = (mx - mn) / 15, id = d ? 1 / d : 0;
			uint8_t q[32];
			put_u16(b, djn_f32_to_f16(d));
			put_u16(b, djn_f32_to_f16(mn));
			for (int j = 0; j < 32; j++) {
				int qi = (int)((v[j] - mn) * id + 0.5f);
				q[j] = (uint8_t)(qi > 15 ? 15 : qi);
				o[j] = f16r(d) * q[j] + f16r(mn);
			}
			for (int j = 0; j < 16; j++)
				put_u8(b, (uint8_t)(q[j] | q[j + 16] << 4));
		}
	}
}

struct qcase {
	const char *name;
	uint32_t type;
	enum djn_dtype dtype;
	float *x, *deq; /* original values, expected dequantized ones */
	int64_t rows, cols;
};

static void quantize_tensor(struct tfile *f, struct qcase *q)
{
	struct ttensor *t = tf_find(f, q->name);
	int n;

	q->cols = (int64_t)t->ne[0];
	q->rows = (int64_t)t->ne[1];
	n = (int)(q->rows * q->cols);
	q->x = malloc(sizeof(float) * (size_t)n);
	q->deq = malloc(sizeof(float) * (size_t)n);
	for (int i = 0; i < n; i++)
		q->x[i] = val(name_seed(q->name) + 1, (size_t)i) * 3.0f;
	t->type = q->type;
	t->data.len = 0;
	if (q->type == T_F16 || q->type == T_BF16) {
		for (int i = 0; i < n; i++) {
			uint16_t h = q->type == T_F16 ? djn_f32_to_f16(q->x[i]) : djn_f32_to_bf16(q->x[i]);
			put_u16(&t->data, h);
			q->deq[i] = q->type == T_F16 ? djn_f16_to_f32(h) : djn_bf16_to_f32(h);
		}
	} else {
		quantize(q->type, q->x, n, &t->data, q->deq);
	}
}

Test(gguf, quantized_round_trip)
{
	struct tiny o = { .dim = 32, .hidden = 64, .n_layer = 1, .n_head = 4, .n_kv_head = 2,
			  .ctx = 32, .type = T_F32 };
	struct qcase qs[] = {
		{ "blk.0.attn_q.weight", T_Q8_0, DJN_DTYPE_Q8_0 },
		{ "blk.0.ffn_up.weight", T_Q4_0, DJN_DTYPE_Q4_0 },
		{ "blk.0.ffn_gate.weight", T_Q4_1, DJN_DTYPE_Q4_1 },
		{ "blk.0.ffn_down.weight", T_Q8_0, DJN_DTYPE_Q8_0 },
		{ "blk.0.attn_k.weight", T_F16, DJN_DTYPE_F16 },
		{ "blk.0.attn_v.weight", T_BF16, DJN_DTYPE_BF16 },
		{ "token_embd.weight", T_Q4_0, DJN_DTYPE_Q4_0 },
	};
	const int nq = sizeof(qs) / sizeof(qs[0]);
	struct tfile f;
	struct djn_model *m;
	float row[64];

	tiny_llama(&f, &o);
	for (int i = 0; i < nq; i++)
		quantize_tensor(&f, &qs[i]);
	m = load_ok(&f);
	const struct djn_weight *ws[] = { &m->layers[0].wq, &m->layers[0].w_up,
					  &m->layers[0].w_gate, &m->layers[0].w_down,
					  &m->layers[0].wk, &m->layers[0].wv, &m->tok_embd };
	for (int i = 0; i < nq; i++) {
		const struct djn_weight *w = ws[i];
		float tol = qs[i].type == T_Q8_0 ? 3.0f / 127 : qs[i].type == T_F16 ? 2e-3f
			  : qs[i].type == T_BF16 ? 2e-2f : 6.0f / 15;

		cr_assert_str_eq(w->name, qs[i].name);
		cr_assert_eq(w->dtype, qs[i].dtype, "%s", qs[i].name);
		cr_assert_eq(w->rows, qs[i].rows);
		cr_assert_eq(w->cols, qs[i].cols);
		for (int64_t r = 0; r < w->rows; r++) {
			djn_weight_row_f32(w, r, row);
			for (int64_t c = 0; c < w->cols; c++) {
				float want = qs[i].deq[r * w->cols + c];
				cr_assert_float_eq(row[c], want, 1e-6f * fabsf(want) + 1e-7f,
						   "%s [%lld, %lld]: %g, expected %g", qs[i].name,
						   (long long)r, (long long)c, row[c], want);
				/* and near the original, or the layout guess was wrong */
				cr_assert_float_eq(row[c], qs[i].x[r * w->cols + c], tol, "%s",
						   qs[i].name);
			}
		}
		free(qs[i].x);
		free(qs[i].deq);
	}
	tf_release(&f);
	djn_model_unref(m);
}

/* --- bad files ------------------------------------------------------------- */

Test(gguf, bad_magic)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	memcpy(f.magic, "GGML", 4);
	expect_fail(&f, DJN_ERR_FORMAT, "not a gguf file", "GGML");
	tf_release(&f);
}

Test(gguf, unsupported_versions)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	f.version = 1;
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "version 1");
	f.version = 4;
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "version 4");
	f.version = 0x03000000;
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "big-endian");
	tf_release(&f);
}

/* Every proper prefix of a good file must fail cleanly, never read past it. */
Test(gguf, every_truncation_fails)
{
	struct tfile f;
	struct tiny o = { .dim = 8, .hidden = 8, .n_layer = 1, .n_head = 2, .n_kv_head = 1,
			  .ctx = 16, .type = T_F32, .tied = true };
	size_t len;
	uint8_t *p;

	tiny_llama(&f, &o);
	p = tf_bytes(&f, &len);
	expect_fail_bytes(p, 0, DJN_ERR_FORMAT, "truncated header", NULL);
	expect_fail_bytes(p, 10, DJN_ERR_FORMAT, "truncated header", NULL);
	expect_fail_bytes(p, 30, DJN_ERR_FORMAT, "truncated or corrupt header", "claims 15 metadata keys", NULL);
	expect_fail_bytes(p, 300, DJN_ERR_FORMAT, "truncated metadata key #7", NULL);
	for (size_t n = 1; n < len; n++)
		expect_fail_bytes(p, n, DJN_ERR_FORMAT, NULL);
	expect_fail_bytes(p, len - 1, DJN_ERR_FORMAT, "past the end of the file", NULL);
	free(p);
	tf_release(&f);
}

Test(gguf, string_length_beyond_file)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	put_u64(tf_kv(&f, "general.name", V_STR), 1ull << 40);
	expect_fail(&f, DJN_ERR_FORMAT, "string", "'general.name'", "past the end of the file");
	tf_release(&f);
}

Test(gguf, array_count_overflow)
{
	struct tfile f;
	struct buf *b;

	tiny_llama(&f, &tiny_default);
	b = tf_kv(&f, "x.big", V_ARR);
	put_u32(b, V_U64);
	put_u64(b, 1ull << 61); /* * 8 wraps to 0 */
	expect_fail(&f, DJN_ERR_FORMAT, "'x.big'", "more than the file can hold");
	b = tf_kv(&f, "x.big", V_ARR);
	put_u32(b, V_STR);
	put_u64(b, UINT64_MAX);
	expect_fail(&f, DJN_ERR_FORMAT, "'x.big'", "more than the file can hold");
	tf_release(&f);
}

Test(gguf, bad_value_types)
{
	struct tfile f;
	struct buf *b;

	tiny_llama(&f, &tiny_default);
	put_u32(tf_kv(&f, "x.bad", 13), 0);
	expect_fail(&f, DJN_ERR_FORMAT, "'x.bad'", "unknown value type 13");
	b = tf_kv(&f, "x.bad", V_ARR);
	put_u32(b, 99);
	put_u64(b, 1);
	expect_fail(&f, DJN_ERR_FORMAT, "'x.bad'", "unknown type 99");
	b = tf_kv(&f, "x.bad", V_ARR);
	for (int i = 0; i < 20; i++) {
		put_u32(b, V_ARR);
		put_u64(b, 1);
	}
	put_u32(b, V_U8);
	put_u64(b, 0);
	expect_fail(&f, DJN_ERR_FORMAT, "'x.bad'", "nests arrays");
	tf_release(&f);
}

Test(gguf, bad_header_counts)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	f.n_kv_hdr = (int64_t)1 << 60;
	expect_fail(&f, DJN_ERR_FORMAT, "corrupt header", "claims 1152921504606846976 metadata keys");
	f.n_kv_hdr = -1;
	f.n_t_hdr = (int64_t)1 << 60;
	expect_fail(&f, DJN_ERR_FORMAT, "corrupt header", "claims 1152921504606846976 tensors");
	tf_release(&f);
}

Test(gguf, duplicate_key_and_tensor)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	snprintf(f.kv[1].key, sizeof(f.kv[1].key), "general.architecture");
	expect_fail(&f, DJN_ERR_FORMAT, "'general.architecture'", "appears twice");
	tf_release(&f);
	tiny_llama(&f, &tiny_default);
	snprintf(f.t[4].name, sizeof(f.t[4].name), "%s", f.t[3].name);
	expect_fail(&f, DJN_ERR_FORMAT, "appears twice");
	tf_release(&f);
}

Test(gguf, bad_alignment)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	tf_u32(&f, "general.alignment", 48);
	expect_fail(&f, DJN_ERR_FORMAT, "'general.alignment'", "power of two");
	put_u64(tf_kv(&f, "general.alignment", V_U64), 32);
	expect_fail(&f, DJN_ERR_FORMAT, "'general.alignment'", "uint32");
	tf_release(&f);
}

Test(gguf, tensor_offset_out_of_range)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	tf_find(&f, "blk.1.ffn_up.weight")->offset = 1 << 20;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.1.ffn_up.weight'", "past the end of the file");
	tf_find(&f, "blk.1.ffn_up.weight")->offset = INT64_MAX - 31;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.1.ffn_up.weight'", "past the end of the file");
	tf_find(&f, "blk.1.ffn_up.weight")->offset = 4;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.1.ffn_up.weight'", "not aligned");
	tf_release(&f);
}

Test(gguf, overlapping_tensors)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	tf_find(&f, "blk.0.attn_v.weight")->offset = 0; /* where token_embd is */
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.0.attn_v.weight'", "overlap");
	tf_release(&f);
}

Test(gguf, unsupported_tensor_type)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	tf_find(&f, "blk.0.ffn_gate.weight")->type = T_Q5_K;
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "tensor 'blk.0.ffn_gate.weight'",
		    "type Q5_K (13), not supported");
	tf_find(&f, "blk.0.ffn_gate.weight")->type = 77;
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "'blk.0.ffn_gate.weight'", "(77)");
	tf_release(&f);
}

Test(gguf, bad_dims)
{
	struct tfile f;
	struct ttensor *t;

	tiny_llama(&f, &tiny_default);
	t = tf_find(&f, "blk.0.attn_q.weight");
	t->n_dims = 5;
	t->ne[2] = t->ne[3] = t->ne[4] = 1;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.0.attn_q.weight'", "5 dimensions");
	t->n_dims = 0;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.0.attn_q.weight'", "0 dimensions");
	t->n_dims = 2;
	t->ne[1] = 0;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.0.attn_q.weight'", "dimension 1 is 0");
	t->ne[1] = 1ull << 40;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.0.attn_q.weight'", "more elements than the file");
	t->n_dims = 3;
	t->ne[1] = 8;
	t->ne[2] = 2; /* the same bytes, but not a matrix */
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.0.attn_q.weight'", "expected 2-d");
	tf_release(&f);
}

Test(gguf, shape_and_bytes_mismatch)
{
	struct tfile f;
	struct ttensor *t;

	tiny_llama(&f, &tiny_default);
	/* half as many rows as the config says: bytes fine, shape wrong */
	t = tf_find(&f, "blk.1.attn_q.weight");
	t->ne[1] = 8;
	t->data.len /= 2;
	expect_fail(&f, DJN_ERR_FORMAT, "'blk.1.attn_q.weight'", "shape", "expected");
	tf_release(&f);

	/* a quantized row that is not a whole number of blocks */
	tiny_llama(&f, &tiny_default);
	t = tf_tensor(&f, "extra.weight", T_F32, 2, 33, 1);
	t->type = T_Q8_0;
	expect_fail(&f, DJN_ERR_FORMAT, "'extra.weight'", "33 columns", "not a multiple");
	tf_release(&f);
}

Test(gguf, missing_tensor)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	tf_tdel(&f, "blk.1.ffn_up.weight");
	expect_fail(&f, DJN_ERR_FORMAT, "missing tensor 'blk.1.ffn_up.weight'");
	tf_release(&f);
	tiny_llama(&f, &tiny_default);
	tf_tdel(&f, "token_embd.weight");
	expect_fail(&f, DJN_ERR_FORMAT, "missing tensor 'token_embd.weight'");
	tf_release(&f);
}

Test(gguf, architecture)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	tf_str(&f, "general.architecture", "mamba");
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "architecture 'mamba' not supported");
	tf_del(&f, "general.architecture");
	expect_fail(&f, DJN_ERR_FORMAT, "missing key 'general.architecture'");
	tf_u32(&f, "general.architecture", 1);
	expect_fail(&f, DJN_ERR_FORMAT, "'general.architecture'", "uint32", "expected a string");
	tf_release(&f);
}

Test(gguf, bad_config_keys)
{
	struct tfile f;

	tiny_llama(&f, &tiny_default);
	tf_del(&f, "llama.block_count");
	expect_fail(&f, DJN_ERR_FORMAT, "missing key 'llama.block_count'");
	tf_str(&f, "llama.block_count", "2");
	expect_fail(&f, DJN_ERR_FORMAT, "'llama.block_count'", "string", "integer");
	tf_u32(&f, "llama.block_count", 0);
	expect_fail(&f, DJN_ERR_FORMAT, "'llama.block_count' is 0");
	put_u64(tf_kv(&f, "llama.block_count", V_U64), 1ull << 40);
	expect_fail(&f, DJN_ERR_FORMAT, "'llama.block_count' is 1099511627776");
	tf_u32(&f, "llama.block_count", 2);
	tf_u32(&f, "llama.attention.head_count", 5);
	expect_fail(&f, DJN_ERR_FORMAT, "n_head");
	tf_u32(&f, "llama.attention.head_count", 4);
	tf_u32(&f, "llama.attention.layer_norm_rms_epsilon", 1);
	expect_fail(&f, DJN_ERR_FORMAT, "'llama.attention.layer_norm_rms_epsilon'", "float");
	tf_f32(&f, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	tf_u32(&f, "llama.rope.dimension_count", 2);
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "llama.rope.dimension_count", "partial rotary");
	tf_del(&f, "llama.rope.dimension_count");
	tf_str(&f, "llama.rope.scaling.type", "yarn");
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "'yarn'");
	tf_del(&f, "llama.rope.scaling.type");
	tf_u32(&f, "llama.vocab_size", 9);
	expect_fail(&f, DJN_ERR_FORMAT, "'llama.vocab_size' is 9", "8 tokens");
	tf_release(&f);
}

Test(gguf, corrupt_tokenizer)
{
	static const float scores[3] = { 0 };
	static const int32_t bad_types[TINY_VOCAB] = { 2, 3, 3, 1, 1, 9, 1, 1 };
	struct tfile f;
	struct buf *b;

	tiny_llama(&f, &tiny_default);
	tf_arr_f32(&f, "tokenizer.ggml.scores", 3, scores);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.scores' has 3 entries", "tokens has 8");
	tf_release(&f);

	tiny_llama(&f, &tiny_default);
	tf_u32(&f, "tokenizer.ggml.bos_token_id", 8);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.bos_token_id' is 8", "0..7");
	tf_u32(&f, "tokenizer.ggml.bos_token_id", 1);
	put_u32(tf_kv(&f, "tokenizer.ggml.eos_token_id", V_I32), (uint32_t)-3);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.eos_token_id' is -3");
	tf_u32(&f, "tokenizer.ggml.eos_token_id", 2);
	tf_arr_i32(&f, "tokenizer.ggml.token_type", TINY_VOCAB, bad_types);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.token_type'", "token 5 type 9");
	tf_arr_i32(&f, "tokenizer.ggml.token_type", 7, bad_types);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.token_type' has 7 entries");
	tf_release(&f);

	tiny_llama(&f, &tiny_default);
	b = tf_kv(&f, "tokenizer.ggml.tokens", V_ARR);
	put_u32(b, V_U32);
	put_u64(b, 1);
	put_u32(b, 7);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.tokens'", "array of uint32",
		    "expected an array of strings");
	tf_del(&f, "tokenizer.ggml.tokens");
	expect_fail(&f, DJN_ERR_FORMAT, "missing key 'tokenizer.ggml.tokens'");
	tf_arr_str(&f, "tokenizer.ggml.tokens", 0, NULL);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.tokens' has 0 tokens");
	tf_release(&f);

	tiny_llama(&f, &tiny_default);
	tf_str(&f, "tokenizer.ggml.model", "bert");
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "tokenizer.ggml.model 'bert' not supported");
	tf_str(&f, "tokenizer.ggml.model", "gpt2");
	expect_fail(&f, DJN_ERR_FORMAT, "missing key 'tokenizer.ggml.merges'");
	tf_release(&f);
}

/* Errors the tokenizer itself finds come back as the file's. */
Test(gguf, tokenizer_rejects)
{
	struct tfile f;
	char *long_piece = malloc(70000); /* over the tokenizer's 64 KiB */
	const char *toks[TINY_VOCAB];

	memset(long_piece, 'x', 69999);
	long_piece[69999] = '\0';
	memcpy(toks, tiny_tokens, sizeof(toks));
	toks[4] = long_piece;
	tiny_llama(&f, &tiny_default);
	tf_arr_str(&f, "tokenizer.ggml.tokens", TINY_VOCAB, toks);
	expect_fail(&f, DJN_ERR_FORMAT, "token 4");
	tf_release(&f);
	free(long_piece);
}

static void tiny_gpt2_vocab(struct tfile *f)
{
	static const char *const toks[TINY_VOCAB] = { "a", "b", "ab", "\xc4\xa0", "\xc4\xa0" "a",
						      "<|endoftext|>", "c", "abc" };
	static const char *const merges[] = { "a b", "\xc4\xa0 a", "ab c" };
	static const int32_t types[TINY_VOCAB] = { 1, 1, 1, 1, 1, 3, 1, 1 };

	tf_del(f, "tokenizer.ggml.scores");
	tf_str(f, "tokenizer.ggml.model", "gpt2");
	tf_arr_str(f, "tokenizer.ggml.tokens", TINY_VOCAB, toks);
	tf_arr_i32(f, "tokenizer.ggml.token_type", TINY_VOCAB, types);
	tf_arr_str(f, "tokenizer.ggml.merges", 3, merges);
	tf_u32(f, "tokenizer.ggml.bos_token_id", 5);
	tf_u32(f, "tokenizer.ggml.eos_token_id", 5);
}

Test(gguf, gpt2_tokenizer)
{
	struct tfile f;
	struct djn_model *m;
	struct buf *b;

	tiny_llama(&f, &tiny_default);
	tiny_gpt2_vocab(&f);
	m = load_ok(&f);
	cr_assert_not_null(m->tok);
	cr_expect_eq(djn_tok_kind(m->tok), DJN_TOK_BPE);
	cr_expect_eq(djn_tok_bos(m->tok), 5);
	cr_expect_not(djn_tok_add_bos(m->tok));
	djn_model_unref(m);

	tf_str(&f, "tokenizer.ggml.pre", "smollm");
	tf_bool(&f, "tokenizer.ggml.add_bos_token", true);
	m = load_ok(&f);
	cr_expect(djn_tok_add_bos(m->tok));
	djn_model_unref(m);

	tf_str(&f, "tokenizer.ggml.pre", "no-such-regex");
	expect_fail(&f, DJN_ERR_UNSUPPORTED, "no-such-regex");
	tf_del(&f, "tokenizer.ggml.pre");
	b = tf_kv(&f, "tokenizer.ggml.merges", V_ARR);
	put_u32(b, V_I32);
	put_u64(b, 0);
	expect_fail(&f, DJN_ERR_FORMAT, "'tokenizer.ggml.merges'", "array of int32");
	tf_release(&f);
}

/* A file with no tokenizer at all still loads; the vocabulary comes from the
 * embedding, and a tokenizer may be attached later. */
Test(gguf, no_tokenizer)
{
	struct tfile f;
	struct djn_model *m;

	tiny_llama(&f, &tiny_default);
	tf_del(&f, "tokenizer.ggml.model");
	tf_del(&f, "tokenizer.ggml.tokens");
	tf_del(&f, "tokenizer.ggml.scores");
	tf_del(&f, "tokenizer.ggml.token_type");
	m = load_ok(&f);
	cr_expect_null(m->tok);
	cr_expect_eq(m->cfg.vocab_size, TINY_VOCAB);
	tf_release(&f);
	djn_model_unref(m);
}

/* The fuzz corpus should start from files that load, so the fuzzer mutates
 * its way past the header checks. */
Test(gguf, fuzz_seeds_load)
{
	const char *seeds[] = { "tests/fixtures/fuzz/gguf/tiny-f16.gguf",
				"tests/fixtures/fuzz/gguf/tiny-v2-align64.gguf" };

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct djn_err err = { 0 };
		struct djn_model *m = djn_model_load_gguf(seeds[i], &err);

		cr_assert_not_null(m, "%s", err.msg);
		cr_expect_eq(m->layers[0].wq.dtype, DJN_DTYPE_F16);
		djn_model_unref(m);
	}
}

/* --- fuzz seeds --------------------------------------------------------------
 * Not a test: with DJN_GGUF_SEEDS=dir set, writes the fuzz corpus seeds
 * (tests/fixtures/fuzz/gguf/) from the writer above, so they can be remade. */

static void write_seed(const char *dir, const char *name, const struct tfile *f)
{
	char path[512];
	size_t len;
	uint8_t *p = tf_bytes(f, &len);
	FILE *fp;

	cr_assert_lt(len, 4096, "seed %s is %zu bytes", name, len);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "wb");
	cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
	fwrite(p, 1, len, fp);
	fclose(fp);
	free(p);
}

Test(gguf, write_fuzz_seeds)
{
	const char *dir = getenv("DJN_GGUF_SEEDS");
	struct tiny o = { .dim = 8, .hidden = 8, .n_layer = 1, .n_head = 2, .n_kv_head = 1,
			  .ctx = 16, .type = T_F16, .tied = true };
	struct tfile f;
	struct buf *b;

	if (!dir)
		return;
	tiny_llama(&f, &o);
	write_seed(dir, "tiny-f16.gguf", &f);
	tf_u32(&f, "general.alignment", 64);
	f.align = 64;
	f.version = 2;
	tf_str(&f, "tokenizer.chat_template", "{{ m }}");
	write_seed(dir, "tiny-v2-align64.gguf", &f);
	tf_release(&f);

	/* metadata of every type and some quantized tensors, not a whole model */
	tf_init(&f);
	tf_str(&f, "general.architecture", "llama");
	put_u8(tf_kv(&f, "a.u8", V_U8), 1);
	put_u8(tf_kv(&f, "a.i8", V_I8), 0xff);
	put_u16(tf_kv(&f, "a.u16", V_U16), 2);
	put_u16(tf_kv(&f, "a.i16", V_I16), 3);
	put_u32(tf_kv(&f, "a.i32", V_I32), 4);
	put_u64(tf_kv(&f, "a.u64", V_U64), 5);
	put_u64(tf_kv(&f, "a.i64", V_I64), 6);
	put_f64(tf_kv(&f, "a.f64", V_F64), 7);
	tf_bool(&f, "a.bool", true);
	b = tf_kv(&f, "a.nested", V_ARR);
	put_u32(b, V_ARR);
	put_u64(b, 2);
	put_u32(b, V_STR);
	put_u64(b, 1);
	put_str(b, "x");
	put_u32(b, V_F32);
	put_u64(b, 1);
	put_f32(b, 1);
	tf_tensor(&f, "q8", T_F32, 2, 32, 2)->type = T_Q8_0;
	tf_tensor(&f, "q40", T_F32, 1, 32, 1)->type = T_Q4_0;
	tf_tensor(&f, "q41", T_F32, 1, 32, 1)->type = T_Q4_1;
	tf_tensor(&f, "bf16", T_BF16, 2, 4, 2);
	for (int i = 0; i < f.n_t; i++) { /* cut the f32 filler to the quantized size */
		struct ttensor *t = &f.t[i];
		if (t->type == T_Q8_0 || t->type == T_Q4_0 || t->type == T_Q4_1)
			t->data.len = (size_t)t->ne[1] * (t->type == T_Q8_0 ? 34 : t->type == T_Q4_0 ? 18 : 20);
	}
	write_seed(dir, "types.gguf", &f);
	tf_release(&f);
}
