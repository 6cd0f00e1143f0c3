/* tokenizer_json.c - the Hugging Face tokenizer.json loader (byte-level BPE models). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model/tokenizer_impl.h"

static const char *json_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A JSON boolean, or def when the key is absent or null. */
static bool json_bool(const cJSON *obj, const char *key, bool def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static bool json_id(const cJSON *v, int *id)
{
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= DJN_TOK_MAX_VOCAB ||
	    v->valuedouble != floor(v->valuedouble))
		return false;
	*id = (int)v->valuedouble;
	return true;
}

static bool is_byte_level(const cJSON *p)
{
	const char *type = json_str(p, "type");

	return type && !strcmp(type, "ByteLevel");
}

/* Map the pre_tokenizer to one of bpe.c's regex families: ByteLevel alone
 * is GPT-2's regex; Digits(individual_digits) then ByteLevel is SmolLM's
 * (and StarCoder's).  Anything else would tokenize differently, so it is
 * refused rather than approximated. */
static enum djn_status pick_pre(const char *path, const cJSON *pt, const char **pre,
				struct djn_err *err)
{
	const cJSON *list, *bl = NULL;
	const char *type = json_str(pt, "type");
	bool digits = false;
	int n;

	if (!type)
		return djn_err_set(err, DJN_ERR_UNSUPPORTED,
				   "%s: no pre_tokenizer (only ByteLevel BPE is supported)", path);
	if (!strcmp(type, "ByteLevel")) {
		bl = pt;
	} else if (!strcmp(type, "Sequence")) {
		list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
		n = cJSON_GetArraySize(list);
		if (n == 1 && is_byte_level(cJSON_GetArrayItem(list, 0))) {
			bl = cJSON_GetArrayItem(list, 0);
		} else if (n == 2 && is_byte_level(cJSON_GetArrayItem(list, 1))) {
			const cJSON *d = cJSON_GetArrayItem(list, 0);
			const char *dt = json_str(d, "type");

			if (dt && !strcmp(dt, "Digits") && json_bool(d, "individual_digits", false)) {
				digits = true;
				bl = cJSON_GetArrayItem(list, 1);
			}
		}
		if (!bl)
			return djn_err_set(err, DJN_ERR_UNSUPPORTED,
					   "%s: pre_tokenizer Sequence is not supported (only "
					   "[ByteLevel] or [Digits(individual_digits), ByteLevel])", path);
	} else {
		return djn_err_set(err, DJN_ERR_UNSUPPORTED,
				   "%s: pre_tokenizer '%s' is not supported (only ByteLevel, "
				   "optionally after Digits)", path, type);
	}
	if (json_bool(bl, "add_prefix_space", false) || !json_bool(bl, "use_regex", true))
		return djn_err_set(err, DJN_ERR_UNSUPPORTED,
				   "%s: ByteLevel with add_prefix_space or without use_regex is not "
				   "supported", path);
	*pre = digits ? "smollm" : "gpt2";
	return DJN_OK;
}

/* How many unused ids a file may leave (tokenizers sometimes skip a few). */
#define DJN_JSON_ID_SLACK 4096

struct vocab {
	int max_id; /* ids must stay below: entries + DJN_JSON_ID_SLACK */
	int n;      /* ids 0..n-1 */
	int cap;
	const char **pieces;
	uint32_t *lens;
	int32_t *types;
};

static enum djn_status vocab_set(struct vocab *v, const char *path, int id, const char *s,
				 int32_t type, struct djn_err *err)
{
	size_t len = strlen(s);

	/* ids are dense in real files; a stray huge id must not make us
	 * allocate (and hash) millions of empty tokens */
	if (id >= v->max_id)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: id %d of '%.64s' is far beyond the %d tokens listed", path,
				   id, s, v->max_id - DJN_JSON_ID_SLACK);

	if (len > DJN_TOK_MAX_PIECE)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: token %d is %zu bytes long, limit %u",
				   path, id, len, DJN_TOK_MAX_PIECE);
	if (id >= v->cap) {
		int cap = v->cap ? v->cap : 1024;

		while (cap <= id)
			cap *= 2;
		v->pieces = djn_xrealloc(v->pieces, sizeof(*v->pieces) * (size_t)cap);
		v->lens = djn_xrealloc(v->lens, sizeof(*v->lens) * (size_t)cap);
		v->types = djn_xrealloc(v->types, sizeof(*v->types) * (size_t)cap);
		for (int i = v->cap; i < cap; i++) {
			v->pieces[i] = NULL;
			v->types[i] = DJN_TOKT_UNUSED;
		}
		v->cap = cap;
	}
	/* an added token may restate a vocab entry (that is how special tokens
	 * usually appear); two different pieces for one id is a broken file */
	if (v->pieces[id] && (v->lens[id] != len || memcmp(v->pieces[id], s, len)))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: id %d is both '%.64s' and '%.64s'",
				   path, id, v->pieces[id], s);
	v->pieces[id] = s;
	v->lens[id] = (uint32_t)len;
	v->types[id] = type; /* added_tokens come last and set CONTROL / USER_DEFINED */
	if (id >= v->n)
		v->n = id + 1;
	return DJN_OK;
}

/* Control tokens by their usual names: tokenizer.json does not say which
 * is BOS or EOS (tokenizer_config.json does). */
static int find_named(const struct vocab *v, const char *const *names)
{
	for (; *names; names++) {
		for (int id = 0; id < v->n; id++) {
			if (v->pieces[id] && !strcmp(v->pieces[id], *names))
				return id;
		}
	}
	return -1;
}

static enum djn_status read_vocab(const char *path, const cJSON *model, const cJSON *added,
				  struct vocab *v, struct djn_err *err)
{
	const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *it;
	enum djn_status st;
	int i = 0;

	if (!cJSON_IsObject(vocab))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: model.vocab is not an object", path);
	if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: added_tokens is not an array", path);
	v->max_id = cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added) + DJN_JSON_ID_SLACK;
	cJSON_ArrayForEach(it, vocab) {
		int id;

		if (!json_id(it, &id))
			return djn_err_set(err, DJN_ERR_FORMAT,
					   "%s: model.vocab['%.64s'] is not an id in 0..%d", path,
					   it->string, DJN_TOK_MAX_VOCAB - 1);
		/* keys are unique, so a repeated id always has two pieces */
		st = vocab_set(v, path, id, it->string, DJN_TOKT_NORMAL, err);
		if (st)
			return st;
	}
	cJSON_ArrayForEach(it, added) {
		const char *content = json_str(it, "content");
		int id;

		if (!content || !json_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id))
			return djn_err_set(err, DJN_ERR_FORMAT,
					   "%s: added_tokens[%d] has no id or content", path, i);
		st = vocab_set(v, path, id, content,
			       json_bool(it, "special", false) ? DJN_TOKT_CONTROL : DJN_TOKT_USER_DEFINED,
			       err);
		if (st)
			return st;
		i++;
	}
	if (!v->n)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: model.vocab is empty", path);
	/* unused ids (rare) become empty UNUSED pieces so that ids stay dense */
	for (i = 0; i < v->n; i++) {
		if (!v->pieces[i]) {
			v->pieces[i] = "";
			v->lens[i] = 0;
			v->types[i] = DJN_TOKT_UNUSED;
		}
	}
	return DJN_OK;
}

struct merges {
	int n;
	const char **left, **right;
	uint32_t *llen, *rlen;
};

/* Merges as "a b" (split at the first space after the first byte, as
 * llama.cpp does) or, in newer files, as ["a", "b"]. */
static enum djn_status read_merges(const char *path, const cJSON *model, struct merges *m,
				   struct djn_err *err)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(model, "merges"), *it;
	int n;

	if (!list || cJSON_IsNull(list))
		return DJN_OK;
	if (!cJSON_IsArray(list))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: model.merges is not an array", path);
	n = cJSON_GetArraySize(list);
	m->left = djn_xmalloc(sizeof(*m->left) * (size_t)(n ? n : 1));
	m->right = djn_xmalloc(sizeof(*m->right) * (size_t)(n ? n : 1));
	m->llen = djn_xmalloc(sizeof(*m->llen) * (size_t)(n ? n : 1));
	m->rlen = djn_xmalloc(sizeof(*m->rlen) * (size_t)(n ? n : 1));
	cJSON_ArrayForEach(it, list) {
		const char *a = NULL, *b = NULL;
		size_t la = 0, lb = 0;

		if (cJSON_IsString(it)) {
			const char *s = it->valuestring, *sp = s[0] ? strchr(s + 1, ' ') : NULL;

			if (sp) {
				a = s;
				la = (size_t)(sp - s);
				b = sp + 1;
				lb = strlen(b);
			}
		} else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
			   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
			   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
			a = cJSON_GetArrayItem(it, 0)->valuestring;
			b = cJSON_GetArrayItem(it, 1)->valuestring;
			la = strlen(a);
			lb = strlen(b);
		}
		if (!a)
			return djn_err_set(err, DJN_ERR_FORMAT,
					   "%s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]",
					   path, m->n);
		if (la > DJN_TOK_MAX_PIECE || lb > DJN_TOK_MAX_PIECE)
			return djn_err_set(err, DJN_ERR_FORMAT, "%s: model.merges[%d] is too long",
					   path, m->n);
		m->left[m->n] = a;
		m->right[m->n] = b;
		m->llen[m->n] = (uint32_t)la;
		m->rlen[m->n] = (uint32_t)lb;
		m->n++;
	}
	return DJN_OK;
}

struct djn_tokenizer *djn_tok_load_hf_json(const char *path, struct djn_err *err)
{
	static const char *const bos_names[] = { "<s>", "<|begin_of_text|>", "<|endoftext|>", NULL };
	static const char *const eos_names[] = { "<|endoftext|>", "</s>", "<|end_of_text|>", NULL };
	struct djn_tokenizer *tok = NULL;
	struct vocab v = { 0 };
	struct merges m = { 0 };
	const cJSON *model;
	const char *type, *pre = NULL, *end = NULL;
	cJSON *root;
	uint8_t *buf;
	size_t size;

	if (djn_tok_read_file(path, &buf, &size, err))
		return NULL;
	root = cJSON_ParseWithLengthOpts((const char *)buf, size, &end, false);
	if (!root) {
		djn_err_set(err, DJN_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", path,
			    end && end >= (const char *)buf ? (size_t)(end - (const char *)buf) : 0);
		goto out_free_buf;
	}
	model = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (!cJSON_IsObject(model)) {
		djn_err_set(err, DJN_ERR_FORMAT, "%s: no 'model' object", path);
		goto out_free_json;
	}
	type = json_str(model, "type");
	if (type && strcmp(type, "BPE")) {
		djn_err_set(err, DJN_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (BPE only)",
			    path, type);
		goto out_free_json;
	}
	if (pick_pre(path, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &pre, err))
		goto out_free_json;
	if (read_vocab(path, model, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &v, err))
		goto out_free_vocab;
	if (read_merges(path, model, &m, err))
		goto out_free_merges;
	/* djn_tok_bpe_build names `path` in its own messages */
	tok = djn_tok_bpe_build(path, v.n, v.pieces, v.lens, v.types, m.n, m.left, m.llen,
				m.right, m.rlen, find_named(&v, bos_names), find_named(&v, eos_names),
				pre, err);
out_free_merges:
	free(m.left);
	free(m.right);
	free(m.llen);
	free(m.rlen);
out_free_vocab:
	free(v.pieces);
	free(v.lens);
	free(v.types);
out_free_json:
	cJSON_Delete(root);
out_free_buf:
	free(buf);
	return tok;
}
