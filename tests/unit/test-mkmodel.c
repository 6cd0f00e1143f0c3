/* test-mkmodel.c - `djinn mkmodel`: files, safetensors layout, determinism, loading the result. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "djinn/mkmodel.h"
#include "djinn/model.h"
#include "djinn/tokenizer.h"

static char tmp[64];

static void setup(void)
{
	strcpy(tmp, "/tmp/djn-test-mkmodel-XXXXXX");
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

TestSuite(mkmodel, .init = setup, .fini = teardown);

static char *in_tmp(const char *name)
{
	static char buf[8][256];
	static int k;
	char *p = buf[k++ & 7];

	snprintf(p, 256, "%s/%s", tmp, name);
	return p;
}

/* Make shape in tmp/dir; returns the status. */
static enum djn_status mk(const char *dir, const char *shape, enum djn_dtype dtype,
			  uint64_t seed, int threads, uint64_t shard_bytes, bool force,
			  struct djn_err *err)
{
	struct djn_mkmodel_opts o = {
		.shape = shape, .dtype = dtype, .seed = seed, .out_dir = in_tmp(dir),
		.force = force, .n_threads = threads, .shard_bytes = shard_bytes,
	};

	return djn_mkmodel(&o, err);
}

static void mk_ok(const char *dir, const char *shape, enum djn_dtype dtype, uint64_t seed,
		  int threads, uint64_t shard_bytes)
{
	struct djn_err err = { 0 };

	cr_assert_eq(mk(dir, shape, dtype, seed, threads, shard_bytes, false, &err), DJN_OK, "%s",
		     err.msg);
}

static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)len + 1);
	cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = 0;
	fclose(f);
	*n = (size_t)len;
	return buf;
}

static bool same_file(const char *a, const char *b)
{
	size_t na, nb;
	uint8_t *pa = slurp(a, &na), *pb = slurp(b, &nb);
	bool same = na == nb && !memcmp(pa, pb, na);

	free(pa);
	free(pb);
	return same;
}

static bool exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static struct djn_model *load(const char *dir)
{
	struct djn_err err = { 0 };
	struct djn_model *m = djn_model_load_hf(in_tmp(dir), &err);

	cr_assert_not_null(m, "%s", err.msg);
	return m;
}

/* Mean and std of a weight's elements. */
static void moments(const struct djn_weight *w, double *mean, double *std)
{
	float *row = malloc(sizeof(float) * (size_t)w->cols);
	double s = 0, s2 = 0, n = (double)w->rows * (double)w->cols;

	for (int64_t r = 0; r < w->rows; r++) {
		djn_weight_row_f32(w, r, row);
		for (int64_t c = 0; c < w->cols; c++) {
			cr_assert(isfinite(row[c]));
			s += row[c];
			s2 += (double)row[c] * row[c];
		}
	}
	free(row);
	*mean = s / n;
	*std = sqrt(s2 / n - *mean * *mean);
}

Test(mkmodel, tiny_llama_loads_with_its_config)
{
	struct djn_model *m;
	double mean, std;
	float one[256];

	mk_ok("m", "tiny-llama", DJN_DTYPE_F16, 7, 0, 0);
	cr_assert(exists(in_tmp("m/config.json")));
	cr_assert(exists(in_tmp("m/model.safetensors")));
	cr_assert(exists(in_tmp("m/tokenizer.json")));
	cr_assert(exists(in_tmp("m/tokenizer_config.json")));
	cr_assert(!exists(in_tmp("m/model.safetensors.index.json")), "one shard needs no index");
	m = load("m");
	cr_assert_eq(m->cfg.arch, DJN_ARCH_LLAMA);
	cr_assert_eq(m->cfg.dim, 256);
	cr_assert_eq(m->cfg.hidden_dim, 688);
	cr_assert_eq(m->cfg.n_layer, 4);
	cr_assert_eq(m->cfg.n_head, 8);
	cr_assert_eq(m->cfg.n_kv_head, 4);
	cr_assert_eq(m->cfg.head_dim, 32);
	cr_assert_eq(m->cfg.vocab_size, 512);
	cr_assert_eq(m->cfg.seq_len, 1024);
	cr_assert_float_eq(m->cfg.norm_eps, 1e-5f, 1e-12f);
	cr_assert_float_eq(m->cfg.rope_theta, 10000.0f, 1e-3f);
	cr_assert(!m->cfg.tied_embeddings);
	cr_assert_neq(m->output.host, m->tok_embd.host);
	cr_assert_eq(m->layers[3].wk.rows, 128);
	cr_assert_eq(m->layers[3].wk.cols, 256);
	cr_assert_eq(m->layers[0].w_down.rows, 256);
	cr_assert_eq(m->layers[0].w_down.cols, 688);
	cr_assert_eq(m->layers[0].wq.dtype, DJN_DTYPE_F16);
	cr_assert_eq(djn_model_weight_bytes(m), djn_mkmodel_weight_bytes("tiny-llama", DJN_DTYPE_F16));

	moments(&m->layers[2].w_up, &mean, &std);
	cr_assert(fabs(mean) < 1e-3, "mean %g", mean);
	cr_assert(fabs(std - 0.02) < 0.001, "std %g, want 0.02", std);
	moments(&m->tok_embd, &mean, &std);
	cr_assert(fabs(std - 1.0) < 0.02, "embedding std %g, want 1", std);
	djn_weight_row_f32(&m->layers[1].mlp_norm, 0, one);
	for (int i = 0; i < 256; i++)
		cr_assert_eq(one[i], 1.0f);
	djn_model_unref(m);
}

Test(mkmodel, tokenizer_is_one_token_per_byte)
{
	struct djn_err err = { 0 };
	struct djn_model *m;
	int32_t *ids;
	int n;
	size_t len;
	const char *p;

	mk_ok("m", "tiny-llama", DJN_DTYPE_F16, 0, 0, 0);
	m = load("m");
	cr_assert_not_null(m->tok);
	cr_assert_eq(djn_tok_n_vocab(m->tok), 512);
	cr_assert_eq(djn_tok_bos(m->tok), 1);
	cr_assert_eq(djn_tok_eos(m->tok), 2);
	cr_assert_eq(djn_tok_encode(m->tok, "Hi \"x\"!", 7, false, false, &ids, &n, &err), DJN_OK,
		     "%s", err.msg);
	cr_assert_eq(n, 7);
	cr_assert_eq(ids[0], 3 + 'H');
	cr_assert_eq(ids[2], 3 + ' ');
	cr_assert_eq(ids[3], 3 + '"');
	free(ids);
	p = djn_tok_decode(m->tok, 3 + 'a', 400, &len);
	cr_assert_eq(len, 5);
	cr_assert(!memcmp(p, " w400", 5));
	djn_model_unref(m);
}

/* The safetensors header: 8-byte length, JSON padded with spaces to a
 * multiple of 8, "pt" metadata, tensors packed from offset 0 to the end. */
Test(mkmodel, safetensors_header_is_padded_and_packed)
{
	size_t n;
	uint8_t *buf;
	uint64_t hlen = 0, end = 0;
	cJSON *root, *e, *meta;
	int n_tensors = 0;

	mk_ok("m", "tiny-llama", DJN_DTYPE_BF16, 1, 0, 0);
	buf = slurp(in_tmp("m/model.safetensors"), &n);
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t)buf[i] << (8 * i);
	cr_assert_eq(hlen % 8, 0);
	cr_assert_eq(buf[8 + hlen - 1] == ' ' || buf[8 + hlen - 1] == '}', true);
	root = cJSON_ParseWithLength((const char *)buf + 8, hlen);
	cr_assert_not_null(root);
	meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "format")->valuestring, "pt");
	cJSON_ArrayForEach(e, root) {
		cJSON *offs;

		if (e == meta)
			continue;
		offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
		cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring, "BF16");
		cr_assert_eq((uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble, end, "%s", e->string);
		end = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
		n_tensors++;
	}
	cr_assert_eq(n_tensors, 2 + 4 * 9 + 1);
	cr_assert_eq(8 + hlen + end, n);
	cr_assert_eq(end, djn_mkmodel_weight_bytes("tiny-llama", DJN_DTYPE_BF16));
	cJSON_Delete(root);
	free(buf);
}

Test(mkmodel, same_seed_same_bytes_whatever_the_threads)
{
	mk_ok("a", "tiny-llama", DJN_DTYPE_F16, 42, 1, 0);
	mk_ok("b", "tiny-llama", DJN_DTYPE_F16, 42, 5, 0);
	cr_assert(same_file(in_tmp("a/model.safetensors"), in_tmp("b/model.safetensors")));
	cr_assert(same_file(in_tmp("a/config.json"), in_tmp("b/config.json")));
	cr_assert(same_file(in_tmp("a/tokenizer.json"), in_tmp("b/tokenizer.json")));
}

Test(mkmodel, different_seed_different_bytes)
{
	mk_ok("a", "tiny-llama", DJN_DTYPE_F16, 1, 0, 0);
	mk_ok("b", "tiny-llama", DJN_DTYPE_F16, 2, 0, 0);
	cr_assert(!same_file(in_tmp("a/model.safetensors"), in_tmp("b/model.safetensors")));
	cr_assert(same_file(in_tmp("a/config.json"), in_tmp("b/config.json")));
}

/* Shards as save_pretrained cuts them, with an index the loader follows; the
 * values do not depend on where the shards are cut. */
Test(mkmodel, shards_and_index)
{
	size_t n;
	char *text;
	cJSON *root, *wm;
	struct djn_model *a, *b;
	float ra[256], rb[256];

	mk_ok("one", "tiny-llama", DJN_DTYPE_F16, 3, 0, 0);
	mk_ok("many", "tiny-llama", DJN_DTYPE_F16, 3, 0, 1000000);
	cr_assert(!exists(in_tmp("many/model.safetensors")));
	cr_assert(exists(in_tmp("many/model-00001-of-00009.safetensors")));
	cr_assert(exists(in_tmp("many/model-00009-of-00009.safetensors")));
	text = (char *)slurp(in_tmp("many/model.safetensors.index.json"), &n);
	root = cJSON_Parse(text);
	cr_assert_not_null(root);
	cr_assert_eq((uint64_t)cJSON_GetObjectItemCaseSensitive(
			     cJSON_GetObjectItemCaseSensitive(root, "metadata"), "total_size")->valuedouble,
		     djn_mkmodel_weight_bytes("tiny-llama", DJN_DTYPE_F16));
	wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	cr_assert_eq(cJSON_GetArraySize(wm), 2 + 4 * 9 + 1);
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(wm, "model.embed_tokens.weight")->valuestring,
			 "model-00001-of-00009.safetensors");
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(wm, "lm_head.weight")->valuestring,
			 "model-00009-of-00009.safetensors");
	cJSON_Delete(root);
	free(text);

	a = load("one");
	b = load("many");
	for (int l = 0; l < 4; l++) {
		djn_weight_row_f32(&a->layers[l].wv, 17, ra);
		djn_weight_row_f32(&b->layers[l].wv, 17, rb);
		cr_assert(!memcmp(ra, rb, sizeof(ra)));
	}
	djn_weight_row_f32(&a->output, 511, ra);
	djn_weight_row_f32(&b->output, 511, rb);
	cr_assert(!memcmp(ra, rb, sizeof(ra)));
	djn_model_unref(a);
	djn_model_unref(b);
}

Test(mkmodel, non_empty_dir_needs_force)
{
	struct djn_err err = { 0 };
	FILE *f;
	struct djn_model *m;

	mk_ok("m", "tiny-llama", DJN_DTYPE_F16, 0, 0, 1000000);
	cr_assert_eq(mk("m", "tiny-llama", DJN_DTYPE_F16, 0, 0, 0, false, &err), DJN_ERR_STATE);
	cr_assert(strstr(err.msg, "not empty"), "%s", err.msg);

	/* --force replaces the shards with one file and leaves others alone */
	f = fopen(in_tmp("m/notes.txt"), "w");
	fputs("mine\n", f);
	fclose(f);
	cr_assert_eq(mk("m", "tiny-llama", DJN_DTYPE_F32, 0, 0, 0, true, &err), DJN_OK, "%s", err.msg);
	cr_assert(exists(in_tmp("m/model.safetensors")));
	cr_assert(!exists(in_tmp("m/model.safetensors.index.json")));
	cr_assert(!exists(in_tmp("m/model-00001-of-00009.safetensors")));
	cr_assert(exists(in_tmp("m/notes.txt")));
	m = load("m");
	cr_assert_eq(m->layers[0].wq.dtype, DJN_DTYPE_F32);
	djn_model_unref(m);
}

Test(mkmodel, bad_arguments)
{
	struct djn_err err = { 0 };
	char *argv_shape[] = { "mkmodel", "--shape", "llama-3-8b", in_tmp("x"), NULL };
	char *argv_opt[] = { "mkmodel", "--shape", "tiny-llama", "--bogus", in_tmp("x"), NULL };
	char *argv_size[] = { "mkmodel", "--shape", "tiny-llama", "--shard-size", "5X", in_tmp("x"), NULL };
	char *argv_nodir[] = { "mkmodel", "--shape", "tiny-llama", NULL };

	cr_assert_eq(mk("x", "llama-3-8b", DJN_DTYPE_F16, 0, 0, 0, false, &err), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "unknown shape 'llama-3-8b'"), "%s", err.msg);
	cr_assert(strstr(err.msg, "llama-2-7b"), "%s", err.msg);
	cr_assert_eq(mk("x", "tiny-llama", DJN_DTYPE_Q4_0, 0, 0, 0, false, &err), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "q4_0"), "%s", err.msg);
	cr_assert(!exists(in_tmp("x")), "nothing is made for bad arguments");

	cr_assert_eq(djn_mkmodel_main(4, argv_shape), 2);
	cr_assert_eq(djn_mkmodel_main(5, argv_opt), 2);
	cr_assert_eq(djn_mkmodel_main(6, argv_size), 2);
	cr_assert_eq(djn_mkmodel_main(3, argv_nodir), 2);
	cr_assert(!exists(in_tmp("x")));

	/* a file where the directory should be */
	fclose(fopen(in_tmp("file"), "w"));
	cr_assert_eq(mk("file", "tiny-llama", DJN_DTYPE_F16, 0, 0, 0, true, &err), DJN_ERR_IO);
	cr_assert(strstr(err.msg, "not a directory"), "%s", err.msg);
}

Test(mkmodel, tiny_gpt2_loads_tied_with_conv1d_layout)
{
	struct djn_model *m;
	size_t n;
	char *text;
	double mean, std;

	mk_ok("g", "tiny-gpt2", DJN_DTYPE_F16, 5, 0, 0);
	text = (char *)slurp(in_tmp("g/model.safetensors"), &n);
	cr_assert(strstr(text + 8, "\"h.0.attn.c_attn.weight\":{\"dtype\":\"F16\",\"shape\":[128,384]"));
	cr_assert(!strstr(text + 8, "transformer."));
	cr_assert(!strstr(text + 8, "lm_head"));
	free(text);
	m = load("g");
	cr_assert_eq(m->cfg.arch, DJN_ARCH_GPT2);
	cr_assert_eq(m->cfg.dim, 128);
	cr_assert_eq(m->cfg.hidden_dim, 512);
	cr_assert_eq(m->cfg.n_layer, 2);
	cr_assert_eq(m->cfg.n_head, 4);
	cr_assert_eq(m->cfg.seq_len, 256);
	cr_assert(m->cfg.tied_embeddings);
	cr_assert_eq(m->layers[1].w_up.rows, 512);
	cr_assert_eq(m->layers[1].w_up.cols, 128);
	cr_assert_eq(djn_tok_eos(m->tok), 511);
	moments(&m->layers[1].w_down, &mean, &std);
	cr_assert(fabs(std - 0.02) < 0.001, "std %g", std);
	djn_model_unref(m);
}

Test(mkmodel, real_sizes)
{
	/* Llama-2-7B: 6,738,415,616 parameters */
	cr_assert_eq(djn_mkmodel_weight_bytes("llama-2-7b", DJN_DTYPE_F16), 2 * 6738415616ull);
	cr_assert_eq(djn_mkmodel_weight_bytes("llama-2-13b", DJN_DTYPE_F32), 4 * 13015864320ull);
	cr_assert_eq(djn_mkmodel_weight_bytes("mistral-7b", DJN_DTYPE_BF16), 2 * 7241732096ull);
	/* GPT-2 XL: 1,557,611,200 (tied head counted once) */
	cr_assert_eq(djn_mkmodel_weight_bytes("gpt2-xl", DJN_DTYPE_F16), 2 * 1557611200ull);
	cr_assert_eq(djn_mkmodel_weight_bytes("llama-2-7b", DJN_DTYPE_Q8_0), 0);
	cr_assert_eq(djn_mkmodel_weight_bytes("nope", DJN_DTYPE_F16), 0);
}
