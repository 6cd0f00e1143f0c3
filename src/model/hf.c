/* hf.c - load a Hugging Face model directory: config.json, safetensors weights (one file or shards), tokenizer.json. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "djinn/model.h"
#include "model/hf.h"
#include "model/mapping.h"
#include "model/safetensors.h"

#define CONFIG_MAX_BYTES (16u << 20)
#define INDEX_MAX_BYTES (64u << 20)

/* ------------------------------------------------------------------ config */

struct cfg_reader {
	const cJSON *root;
	const char *path;
	struct djn_err *err;
};

static const char *json_type(const cJSON *j)
{
	if (cJSON_IsNull(j))
		return "null";
	if (cJSON_IsBool(j))
		return "boolean";
	if (cJSON_IsNumber(j))
		return "number";
	if (cJSON_IsString(j))
		return "string";
	if (cJSON_IsArray(j))
		return "array";
	if (cJSON_IsObject(j))
		return "object";
	return "invalid";
}

/* The field `key`, or NULL when it is absent or null (then *st is set to an
 * error if it was required). */
static const cJSON *field(const struct cfg_reader *r, const char *key, bool required,
			  enum djn_status *st)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->root, key);

	*st = DJN_OK;
	if (j && !cJSON_IsNull(j))
		return j;
	if (required) {
		if (j)
			*st = djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' must not be null",
					  r->path, key);
		else
			*st = djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' is missing",
					  r->path, key);
	}
	return NULL;
}

static enum djn_status get_int(const struct cfg_reader *r, const char *key, bool required,
			       int def, int min, int *out)
{
	enum djn_status st;
	const cJSON *j = field(r, key, required, &st);
	double v;

	if (!j) {
		*out = def;
		return st;
	}
	if (!cJSON_IsNumber(j))
		return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' must be an integer, got %s",
				   r->path, key, json_type(j));
	v = j->valuedouble;
	if (v != floor(v) || !isfinite(v))
		return djn_err_set(r->err, DJN_ERR_FORMAT,
				   "%s: field '%s' must be an integer, got %g", r->path, key, v);
	if (v < min || v > INT_MAX)
		return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' is %.0f, must be in %d..%d",
				   r->path, key, v, min, INT_MAX);
	*out = (int)v;
	return DJN_OK;
}

static enum djn_status get_float(const struct cfg_reader *r, const char *key, bool required,
				 float def, float *out)
{
	enum djn_status st;
	const cJSON *j = field(r, key, required, &st);

	if (!j) {
		*out = def;
		return st;
	}
	if (!cJSON_IsNumber(j))
		return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' must be a number, got %s",
				   r->path, key, json_type(j));
	if (!isfinite(j->valuedouble) || fabs(j->valuedouble) > 3.0e38)
		return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' is out of range (%g)",
				   r->path, key, j->valuedouble);
	*out = (float)j->valuedouble;
	return DJN_OK;
}

static enum djn_status get_bool(const struct cfg_reader *r, const char *key, bool def,
				bool *out)
{
	enum djn_status st;
	const cJSON *j = field(r, key, false, &st);

	if (!j) {
		*out = def;
		return DJN_OK;
	}
	if (!cJSON_IsBool(j))
		return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' must be a boolean, got %s",
				   r->path, key, json_type(j));
	*out = cJSON_IsTrue(j);
	return DJN_OK;
}

/* An optional string field; *out is NULL when absent. */
static enum djn_status get_str(const struct cfg_reader *r, const char *key, const char **out)
{
	enum djn_status st;
	const cJSON *j = field(r, key, false, &st);

	*out = NULL;
	if (!j)
		return DJN_OK;
	if (!cJSON_IsString(j))
		return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field '%s' must be a string, got %s",
				   r->path, key, json_type(j));
	*out = j->valuestring;
	return DJN_OK;
}

/* A boolean that changes the numerics in a way we do not implement. */
static enum djn_status want_bool(const struct cfg_reader *r, const char *key, bool def,
				 bool want)
{
	enum djn_status st;
	bool v;

	if ((st = get_bool(r, key, def, &v)))
		return st;
	if (v != want)
		return djn_err_set(r->err, DJN_ERR_UNSUPPORTED, "%s: %s = %s is not supported",
				   r->path, key, v ? "true" : "false");
	return DJN_OK;
}

/* One of the string values in `ok` (NULL-terminated), or absent. */
static enum djn_status want_str(const struct cfg_reader *r, const char *key,
				const char *const *ok)
{
	enum djn_status st;
	const char *v;

	if ((st = get_str(r, key, &v)) || !v)
		return st;
	for (int i = 0; ok[i]; i++)
		if (!strcmp(v, ok[i]))
			return DJN_OK;
	return djn_err_set(r->err, DJN_ERR_UNSUPPORTED, "%s: %s '%s' is not supported (expected '%s')",
			   r->path, key, v, ok[0]);
}

/* RoPE settings: transformers 4 writes rope_theta and rope_scaling at the
 * top level, transformers 5 nests them in rope_parameters.  Only plain RoPE
 * is implemented: a scaled one would silently change every logit. */
static enum djn_status read_rope(const struct cfg_reader *r, float *theta)
{
	static const char *const keys[] = { "rope_scaling", "rope_parameters" };
	enum djn_status st;

	if ((st = get_float(r, "rope_theta", false, 10000.0f, theta)))
		return st;
	for (int i = 0; i < 2; i++) {
		const cJSON *j = field(r, keys[i], false, &st), *type;
		struct cfg_reader sub = { j, keys[i], r->err };

		if (!j)
			continue;
		if (!cJSON_IsObject(j))
			return djn_err_set(r->err, DJN_ERR_FORMAT,
					   "%s: field '%s' must be an object, got %s", r->path,
					   keys[i], json_type(j));
		type = cJSON_GetObjectItemCaseSensitive(j, "rope_type");
		if (!type)
			type = cJSON_GetObjectItemCaseSensitive(j, "type");
		if (type && !cJSON_IsString(type))
			return djn_err_set(r->err, DJN_ERR_FORMAT,
					   "%s: field '%s.rope_type' must be a string, got %s",
					   r->path, keys[i], json_type(type));
		if (type && strcmp(type->valuestring, "default"))
			return djn_err_set(r->err, DJN_ERR_UNSUPPORTED,
					   "%s: rope type '%s' is not supported (only plain rope)",
					   r->path, type->valuestring);
		if (!type && i == 0)
			return djn_err_set(r->err, DJN_ERR_UNSUPPORTED,
					   "%s: rope_scaling is not supported (only plain rope)",
					   r->path);
		/* Messages from the nested object name "PATH: rope_parameters: ...". */
		if ((st = get_float(&sub, "rope_theta", false, *theta, theta))) {
			djn_err_prefix(r->err, "%s", r->path);
			return st;
		}
	}
	return DJN_OK;
}

static enum djn_status parse_llama(const struct cfg_reader *r, struct djn_config *c)
{
	static const char *const acts[] = { "silu", "swish", NULL };
	enum djn_status st;
	int window;

	c->arch = DJN_ARCH_LLAMA;
	c->rope_style = DJN_ROPE_HALF;
	if ((st = get_int(r, "hidden_size", true, 0, 1, &c->dim)) ||
	    (st = get_int(r, "intermediate_size", true, 0, 1, &c->hidden_dim)) ||
	    (st = get_int(r, "num_hidden_layers", true, 0, 1, &c->n_layer)) ||
	    (st = get_int(r, "num_attention_heads", true, 0, 1, &c->n_head)) ||
	    (st = get_int(r, "num_key_value_heads", false, c->n_head, 1, &c->n_kv_head)) ||
	    (st = get_int(r, "head_dim", false, 0, 1, &c->head_dim)) ||
	    (st = get_int(r, "vocab_size", true, 0, 1, &c->vocab_size)) ||
	    (st = get_int(r, "max_position_embeddings", true, 0, 1, &c->seq_len)) ||
	    (st = get_float(r, "rms_norm_eps", true, 0, &c->norm_eps)) ||
	    (st = read_rope(r, &c->rope_theta)) ||
	    (st = get_bool(r, "tie_word_embeddings", false, &c->tied_embeddings)) ||
	    (st = want_str(r, "hidden_act", acts)) ||
	    (st = want_bool(r, "mlp_bias", false, false)) ||
	    (st = get_int(r, "sliding_window", false, 0, 1, &window)))
		return st;
	/* Mistral's sliding window is not implemented; within it, attention
	 * is the same as full attention, so the context stops there. */
	if (window && window < c->seq_len)
		c->seq_len = window;
	return DJN_OK;
}

static enum djn_status parse_gpt2(const struct cfg_reader *r, struct djn_config *c)
{
	static const char *const acts[] = { "gelu_new", "gelu_pytorch_tanh", NULL };
	/* Very old configs name the context n_ctx only. */
	const char *ctx = !field(r, "n_positions", false, &(enum djn_status){ 0 }) &&
			  field(r, "n_ctx", false, &(enum djn_status){ 0 }) ? "n_ctx" : "n_positions";
	enum djn_status st;

	c->arch = DJN_ARCH_GPT2;
	c->rope_style = DJN_ROPE_HALF; /* unused: GPT-2 learns its positions */
	if ((st = get_int(r, "n_embd", true, 0, 1, &c->dim)) ||
	    (st = get_int(r, "n_layer", true, 0, 1, &c->n_layer)) ||
	    (st = get_int(r, "n_head", true, 0, 1, &c->n_head)) ||
	    (st = get_int(r, ctx, true, 0, 1, &c->seq_len)) ||
	    (st = get_int(r, "vocab_size", true, 0, 1, &c->vocab_size)) ||
	    (st = get_float(r, "layer_norm_epsilon", true, 0, &c->norm_eps)) ||
	    (st = get_int(r, "n_inner", false, 0, 1, &c->hidden_dim)) ||
	    (st = get_bool(r, "tie_word_embeddings", true, &c->tied_embeddings)) ||
	    (st = want_str(r, "activation_function", acts)) ||
	    (st = want_bool(r, "scale_attn_weights", true, true)) ||
	    (st = want_bool(r, "scale_attn_by_inverse_layer_idx", false, false)))
		return st;
	if (!c->hidden_dim) {
		if (c->dim > INT_MAX / 4)
			return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field 'n_embd' is too large",
					   r->path);
		c->hidden_dim = 4 * c->dim;
	}
	c->n_kv_head = c->n_head;
	return DJN_OK;
}

/* The architecture: architectures[0], or model_type when that is absent. */
static enum djn_status parse_arch(const struct cfg_reader *r, struct djn_config *c)
{
	static const struct {
		const char *arch, *model_type;
		enum djn_status (*parse)(const struct cfg_reader *, struct djn_config *);
	} archs[] = {
		{ "LlamaForCausalLM", "llama", parse_llama },
		{ "MistralForCausalLM", "mistral", parse_llama },
		{ "GPT2LMHeadModel", "gpt2", parse_gpt2 },
	};
	enum djn_status st;
	const cJSON *a = field(r, "architectures", false, &st);
	const char *name, *model_type;

	if (a) {
		if (!cJSON_IsArray(a))
			return djn_err_set(r->err, DJN_ERR_FORMAT,
					   "%s: field 'architectures' must be an array, got %s",
					   r->path, json_type(a));
		a = cJSON_GetArrayItem(a, 0);
		if (!cJSON_IsString(a))
			return djn_err_set(r->err, DJN_ERR_FORMAT,
					   "%s: field 'architectures' must hold a string, got %s",
					   r->path, a ? json_type(a) : "an empty array");
		name = a->valuestring;
		for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++)
			if (!strcmp(name, archs[i].arch))
				return archs[i].parse(r, c);
		return djn_err_set(r->err, DJN_ERR_UNSUPPORTED,
				   "%s: architecture '%s' is not supported (expected LlamaForCausalLM, MistralForCausalLM or GPT2LMHeadModel)",
				   r->path, name);
	}
	if ((st = get_str(r, "model_type", &model_type)))
		return st;
	if (!model_type)
		return djn_err_set(r->err, DJN_ERR_FORMAT, "%s: field 'architectures' is missing",
				   r->path);
	for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++)
		if (!strcmp(model_type, archs[i].model_type))
			return archs[i].parse(r, c);
	return djn_err_set(r->err, DJN_ERR_UNSUPPORTED,
			   "%s: model_type '%s' is not supported (expected llama, mistral or gpt2)",
			   r->path, model_type);
}

enum djn_status djn_hf_parse_config(const char *json, size_t len, const char *path,
				    struct djn_config *out, struct djn_err *err)
{
	struct djn_config c = { 0 };
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	struct cfg_reader r = { root, path, err };
	enum djn_status st;

	if (!root)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: not valid JSON (error at byte %zu)",
				   path, (size_t)(end && end >= json ? end - json : 0));
	for (const char *q = end; q < json + len; q++) {
		if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != '\0') {
			st = djn_err_set(err, DJN_ERR_FORMAT,
					 "%s: not valid JSON (trailing data at byte %zu)", path,
					 (size_t)(q - json));
			goto out_free_root;
		}
	}
	if (!cJSON_IsObject(root)) {
		st = djn_err_set(err, DJN_ERR_FORMAT, "%s: not a JSON object", path);
		goto out_free_root;
	}
	/* Python keeps the last of two equal keys and cJSON the first: rather
	 * than read another value than transformers does, refuse. */
	for (const cJSON *a = root->child; a; a = a->next) {
		for (const cJSON *b = a->next; b; b = b->next) {
			if (!strcmp(a->string, b->string)) {
				st = djn_err_set(err, DJN_ERR_FORMAT, "%s: field '%s' appears twice",
						 path, a->string);
				goto out_free_root;
			}
		}
	}
	if ((st = parse_arch(&r, &c)) || (st = djn_config_validate(&c, path, err)))
		goto out_free_root;
	*out = c;
out_free_root:
	cJSON_Delete(root);
	return st;
}

/* ----------------------------------------------------------------- weights */

struct loader {
	struct djn_model *m;
	const char *dir;
	char *where;               /* model.safetensors or the index: named when a tensor is missing */
	struct djn_st_file **files;
	int n_files;
	struct djn_err *err;
};

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *s = djn_xmalloc(n);

	snprintf(s, n, "%s/%s", dir, name);
	return s;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static const struct djn_st_tensor *find(const struct loader *ld, const char *name,
					const struct djn_st_file **file)
{
	for (int i = 0; i < ld->n_files; i++) {
		const struct djn_st_tensor *t = djn_st_find(ld->files[i], name);

		if (t) {
			*file = ld->files[i];
			return t;
		}
	}
	return NULL;
}

/* Open one safetensors file; the model takes its mapping at once, so the
 * tensors stay valid and a later failure frees it with the model. */
static enum djn_status add_file(struct loader *ld, const char *path)
{
	struct djn_st_file *f = djn_st_open(path, ld->err);

	if (!f)
		return ld->err ? ld->err->code : DJN_ERR_FORMAT;
	djn_model_own_map(ld->m, djn_st_take_map(f));
	ld->files = djn_xrealloc(ld->files, sizeof(*ld->files) * (size_t)(ld->n_files + 1));
	ld->files[ld->n_files++] = f;
	return DJN_OK;
}

static bool plain_file_name(const char *s)
{
	return *s && !strchr(s, '/') && !strstr(s, "..");
}

/* model.safetensors.index.json: {"weight_map": {tensor: shard file}}.  Each
 * shard is opened once, and every tensor the index lists must be in the
 * shard it names. */
static enum djn_status open_index(struct loader *ld, const char *path)
{
	struct djn_err *err = ld->err;
	struct djn_mapping *map = djn_mapping_open(path, err);
	const char **shards = NULL;
	const char *end = NULL;
	cJSON *root = NULL, *wm, *e;
	enum djn_status st = DJN_OK;
	int n_shards = 0;

	if (!map)
		return err ? err->code : DJN_ERR_IO;
	if (map->size > INDEX_MAX_BYTES) {
		st = djn_err_set(err, DJN_ERR_FORMAT, "%s: file is too large (%zu bytes)", path,
				 map->size);
		goto out_close_map;
	}
	root = cJSON_ParseWithLengthOpts((const char *)map->addr, map->size, &end, 0);
	if (!root) {
		st = djn_err_set(err, DJN_ERR_FORMAT, "%s: not valid JSON (error at byte %zu)", path,
				 (size_t)(end && end >= (const char *)map->addr
					  ? end - (const char *)map->addr : 0));
		goto out_close_map;
	}
	wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
	if (!wm) {
		st = djn_err_set(err, DJN_ERR_FORMAT, "%s: field 'weight_map' is missing", path);
		goto out_free_root;
	}
	if (!cJSON_IsObject(wm) || !wm->child) {
		st = djn_err_set(err, DJN_ERR_FORMAT,
				 "%s: field 'weight_map' must be a non-empty object, got %s", path,
				 cJSON_IsObject(wm) ? "an empty one" : json_type(wm));
		goto out_free_root;
	}
	cJSON_ArrayForEach(e, wm) {
		int i;

		if (!cJSON_IsString(e)) {
			st = djn_err_set(err, DJN_ERR_FORMAT,
					 "%s: weight_map entry '%s' must be a string, got %s", path,
					 e->string, json_type(e));
			goto out_free_shards;
		}
		if (!plain_file_name(e->valuestring)) {
			st = djn_err_set(err, DJN_ERR_FORMAT,
					 "%s: shard '%s' of tensor '%s' is not a plain file name",
					 path, e->valuestring, e->string);
			goto out_free_shards;
		}
		for (i = 0; i < n_shards; i++)
			if (!strcmp(shards[i], e->valuestring))
				break;
		if (i == n_shards) {
			shards = djn_xrealloc(shards, sizeof(*shards) * (size_t)(n_shards + 1));
			shards[n_shards++] = e->valuestring;
		}
	}
	for (int i = 0; i < n_shards; i++) {
		char *sp = join(ld->dir, shards[i]);

		st = add_file(ld, sp);
		free(sp);
		if (st)
			goto out_free_shards;
	}
	cJSON_ArrayForEach(e, wm) {
		int i;

		for (i = 0; strcmp(shards[i], e->valuestring); i++)
			;
		if (!djn_st_find(ld->files[i], e->string)) {
			st = djn_err_set(err, DJN_ERR_FORMAT,
					 "%s: tensor '%s' is listed in %s but missing from it",
					 ld->files[i]->path, e->string, path);
			goto out_free_shards;
		}
	}
out_free_shards:
	free(shards);
out_free_root:
	cJSON_Delete(root);
out_close_map:
	djn_mapping_close(map);
	return st;
}

static enum djn_status open_weights(struct loader *ld)
{
	char *single = join(ld->dir, "model.safetensors");
	char *index = join(ld->dir, "model.safetensors.index.json");

	if (exists(single)) {
		ld->where = single;
		free(index);
		return add_file(ld, single);
	}
	free(single);
	ld->where = index;
	if (!exists(index))
		return djn_err_set(ld->err, DJN_ERR_IO,
				   "%s: no model.safetensors or model.safetensors.index.json",
				   ld->dir);
	return open_index(ld, index);
}

/* Weights keep pointing into the mapping unless their bytes are not aligned
 * for their element type (the format does not promise it), in which case an
 * aligned copy avoids misaligned loads in every op. */
static enum djn_status place(struct loader *ld, struct djn_weight *w, const void *data,
			     size_t n_bytes)
{
	size_t es = djn_dtype_block_bytes(w->dtype);
	void *copy;

	if ((uintptr_t)data % es == 0) {
		w->host = data;
		return DJN_OK;
	}
	if (!(copy = malloc(n_bytes ? n_bytes : 1)))
		return djn_err_set(ld->err, DJN_ERR_NOMEM,
				   "%s: cannot allocate %zu bytes for tensor '%s'", ld->m->path,
				   n_bytes, w->name);
	memcpy(copy, data, n_bytes);
	w->host = djn_model_own(ld->m, copy);
	return DJN_OK;
}

static const char *own_name(struct loader *ld, const char *name)
{
	return djn_model_own(ld->m, djn_xstrdup(name));
}

/* Look a tensor up; a required one that is absent is an error naming it. */
static enum djn_status lookup(struct loader *ld, const char *name, bool required,
			      const struct djn_st_tensor **t, const struct djn_st_file **f)
{
	*t = find(ld, name, f);
	if (!*t && required)
		return djn_err_set(ld->err, DJN_ERR_FORMAT, "%s: tensor '%s' is missing", ld->where,
				   name);
	return DJN_OK;
}

/* A tensor used as stored: [out, in] -> rows x cols, [n] -> 1 x n. */
static enum djn_status bind(struct loader *ld, struct djn_weight *w, const char *name,
			    bool required)
{
	const struct djn_st_tensor *t;
	const struct djn_st_file *f;
	enum djn_status st;

	if ((st = lookup(ld, name, required, &t, &f)) || !t)
		return st;
	if (t->rank != 1 && t->rank != 2)
		return djn_err_set(ld->err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' has rank %d, expected 1 or 2", f->path, name,
				   t->rank);
	w->dtype = t->dtype;
	w->rows = t->rank == 2 ? t->shape[0] : 1;
	w->cols = t->shape[t->rank - 1];
	w->name = own_name(ld, name);
	return place(ld, w, t->data, t->n_bytes);
}

static enum djn_status bad_shape(struct loader *ld, const struct djn_st_file *f,
				 const struct djn_st_tensor *t, const char *want)
{
	char got[64] = "[";

	for (int i = 0; i < t->rank; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", i ? ", " : "",
			 (long long)t->shape[i]);
	snprintf(got + strlen(got), sizeof(got) - strlen(got), "]");
	return djn_err_set(ld->err, DJN_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s",
			   f->path, t->name, got, want);
}

/* GPT-2's Conv1D weight, stored [in, out] for y = x W + b: kept where the
 * file has it, as n_parts transposed weights (ld = out) whose rows are
 * column ranges of it (c_attn holds q, k and v).  The CPU computes from it
 * as it is; other backends get it row-major (djn_model_weights_rowmajor)
 * when the weights go to them, so a CPU session holds the file's bytes once. */
static enum djn_status bind_conv1d(struct loader *ld, struct djn_weight **parts, int n_parts,
				   const char *name, int64_t in, int64_t out)
{
	const struct djn_st_tensor *t;
	const struct djn_st_file *f;
	enum djn_status st;
	char want[64];
	size_t es;
	const char *owned_name;

	if ((st = lookup(ld, name, true, &t, &f)))
		return st;
	if (t->rank != 2 || t->shape[0] != in || t->shape[1] != out) {
		snprintf(want, sizeof(want), "[%lld, %lld]", (long long)in, (long long)out);
		return bad_shape(ld, f, t, want);
	}
	es = djn_dtype_block_bytes(t->dtype);
	owned_name = own_name(ld, name);
	for (int p = 0; p < n_parts; p++) {
		parts[p]->dtype = t->dtype;
		parts[p]->rows = out / n_parts;
		parts[p]->cols = in;
		parts[p]->ld = out;
		parts[p]->host = (const uint8_t *)t->data + (size_t)p * (size_t)(out / n_parts) * es;
		parts[p]->name = owned_name;
	}
	return DJN_OK;
}

/* A 1-D bias of n_parts * len elements, split into n_parts (1, len) weights. */
static enum djn_status bind_bias(struct loader *ld, struct djn_weight **parts, int n_parts,
				 const char *name, int64_t len)
{
	const struct djn_st_tensor *t;
	const struct djn_st_file *f;
	enum djn_status st;
	char want[32];
	size_t part_bytes;
	const char *owned_name;

	if ((st = lookup(ld, name, true, &t, &f)))
		return st;
	if (t->rank != 1 || t->shape[0] != len * n_parts) {
		snprintf(want, sizeof(want), "[%lld]", (long long)(len * n_parts));
		return bad_shape(ld, f, t, want);
	}
	owned_name = own_name(ld, name);
	part_bytes = t->n_bytes / (size_t)n_parts;
	for (int p = 0; p < n_parts; p++) {
		parts[p]->dtype = t->dtype;
		parts[p]->rows = 1;
		parts[p]->cols = len;
		parts[p]->name = owned_name;
		if ((st = place(ld, parts[p], (const uint8_t *)t->data + (size_t)p * part_bytes,
				part_bytes)))
			return st;
	}
	return DJN_OK;
}

/* The output head: lm_head.weight unless tied or absent (then tok_embd). */
static enum djn_status bind_output(struct loader *ld, const char *name)
{
	struct djn_model *m = ld->m;
	enum djn_status st;

	if (!m->cfg.tied_embeddings && (st = bind(ld, &m->output, name, false)))
		return st;
	if (!djn_weight_present(&m->output)) {
		m->output = m->tok_embd;
		m->cfg.tied_embeddings = true;
	}
	return DJN_OK;
}

/* Bind the tensor named by a printf format (name and st are the caller's). */
#define BIND(w, req, ...)                                                   \
	do {                                                                \
		snprintf(name, sizeof(name), __VA_ARGS__);                  \
		if ((st = bind(ld, (w), name, (req))))                      \
			return st;                                          \
	} while (0)

static enum djn_status load_llama(struct loader *ld)
{
	struct djn_model *m = ld->m;
	char name[128];
	enum djn_status st;

	BIND(&m->tok_embd, true, "model.embed_tokens.weight");
	BIND(&m->final_norm, true, "model.norm.weight");
	if ((st = bind_output(ld, "lm_head.weight")))
		return st;
	for (int l = 0; l < m->cfg.n_layer; l++) {
		struct djn_layer *L = &m->layers[l];

		BIND(&L->attn_norm, true, "model.layers.%d.input_layernorm.weight", l);
		BIND(&L->wq, true, "model.layers.%d.self_attn.q_proj.weight", l);
		BIND(&L->wk, true, "model.layers.%d.self_attn.k_proj.weight", l);
		BIND(&L->wv, true, "model.layers.%d.self_attn.v_proj.weight", l);
		BIND(&L->wo, true, "model.layers.%d.self_attn.o_proj.weight", l);
		/* attention_bias = true checkpoints */
		BIND(&L->bq, false, "model.layers.%d.self_attn.q_proj.bias", l);
		BIND(&L->bk, false, "model.layers.%d.self_attn.k_proj.bias", l);
		BIND(&L->bv, false, "model.layers.%d.self_attn.v_proj.bias", l);
		BIND(&L->bo, false, "model.layers.%d.self_attn.o_proj.bias", l);
		BIND(&L->mlp_norm, true, "model.layers.%d.post_attention_layernorm.weight", l);
		BIND(&L->w_gate, true, "model.layers.%d.mlp.gate_proj.weight", l);
		BIND(&L->w_up, true, "model.layers.%d.mlp.up_proj.weight", l);
		BIND(&L->w_down, true, "model.layers.%d.mlp.down_proj.weight", l);
	}
	return DJN_OK;
}

static enum djn_status load_gpt2(struct loader *ld)
{
	struct djn_model *m = ld->m;
	const struct djn_st_file *f;
	int64_t d = m->cfg.dim, h = m->cfg.hidden_dim;
	const char *px;
	char name[128];
	enum djn_status st;

	/* save_pretrained of GPT2LMHeadModel writes "transformer.wte.weight",
	 * the original checkpoints "wte.weight". */
	px = find(ld, "transformer.wte.weight", &f) ? "transformer." : "";
	BIND(&m->tok_embd, true, "%swte.weight", px);
	BIND(&m->pos_embd, true, "%swpe.weight", px);
	BIND(&m->final_norm, true, "%sln_f.weight", px);
	BIND(&m->final_norm_b, true, "%sln_f.bias", px);
	if ((st = bind_output(ld, "lm_head.weight")))
		return st;
	for (int l = 0; l < m->cfg.n_layer; l++) {
		struct djn_layer *L = &m->layers[l];
		struct djn_weight *qkv[] = { &L->wq, &L->wk, &L->wv };
		struct djn_weight *bqkv[] = { &L->bq, &L->bk, &L->bv };
		struct djn_weight *wo[] = { &L->wo }, *bo[] = { &L->bo };
		struct djn_weight *up[] = { &L->w_up }, *bup[] = { &L->b_up };
		struct djn_weight *down[] = { &L->w_down }, *bdown[] = { &L->b_down };

#define CONV(parts, n, in, out, ...)                                              \
	do {                                                                      \
		snprintf(name, sizeof(name), __VA_ARGS__);                        \
		if ((st = bind_conv1d(ld, (parts), (n), name, (in), (out))))      \
			return st;                                                \
	} while (0)
#define BIAS(parts, n, len, ...)                                                  \
	do {                                                                      \
		snprintf(name, sizeof(name), __VA_ARGS__);                        \
		if ((st = bind_bias(ld, (parts), (n), name, (len))))              \
			return st;                                                \
	} while (0)
		BIND(&L->attn_norm, true, "%sh.%d.ln_1.weight", px, l);
		BIND(&L->attn_norm_b, true, "%sh.%d.ln_1.bias", px, l);
		CONV(qkv, 3, d, 3 * d, "%sh.%d.attn.c_attn.weight", px, l);
		BIAS(bqkv, 3, d, "%sh.%d.attn.c_attn.bias", px, l);
		CONV(wo, 1, d, d, "%sh.%d.attn.c_proj.weight", px, l);
		BIAS(bo, 1, d, "%sh.%d.attn.c_proj.bias", px, l);
		BIND(&L->mlp_norm, true, "%sh.%d.ln_2.weight", px, l);
		BIND(&L->mlp_norm_b, true, "%sh.%d.ln_2.bias", px, l);
		CONV(up, 1, d, h, "%sh.%d.mlp.c_fc.weight", px, l);
		BIAS(bup, 1, h, "%sh.%d.mlp.c_fc.bias", px, l);
		CONV(down, 1, h, d, "%sh.%d.mlp.c_proj.weight", px, l);
		BIAS(bdown, 1, d, "%sh.%d.mlp.c_proj.bias", px, l);
#undef CONV
#undef BIAS
	}
#undef BIND
	return DJN_OK;
}

static enum djn_status load_config(struct djn_model *m, const char *dir, struct djn_err *err)
{
	char *path = join(dir, "config.json");
	struct djn_mapping *map = djn_mapping_open(path, err);
	enum djn_status st;

	if (!map) {
		st = err ? err->code : DJN_ERR_IO;
		goto out_free_path;
	}
	if (map->size > CONFIG_MAX_BYTES)
		st = djn_err_set(err, DJN_ERR_FORMAT, "%s: file is too large (%zu bytes)", path,
				 map->size);
	else
		st = djn_hf_parse_config((const char *)map->addr, map->size, path, &m->cfg, err);
	djn_mapping_close(map);
out_free_path:
	free(path);
	return st;
}

static enum djn_status load_tokenizer(struct djn_model *m, const char *dir, struct djn_err *err)
{
	char *path = join(dir, "tokenizer.json");
	enum djn_status st = DJN_OK;

	/* Without one the caller works in token ids. */
	if (!exists(path))
		goto out_free_path;
	if (!(m->tok = djn_tok_load_hf_json(path, err))) {
		st = err ? err->code : DJN_ERR_FORMAT;
		goto out_free_path;
	}
	if (djn_tok_n_vocab(m->tok) > m->cfg.vocab_size)
		st = djn_err_set(err, DJN_ERR_FORMAT,
				 "%s: tokenizer has %d tokens, more than the model's vocab_size %d",
				 path, djn_tok_n_vocab(m->tok), m->cfg.vocab_size);
out_free_path:
	free(path);
	return st;
}

struct djn_model *djn_model_load_hf(const char *path, struct djn_err *err)
{
	struct loader ld = { .err = err };
	struct djn_model *m;
	struct stat sb;
	char *dir = djn_xstrdup(path);
	size_t n = strlen(dir);
	enum djn_status st;

	while (n > 1 && dir[n - 1] == '/')
		dir[--n] = '\0';
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		djn_err_set(err, DJN_ERR_IO, "%s: not a directory", dir);
		free(dir);
		return NULL;
	}
	m = djn_model_alloc(DJN_FORMAT_HF, dir);
	ld.m = m;
	ld.dir = dir;
	if ((st = load_config(m, dir, err)))
		goto out_free_model;
	m->layers = djn_xcalloc((size_t)m->cfg.n_layer, sizeof(*m->layers));
	if ((st = open_weights(&ld)))
		goto out_free_model;
	st = m->cfg.arch == DJN_ARCH_GPT2 ? load_gpt2(&ld) : load_llama(&ld);
	if (st || (st = djn_model_validate(m, err)) || (st = load_tokenizer(m, dir, err)))
		goto out_free_model;
	goto out_free_loader;
out_free_model:
	djn_model_unref(m);
	m = NULL;
out_free_loader:
	for (int i = 0; i < ld.n_files; i++)
		djn_st_free(ld.files[i]);
	free(ld.files);
	free(ld.where);
	free(dir);
	return m;
}
