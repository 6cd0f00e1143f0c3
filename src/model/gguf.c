/* gguf.c - load a llama.cpp GGUF (v2, v3) llama model: validate the whole file, then map its weights. */

/* Layout, little-endian: "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv
 * entries (string key, u32 value type, value); n_tensors infos (string name,
 * u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset);
 * padding to general.alignment; then the data, which offsets count from.
 * A string is a u64 length and its bytes; an array is a u32 element type, a
 * u64 count and the elements.  Everything is checked before the model is
 * built, so nothing after gguf_parse() needs a bounds check. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/model.h"
#include "model/mapping.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 256 /* ggml allows 63; be generous, but bounded */
#define GGUF_MAX_DEPTH 8  /* array nesting: nobody writes more; stops stack-eating files */

enum gguf_vtype {
	GGUF_U8,
	GGUF_I8,
	GGUF_U16,
	GGUF_I16,
	GGUF_U32,
	GGUF_I32,
	GGUF_F32,
	GGUF_BOOL,
	GGUF_STR,
	GGUF_ARR,
	GGUF_U64,
	GGUF_I64,
	GGUF_F64,
	GGUF_NVTYPES
};

static const struct {
	const char *name;
	size_t size; /* 0: variable (string, array) */
} vtypes[GGUF_NVTYPES] = {
	[GGUF_U8] = { "uint8", 1 },     [GGUF_I8] = { "int8", 1 },
	[GGUF_U16] = { "uint16", 2 },   [GGUF_I16] = { "int16", 2 },
	[GGUF_U32] = { "uint32", 4 },   [GGUF_I32] = { "int32", 4 },
	[GGUF_F32] = { "float32", 4 },  [GGUF_BOOL] = { "bool", 1 },
	[GGUF_STR] = { "string", 0 },   [GGUF_ARR] = { "array", 0 },
	[GGUF_U64] = { "uint64", 8 },   [GGUF_I64] = { "int64", 8 },
	[GGUF_F64] = { "float64", 8 },
};

/* ggml's type ids, so that an unsupported tensor can be named in the error. */
static const char *const ggml_type_names[] = {
	[0] = "F32",      [1] = "F16",     [2] = "Q4_0",     [3] = "Q4_1",
	[6] = "Q5_0",     [7] = "Q5_1",    [8] = "Q8_0",     [9] = "Q8_1",
	[10] = "Q2_K",    [11] = "Q3_K",   [12] = "Q4_K",    [13] = "Q5_K",
	[14] = "Q6_K",    [15] = "Q8_K",   [16] = "IQ2_XXS", [17] = "IQ2_XS",
	[18] = "IQ3_XXS", [19] = "IQ1_S",  [20] = "IQ4_NL",  [21] = "IQ3_S",
	[22] = "IQ2_S",   [23] = "IQ4_XS", [24] = "I8",      [25] = "I16",
	[26] = "I32",     [27] = "I64",    [28] = "F64",     [29] = "IQ1_M",
	[30] = "BF16",    [34] = "TQ1_0",  [35] = "TQ2_0",   [39] = "MXFP4",
};

struct gguf_kv {
	const char *key; /* into the mapping, not NUL-terminated */
	size_t key_len;
	size_t at;       /* byte where the entry starts, for messages */
	uint32_t type;
	size_t val;      /* byte where the value starts */
	uint32_t arr_type;
	uint64_t arr_n;
	size_t arr_val;  /* byte of the first element */
};

struct gguf_tensor {
	const char *name; /* NUL-terminated, in gguf.names (which the model takes) */
	size_t name_len, name_off;
	size_t at;
	uint32_t n_dims;
	int64_t ne[GGUF_MAX_DIMS]; /* ne[0] innermost; unused ones are 1 */
	uint32_t ggml_type;
	enum djn_dtype dtype;
	uint64_t offset; /* from the start of the data section */
	uint64_t n_bytes;
};

struct gguf {
	const char *path;
	const uint8_t *p;
	size_t size, off;
	struct djn_err *err;
	char ctx[160]; /* what is being read, for "truncated ..." messages */
	uint32_t version, alignment;
	size_t data_off;
	struct gguf_kv *kv; /* sorted by key */
	size_t n_kv;
	struct gguf_tensor *t; /* in file order */
	struct gguf_tensor **by_name;
	struct gguf_tensor **by_offset;
	size_t n_tensors;
	char *names;
};

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* A name from the file, made safe to print: control bytes become '?', long
 * names are cut.  Fuzzed files put anything there. */
static const char *printable(char *buf, size_t bufsz, const char *s, size_t n)
{
	size_t i, max = bufsz - 4;

	for (i = 0; i < n && i < max; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	if (i < n)
		memcpy(buf + i, "...", 3), i += 3;
	buf[i] = '\0';
	return buf;
}

#define PNAME(buf, s, n) printable(buf, sizeof(buf), (s), (n))

/* --- reading with bounds checks -------------------------------------------- */

static enum djn_status need(struct gguf *g, uint64_t n)
{
	if (n <= g->size - g->off)
		return DJN_OK;
	return djn_err_set(g->err, DJN_ERR_FORMAT,
			   "%s: truncated %s (needs %llu bytes at byte %zu, file has %zu)",
			   g->path, g->ctx, (unsigned long long)n, g->off, g->size);
}

static enum djn_status rd_u32(struct gguf *g, uint32_t *v)
{
	enum djn_status st = need(g, 4);

	if (st)
		return st;
	*v = le32(g->p + g->off);
	g->off += 4;
	return DJN_OK;
}

static enum djn_status rd_u64(struct gguf *g, uint64_t *v)
{
	enum djn_status st = need(g, 8);

	if (st)
		return st;
	*v = le64(g->p + g->off);
	g->off += 8;
	return DJN_OK;
}

static enum djn_status rd_str(struct gguf *g, const char **s, size_t *len)
{
	size_t at = g->off;
	uint64_t n;
	enum djn_status st = rd_u64(g, &n);

	if (st)
		return st;
	if (n > g->size - g->off)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: string of %s at byte %zu runs past the end of the file "
				   "(length %llu, %zu bytes left)",
				   g->path, g->ctx, at, (unsigned long long)n, g->size - g->off);
	*s = (const char *)g->p + g->off;
	*len = (size_t)n;
	g->off += (size_t)n;
	return DJN_OK;
}

/* Walk over one value of `type`, checking that all of it lies in the file.
 * Each element costs at least one byte, so the walk is bounded by the file's
 * size however large the counts claim to be. */
static enum djn_status skip_value(struct gguf *g, uint32_t type, int depth)
{
	enum djn_status st;
	uint32_t et;
	uint64_t n, min;
	size_t at;
	const char *s;
	size_t len;

	if (type >= GGUF_NVTYPES)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: %s has unknown value type %u (at byte %zu)", g->path,
				   g->ctx, type, g->off);
	if (type == GGUF_STR)
		return rd_str(g, &s, &len);
	if (type != GGUF_ARR) {
		if ((st = need(g, vtypes[type].size)))
			return st;
		g->off += vtypes[type].size;
		return DJN_OK;
	}
	if (depth >= GGUF_MAX_DEPTH)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: %s nests arrays more than %d deep (at byte %zu)", g->path,
				   g->ctx, GGUF_MAX_DEPTH, g->off);
	at = g->off;
	if ((st = rd_u32(g, &et)) || (st = rd_u64(g, &n)))
		return st;
	if (et >= GGUF_NVTYPES)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: %s is an array of unknown type %u (at byte %zu)", g->path,
				   g->ctx, et, at);
	min = vtypes[et].size ? vtypes[et].size : et == GGUF_STR ? 8 : 12;
	if (n > (g->size - g->off) / min)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: %s is an array of %llu %s values at byte %zu, more than "
				   "the file can hold (%zu bytes left)",
				   g->path, g->ctx, (unsigned long long)n, vtypes[et].name, at,
				   g->size - g->off);
	if (vtypes[et].size) {
		g->off += (size_t)(n * min);
		return DJN_OK;
	}
	for (uint64_t i = 0; i < n; i++)
		if ((st = skip_value(g, et, depth + 1)))
			return st;
	return DJN_OK;
}

/* --- header, metadata, tensor infos ---------------------------------------- */

static int kv_cmp(const void *a, const void *b)
{
	const struct gguf_kv *x = a, *y = b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, n);

	if (c)
		return c;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static enum djn_status parse_header(struct gguf *g, uint64_t *n_tensors, uint64_t *n_kv)
{
	enum djn_status st;
	char magic[8];

	snprintf(g->ctx, sizeof(g->ctx), "header");
	if (g->size >= 4 && memcmp(g->p, "GGUF", 4)) {
		printable(magic, sizeof(magic), (const char *)g->p, 4);
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: not a gguf file (magic is '%s', expected 'GGUF')",
				   g->path, magic);
	}
	if ((st = need(g, 4)))
		return st;
	g->off = 4;
	if ((st = rd_u32(g, &g->version)))
		return st;
	if (g->version == 0x02000000 || g->version == 0x03000000)
		return djn_err_set(g->err, DJN_ERR_UNSUPPORTED,
				   "%s: gguf file is big-endian (only little-endian files are supported)",
				   g->path);
	if (g->version != 2 && g->version != 3)
		return djn_err_set(g->err, DJN_ERR_UNSUPPORTED,
				   "%s: gguf version %u not supported (versions 2 and 3 are)",
				   g->path, g->version);
	if ((st = rd_u64(g, n_tensors)) || (st = rd_u64(g, n_kv)))
		return st;
	/* The smallest entry is a key of length 0, a type and a one-byte value. */
	if (*n_kv > (g->size - g->off) / 13)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: truncated or corrupt header (claims %llu metadata keys, "
				   "file has %zu bytes)",
				   g->path, (unsigned long long)*n_kv, g->size);
	return DJN_OK;
}

static enum djn_status parse_kv(struct gguf *g, uint64_t n_kv)
{
	enum djn_status st;
	char kb[96];

	g->kv = djn_xcalloc(n_kv ? (size_t)n_kv : 1, sizeof(*g->kv));
	for (size_t i = 0; i < n_kv; i++) {
		struct gguf_kv *kv = &g->kv[i];

		kv->at = g->off;
		snprintf(g->ctx, sizeof(g->ctx), "metadata key #%zu", i);
		if ((st = rd_str(g, &kv->key, &kv->key_len)))
			return st;
		snprintf(g->ctx, sizeof(g->ctx), "key '%s'", PNAME(kb, kv->key, kv->key_len));
		if ((st = rd_u32(g, &kv->type)))
			return st;
		kv->val = g->off;
		if ((st = skip_value(g, kv->type, 0)))
			return st;
		if (kv->type == GGUF_ARR) {
			kv->arr_type = le32(g->p + kv->val);
			kv->arr_n = le64(g->p + kv->val + 4);
			kv->arr_val = kv->val + 12;
		}
		g->n_kv++;
	}
	qsort(g->kv, g->n_kv, sizeof(*g->kv), kv_cmp);
	for (size_t i = 1; i < g->n_kv; i++)
		if (!kv_cmp(&g->kv[i - 1], &g->kv[i]))
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: key '%s' appears twice (at bytes %zu and %zu)",
					   g->path, PNAME(kb, g->kv[i].key, g->kv[i].key_len),
					   g->kv[i - 1].at < g->kv[i].at ? g->kv[i - 1].at : g->kv[i].at,
					   g->kv[i - 1].at < g->kv[i].at ? g->kv[i].at : g->kv[i - 1].at);
	return DJN_OK;
}

static const struct gguf_kv *find_kv(const struct gguf *g, const char *key)
{
	struct gguf_kv k = { .key = key, .key_len = strlen(key) };

	return g->n_kv ? bsearch(&k, g->kv, g->n_kv, sizeof(*g->kv), kv_cmp) : NULL;
}

static bool ggml_to_dtype(uint32_t t, enum djn_dtype *out)
{
	switch (t) {
	case 0: *out = DJN_DTYPE_F32; return true;
	case 1: *out = DJN_DTYPE_F16; return true;
	case 2: *out = DJN_DTYPE_Q4_0; return true;
	case 3: *out = DJN_DTYPE_Q4_1; return true;
	case 8: *out = DJN_DTYPE_Q8_0; return true;
	case 30: *out = DJN_DTYPE_BF16; return true;
	}
	return false;
}

static enum djn_status parse_tensor_info(struct gguf *g, size_t i, size_t *names_len)
{
	struct gguf_tensor *t = &g->t[i];
	enum djn_status st;
	const char *name;
	size_t len;
	uint64_t ne, n_elem = 1;
	char nb[96];

	t->at = g->off;
	snprintf(g->ctx, sizeof(g->ctx), "tensor info #%zu", i);
	if ((st = rd_str(g, &name, &len)))
		return st;
	PNAME(nb, name, len);
	if (len == 0 || len >= GGUF_MAX_NAME || memchr(name, '\0', len))
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: tensor #%zu at byte %zu has a bad name '%s' (%s)", g->path,
				   i, t->at, nb,
				   len == 0 ? "empty" : len >= GGUF_MAX_NAME ? "too long" : "contains a nul byte");
	/* The name is copied later, once the pool has its final size. */
	t->name = name;
	t->name_len = len;
	t->name_off = *names_len;
	*names_len += len + 1;
	snprintf(g->ctx, sizeof(g->ctx), "tensor info '%s'", nb);
	if ((st = rd_u32(g, &t->n_dims)))
		return st;
	if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' has %u dimensions (must be 1..%d, at byte %zu)",
				   g->path, nb, t->n_dims, GGUF_MAX_DIMS, t->at);
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (uint32_t d = 0; d < t->n_dims; d++) {
		if ((st = rd_u64(g, &ne)))
			return st;
		if (ne == 0 || ne > INT64_MAX)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: tensor '%s' dimension %u is %llu (must be positive)",
					   g->path, nb, d, (unsigned long long)ne);
		/* No tensor format packs more than two elements in a byte. */
		if (ne > 2 * (uint64_t)g->size / n_elem)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: tensor '%s' has more elements than the file can hold "
					   "(file has %zu bytes)", g->path, nb, g->size);
		n_elem *= ne;
		t->ne[d] = (int64_t)ne;
	}
	if ((st = rd_u32(g, &t->ggml_type)))
		return st;
	if (!ggml_to_dtype(t->ggml_type, &t->dtype)) {
		const char *tn = t->ggml_type < sizeof(ggml_type_names) / sizeof(ggml_type_names[0])
					 ? ggml_type_names[t->ggml_type] : NULL;
		return djn_err_set(g->err, DJN_ERR_UNSUPPORTED,
				   "%s: tensor '%s' has type %s (%u), not supported "
				   "(djinn reads F32, F16, BF16, Q8_0, Q4_0, Q4_1)",
				   g->path, nb, tn ? tn : "unknown", t->ggml_type);
	}
	if (t->ne[0] % djn_dtype_block(t->dtype))
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' has %lld columns, not a multiple of %s's block of %d",
				   g->path, nb, (long long)t->ne[0], djn_dtype_name(t->dtype),
				   djn_dtype_block(t->dtype));
	if ((st = rd_u64(g, &t->offset)))
		return st;
	t->n_bytes = n_elem / (uint64_t)t->ne[0] * djn_dtype_row_bytes(t->dtype, t->ne[0]);
	return DJN_OK;
}

static int tensor_name_cmp(const void *a, const void *b)
{
	return strcmp((*(struct gguf_tensor *const *)a)->name,
		      (*(struct gguf_tensor *const *)b)->name);
}

static int tensor_offset_cmp(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(struct gguf_tensor *const *)b;

	return (x->offset > y->offset) - (x->offset < y->offset);
}

static enum djn_status parse_alignment(struct gguf *g)
{
	const struct gguf_kv *kv = find_kv(g, "general.alignment");
	uint32_t a;

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (!kv)
		return DJN_OK;
	if (kv->type != GGUF_U32)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: key 'general.alignment' has type %s (expected uint32)",
				   g->path, vtypes[kv->type].name);
	a = le32(g->p + kv->val);
	if (a == 0 || (a & (a - 1)))
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: key 'general.alignment' is %u (must be a power of two)",
				   g->path, a);
	g->alignment = a;
	return DJN_OK;
}

/* Every tensor must lie inside the file, aligned, and apart from the others:
 * after this, any weight can be read without another check. */
static enum djn_status check_tensor_data(struct gguf *g)
{
	size_t data_size = g->size - g->data_off;

	for (size_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->t[i];

		if (t->offset % g->alignment)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: tensor '%s' data offset %llu is not aligned "
					   "(not a multiple of %u)",
					   g->path, t->name, (unsigned long long)t->offset, g->alignment);
		if (t->offset > data_size || t->n_bytes > data_size - t->offset)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: tensor '%s' data (%llu bytes at data offset %llu) runs "
					   "past the end of the file (data starts at byte %zu, file has %zu)",
					   g->path, t->name, (unsigned long long)t->n_bytes,
					   (unsigned long long)t->offset, g->data_off, g->size);
	}
	g->by_offset = djn_xmalloc(sizeof(*g->by_offset) * (g->n_tensors ? g->n_tensors : 1));
	for (size_t i = 0; i < g->n_tensors; i++)
		g->by_offset[i] = &g->t[i];
	qsort(g->by_offset, g->n_tensors, sizeof(*g->by_offset), tensor_offset_cmp);
	for (size_t i = 1; i < g->n_tensors; i++) {
		const struct gguf_tensor *a = g->by_offset[i - 1], *b = g->by_offset[i];

		if (a->offset + a->n_bytes > b->offset)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: tensors '%s' and '%s' overlap (bytes %llu..%llu and %llu..%llu)",
					   g->path, a->name, b->name,
					   (unsigned long long)(g->data_off + a->offset),
					   (unsigned long long)(g->data_off + a->offset + a->n_bytes),
					   (unsigned long long)(g->data_off + b->offset),
					   (unsigned long long)(g->data_off + b->offset + b->n_bytes));
	}
	return DJN_OK;
}

static enum djn_status parse_tensors(struct gguf *g, uint64_t n_tensors)
{
	enum djn_status st;
	size_t names_len = 0;

	/* The smallest info: empty name, one dimension, type, offset. */
	if (n_tensors > (g->size - g->off) / 32)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: truncated or corrupt header (claims %llu tensors, "
				   "%zu bytes left after the metadata)",
				   g->path, (unsigned long long)n_tensors, g->size - g->off);
	g->t = djn_xcalloc(n_tensors ? (size_t)n_tensors : 1, sizeof(*g->t));
	for (size_t i = 0; i < n_tensors; i++) {
		if ((st = parse_tensor_info(g, i, &names_len)))
			return st;
		g->n_tensors++;
	}
	g->names = djn_xmalloc(names_len ? names_len : 1);
	for (size_t i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *t = &g->t[i];

		memcpy(g->names + t->name_off, t->name, t->name_len);
		g->names[t->name_off + t->name_len] = '\0';
		t->name = g->names + t->name_off;
	}
	g->by_name = djn_xmalloc(sizeof(*g->by_name) * (g->n_tensors ? g->n_tensors : 1));
	for (size_t i = 0; i < g->n_tensors; i++)
		g->by_name[i] = &g->t[i];
	qsort(g->by_name, g->n_tensors, sizeof(*g->by_name), tensor_name_cmp);
	for (size_t i = 1; i < g->n_tensors; i++) {
		const struct gguf_tensor *a = g->by_name[i - 1], *b = g->by_name[i];

		if (!strcmp(a->name, b->name)) {
			char nb[96];
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: tensor '%s' appears twice (infos at bytes %zu and %zu)",
					   g->path, PNAME(nb, a->name, strlen(a->name)),
					   a->at < b->at ? a->at : b->at, a->at < b->at ? b->at : a->at);
		}
	}

	g->data_off = g->off;
	if (g->data_off % g->alignment) {
		size_t pad = g->alignment - g->data_off % g->alignment;
		if (pad > g->size - g->data_off && g->n_tensors)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: tensor data would start at byte %llu, past the end of "
					   "the file (file has %zu bytes)", g->path,
					   (unsigned long long)g->data_off + pad, g->size);
		g->data_off = pad > g->size - g->data_off ? g->size : g->data_off + pad;
	}
	return check_tensor_data(g);
}

static const struct gguf_tensor *find_tensor(const struct gguf *g, const char *name)
{
	struct gguf_tensor k = { .name = name }, *kp = &k, **r;

	if (!g->n_tensors)
		return NULL;
	r = bsearch(&kp, g->by_name, g->n_tensors, sizeof(*g->by_name), tensor_name_cmp);
	return r ? *r : NULL;
}

static void gguf_release(struct gguf *g)
{
	free(g->kv);
	free(g->t);
	free(g->by_name);
	free(g->by_offset);
	free(g->names);
}

static enum djn_status gguf_parse(struct gguf *g)
{
	enum djn_status st;
	uint64_t n_tensors, n_kv;

	if ((st = parse_header(g, &n_tensors, &n_kv)) || (st = parse_kv(g, n_kv)) ||
	    (st = parse_alignment(g)))
		return st;
	return parse_tensors(g, n_tensors);
}

/* --- typed metadata -------------------------------------------------------- */

static enum djn_status missing_key(struct gguf *g, const char *key)
{
	return djn_err_set(g->err, DJN_ERR_FORMAT, "%s: missing key '%s'", g->path, key);
}

static enum djn_status wrong_type(struct gguf *g, const struct gguf_kv *kv,
				  const char *key, const char *expected)
{
	if (kv->type == GGUF_ARR && kv->arr_type < GGUF_NVTYPES)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: key '%s' is an array of %s (expected %s)", g->path, key,
				   vtypes[kv->arr_type].name, expected);
	return djn_err_set(g->err, DJN_ERR_FORMAT, "%s: key '%s' has type %s (expected %s)",
			   g->path, key, vtypes[kv->type].name, expected);
}

/* Any integer type: converters disagree on uint32 vs int32 vs uint64.
 * Leaves *out alone when the key is absent and not required. */
static enum djn_status get_int(struct gguf *g, const char *key, bool required,
			       int64_t lo, int64_t hi, int64_t *out)
{
	const struct gguf_kv *kv = find_kv(g, key);
	const uint8_t *p;
	int64_t v;

	if (!kv)
		return required ? missing_key(g, key) : DJN_OK;
	p = g->p + kv->val;
	switch (kv->type) {
	case GGUF_U8: v = p[0]; break;
	case GGUF_I8: v = (int8_t)p[0]; break;
	case GGUF_U16: v = le16(p); break;
	case GGUF_I16: v = (int16_t)le16(p); break;
	case GGUF_U32: v = le32(p); break;
	case GGUF_I32: v = (int32_t)le32(p); break;
	case GGUF_I64: v = (int64_t)le64(p); break;
	case GGUF_U64:
		if (le64(p) > (uint64_t)hi)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: key '%s' is %llu (must be in %lld..%lld)", g->path,
					   key, (unsigned long long)le64(p), (long long)lo, (long long)hi);
		v = (int64_t)le64(p);
		break;
	default:
		return wrong_type(g, kv, key, "an integer");
	}
	if (v < lo || v > hi)
		return djn_err_set(g->err, DJN_ERR_FORMAT, "%s: key '%s' is %lld (must be in %lld..%lld)",
				   g->path, key, (long long)v, (long long)lo, (long long)hi);
	*out = v;
	return DJN_OK;
}

static enum djn_status get_int32(struct gguf *g, const char *key, bool required,
				 int lo, int hi, int *out)
{
	int64_t v = *out;
	enum djn_status st = get_int(g, key, required, lo, hi, &v);

	*out = (int)v;
	return st;
}

static enum djn_status get_float(struct gguf *g, const char *key, bool required, float *out)
{
	const struct gguf_kv *kv = find_kv(g, key);
	uint32_t u;
	uint64_t w;
	double d;
	float f;

	if (!kv)
		return required ? missing_key(g, key) : DJN_OK;
	if (kv->type == GGUF_F32) {
		u = le32(g->p + kv->val);
		memcpy(&f, &u, 4);
		*out = f;
	} else if (kv->type == GGUF_F64) {
		w = le64(g->p + kv->val);
		memcpy(&d, &w, 8);
		*out = (float)d;
	} else {
		return wrong_type(g, kv, key, "a float");
	}
	return DJN_OK;
}

static enum djn_status get_bool(struct gguf *g, const char *key, bool *out)
{
	const struct gguf_kv *kv = find_kv(g, key);

	if (!kv)
		return DJN_OK;
	if (kv->type != GGUF_BOOL)
		return wrong_type(g, kv, key, "bool");
	*out = g->p[kv->val] != 0;
	return DJN_OK;
}

/* *s (not NUL-terminated) stays NULL when the key is absent and not required. */
static enum djn_status get_str(struct gguf *g, const char *key, bool required,
			       const char **s, size_t *len)
{
	const struct gguf_kv *kv = find_kv(g, key);

	*s = NULL;
	*len = 0;
	if (!kv)
		return required ? missing_key(g, key) : DJN_OK;
	if (kv->type != GGUF_STR)
		return wrong_type(g, kv, key, "a string");
	*len = (size_t)le64(g->p + kv->val);
	*s = (const char *)g->p + kv->val + 8;
	return DJN_OK;
}

static bool str_is(const char *s, size_t len, const char *lit)
{
	return s && len == strlen(lit) && !memcmp(s, lit, len);
}

static char *str_dup(const char *s, size_t len)
{
	char *r = djn_xmalloc(len + 1);

	memcpy(r, s, len);
	r[len] = '\0';
	return r;
}

/* An array of `et`; NULL when absent and not required. */
static enum djn_status get_arr(struct gguf *g, const char *key, bool required,
			       uint32_t et, const char *expected, const struct gguf_kv **out)
{
	const struct gguf_kv *kv = find_kv(g, key);

	*out = NULL;
	if (!kv)
		return required ? missing_key(g, key) : DJN_OK;
	if (kv->type != GGUF_ARR || kv->arr_type != et)
		return wrong_type(g, kv, key, expected);
	*out = kv;
	return DJN_OK;
}

/* --- tokenizer ------------------------------------------------------------- */

/* Strings of an already validated array, pointing into the mapping. */
static enum djn_status str_array(struct gguf *g, const struct gguf_kv *kv, const char *key,
				 const char ***strs, uint32_t **lens)
{
	size_t off = kv->arr_val;

	*strs = djn_xmalloc(sizeof(**strs) * (size_t)kv->arr_n);
	*lens = djn_xmalloc(sizeof(**lens) * (size_t)kv->arr_n);
	for (uint64_t i = 0; i < kv->arr_n; i++) {
		uint64_t len = le64(g->p + off);

		if (len > UINT32_MAX)
			return djn_err_set(g->err, DJN_ERR_FORMAT,
					   "%s: key '%s' entry %llu is %llu bytes long (too long)",
					   g->path, key, (unsigned long long)i, (unsigned long long)len);
		(*strs)[i] = (const char *)g->p + off + 8;
		(*lens)[i] = (uint32_t)len;
		off += 8 + (size_t)len;
	}
	return DJN_OK;
}

static enum djn_status load_tokenizer(struct gguf *g, struct djn_model *m, int *n_vocab)
{
	const struct gguf_kv *tokens, *scores_kv, *types_kv, *merges_kv = NULL;
	const char **pieces = NULL, **merges = NULL, *model, *pre_s;
	uint32_t *lens = NULL, *merge_lens = NULL;
	float *scores = NULL;
	int32_t *types = NULL;
	char *pre = NULL, mb[96];
	size_t model_len, pre_len;
	int n, bos = -1, eos = -1;
	bool add_bos;
	enum djn_status st;

	*n_vocab = 0;
	if ((st = get_str(g, "tokenizer.ggml.model", false, &model, &model_len)))
		return st;
	if (!model)
		return DJN_OK; /* no tokenizer in the file: one may be attached later */
	if (!str_is(model, model_len, "llama") && !str_is(model, model_len, "gpt2"))
		return djn_err_set(g->err, DJN_ERR_UNSUPPORTED,
				   "%s: tokenizer.ggml.model '%s' not supported (djinn reads 'llama' and 'gpt2')",
				   g->path, PNAME(mb, model, model_len));
	if ((st = get_arr(g, "tokenizer.ggml.tokens", true, GGUF_STR, "an array of strings",
			  &tokens)))
		return st;
	if (tokens->arr_n == 0 || tokens->arr_n > (1 << 22))
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: key 'tokenizer.ggml.tokens' has %llu tokens (must be 1..%d)",
				   g->path, (unsigned long long)tokens->arr_n, 1 << 22);
	n = (int)tokens->arr_n;
	if ((st = get_arr(g, "tokenizer.ggml.scores", false, GGUF_F32, "an array of float32",
			  &scores_kv)) ||
	    (st = get_arr(g, "tokenizer.ggml.token_type", false, GGUF_I32, "an array of int32",
			  &types_kv)))
		return st;
	if (scores_kv && scores_kv->arr_n != tokens->arr_n)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: key 'tokenizer.ggml.scores' has %llu entries (tokenizer.ggml.tokens has %d)",
				   g->path, (unsigned long long)scores_kv->arr_n, n);
	if (types_kv && types_kv->arr_n != tokens->arr_n)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: key 'tokenizer.ggml.token_type' has %llu entries (tokenizer.ggml.tokens has %d)",
				   g->path, (unsigned long long)types_kv->arr_n, n);
	if ((st = get_int32(g, "tokenizer.ggml.bos_token_id", false, 0, n - 1, &bos)) ||
	    (st = get_int32(g, "tokenizer.ggml.eos_token_id", false, 0, n - 1, &eos)))
		return st;
	if ((st = get_str(g, "tokenizer.ggml.pre", false, &pre_s, &pre_len)))
		return st;

	if ((st = str_array(g, tokens, "tokenizer.ggml.tokens", &pieces, &lens)))
		goto out_free;
	if (scores_kv) {
		scores = djn_xmalloc(sizeof(*scores) * (size_t)n);
		for (int i = 0; i < n; i++) {
			uint32_t u = le32(g->p + scores_kv->arr_val + 4 * (size_t)i);
			memcpy(&scores[i], &u, 4);
		}
	}
	if (types_kv) {
		types = djn_xmalloc(sizeof(*types) * (size_t)n);
		for (int i = 0; i < n; i++) {
			types[i] = (int32_t)le32(g->p + types_kv->arr_val + 4 * (size_t)i);
			if (types[i] < 0 || types[i] > DJN_TOKT_BYTE) {
				st = djn_err_set(g->err, DJN_ERR_FORMAT,
						 "%s: key 'tokenizer.ggml.token_type' gives token %d type %d (must be 0..%d)",
						 g->path, i, types[i], DJN_TOKT_BYTE);
				goto out_free;
			}
		}
	}

	if (str_is(model, model_len, "llama")) {
		add_bos = true; /* llama.cpp's default for SentencePiece vocabularies */
		m->tok = djn_tok_new_spm(n, pieces, lens, scores, types, bos, eos, true, g->err);
	} else {
		if ((st = get_arr(g, "tokenizer.ggml.merges", true, GGUF_STR,
				  "an array of strings", &merges_kv)))
			goto out_free;
		if (merges_kv->arr_n > INT_MAX) {
			st = djn_err_set(g->err, DJN_ERR_FORMAT,
					 "%s: key 'tokenizer.ggml.merges' has %llu entries (too many)",
					 g->path, (unsigned long long)merges_kv->arr_n);
			goto out_free;
		}
		if ((st = str_array(g, merges_kv, "tokenizer.ggml.merges", &merges, &merge_lens)))
			goto out_free;
		if (pre_s)
			pre = str_dup(pre_s, pre_len);
		add_bos = false;
		m->tok = djn_tok_new_bpe(n, pieces, lens, types, (int)merges_kv->arr_n, merges,
					 merge_lens, bos, eos, pre, g->err);
	}
	if (!m->tok) {
		/* The tokenizer calls its arguments invalid; here they came from the
		 * file, so the file is malformed.  And say which file it was. */
		st = DJN_ERR_FORMAT;
		if (g->err) {
			if (g->err->code != DJN_ERR_INVALID)
				st = g->err->code;
			g->err->code = st;
			if (strncmp(g->err->msg, g->path, strlen(g->path)))
				djn_err_prefix(g->err, "%s", g->path);
		}
		goto out_free;
	}
	if ((st = get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos)))
		goto out_free;
	djn_tok_set_add_bos(m->tok, add_bos);
	*n_vocab = n;
	st = DJN_OK;
out_free:
	free(pieces);
	free(lens);
	free(scores);
	free(types);
	free(merges);
	free(merge_lens);
	free(pre);
	return st;
}

/* --- config and weights ---------------------------------------------------- */

static enum djn_status load_config(struct gguf *g, struct djn_config *c, int tok_vocab)
{
	enum djn_status st;
	int vocab = 0, rope_dim = 0, head_dim = 0, value_dim = 0;
	const struct gguf_tensor *embd;
	const char *scaling;
	size_t scaling_len;
	char sb[96];

	memset(c, 0, sizeof(*c));
	c->arch = DJN_ARCH_LLAMA;
	/* llama.cpp's converter permutes Q and K so that GGUF llama files rotate
	 * adjacent pairs, as llama2.c does. */
	c->rope_style = DJN_ROPE_INTERLEAVED;
	c->rope_theta = 10000.0f;
	if ((st = get_int32(g, "llama.block_count", true, 1, INT_MAX, &c->n_layer)) ||
	    (st = get_int32(g, "llama.embedding_length", true, 1, INT_MAX, &c->dim)) ||
	    (st = get_int32(g, "llama.feed_forward_length", true, 1, INT_MAX, &c->hidden_dim)) ||
	    (st = get_int32(g, "llama.attention.head_count", true, 1, INT_MAX, &c->n_head)) ||
	    (st = get_int32(g, "llama.attention.head_count_kv", false, 1, INT_MAX, &c->n_kv_head)) ||
	    (st = get_int32(g, "llama.context_length", true, 1, INT_MAX, &c->seq_len)) ||
	    (st = get_float(g, "llama.attention.layer_norm_rms_epsilon", true, &c->norm_eps)) ||
	    (st = get_float(g, "llama.rope.freq_base", false, &c->rope_theta)) ||
	    (st = get_int32(g, "llama.rope.dimension_count", false, 1, INT_MAX, &rope_dim)) ||
	    (st = get_int32(g, "llama.attention.key_length", false, 1, INT_MAX, &head_dim)) ||
	    (st = get_int32(g, "llama.attention.value_length", false, 1, INT_MAX, &value_dim)) ||
	    (st = get_int32(g, "llama.vocab_size", false, 1, INT_MAX, &vocab)) ||
	    (st = get_str(g, "llama.rope.scaling.type", false, &scaling, &scaling_len)))
		return st;
	if (scaling && !str_is(scaling, scaling_len, "none"))
		return djn_err_set(g->err, DJN_ERR_UNSUPPORTED,
				   "%s: llama.rope.scaling.type '%s' not supported (only 'none' is)",
				   g->path, PNAME(sb, scaling, scaling_len));
	if (value_dim && head_dim && value_dim != head_dim)
		return djn_err_set(g->err, DJN_ERR_UNSUPPORTED,
				   "%s: attention key length %d differs from value length %d (not supported)",
				   g->path, head_dim, value_dim);
	c->head_dim = head_dim;
	if (vocab && tok_vocab && vocab != tok_vocab)
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: key 'llama.vocab_size' is %d but the tokenizer has %d tokens",
				   g->path, vocab, tok_vocab);
	if (!vocab)
		vocab = tok_vocab;
	if (!vocab && (embd = find_tensor(g, "token_embd.weight")) && embd->ne[1] <= INT_MAX)
		vocab = (int)embd->ne[1]; /* no vocabulary anywhere else: trust the embedding */
	c->vocab_size = vocab;
	if ((st = djn_config_validate(c, g->path, g->err)))
		return st;
	if (rope_dim && rope_dim != c->head_dim)
		return djn_err_set(g->err, DJN_ERR_UNSUPPORTED,
				   "%s: llama.rope.dimension_count is %d but head_dim is %d "
				   "(partial rotary embeddings not supported)",
				   g->path, rope_dim, c->head_dim);
	return DJN_OK;
}

static enum djn_status map_weight(struct gguf *g, struct djn_weight *w, const char *name,
				  bool required, int n_dims)
{
	const struct gguf_tensor *t = find_tensor(g, name);

	if (!t)
		return required ? djn_err_set(g->err, DJN_ERR_FORMAT, "%s: missing tensor '%s'",
					      g->path, name)
				: DJN_OK;
	if (t->ne[2] != 1 || t->ne[3] != 1 || (n_dims == 1 && t->ne[1] != 1))
		return djn_err_set(g->err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld] (expected %d-d)",
				   g->path, name, (long long)t->ne[0], (long long)t->ne[1],
				   (long long)t->ne[2], (long long)t->ne[3], n_dims);
	w->dtype = t->dtype;
	w->cols = t->ne[0];
	w->rows = t->ne[1];
	w->host = g->p + g->data_off + t->offset;
	w->dev = NULL;
	w->name = t->name;
	DJN_ASSERT(djn_weight_bytes(w) == t->n_bytes);
	return DJN_OK;
}

static enum djn_status map_weights(struct gguf *g, struct djn_model *m)
{
	enum djn_status st;
	char name[64];

#define W(w, req, nd, ...)                                                    \
	do {                                                                  \
		snprintf(name, sizeof(name), __VA_ARGS__);                    \
		if ((st = map_weight(g, (w), name, (req), (nd))))             \
			return st;                                            \
	} while (0)
	W(&m->tok_embd, true, 2, "token_embd.weight");
	W(&m->final_norm, true, 1, "output_norm.weight");
	W(&m->output, false, 2, "output.weight");
	if (!djn_weight_present(&m->output)) {
		m->output = m->tok_embd;
		m->cfg.tied_embeddings = true;
	}
	m->layers = djn_xcalloc((size_t)m->cfg.n_layer, sizeof(*m->layers));
	for (int l = 0; l < m->cfg.n_layer; l++) {
		struct djn_layer *L = &m->layers[l];

		W(&L->attn_norm, true, 1, "blk.%d.attn_norm.weight", l);
		W(&L->wq, true, 2, "blk.%d.attn_q.weight", l);
		W(&L->wk, true, 2, "blk.%d.attn_k.weight", l);
		W(&L->wv, true, 2, "blk.%d.attn_v.weight", l);
		W(&L->wo, true, 2, "blk.%d.attn_output.weight", l);
		W(&L->mlp_norm, true, 1, "blk.%d.ffn_norm.weight", l);
		W(&L->w_gate, true, 2, "blk.%d.ffn_gate.weight", l);
		W(&L->w_up, true, 2, "blk.%d.ffn_up.weight", l);
		W(&L->w_down, true, 2, "blk.%d.ffn_down.weight", l);
	}
#undef W
	return DJN_OK;
}

struct djn_model *djn_model_load_gguf(const char *path, struct djn_err *err)
{
	struct djn_mapping *map;
	struct djn_model *m;
	struct gguf g = { .path = path, .err = err };
	const char *arch, *name, *tmpl;
	size_t arch_len, name_len, tmpl_len;
	int tok_vocab;
	char ab[96];

	map = djn_mapping_open(path, err);
	if (!map)
		return NULL;
	g.p = map->addr;
	g.size = map->size;
	if (gguf_parse(&g) || get_str(&g, "general.architecture", true, &arch, &arch_len))
		goto out_free_map;
	if (!str_is(arch, arch_len, "llama")) {
		djn_err_set(err, DJN_ERR_UNSUPPORTED,
			    "%s: architecture '%s' not supported (djinn reads 'llama' gguf files)",
			    path, PNAME(ab, arch, arch_len));
		goto out_free_map;
	}

	m = djn_model_alloc(DJN_FORMAT_GGUF, path);
	djn_model_own_map(m, map);
	djn_model_own(m, g.names); /* weight names point into it */
	g.names = NULL;
	if (get_str(&g, "general.name", false, &name, &name_len) ||
	    get_str(&g, "tokenizer.chat_template", false, &tmpl, &tmpl_len))
		goto out_free_model;
	if (name && name_len) {
		free(m->name);
		m->name = str_dup(name, name_len);
	}
	if (tmpl)
		m->chat_template = str_dup(tmpl, tmpl_len);
	if (load_tokenizer(&g, m, &tok_vocab) || load_config(&g, &m->cfg, tok_vocab) ||
	    map_weights(&g, m) || djn_model_validate(m, err))
		goto out_free_model;
	gguf_release(&g);
	return m;

out_free_model:
	gguf_release(&g);
	djn_model_unref(m);
	return NULL;
out_free_map:
	gguf_release(&g);
	djn_mapping_close(map);
	return NULL;
}
