/* safetensors.c - map a .safetensors file and validate its header before any tensor is read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model/mapping.h"
#include "model/safetensors.h"

/* Integers in the header arrive as JSON numbers (doubles); past 2^53 they
 * are no longer exact, and no real file is that large. */
#define JSON_INT_MAX 9007199254740992.0

static bool json_uint(const cJSON *j, uint64_t *out)
{
	double v;

	if (!cJSON_IsNumber(j))
		return false;
	v = j->valuedouble;
	if (!(v >= 0 && v <= JSON_INT_MAX) || (double)(uint64_t)v != v)
		return false;
	*out = (uint64_t)v;
	return true;
}

static bool parse_dtype(const char *s, enum djn_dtype *out)
{
	if (!strcmp(s, "F32"))
		*out = DJN_DTYPE_F32;
	else if (!strcmp(s, "F16"))
		*out = DJN_DTYPE_F16;
	else if (!strcmp(s, "BF16"))
		*out = DJN_DTYPE_BF16;
	else
		return false;
	return true;
}

static void format_shape(const struct djn_st_tensor *t, char *buf, size_t n)
{
	size_t len = 0;

	len += (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < t->rank && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "",
					(long long)t->shape[i]);
	if (len < n)
		snprintf(buf + len, n - len, "]");
}

/* One header entry into *t; data_size bounds its offsets. */
static enum djn_status parse_entry(const char *path, const cJSON *j, size_t data_size,
				   struct djn_st_tensor *t, struct djn_err *err)
{
	const char *name = j->string;
	const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(j, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
	const cJSON *d;
	uint64_t begin, end, dim, n_elem = 1, es;
	char sbuf[96];
	int i = 0;

	if (!cJSON_IsObject(j))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: tensor '%s' is not an object",
				   path, name);
	if (!cJSON_IsString(dtype))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: tensor '%s' has no dtype string",
				   path, name);
	if (!parse_dtype(dtype->valuestring, &t->dtype))
		return djn_err_set(err, DJN_ERR_UNSUPPORTED,
				   "%s: tensor '%s' has dtype %s (only F32, F16 and BF16 are supported)",
				   path, name, dtype->valuestring);
	if (!cJSON_IsArray(shape))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: tensor '%s' has no shape array",
				   path, name);
	t->rank = cJSON_GetArraySize(shape);
	if (t->rank > DJN_ST_MAX_RANK)
		return djn_err_set(err, DJN_ERR_UNSUPPORTED,
				   "%s: tensor '%s' has rank %d (at most %d supported)", path,
				   name, t->rank, DJN_ST_MAX_RANK);
	cJSON_ArrayForEach(d, shape) {
		if (!json_uint(d, &dim))
			return djn_err_set(err, DJN_ERR_FORMAT,
					   "%s: tensor '%s' has a bad shape (dimension %d is not a non-negative integer)",
					   path, name, i);
		t->shape[i++] = (int64_t)dim;
		/* Anything past 2^53 elements cannot fit the data anyway. */
		if (dim && n_elem > (uint64_t)JSON_INT_MAX / dim)
			return djn_err_set(err, DJN_ERR_FORMAT,
					   "%s: tensor '%s' has a bad shape (too many elements)",
					   path, name);
		n_elem *= dim;
	}
	t->n_elem = (int64_t)n_elem;
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    !json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
	    !json_uint(cJSON_GetArrayItem(offs, 1), &end))
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' has bad data_offsets (expected two non-negative integers)",
				   path, name);
	if (begin > end)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' begins at byte %llu, after its end %llu",
				   path, name, (unsigned long long)begin, (unsigned long long)end);
	if (end > data_size)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' ends at byte %llu, data has %zu", path, name,
				   (unsigned long long)end, data_size);
	/* Compare by division: n_elem * es could overflow, end - begin cannot. */
	es = djn_dtype_block_bytes(t->dtype);
	if ((end - begin) % es || (end - begin) / es != n_elem) {
		format_shape(t, sbuf, sizeof(sbuf));
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: tensor '%s' has %llu bytes, its shape %s of %s needs %llu",
				   path, name, (unsigned long long)(end - begin), sbuf,
				   dtype->valuestring, (unsigned long long)(n_elem * es));
	}
	t->offset = (size_t)begin;
	t->n_bytes = (size_t)(end - begin);
	t->name = djn_xstrdup(name);
	return DJN_OK;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct djn_st_tensor *)a)->name,
		      ((const struct djn_st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
	const struct djn_st_tensor *x = *(const struct djn_st_tensor *const *)a;
	const struct djn_st_tensor *y = *(const struct djn_st_tensor *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static enum djn_status check_overlaps(struct djn_st_file *f, struct djn_err *err)
{
	const struct djn_st_tensor **by_off, *prev = NULL;
	enum djn_status st = DJN_OK;

	by_off = djn_xcalloc((size_t)f->n_tensors, sizeof(*by_off));
	for (int i = 0; i < f->n_tensors; i++)
		by_off[i] = &f->tensors[i];
	qsort(by_off, (size_t)f->n_tensors, sizeof(*by_off), cmp_offset);
	for (int i = 0; i < f->n_tensors; i++) {
		const struct djn_st_tensor *t = by_off[i];

		if (!t->n_bytes) /* an empty tensor occupies nothing */
			continue;
		if (prev && t->offset < prev->offset + prev->n_bytes) {
			st = djn_err_set(err, DJN_ERR_FORMAT,
					 "%s: tensors '%s' and '%s' overlap (bytes %zu..%zu and %zu..%zu)",
					 f->path, prev->name, t->name, prev->offset,
					 prev->offset + prev->n_bytes, t->offset,
					 t->offset + t->n_bytes);
			break;
		}
		if (!prev || t->offset + t->n_bytes > prev->offset + prev->n_bytes)
			prev = t;
	}
	free(by_off);
	return st;
}

static enum djn_status parse_header(struct djn_st_file *f, struct djn_err *err)
{
	const uint8_t *p = f->map->addr;
	size_t size = f->map->size, data_size;
	const char *json, *end = NULL;
	uint64_t n = 0;
	cJSON *root, *item;
	enum djn_status st = DJN_OK;
	int count = 0;

	if (size < 8)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: file is %zu bytes, too short for a safetensors header",
				   f->path, size);
	for (int i = 7; i >= 0; i--)
		n = n << 8 | p[i];
	if (n > DJN_ST_MAX_HEADER)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: header length %llu is too large (limit %u)", f->path,
				   (unsigned long long)n, DJN_ST_MAX_HEADER);
	if (n > size - 8)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: header length %llu runs past the end of the file (%zu bytes)",
				   f->path, (unsigned long long)n, size);
	json = (const char *)p + 8;
	data_size = size - 8 - (size_t)n;
	root = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, 0);
	if (!root)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: header is not valid JSON (error at byte %zu)", f->path,
				   8 + (size_t)(end && end >= json ? end - json : 0));
	/* Writers pad the header with spaces to align the data. */
	for (const char *q = end; q < json + n; q++) {
		if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
			st = djn_err_set(err, DJN_ERR_FORMAT,
					 "%s: header is not valid JSON (trailing data at byte %zu)",
					 f->path, 8 + (size_t)(q - json));
			goto out_free_root;
		}
	}
	if (!cJSON_IsObject(root)) {
		st = djn_err_set(err, DJN_ERR_FORMAT, "%s: header is not a JSON object", f->path);
		goto out_free_root;
	}
	cJSON_ArrayForEach(item, root)
		count++;
	f->tensors = djn_xcalloc((size_t)count, sizeof(*f->tensors));
	cJSON_ArrayForEach(item, root) {
		if (!strcmp(item->string, "__metadata__")) {
			if (!cJSON_IsObject(item)) {
				st = djn_err_set(err, DJN_ERR_FORMAT,
						 "%s: __metadata__ is not an object", f->path);
				goto out_free_root;
			}
			continue;
		}
		st = parse_entry(f->path, item, data_size, &f->tensors[f->n_tensors], err);
		if (st)
			goto out_free_root;
		f->n_tensors++;
	}
	qsort(f->tensors, (size_t)f->n_tensors, sizeof(*f->tensors), cmp_name);
	for (int i = 1; i < f->n_tensors; i++) {
		if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name)) {
			st = djn_err_set(err, DJN_ERR_FORMAT, "%s: tensor '%s' appears twice",
					 f->path, f->tensors[i].name);
			goto out_free_root;
		}
	}
	if ((st = check_overlaps(f, err)))
		goto out_free_root;
	for (int i = 0; i < f->n_tensors; i++)
		f->tensors[i].data = p + 8 + n + f->tensors[i].offset;
out_free_root:
	cJSON_Delete(root);
	return st;
}

struct djn_st_file *djn_st_open(const char *path, struct djn_err *err)
{
	struct djn_st_file *f;
	struct djn_mapping *map = djn_mapping_open(path, err);

	if (!map)
		return NULL;
	f = djn_xcalloc(1, sizeof(*f));
	f->map = map;
	f->path = djn_xstrdup(path);
	if (parse_header(f, err)) {
		djn_st_free(f);
		return NULL;
	}
	return f;
}

const struct djn_st_tensor *djn_st_find(const struct djn_st_file *f, const char *name)
{
	struct djn_st_tensor key = { .name = (char *)name };

	if (!f->n_tensors)
		return NULL;
	return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof(*f->tensors), cmp_name);
}

struct djn_mapping *djn_st_take_map(struct djn_st_file *f)
{
	struct djn_mapping *map = f->map;

	f->map = NULL;
	return map;
}

void djn_st_free(struct djn_st_file *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->n_tensors; i++)
		free(f->tensors[i].name);
	free(f->tensors);
	djn_mapping_close(f->map);
	free(f->path);
	free(f);
}
